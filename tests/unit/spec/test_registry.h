// Test fixtures for the spec tests: a registry of small fake node types (so the tests do
// not depend on the real built-ins) and a helper that loads a pipeline from a string.
//
// Threading: test-only, single-threaded.
#pragma once

#include <string>

#include "runtime/core/registry.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/loader.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow::testing {

// Sources: file (path*, format, follow; parallelism 1), generate (count, rate, lua).
// Operators: split (field*, into*), map (lua*; the check rejects Lua containing "@@"),
// count (key*, keyed, stateful), join (key*, within; two inputs, keyed, stateful).
// Sinks: file (path*, format; parallelism 1), stdout (format), discard.
const Registry& FakeRegistry();

struct LoadResult {
  bool ok = false;
  PipelineSpec spec;
  Diagnostics diags;
  // Rendered diagnostics with the temporary file's path replaced by "p.yaml".
  std::string rendered;
};

// Writes `yaml` to a fresh temporary folder as p.yaml and loads it against `registry`
// (default: FakeRegistry()). `dir_out`, when given, receives that folder (the caller
// removes it); otherwise the folder is removed before returning.
LoadResult LoadString(const std::string& yaml, const LoadOptions& opts = {},
                      std::string* dir_out = nullptr, const Registry* registry = nullptr);

}  // namespace onceflow::testing

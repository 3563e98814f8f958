// LoadPipeline: read a pipeline file, interpolate ${VAR} / ${VAR:-default} (in scalar
// values, so every position stays exact), apply --set overrides, and validate it against
// the node registry. Every problem is reported into `diags` in one pass; the result is
// usable only when !diags.has_errors(). Nothing on disk is created or touched.
#pragma once

#include <string>
#include <vector>

#include "runtime/core/registry.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

struct LoadOptions {
  std::vector<std::string> sets;   // "PATH=VALUE" from --set, in order
  // Command-line overrides (empty = not given). Validated like the YAML values.
  std::string semantics;
  std::string mode;
  std::string checkpoint_interval;
  std::string state_path;
};

// Returns false when there were errors (rendered by the caller from `diags`). Warnings
// and notes (stdout sink under effectively-once, mode ignored, exactly-once alias) are
// also added to `diags`.
bool LoadPipeline(const std::string& path, const LoadOptions& opts, const Registry& registry,
                  PipelineSpec* spec, Diagnostics* diags);

// Parses "250ms", "1s", "5m", "1h" (also "1.5s"); false when malformed or negative.
bool ParseDuration(const std::string& text, int64_t* ms);

}  // namespace onceflow

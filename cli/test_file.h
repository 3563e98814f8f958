// The file `onceflow test` reads (SPEC §3 "Pipeline tests"): a pipeline and its cases,
// each with records for some sources and the records expected from some sinks. This
// reader checks the file on its own (keys, types, records, duplicate names), reporting
// every problem with the test file's line and column; what needs the pipeline (is `lines`
// a source of it?) is checked by cmd_test.cc against the loaded pipeline.
//
// Threading: single-threaded use; the result is immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/sink_diff.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/yaml_tree.h"

namespace onceflow::cli {

// Records for a source (`inputs:`) or expected from a sink (`expect:`).
struct CaseRecords {
  std::string node;           // source or sink id
  const YNode* at = nullptr;  // the id's key in the test file
  Records records;
  bool ordered = false;          // expect only: `ordered: true` (per sink or per case)
  std::vector<std::string> key;  // expect only: `key:` given for this sink, else empty
};

struct TestCase {
  std::string name;
  const YNode* at = nullptr;           // the case's map
  std::string semantics, mode, chaos;  // "" = the pipeline's own / no faults
  const YNode* semantics_at = nullptr;
  const YNode* mode_at = nullptr;
  const YNode* chaos_at = nullptr;
  std::vector<std::string> sets;  // `set:` as --set PATH=VALUE
  std::vector<CaseRecords> inputs;
  std::vector<CaseRecords> expect;
  std::optional<int> expect_exit;  // `expect_exit:`; default: the run must exit 0
  std::string expect_error;        // `expect_error:` text the run's stderr must contain
  int64_t timeout_ms = 0;          // `timeout:`; 0: --timeout of the command, if any
};

struct TestFile {
  std::string path;  // as given
  std::string text;
  std::string pipeline;  // resolved against the test file's folder
  std::vector<TestCase> cases;
  std::shared_ptr<YNode> root;  // owns every YNode* above
};

// Reads and checks `path`; every problem goes to *diags (reset to this file). Returns
// false when there were errors.
bool LoadTestFile(const std::string& path, TestFile* file, Diagnostics* diags);

// A YAML value as JSON: plain scalars typed as YAML's core schema does (true/false,
// integers, decimals; anything else a string), quoted scalars strings, null null.
nlohmann::json YamlToJson(const YNode& v);

}  // namespace onceflow::cli

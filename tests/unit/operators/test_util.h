// Test helpers for the built-in operators: temp folders, pipelines loaded through the
// real validator (so option defaults, resolved paths and YAML positions are real), node
// contexts with their own KeyedState, and a recording ErrorHandler.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "operators/builtins.h"
#include "runtime/core/node.h"
#include "runtime/core/registry.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/loader.h"
#include "runtime/state/keyed_state.h"

namespace onceflow::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "onceflow-ops-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline void AppendFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << text;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const Registry& Builtins() {
  static Registry* r = [] {
    auto* reg = new Registry;
    RegisterBuiltins(reg);
    return reg;
  }();
  return *r;
}

// Records every error; returns a kDataError status when `fail` is set (on_error: fail).
class FakeErrors : public ErrorHandler {
 public:
  bool fail = false;
  std::vector<std::string> errors;
  std::vector<Record> records;
  std::vector<std::string> raws;
  std::vector<Origin> origins;

  Status OnRecordError(const Record& rec, std::string_view error) override {
    errors.emplace_back(error);
    records.push_back(rec);
    return fail ? Status::DataError(std::string(error)) : Status::Ok();
  }
  Status OnRawError(const Origin& origin, std::string_view raw, std::string_view error) override {
    errors.emplace_back(error);
    raws.emplace_back(raw);
    origins.push_back(origin);
    return fail ? Status::DataError(std::string(error)) : Status::Ok();
  }
};

// A pipeline file written into `dir` and loaded with the built-in registry.
struct Pipeline {
  PipelineSpec spec;
  Diagnostics diags;
  bool ok = false;

  std::string Rendered() const {
    std::ostringstream os;
    diags.Render(os);
    return os.str();
  }
  const NodeSpec& Node(const std::string& id) const { return *spec.FindNode(id); }
};

inline std::unique_ptr<Pipeline> LoadYaml(const std::string& dir, const std::string& yaml,
                                          const std::string& name = "p.yaml") {
  auto p = std::make_unique<Pipeline>();
  std::string path = dir + "/" + name;
  WriteFile(path, yaml);
  LoadOptions opts;
  p->ok = LoadPipeline(path, opts, Builtins(), &p->spec, &p->diags);
  return p;
}

// Everything an instance needs to run outside the executor.
struct Harness {
  NodeContext ctx;
  KeyedState state;
  FakeErrors errors;
  NodeMetrics metrics;

  Harness(const Pipeline& p, const std::string& id, int instance = 0, int parallelism = 1) {
    ctx.pipeline = &p.spec;
    ctx.spec = p.spec.FindNode(id);
    ctx.node_index = p.spec.NodeIndex(id);
    ctx.instance = instance;
    ctx.parallelism = parallelism;
    ctx.state = &state;
    ctx.errors = &errors;
    ctx.metrics = &metrics;
  }
};

inline const NodeTypeDef& Def(NodeKind kind, const std::string& type) {
  return *Builtins().Find(kind, type);
}

// Reads until the source ends (or `max_calls` reads), `batch` records per call.
inline Status ReadAll(Source& src, RecordBatch* out, size_t batch = 1024, int max_calls = 100000) {
  for (int i = 0; i < max_calls; ++i) {
    Emitter em(out);
    bool end = false;
    Status st = src.Read(batch, em, &end);
    if (!st.ok()) return st;
    if (end) return Status::Ok();
  }
  return Status::Runtime("source did not end");
}

inline std::string Json(const RecordBatch& batch) {
  std::string s;
  for (const auto& r : batch) {
    s += r.ToJson();
    s += "\n";
  }
  return s;
}

}  // namespace onceflow::testing

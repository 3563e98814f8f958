// PipelineSpec: a pipeline file after parsing, interpolation, --set and validation. Every
// value keeps its YNode (and so its file:line:col). Produced by LoadPipeline() in
// spec/loader.h; consumed by the planner and the node factories.
//
// Threading: immutable after loading.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/spec/yaml_tree.h"

namespace onceflow {

enum class Semantics { kAtMostOnce, kAtLeastOnce, kEffectivelyOnce };
enum class Mode { kSnapshot, kDedup };
enum class NodeKind { kSource, kOperator, kSink };
enum class PartitionKind { kDefault, kForward, kRoundRobin, kHash, kBroadcast };
enum class OnError { kFail, kSkip, kDeadLetter };
enum class EmitMode { kUpdates, kFinal };

const char* SemanticsName(Semantics s);   // "at-most-once", ...
const char* ModeName(Mode m);             // "snapshot", "dedup"
const char* NodeKindName(NodeKind k);     // "source", "op", "sink"
const char* PartitionName(PartitionKind p);  // "forward", "round_robin", "hash", "broadcast"

struct InputSpec {
  std::string from;                  // upstream node id
  PartitionKind partition = PartitionKind::kDefault;
  std::vector<std::string> hash_fields;  // for kHash
  const YNode* at = nullptr;         // where it was written
};

// Typed access to a node's options after validation. Defaults from the node type's option
// table are already filled in, so Get* of an option with a default always succeeds.
// Calling a getter on an option whose declared type differs is a programming error.
class NodeOptions {
 public:
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  // True when the option was written (in the file or with --set), not a filled-in default.
  bool Given(const std::string& name) const {
    auto it = values_.find(name);
    return it != values_.end() && !it->second.is_default;
  }
  const YNode* Raw(const std::string& name) const;     // nullptr when absent
  std::string GetString(const std::string& name, const std::string& dflt = "") const;
  int64_t GetInt(const std::string& name, int64_t dflt = 0) const;
  double GetNumber(const std::string& name, double dflt = 0) const;
  bool GetBool(const std::string& name, bool dflt = false) const;
  int64_t GetDurationMs(const std::string& name, int64_t dflt = 0) const;
  // A `path` option resolved against the pipeline file's folder (or the working directory
  // for a value given with --set).
  std::string GetPath(const std::string& name) const;
  // A field-list option: a single string or a list of strings.
  std::vector<std::string> GetList(const std::string& name) const;

  // Filled by the validator. `value` is either a node of the pipeline tree or an owned
  // default; `resolved` holds the pre-computed string (path resolution, duration text).
  struct Entry {
    const YNode* node = nullptr;
    std::shared_ptr<YNode> owned;  // defaults live here
    std::string resolved_path;     // for kPath
    int64_t duration_ms = 0;       // for kDuration
    bool is_default = false;       // filled in from the option table (node has line 0)
  };
  std::map<std::string, Entry> values_;
};

struct NodeSpec {
  std::string id;
  const YNode* at = nullptr;          // the node's map (its key's position is `id_at`)
  const YNode* id_at = nullptr;
  NodeKind kind = NodeKind::kOperator;
  std::string type;                   // "file", "count", ...
  std::string dir;                    // the pipeline file's folder (paths inside lists)
  int parallelism = 1;
  OnError on_error = OnError::kFail;
  std::string dead_letter_path;       // resolved; required for kDeadLetter
  EmitMode emit = EmitMode::kUpdates;
  std::vector<InputSpec> inputs;
  std::vector<std::string> key;       // key fields of keyed operators (option `key`), else empty
  NodeOptions options;
};

struct PipelineSpec {
  std::string file;          // as given on the command line
  std::string dir;           // folder of the file (for relative paths)
  std::string text;          // file contents (for diagnostics)
  std::string name;
  std::string description;
  Semantics semantics = Semantics::kEffectivelyOnce;
  Mode mode = Mode::kSnapshot;
  bool mode_given = false;   // `mode:` present in the file
  bool exactly_once_alias = false;  // `exactly-once` was written
  std::string state_path;    // resolved; default ./<name>.state.db (working directory)
  int64_t checkpoint_interval_ms = 1000;
  int checkpoint_retain = 3;
  int max_recoveries = 100;
  std::vector<NodeSpec> nodes;   // in file order
  std::shared_ptr<YNode> root;   // owns the tree every YNode* points into

  const NodeSpec* FindNode(const std::string& id) const;
  int NodeIndex(const std::string& id) const;  // -1 when absent
};

}  // namespace onceflow

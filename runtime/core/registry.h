// The node registry: one entry per node type, each with its option table. The validator,
// `onceflow operators list|describe` and the man page's node reference all read these
// tables, so they cannot drift. Built-in nodes register through RegisterBuiltins()
// (operators/builtins.h) exactly as a plugin's operators will.
//
// Threading: filled once at start-up, then read-only.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

class Diagnostics;

enum class OptionType {
  kString,     // any scalar text
  kInt,        // integer, within [min, max]
  kNumber,     // integer or decimal, within [min, max]
  kBool,       // true / false
  kDuration,   // "250ms", "1s", "5m", "1h"
  kPath,       // relative to the pipeline file's folder
  kFieldList,  // a field name or a list of field names
  kStringList, // a list of strings (a single string is accepted as a one-item list)
  kLua,        // inline Lua source, compiled at validation
  kEnum,       // one of `choices`
  kMap,        // a YAML map, passed through (e.g. aggregate `fields:`, plugin `config:`)
};
const char* OptionTypeName(OptionType t);  // "string", "integer", ...

struct OptionDef {
  std::string name;
  OptionType type = OptionType::kString;
  bool required = false;
  std::string default_value;       // YAML scalar text; empty = no default
  std::string help;                // one line
  std::vector<std::string> choices;  // kEnum
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
};

struct NodeTypeDef {
  NodeKind kind = NodeKind::kOperator;
  std::string type;                // "file", "count", ...
  std::string summary;             // one line for listings
  std::vector<OptionDef> options;  // type-specific options (common ones are implicit)
  bool keyed = false;              // has `key`; input hash-partitioned on it by default
  bool stateful = false;           // takes `emit: updates|final`
  int max_parallelism = 1 << 16;   // e.g. 1 for the file sink and the file/stdin sources
  int min_inputs = 1, max_inputs = 1 << 16;  // operators and sinks only
  // Semantic checks beyond option types (run after the options type-check, only when they
  // did): e.g. "aggregate needs at least one aggregate", Lua compile errors.
  std::function<void(const NodeSpec&, Diagnostics&)> check;
  // Exactly one factory is set, matching `kind`.
  std::function<std::unique_ptr<Source>(const NodeSpec&)> make_source;
  std::function<std::unique_ptr<Operator>(const NodeSpec&)> make_operator;
  std::function<std::unique_ptr<Sink>(const NodeSpec&)> make_sink;
  // What this sink can guarantee end to end, as `validate` prints it; empty for
  // non-sinks. E.g. "at-least-once at best — stdout cannot take output back".
  std::function<std::string(Semantics)> sink_guarantee;
  // Sinks that can hold their output back until a checkpoint completes and then apply it
  // exactly once (Sink::PreCommit rows + Sink::ApplyEpoch): the `sqlite` sink.
  bool two_phase = false;
  // Sources that cannot rewind (`stdin`): a replaying guarantee journals their input
  // (NodeContext::journal).
  bool journaled = false;
  // Event-time operators (`window`, `join`): the option naming the records' event-time
  // field. Tasks sending to such a node over a channel push in-band watermarks (the max
  // of that field they routed on the edge) after the records, so that a channel that
  // carries no record does not hold the node's watermark back (Operator::OnWatermark).
  std::string event_time_option;
};

// The options every node takes, whatever its type (parallelism, on_error, dead_letter,
// input, and emit for stateful types). Used by validation and the docs.
const std::vector<OptionDef>& CommonOptions(NodeKind kind, bool stateful);

class Registry {
 public:
  void Add(NodeTypeDef def);
  const NodeTypeDef* Find(NodeKind kind, const std::string& type) const;
  std::vector<const NodeTypeDef*> All() const;           // sorted by kind, then type
  std::vector<std::string> TypeNames(NodeKind kind) const;  // for did-you-mean

 private:
  std::vector<std::unique_ptr<NodeTypeDef>> defs_;
};

}  // namespace onceflow

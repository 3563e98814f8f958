// The node registry and the option tables every node shares (CommonOptions). The tables
// here are the single source for validation, `onceflow operators describe` and the docs.
//
// Threading: Registry is filled once at start-up, then only read; CommonOptions returns
// function-local statics (thread-safe initialisation, immutable afterwards).
#include "runtime/core/registry.h"

#include <algorithm>
#include <tuple>

namespace onceflow {

const char* OptionTypeName(OptionType t) {
  switch (t) {
    case OptionType::kString:
      return "string";
    case OptionType::kInt:
      return "integer";
    case OptionType::kNumber:
      return "number";
    case OptionType::kBool:
      return "bool";
    case OptionType::kDuration:
      return "duration";
    case OptionType::kPath:
      return "path";
    case OptionType::kFieldList:
      return "field list";
    case OptionType::kStringList:
      return "string list";
    case OptionType::kLua:
      return "lua";
    case OptionType::kEnum:
      return "enum";
    case OptionType::kMap:
      return "map";
  }
  return "string";
}

namespace {

OptionDef Option(std::string name, OptionType type, std::string default_value, std::string help,
                 std::vector<std::string> choices = {},
                 double min = -std::numeric_limits<double>::infinity(),
                 double max = std::numeric_limits<double>::infinity()) {
  OptionDef d;
  d.name = std::move(name);
  d.type = type;
  d.default_value = std::move(default_value);
  d.help = std::move(help);
  d.choices = std::move(choices);
  d.min = min;
  d.max = max;
  return d;
}

std::vector<OptionDef> MakeCommon(NodeKind kind, bool stateful) {
  std::vector<OptionDef> v;
  if (kind != NodeKind::kSource) {
    // `input` has its own grammar (id, list, {from, partition}); the validator parses it
    // specially, the table entry is for listings and did-you-mean.
    v.push_back(Option("input", OptionType::kStringList, "",
                       "upstream node id(s), or {from: ID, partition: forward|round_robin|"
                       "hash(FIELD,...)|broadcast}"));
    v.back().required = true;
  }
  v.push_back(
      Option("parallelism", OptionType::kInt, "1", "number of parallel instances", {}, 1, 1024));
  v.push_back(Option("on_error", OptionType::kEnum, "fail",
                     "what a deterministic data error on a record does",
                     {"fail", "skip", "dead_letter"}));
  v.push_back(Option("dead_letter", OptionType::kPath, "",
                     "JSONL file for records that failed (with on_error: dead_letter)"));
  if (stateful) {
    v.push_back(Option("emit", OptionType::kEnum, "updates",
                       "updates: emit each change; final: each key's last value at the end",
                       {"updates", "final"}));
  }
  return v;
}

}  // namespace

const std::vector<OptionDef>& CommonOptions(NodeKind kind, bool stateful) {
  static const std::vector<OptionDef> kSource = MakeCommon(NodeKind::kSource, false);
  static const std::vector<OptionDef> kSourceStateful = MakeCommon(NodeKind::kSource, true);
  static const std::vector<OptionDef> kOperator = MakeCommon(NodeKind::kOperator, false);
  static const std::vector<OptionDef> kOperatorStateful = MakeCommon(NodeKind::kOperator, true);
  static const std::vector<OptionDef> kSink = MakeCommon(NodeKind::kSink, false);
  static const std::vector<OptionDef> kSinkStateful = MakeCommon(NodeKind::kSink, true);
  switch (kind) {
    case NodeKind::kSource:
      return stateful ? kSourceStateful : kSource;
    case NodeKind::kOperator:
      return stateful ? kOperatorStateful : kOperator;
    case NodeKind::kSink:
      return stateful ? kSinkStateful : kSink;
  }
  return kOperator;
}

// A later definition of the same kind and type replaces the earlier one (a plugin may
// shadow a built-in). Pointers from Find() stay valid until then.
void Registry::Add(NodeTypeDef def) {
  for (auto& existing : defs_) {
    if (existing->kind == def.kind && existing->type == def.type) {
      *existing = std::move(def);
      return;
    }
  }
  defs_.push_back(std::make_unique<NodeTypeDef>(std::move(def)));
}

const NodeTypeDef* Registry::Find(NodeKind kind, const std::string& type) const {
  for (const auto& d : defs_) {
    if (d->kind == kind && d->type == type) return d.get();
  }
  return nullptr;
}

std::vector<const NodeTypeDef*> Registry::All() const {
  std::vector<const NodeTypeDef*> all;
  all.reserve(defs_.size());
  for (const auto& d : defs_) all.push_back(d.get());
  std::sort(all.begin(), all.end(), [](const NodeTypeDef* a, const NodeTypeDef* b) {
    return std::tie(a->kind, a->type) < std::tie(b->kind, b->type);
  });
  return all;
}

std::vector<std::string> Registry::TypeNames(NodeKind kind) const {
  std::vector<std::string> names;
  for (const NodeTypeDef* d : All()) {
    if (d->kind == kind) names.push_back(d->type);
  }
  return names;
}

}  // namespace onceflow

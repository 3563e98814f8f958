// Names of the spec enums, typed option access (NodeOptions) and node lookup.
//
// Threading: everything here reads immutable data.
#include "runtime/spec/pipeline_spec.h"

#include <cstdlib>

namespace onceflow {

const char* SemanticsName(Semantics s) {
  switch (s) {
    case Semantics::kAtMostOnce:
      return "at-most-once";
    case Semantics::kAtLeastOnce:
      return "at-least-once";
    case Semantics::kEffectivelyOnce:
      return "effectively-once";
  }
  return "effectively-once";
}

const char* ModeName(Mode m) { return m == Mode::kDedup ? "dedup" : "snapshot"; }

const char* NodeKindName(NodeKind k) {
  switch (k) {
    case NodeKind::kSource:
      return "source";
    case NodeKind::kOperator:
      return "op";
    case NodeKind::kSink:
      return "sink";
  }
  return "op";
}

const char* PartitionName(PartitionKind p) {
  switch (p) {
    case PartitionKind::kDefault:
      return "default";
    case PartitionKind::kForward:
      return "forward";
    case PartitionKind::kRoundRobin:
      return "round_robin";
    case PartitionKind::kHash:
      return "hash";
    case PartitionKind::kBroadcast:
      return "broadcast";
  }
  return "default";
}

const YNode* NodeOptions::Raw(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : it->second.node;
}

// The getters trust validation: the value was type-checked against the option table, so
// only absent options (or nulls) fall back to `dflt`.
std::string NodeOptions::GetString(const std::string& name, const std::string& dflt) const {
  const YNode* n = Raw(name);
  return n && n->is_scalar() ? n->scalar : dflt;
}

int64_t NodeOptions::GetInt(const std::string& name, int64_t dflt) const {
  const YNode* n = Raw(name);
  if (!n || !n->is_scalar()) return dflt;
  return std::strtoll(n->scalar.c_str(), nullptr, 10);
}

double NodeOptions::GetNumber(const std::string& name, double dflt) const {
  const YNode* n = Raw(name);
  if (!n || !n->is_scalar()) return dflt;
  return std::strtod(n->scalar.c_str(), nullptr);
}

bool NodeOptions::GetBool(const std::string& name, bool dflt) const {
  const YNode* n = Raw(name);
  if (!n || !n->is_scalar()) return dflt;
  return n->scalar == "true" || n->scalar == "True" || n->scalar == "TRUE";
}

int64_t NodeOptions::GetDurationMs(const std::string& name, int64_t dflt) const {
  auto it = values_.find(name);
  if (it == values_.end() || !it->second.node || !it->second.node->is_scalar()) return dflt;
  return it->second.duration_ms;
}

std::string NodeOptions::GetPath(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? "" : it->second.resolved_path;
}

std::vector<std::string> NodeOptions::GetList(const std::string& name) const {
  std::vector<std::string> out;
  const YNode* n = Raw(name);
  if (!n) return out;
  if (n->is_scalar()) {
    out.push_back(n->scalar);
  } else if (n->is_sequence()) {
    for (const YNode& item : n->items) {
      if (item.is_scalar()) out.push_back(item.scalar);
    }
  }
  return out;
}

const NodeSpec* PipelineSpec::FindNode(const std::string& id) const {
  int i = NodeIndex(id);
  return i < 0 ? nullptr : &nodes[static_cast<size_t>(i)];
}

int PipelineSpec::NodeIndex(const std::string& id) const {
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].id == id) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace onceflow

// Helpers for unit_exec: hand-built PipelineSpecs (no YAML, no validator).
#pragma once

#include <string>
#include <vector>

#include "runtime/spec/pipeline_spec.h"

namespace onceflow::testing {

struct In {
  std::string from;
  PartitionKind partition = PartitionKind::kDefault;
  std::vector<std::string> hash_fields = {};
};

inline NodeSpec MakeNode(std::string id, NodeKind kind, std::string type, int parallelism = 1,
                         std::vector<In> inputs = {}, std::vector<std::string> key = {}) {
  NodeSpec n;
  n.id = std::move(id);
  n.kind = kind;
  n.type = std::move(type);
  n.parallelism = parallelism;
  for (In& in : inputs) {
    InputSpec is;
    is.from = in.from;
    is.partition = in.partition;
    is.hash_fields = in.hash_fields;
    n.inputs.push_back(std::move(is));
  }
  n.key = std::move(key);
  return n;
}

inline NodeSpec Src(std::string id, std::string type = "gen", int p = 1) {
  return MakeNode(std::move(id), NodeKind::kSource, std::move(type), p);
}
inline NodeSpec Op(std::string id, std::vector<In> in, int p = 1, std::string type = "pass",
                   std::vector<std::string> key = {}) {
  return MakeNode(std::move(id), NodeKind::kOperator, std::move(type), p, std::move(in),
                  std::move(key));
}
inline NodeSpec Snk(std::string id, std::vector<In> in, int p = 1, std::string type = "collect") {
  return MakeNode(std::move(id), NodeKind::kSink, std::move(type), p, std::move(in));
}

inline PipelineSpec MakePipeline(std::vector<NodeSpec> nodes) {
  PipelineSpec s;
  s.name = "test";
  s.semantics = Semantics::kAtMostOnce;
  s.nodes = std::move(nodes);
  return s;
}

}  // namespace onceflow::testing

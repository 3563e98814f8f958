// Plan: the physical shape of a validated pipeline. Tasks are node × instance; a channel
// joins every upstream instance to every downstream instance it can route to (one FIFO
// per pair); forward edges between nodes of equal parallelism, where the upstream has one
// consumer and the downstream one input, are chained into one thread (no queue, no copy).
//
// Default partitioning of an edge: hash on the key for keyed operators (unless both sides
// have parallelism 1, where it is forward); forward when the parallelisms are equal;
// otherwise round_robin. Built by BuildPlan() from a PipelineSpec that passed validation.
#pragma once

#include <string>
#include <vector>

#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

struct PlanEdge {
  int from = 0;          // node index (PipelineSpec::nodes)
  int to = 0;
  int port = 0;          // index of this input in the downstream node's `input:` list
  PartitionKind partition = PartitionKind::kForward;  // never kDefault after planning
  std::vector<std::string> hash_fields;
  bool chained = false;  // true: no channel, same thread
  int channels = 0;      // number of FIFO channels this edge creates (0 when chained)
};

struct PlanNode {
  int index = 0;
  const NodeSpec* spec = nullptr;
  int parallelism = 1;
  int chain = -1;                 // index into Plan::chains
  std::vector<int> in_edges;      // indices into Plan::edges, in port order
  std::vector<int> out_edges;
};

// A chain runs as one thread per instance: nodes[0] is the head (a source, or the node
// that reads from channels), each next node consumes the previous one's output directly.
struct Chain {
  std::vector<int> nodes;
  int parallelism = 1;
};

struct Plan {
  std::vector<PlanNode> nodes;    // same order as PipelineSpec::nodes
  std::vector<PlanEdge> edges;
  std::vector<Chain> chains;      // in topological order of their heads
  std::vector<int> topo_order;    // node indices, sources first

  int TaskCount() const;          // Σ chain parallelism (threads)
  int ChannelCount() const;       // Σ edge channels
};

// `spec` must have passed validation (acyclic, inputs exist, partitions legal; an
// explicit `forward` between different parallelisms is planned as round_robin).
Plan BuildPlan(const PipelineSpec& spec);

// "hash(word)", "forward", ... as `validate` / `graph` print an edge.
std::string DescribeEdgePartition(const PlanEdge& e);

}  // namespace onceflow

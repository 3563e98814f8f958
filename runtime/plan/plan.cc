// BuildPlan: turns a validated PipelineSpec into its physical plan (edges with their
// partitioning settled, chains, channel counts, a topological order). Pure functions,
// no threads.
#include "runtime/plan/plan.h"

#include <algorithm>
#include <deque>
#include <string>

namespace onceflow {
namespace {

// The partitioning of an edge once the defaults are applied (plan.h's rules).
PartitionKind SettlePartition(const InputSpec& in, const NodeSpec& up, const NodeSpec& down,
                              std::vector<std::string>* hash_fields) {
  PartitionKind p = in.partition;
  if (p == PartitionKind::kDefault) {
    // NodeSpec::key is non-empty only for keyed node types: their input must bring every
    // record of one key to the same instance, or each instance would count a fraction.
    if (!down.key.empty() && !(up.parallelism == 1 && down.parallelism == 1)) {
      p = PartitionKind::kHash;
      *hash_fields = down.key;
    } else if (up.parallelism == down.parallelism) {
      p = PartitionKind::kForward;
    } else {
      p = PartitionKind::kRoundRobin;
    }
  } else if (p == PartitionKind::kHash) {
    *hash_fields = in.hash_fields.empty() ? down.key : in.hash_fields;
  }
  // Validation rejects an explicit `forward` between different parallelisms; should one
  // slip through, spreading round robin is the only routing that loses nothing.
  if (p == PartitionKind::kForward && up.parallelism != down.parallelism) {
    p = PartitionKind::kRoundRobin;
  }
  return p;
}

}  // namespace

int Plan::TaskCount() const {
  int n = 0;
  for (const Chain& c : chains) n += c.parallelism;
  return n;
}

int Plan::ChannelCount() const {
  int n = 0;
  for (const PlanEdge& e : edges) n += e.channels;
  return n;
}

Plan BuildPlan(const PipelineSpec& spec) {
  Plan plan;
  const int n = static_cast<int>(spec.nodes.size());
  plan.nodes.resize(n);
  for (int i = 0; i < n; ++i) {
    PlanNode& pn = plan.nodes[i];
    pn.index = i;
    pn.spec = &spec.nodes[i];
    pn.parallelism = std::max(1, spec.nodes[i].parallelism);
  }

  // Edges, in node order then port order, so in_edges come out in port order.
  for (int to = 0; to < n; ++to) {
    const NodeSpec& down = spec.nodes[to];
    for (size_t port = 0; port < down.inputs.size(); ++port) {
      const InputSpec& in = down.inputs[port];
      int from = spec.NodeIndex(in.from);
      if (from < 0) continue;  // unreachable after validation
      PlanEdge e;
      e.from = from;
      e.to = to;
      e.port = static_cast<int>(port);
      e.partition = SettlePartition(in, spec.nodes[from], down, &e.hash_fields);
      int idx = static_cast<int>(plan.edges.size());
      plan.edges.push_back(std::move(e));
      plan.nodes[from].out_edges.push_back(idx);
      plan.nodes[to].in_edges.push_back(idx);
    }
  }

  // Chaining and channel counts.
  for (PlanEdge& e : plan.edges) {
    const PlanNode& up = plan.nodes[e.from];
    const PlanNode& down = plan.nodes[e.to];
    e.chained = e.partition == PartitionKind::kForward && up.parallelism == down.parallelism &&
                up.out_edges.size() == 1 && down.in_edges.size() == 1;
    if (e.chained) {
      e.channels = 0;
    } else if (e.partition == PartitionKind::kForward) {
      e.channels = up.parallelism;  // instance i -> instance i
    } else {
      e.channels = up.parallelism * down.parallelism;
    }
  }

  // Topological order: Kahn's algorithm seeded with every node without inputs (the
  // sources) in file order, so sources come first and the order is deterministic.
  std::vector<int> indegree(n);
  for (int i = 0; i < n; ++i) indegree[i] = static_cast<int>(plan.nodes[i].in_edges.size());
  std::deque<int> ready;
  for (int i = 0; i < n; ++i) {
    if (indegree[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    int v = ready.front();
    ready.pop_front();
    plan.topo_order.push_back(v);
    for (int ei : plan.nodes[v].out_edges) {
      if (--indegree[plan.edges[ei].to] == 0) ready.push_back(plan.edges[ei].to);
    }
  }

  // Dedup mode: a source chain must be re-readable from its input alone (sources keep no
  // outbox; runtime/exec/sequenced.cc), so it holds no state and no sink: a keyed
  // operator or a sink after a source starts a chain of its own.
  if (spec.semantics == Semantics::kEffectivelyOnce && spec.mode == Mode::kDedup) {
    std::vector<bool> in_source_chain(n, false);
    for (int v : plan.topo_order) {
      const PlanNode& pn = plan.nodes[v];
      if (spec.nodes[v].kind == NodeKind::kSource) {
        in_source_chain[v] = true;
      } else if (pn.in_edges.size() == 1 && plan.edges[pn.in_edges[0]].chained) {
        PlanEdge& e = plan.edges[pn.in_edges[0]];
        if (in_source_chain[e.from] &&
            (spec.nodes[v].kind == NodeKind::kSink || !spec.nodes[v].key.empty())) {
          e.chained = false;
          e.channels = plan.nodes[e.from].parallelism;
        } else {
          in_source_chain[v] = in_source_chain[e.from];
        }
      }
    }
  }

  // Chains. A chained edge is its upstream's only out-edge and its downstream's only
  // in-edge, so chained edges form disjoint paths; a chain starts at every node without a
  // chained in-edge. Walking heads in topological order gives chains in topological order
  // (every unchained edge leaves a chain's tail and enters another chain's head).
  for (int v : plan.topo_order) {
    const PlanNode& pn = plan.nodes[v];
    bool chained_in = pn.in_edges.size() == 1 && plan.edges[pn.in_edges[0]].chained;
    if (chained_in) continue;
    Chain chain;
    chain.parallelism = pn.parallelism;
    int cur = v;
    const int chain_index = static_cast<int>(plan.chains.size());
    for (;;) {
      chain.nodes.push_back(cur);
      plan.nodes[cur].chain = chain_index;
      const PlanNode& c = plan.nodes[cur];
      if (c.out_edges.size() == 1 && plan.edges[c.out_edges[0]].chained) {
        cur = plan.edges[c.out_edges[0]].to;
      } else {
        break;
      }
    }
    plan.chains.push_back(std::move(chain));
  }
  return plan;
}

std::string DescribeEdgePartition(const PlanEdge& e) {
  std::string s = PartitionName(e.partition);
  if (e.partition == PartitionKind::kHash) {
    s += "(";
    for (size_t i = 0; i < e.hash_fields.size(); ++i) {
      if (i) s += ",";
      s += e.hash_fields[i];
    }
    s += ")";
  }
  return s;
}

}  // namespace onceflow

// BuildPlan: default partitions, chaining decisions, channel counts, chain order.
#include "runtime/plan/plan.h"

#include <doctest/doctest.h>

#include "tests/unit/exec/test_util.h"

namespace onceflow {
namespace {

using testing::In;
using testing::MakePipeline;
using testing::Op;
using testing::Snk;
using testing::Src;

const PlanEdge& EdgeBetween(const PipelineSpec& s, const Plan& p, const std::string& from,
                            const std::string& to) {
  for (const PlanEdge& e : p.edges) {
    if (s.nodes[e.from].id == from && s.nodes[e.to].id == to) return e;
  }
  FAIL("no edge " << from << " -> " << to);
  return p.edges.front();
}

PipelineSpec Wordcount(int count_parallelism) {
  return MakePipeline({Src("lines", "file"), Op("words", {{"lines"}}, 1, "split"),
                       Op("counts", {{"words"}}, count_parallelism, "count", {"word"}),
                       Snk("out", {{"counts"}}, 1, "file")});
}

TEST_CASE("wordcount at parallelism 1 is one chain, one thread, no channel") {
  PipelineSpec s = Wordcount(1);
  Plan p = BuildPlan(s);
  REQUIRE(p.edges.size() == 3);
  for (const PlanEdge& e : p.edges) {
    CHECK(e.partition == PartitionKind::kForward);  // keyed, but both sides parallelism 1
    CHECK(e.chained);
    CHECK(e.channels == 0);
  }
  REQUIRE(p.chains.size() == 1);
  CHECK(p.chains[0].nodes == std::vector<int>{0, 1, 2, 3});
  CHECK(p.TaskCount() == 1);
  CHECK(p.ChannelCount() == 0);
  for (const PlanNode& n : p.nodes) CHECK(n.chain == 0);
}

TEST_CASE("a keyed operator with parallelism 2 is hash-partitioned on its key") {
  PipelineSpec s = Wordcount(2);
  Plan p = BuildPlan(s);
  const PlanEdge& in = EdgeBetween(s, p, "words", "counts");
  CHECK(in.partition == PartitionKind::kHash);
  CHECK(in.hash_fields == std::vector<std::string>{"word"});
  CHECK_FALSE(in.chained);
  CHECK(in.channels == 2);  // 1 x 2
  const PlanEdge& out = EdgeBetween(s, p, "counts", "out");
  CHECK(out.partition == PartitionKind::kRoundRobin);  // 2 -> 1, not keyed
  CHECK_FALSE(out.chained);
  CHECK(out.channels == 2);
  CHECK(EdgeBetween(s, p, "lines", "words").chained);
  REQUIRE(p.chains.size() == 3);
  CHECK(p.chains[0].nodes == std::vector<int>{0, 1});
  CHECK(p.chains[1].nodes == std::vector<int>{2});
  CHECK(p.chains[1].parallelism == 2);
  CHECK(p.chains[2].nodes == std::vector<int>{3});
  CHECK(p.TaskCount() == 4);
  CHECK(p.ChannelCount() == 4);
  CHECK(DescribeEdgePartition(EdgeBetween(s, p, "words", "counts")) == "hash(word)");
}

TEST_CASE("keyed operator at equal parallelism > 1 still hashes") {
  PipelineSpec s = MakePipeline(
      {Src("src", "gen", 2), Op("c", {{"src"}}, 2, "count", {"k"}), Snk("out", {{"c"}}, 2)});
  Plan p = BuildPlan(s);
  const PlanEdge& e = EdgeBetween(s, p, "src", "c");
  CHECK(e.partition == PartitionKind::kHash);
  CHECK(e.channels == 4);
  const PlanEdge& f = EdgeBetween(s, p, "c", "out");
  CHECK(f.partition == PartitionKind::kForward);
  CHECK(f.chained);
  CHECK(p.chains.size() == 2);
  CHECK(p.TaskCount() == 4);
}

TEST_CASE("equal parallelism chains forward; different parallelism spreads round robin") {
  PipelineSpec s = MakePipeline(
      {Src("src", "gen", 3), Op("a", {{"src"}}, 3), Op("b", {{"a"}}, 2), Snk("out", {{"b"}}, 2)});
  Plan p = BuildPlan(s);
  CHECK(EdgeBetween(s, p, "src", "a").chained);
  const PlanEdge& ab = EdgeBetween(s, p, "a", "b");
  CHECK(ab.partition == PartitionKind::kRoundRobin);
  CHECK(ab.channels == 6);
  CHECK(EdgeBetween(s, p, "b", "out").chained);
  CHECK(p.TaskCount() == 5);
}

TEST_CASE("fan-out and fan-in break chains; unchained forward has one channel per pair") {
  PipelineSpec s = MakePipeline({Src("src"), Op("a", {{"src"}}), Op("b", {{"src"}}),
                                 Op("j", {{"a"}, {"b"}}), Snk("out", {{"j"}})});
  Plan p = BuildPlan(s);
  const PlanEdge& sa = EdgeBetween(s, p, "src", "a");
  CHECK(sa.partition == PartitionKind::kForward);
  CHECK_FALSE(sa.chained);  // src has two consumers
  CHECK(sa.channels == 1);
  const PlanEdge& aj = EdgeBetween(s, p, "a", "j");
  const PlanEdge& bj = EdgeBetween(s, p, "b", "j");
  CHECK_FALSE(aj.chained);  // j has two inputs
  CHECK(aj.port == 0);
  CHECK(bj.port == 1);
  const PlanNode& j = p.nodes[3];
  REQUIRE(j.in_edges.size() == 2);
  CHECK(p.edges[j.in_edges[0]].port == 0);
  CHECK(p.edges[j.in_edges[1]].port == 1);
  CHECK(EdgeBetween(s, p, "j", "out").chained);
  // chains: src | a | b | j+out, in topological order of heads.
  REQUIRE(p.chains.size() == 4);
  CHECK(p.chains[0].nodes == std::vector<int>{0});
  CHECK(p.chains[3].nodes == std::vector<int>{3, 4});
  CHECK(p.ChannelCount() == 4);
}

TEST_CASE("explicit partitions are honoured") {
  PipelineSpec s =
      MakePipeline({Src("src", "gen", 2), Op("bc", {{"src", PartitionKind::kBroadcast}}, 3),
                    Op("h", {{"bc", PartitionKind::kHash, {"user"}}}, 3),
                    Op("rr", {{"h", PartitionKind::kRoundRobin}}, 3), Snk("out", {{"rr"}}, 3)});
  Plan p = BuildPlan(s);
  const PlanEdge& b = EdgeBetween(s, p, "src", "bc");
  CHECK(b.partition == PartitionKind::kBroadcast);
  CHECK(b.channels == 6);
  const PlanEdge& h = EdgeBetween(s, p, "bc", "h");
  CHECK(h.partition == PartitionKind::kHash);
  CHECK(h.hash_fields == std::vector<std::string>{"user"});
  CHECK(h.channels == 9);
  CHECK_FALSE(h.chained);
  const PlanEdge& rr = EdgeBetween(s, p, "h", "rr");
  CHECK(rr.partition == PartitionKind::kRoundRobin);
  CHECK_FALSE(rr.chained);  // equal parallelism, but not forward
  CHECK(EdgeBetween(s, p, "rr", "out").chained);
  CHECK(p.TaskCount() == 2 + 3 + 3 + 3);
}

TEST_CASE("an explicit forward between different parallelisms degrades to round robin") {
  PipelineSpec s =
      MakePipeline({Src("src", "gen", 2), Op("p", {{"src", PartitionKind::kForward}}, 3),
                    Snk("out", {{"p"}}, 3)});
  Plan p = BuildPlan(s);
  const PlanEdge& e = EdgeBetween(s, p, "src", "p");
  CHECK(e.partition == PartitionKind::kRoundRobin);
  CHECK(e.channels == 6);
  CHECK(DescribeEdgePartition(EdgeBetween(s, p, "p", "out")) == "forward");
}

TEST_CASE("topological order puts sources first and chains follow it") {
  // File order deliberately not topological.
  PipelineSpec s =
      MakePipeline({Snk("out", {{"m"}}), Op("m", {{"s1"}, {"s2"}}), Src("s2"), Src("s1")});
  Plan p = BuildPlan(s);
  REQUIRE(p.topo_order.size() == 4);
  CHECK(p.topo_order[0] == 2);
  CHECK(p.topo_order[1] == 3);
  CHECK(p.topo_order[2] == 1);
  CHECK(p.topo_order[3] == 0);
  REQUIRE(p.chains.size() == 3);
  CHECK(p.chains[2].nodes == std::vector<int>{1, 0});  // m -> out chained
  // A chain's index is larger than that of every chain feeding it.
  for (const PlanEdge& e : p.edges) {
    CHECK(p.nodes[e.from].chain <= p.nodes[e.to].chain);
  }
}

}  // namespace
}  // namespace onceflow

namespace onceflow {
namespace {

TEST_CASE("dedup mode: a source chain never holds a keyed operator or a sink") {
  PipelineSpec s = Wordcount(1);
  s.semantics = Semantics::kEffectivelyOnce;
  s.mode = Mode::kDedup;
  Plan p = BuildPlan(s);
  CHECK(EdgeBetween(s, p, "lines", "words").chained);  // stateless: re-read from the input
  const PlanEdge& keyed = EdgeBetween(s, p, "words", "counts");
  CHECK_FALSE(keyed.chained);
  CHECK(keyed.channels == 1);
  CHECK(EdgeBetween(s, p, "counts", "out").chained);  // an operator task commits its sink
  REQUIRE(p.chains.size() == 2);
  CHECK(p.chains[0].nodes == std::vector<int>{0, 1});
  CHECK(p.chains[1].nodes == std::vector<int>{2, 3});

  PipelineSpec direct = MakePipeline({Src("g", "generate"), Snk("out", {{"g"}}, 1, "file")});
  direct.semantics = Semantics::kEffectivelyOnce;
  direct.mode = Mode::kDedup;
  Plan q = BuildPlan(direct);
  CHECK_FALSE(q.edges[0].chained);
  CHECK(q.chains.size() == 2);
  direct.mode = Mode::kSnapshot;
  CHECK(BuildPlan(direct).edges[0].chained);
}

}  // namespace
}  // namespace onceflow

// Topology fingerprints: what a resume compares (runtime/state/fingerprint.h).
#include <doctest/doctest.h>

#include "runtime/state/fingerprint.h"

namespace onceflow {
namespace {

PipelineSpec Spec() {
  PipelineSpec s;
  s.name = "p";
  auto node = [](std::string id, NodeKind kind, std::string type, std::vector<std::string> key) {
    NodeSpec n;
    n.id = std::move(id);
    n.kind = kind;
    n.type = std::move(type);
    n.key = std::move(key);
    return n;
  };
  s.nodes.push_back(node("src", NodeKind::kSource, "file", {}));
  s.nodes.push_back(node("counts", NodeKind::kOperator, "count", {"word"}));
  s.nodes.push_back(node("out", NodeKind::kSink, "file", {}));
  return s;
}

}  // namespace

TEST_CASE("fingerprint: same topology, same text; parallelism and order do not matter") {
  PipelineSpec a = Spec();
  PipelineSpec b = Spec();
  b.nodes[1].parallelism = 4;
  std::swap(b.nodes[0], b.nodes[2]);
  CHECK(Fingerprint(a) == Fingerprint(b));
  std::set<std::string> changed;
  CHECK(FingerprintChanges(Fingerprint(a), Fingerprint(b), &changed).empty());
  CHECK(changed.empty());
  CHECK(Fingerprint(a).find("node counts op count key=word") != std::string::npos);
}

TEST_CASE("fingerprint: each change is named, and the nodes it concerns are listed") {
  PipelineSpec a = Spec();
  PipelineSpec b = Spec();
  b.nodes[1].key = {"word", "lang"};
  b.nodes.erase(b.nodes.begin() + 2);  // out removed
  NodeSpec extra;
  extra.id = "dl";
  extra.kind = NodeKind::kSink;
  extra.type = "sqlite";
  b.nodes.push_back(extra);
  b.mode = Mode::kDedup;
  std::set<std::string> changed;
  auto changes = FingerprintChanges(Fingerprint(a), Fingerprint(b), &changed);
  std::string all;
  for (const auto& c : changes) all += c + "\n";
  CHECK(all.find("mode changed from snapshot to dedup") != std::string::npos);
  CHECK(all.find("node 'counts' changed") != std::string::npos);
  CHECK(all.find("node 'out' removed") != std::string::npos);
  CHECK(all.find("node 'dl' added") != std::string::npos);
  CHECK(changed == std::set<std::string>{"counts", "dl", "out"});
}

TEST_CASE("fingerprint: semantics is part of it") {
  PipelineSpec a = Spec();
  PipelineSpec b = Spec();
  b.semantics = Semantics::kAtLeastOnce;
  std::set<std::string> changed;
  auto changes = FingerprintChanges(Fingerprint(a), Fingerprint(b), &changed);
  REQUIRE(!changes.empty());
  CHECK(changes[0].find("semantics changed from effectively-once to at-least-once") == 0);
  CHECK(changed.empty());
}

}  // namespace onceflow

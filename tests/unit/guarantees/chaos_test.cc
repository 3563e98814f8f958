// Unit tests of fault injection: --chaos parsing and its errors, reproducible decisions,
// at-most-once firing with the fired set's export/import, crash-at passage counting, and
// CrashNow() in a forked child (never in this process).
#include "runtime/chaos/chaos.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace onceflow {
namespace {

ChaosSpec MustParse(std::string_view text) {
  ChaosSpec spec;
  Status st = ChaosSpec::Parse(text, &spec);
  REQUIRE_MESSAGE(st.ok(), st.message());
  return spec;
}

std::string ParseError(std::string_view text) {
  ChaosSpec spec;
  Status st = ChaosSpec::Parse(text, &spec);
  CHECK(st.code() == Status::Code::kInvalid);
  return st.message();
}

TEST_CASE("chaos: parse a full spec") {
  ChaosSpec spec = MustParse(
      "seed=42, fail=parse:0.25,fail=count:1,crash=1000,crash-prob=1e-3,"
      "crash-at=after-sink-write:3,crash-at=in-checkpoint-txn");
  CHECK(spec.seed == 42);
  REQUIRE(spec.fail.size() == 2);
  CHECK(spec.fail[0].node == "parse");
  CHECK(spec.fail[0].probability == doctest::Approx(0.25));
  CHECK(spec.fail[1].probability == 1.0);
  CHECK(spec.NodeNames() == std::vector<std::string>{"parse", "count"});
  REQUIRE(spec.crash_after.has_value());
  CHECK(*spec.crash_after == 1000);
  CHECK(spec.crash_probability == doctest::Approx(0.001));
  REQUIRE(spec.crash_at.size() == 2);
  CHECK(spec.crash_at[0].point == HazardPoint::kAfterSinkWrite);
  CHECK(spec.crash_at[0].passage == 3);
  CHECK(spec.crash_at[1].point == HazardPoint::kInCheckpointTxn);
  CHECK(spec.crash_at[1].passage == 1);
  CHECK_FALSE(spec.empty());
  // The canonical spelling parses back to the same spec.
  CHECK(MustParse(spec.ToString()).ToString() == spec.ToString());
  CHECK(spec.ToString() ==
        "seed=42,fail=parse:0.25,fail=count:1,crash=1000,crash-prob=0.001,"
        "crash-at=after-sink-write:3,crash-at=in-checkpoint-txn:1");
}

TEST_CASE("chaos: every hazard point parses") {
  for (const std::string& name : HazardPointNames()) {
    ChaosSpec spec = MustParse("crash-at=" + name + ":2");
    REQUIRE(spec.crash_at.size() == 1);
    CHECK(HazardPointName(spec.crash_at[0].point) == name);
  }
}

TEST_CASE("chaos: an empty spec or a seed alone injects nothing") {
  CHECK(MustParse("").empty());
  CHECK(MustParse("  ").empty());
  CHECK(MustParse("seed=3").empty());
  Chaos off(MustParse("seed=3"));
  CHECK_FALSE(off.enabled());
  CHECK_FALSE(off.OnSourceEvent("src", 1));
  Chaos none;
  CHECK_FALSE(none.enabled());
  CHECK_FALSE(none.Passage(HazardPoint::kAfterBarrier));
  CHECK(none.ExportFired().empty());
}

TEST_CASE("chaos: parse errors are precise") {
  CHECK(ParseError("sed=1") ==
        "--chaos: unknown item 'sed' (expected seed=, fail=, crash=, crash-prob= or "
        "crash-at=); did you mean 'seed'?");
  CHECK(ParseError("crash-pro=0.1").find("did you mean 'crash-prob'?") != std::string::npos);
  CHECK(ParseError("bogus=1").find("did you mean") == std::string::npos);
  CHECK(ParseError("seed") == "--chaos item 'seed': expected seed=VALUE");
  CHECK(ParseError("seed=1,,crash=3").find("empty item") != std::string::npos);
  CHECK(ParseError("seed=1,").find("empty item") != std::string::npos);
  CHECK(ParseError("seed=-1") == "--chaos item 'seed=-1': '-1' is not a non-negative integer");
  CHECK(ParseError("seed=12abc").find("'12abc' is not a non-negative integer") !=
        std::string::npos);
  CHECK(ParseError("seed=1,seed=2") == "--chaos: seed= given twice");
  CHECK(ParseError("fail=parse") == "--chaos item 'fail=parse': expected fail=NODE:P");
  CHECK(ParseError("fail=:0.5") == "--chaos item 'fail=:0.5': the node name is empty");
  CHECK(ParseError("fail=parse:x") ==
        "--chaos item 'fail=parse:x': 'x' is not a number (a probability between 0 and 1)");
  CHECK(ParseError("fail=parse:nan").find("is not a number") != std::string::npos);
  CHECK(ParseError("fail=parse:1.5") ==
        "--chaos item 'fail=parse:1.5': probability 1.5 is outside [0, 1]");
  CHECK(ParseError("fail=parse:-0.1").find("outside [0, 1]") != std::string::npos);
  CHECK(ParseError("fail=a:0.1,fail=a:0.2") == "--chaos: fail= given twice for node 'a'");
  CHECK(ParseError("crash=0") ==
        "--chaos item 'crash=0': the count of source events must be at least 1");
  CHECK(ParseError("crash=ten").find("'ten' is not a non-negative integer") != std::string::npos);
  CHECK(ParseError("crash=1,crash=2") == "--chaos: crash= given twice");
  CHECK(ParseError("crash-prob=2").find("probability 2 is outside [0, 1]") != std::string::npos);
  CHECK(ParseError("crash-prob=0.1,crash-prob=0.2") == "--chaos: crash-prob= given twice");
  CHECK(ParseError("crash-at=after-barier") ==
        "--chaos item 'crash-at=after-barier': unknown hazard point 'after-barier' (one of "
        "before-barrier, after-barrier, after-sink-write, in-checkpoint-txn, "
        "after-checkpoint-complete, in-dedup-commit, in-migration); did you mean 'after-barrier'?");
  CHECK(ParseError("crash-at=after-barrier:0") ==
        "--chaos item 'crash-at=after-barrier:0': the passage K counts from 1");
  CHECK(ParseError("crash-at=after-barrier:x").find("'x' is not a non-negative integer") !=
        std::string::npos);
  CHECK(ParseError("crash-at=after-barrier:2,crash-at=after-barrier:2") ==
        "--chaos: crash-at=after-barrier:2 given twice");
}

// The positions in [0, n) at which `node` fails under `spec_text`, on a fresh Chaos.
std::vector<uint64_t> FailingPositions(const std::string& spec_text, const char* node, uint64_t n) {
  Chaos chaos(MustParse(spec_text));
  std::vector<uint64_t> out;
  for (uint64_t pos = 0; pos < n; ++pos) {
    if (chaos.ShouldFail(node, pos)) out.push_back(pos);
  }
  return out;
}

TEST_CASE("chaos: decisions are a pure function of (seed, node, position)") {
  const auto a = FailingPositions("seed=7,fail=parse:0.05", "parse", 2000);
  const auto b = FailingPositions("seed=7,fail=parse:0.05", "parse", 2000);
  const auto c = FailingPositions("seed=8,fail=parse:0.05", "parse", 2000);
  CHECK_FALSE(a.empty());
  CHECK(a == b);
  CHECK(a != c);
  // Another node with the same seed and P fails elsewhere; a node without fail= never.
  const auto other = FailingPositions("seed=7,fail=parse:0.05,fail=count:0.05", "count", 2000);
  CHECK(other != a);
  CHECK(FailingPositions("seed=7,fail=parse:0.05", "count", 2000).empty());
  // P = 1 fails everywhere (once), P = 0 never.
  CHECK(FailingPositions("fail=parse:1", "parse", 100).size() == 100);
  CHECK(FailingPositions("fail=parse:0", "parse", 100).empty());
  // The draw itself is stable and in [0, 1).
  const double d = Chaos::Draw(7, Chaos::Kind::kFail, "parse", 12345);
  CHECK(d == Chaos::Draw(7, Chaos::Kind::kFail, "parse", 12345));
  CHECK(d >= 0);
  CHECK(d < 1);
}

TEST_CASE("chaos: the failure rate is roughly P") {
  for (double p : {0.01, 0.1, 0.5}) {
    Chaos chaos(MustParse("seed=1,fail=n:" + std::to_string(p)));
    int fired = 0;
    const int n = 100000;
    for (uint64_t pos = 0; pos < static_cast<uint64_t>(n); ++pos)
      fired += chaos.ShouldFail("n", pos);
    CHECK(fired > 0.8 * p * n);
    CHECK(fired < 1.2 * p * n);
  }
  Chaos crashes(MustParse("seed=2,crash-prob=0.02"));
  int crashed = 0;
  for (uint64_t pos = 0; pos < 100000; ++pos) crashed += crashes.OnSourceEvent("src", pos);
  CHECK(crashed > 1600);
  CHECK(crashed < 2400);
}

TEST_CASE("chaos: a place fires at most once, also across export and import") {
  const std::string spec = "seed=3,fail=parse:0.5,fail=count:0.5,crash-prob=0.3";
  Chaos first(MustParse(spec));
  std::vector<uint64_t> fired;
  for (uint64_t pos = 0; pos < 200; ++pos) {
    if (first.ShouldFail("parse", pos)) fired.push_back(pos);
    first.ShouldFail("count", pos);
    first.OnSourceEvent("lines", pos);
  }
  REQUIRE_FALSE(fired.empty());
  // A replay in the same process (in-process recovery) runs clean.
  for (uint64_t pos = 0; pos < 200; ++pos) {
    CHECK_FALSE(first.ShouldFail("parse", pos));
    CHECK_FALSE(first.ShouldFail("count", pos));
    CHECK_FALSE(first.OnSourceEvent("lines", pos));
  }
  CHECK(first.HasFired(Chaos::Place{Chaos::Kind::kFail, "parse", fired[0]}));

  // A restarted process that imports the exported set replays clean too, and fires
  // exactly the same faults further on.
  const std::string bytes = first.ExportFired();
  CHECK(bytes.size() > 1);
  Chaos second(MustParse(spec));
  REQUIRE(second.ImportFired(bytes).ok());
  CHECK(second.fired_count() == first.fired_count());
  CHECK(second.ExportFired() == bytes);
  for (uint64_t pos = 0; pos < 200; ++pos) CHECK_FALSE(second.ShouldFail("parse", pos));
  Chaos fresh(MustParse(spec));
  for (uint64_t pos = 200; pos < 400; ++pos) {
    CHECK(second.ShouldFail("parse", pos) == fresh.ShouldFail("parse", pos));
  }

  // Import merges, and rejects malformed bytes without changing the set.
  CHECK(second.ImportFired("").ok());
  const size_t before = second.fired_count();
  CHECK(second.ImportFired(std::string("\x02", 1)).code() == Status::Code::kState);
  CHECK(second.ImportFired(std::string("\x01\x09", 2)).code() == Status::Code::kState);
  CHECK(second.ImportFired(bytes.substr(0, bytes.size() - 1)).code() == Status::Code::kState);
  CHECK(second.fired_count() == before);
}

TEST_CASE("chaos: crash=N fires once at the N-th source event of the process") {
  Chaos chaos(MustParse("crash=5"));
  std::vector<int> crashed_at;
  for (int i = 1; i <= 20; ++i) {
    if (chaos.OnSourceEvent("src", 1000 + i)) crashed_at.push_back(i);
  }
  CHECK(crashed_at == std::vector<int>{5});
  // After a restart that imported the fired set, the count restarts but never fires.
  Chaos restarted(MustParse("crash=5"));
  REQUIRE(restarted.ImportFired(chaos.ExportFired()).ok());
  for (int i = 1; i <= 20; ++i) CHECK_FALSE(restarted.OnSourceEvent("src", i));
  // Without the import it would fire again: the count is per process invocation.
  Chaos forgetful(MustParse("crash=5"));
  int fires = 0;
  for (int i = 1; i <= 20; ++i) fires += forgetful.OnSourceEvent("src", i);
  CHECK(fires == 1);
}

TEST_CASE("chaos: crash-at counts passages of each hazard point") {
  Chaos chaos(
      MustParse("crash-at=after-barrier:3,crash-at=after-barrier:5,crash-at=in-dedup-commit"));
  std::vector<int> crashed;
  for (int k = 1; k <= 8; ++k) {
    CHECK_FALSE(chaos.Passage(HazardPoint::kBeforeBarrier));
    if (chaos.Passage(HazardPoint::kAfterBarrier)) crashed.push_back(k);
  }
  CHECK(crashed == std::vector<int>{3, 5});
  CHECK(chaos.Passage(HazardPoint::kInDedupCommit));
  CHECK_FALSE(chaos.Passage(HazardPoint::kInDedupCommit));

  Chaos restarted(
      MustParse("crash-at=after-barrier:3,crash-at=after-barrier:5,crash-at=in-dedup-commit"));
  REQUIRE(restarted.ImportFired(chaos.ExportFired()).ok());
  for (int k = 1; k <= 8; ++k) CHECK_FALSE(restarted.Passage(HazardPoint::kAfterBarrier));
  CHECK_FALSE(restarted.Passage(HazardPoint::kInDedupCommit));
}

TEST_CASE("chaos: CrashNow kills the process with SIGKILL") {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    CrashNow();
    _exit(0);  // not reached; would make the parent's check fail
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(WTERMSIG(status) == 9);
}

}  // namespace
}  // namespace onceflow

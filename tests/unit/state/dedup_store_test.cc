// The state file's side of dedup mode: per-task commits, what a restart reads back, the
// changelog and its compaction, the outbox trimmed by consumer positions.
#include <map>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "runtime/state/store.h"
#include "tests/unit/state/test_util.h"

namespace onceflow {
namespace {

StateValue Int(int64_t v) {
  StateValue s;
  s.push_back(Value::Int(v));
  return s;
}

std::string Changes(const std::vector<std::pair<std::string, const StateValue*>>& changes) {
  std::string blob;
  for (const auto& [k, v] : changes) AppendChange(k, v, &blob);
  return blob;
}

// The committed state of `node` as key -> int (erased keys absent).
std::map<std::string, int64_t> StateOf(StateStore* s, const std::string& node) {
  std::map<std::string, int64_t> out;
  Status st = s->DedupState(node, [&](std::string_view key, const std::string_view* bytes) {
    if (bytes == nullptr) {
      out.erase(std::string(key));
      return Status::Ok();
    }
    StateValue v;
    REQUIRE(DecodeStateValue(*bytes, &v));
    out[std::string(key)] = v[0].as_int();
    return Status::Ok();
  });
  REQUIRE(st.ok());
  return out;
}

std::vector<int64_t> OutboxSeqs(StateStore* s, const std::string& channel) {
  std::vector<int64_t> seqs;
  REQUIRE(s->DedupOutbox(channel, [&](int64_t seq, std::string_view) {
               seqs.push_back(seq);
               return Status::Ok();
             }).ok());
  return seqs;
}

}  // namespace

TEST_CASE("changelog blobs round-trip values and tombstones, and reject bad bytes") {
  StateValue a = Int(7);
  std::string blob = Changes({{"k1", &a}, {"k2", nullptr}, {"", &a}});
  std::vector<std::pair<std::string, bool>> seen;
  CHECK(ForEachChange(blob, [&](std::string_view k, const std::string_view* v) {
    seen.emplace_back(std::string(k), v != nullptr);
    if (v != nullptr) {
      StateValue d;
      CHECK(DecodeStateValue(*v, &d));
      CHECK(d[0].as_int() == 7);
    }
  }));
  CHECK(seen == std::vector<std::pair<std::string, bool>>{{"k1", true}, {"k2", false}, {"", true}});
  CHECK_FALSE(ForEachChange(blob.substr(0, blob.size() - 1), [](auto, auto) {}));
  CHECK_FALSE(ForEachChange("\x05\x00\x00\x00" "ab", [](auto, auto) {}));
  // A key length of 2^32 - 1: the bounds check must not wrap around (found by fuzz_state).
  CHECK_FALSE(ForEachChange(std::string_view("\xff\xff\xff\xff" "key\x01", 8), [](auto, auto) {}));
}

TEST_CASE("a commit is read back after reopening: positions, outbox, state, sink lengths") {
  TempDir dir;
  const std::string path = dir.File("p.state.db");
  StateValue one = Int(1), two = Int(2);
  {
    auto s = MustOpen(path);
    DedupCommitData d;
    d.consumed.push_back({"src#0>count#0", 0, 40, false, "in.txt", 400});
    d.produced.emplace_back("count#0>out#0", 2);
    d.outbox.push_back({"count#0>out#0", 1, "a"});
    d.outbox.push_back({"count#0>out#0", 2, "b"});
    d.changes.emplace_back("count", Changes({{"x", &one}, {"y", &two}}));
    d.sinks.push_back({"out", 0, "out.jsonl", 123, 0});
    int64_t epoch = -1;
    REQUIRE(s->DedupCommit(d, &epoch).ok());
    CHECK(epoch == 0);  // nothing staged
  }
  auto s = MustOpen(path);
  std::vector<DedupChannel> ch;
  REQUIRE(s->DedupChannels(&ch).ok());
  REQUIRE(ch.size() == 2);
  // Sorted by name: the producer's and the consumer's columns live in their own rows.
  CHECK(ch[0].channel == "count#0>out#0");
  CHECK(ch[0].produced == 2);
  CHECK(ch[0].consumed == 0);
  CHECK(ch[1].channel == "src#0>count#0");
  CHECK(ch[1].consumed == 40);
  CHECK(ch[1].pos_name == "in.txt");
  CHECK(ch[1].pos_offset == 400);
  CHECK_FALSE(ch[1].ended);
  CHECK(OutboxSeqs(s.get(), "count#0>out#0") == std::vector<int64_t>{1, 2});
  CHECK(StateOf(s.get(), "count") == std::map<std::string, int64_t>{{"x", 1}, {"y", 2}});
  std::vector<SinkCommit> sinks;
  REQUIRE(s->DedupSinks(&sinks).ok());
  REQUIRE(sinks.size() == 1);
  CHECK(sinks[0].length == 123);
  CHECK(sinks[0].path == "out.jsonl");
}

TEST_CASE("the consumer's commit trims the producer's outbox; later changes win; compaction "
          "keeps the state and empties the log") {
  TempDir dir;
  auto s = MustOpen(dir.File("p.state.db"));
  StateValue v1 = Int(1), v5 = Int(5), v9 = Int(9);
  int64_t epoch = 0;
  {
    DedupCommitData d;
    for (int64_t seq = 1; seq <= 4; ++seq) d.outbox.push_back({"a#0>b#0", seq, "rec"});
    d.produced.emplace_back("a#0>b#0", 4);
    d.changes.emplace_back("a", Changes({{"k", &v1}, {"gone", &v1}}));
    REQUIRE(s->DedupCommit(d, &epoch).ok());
  }
  {
    DedupCommitData d;  // the consumer applied 1..3; the producer trims up to it
    d.consumed.push_back({"a#0>b#0", 0, 3, false, "", 0});
    d.trim.emplace_back("a#0>b#0", 3);
    d.changes.emplace_back("a", Changes({{"k", &v5}, {"gone", nullptr}}));
    REQUIRE(s->DedupCommit(d, &epoch).ok());
  }
  CHECK(OutboxSeqs(s.get(), "a#0>b#0") == std::vector<int64_t>{4});
  CHECK(StateOf(s.get(), "a") == std::map<std::string, int64_t>{{"k", 5}});
  int64_t rows = 0, bytes = 0;
  REQUIRE(s->DedupLogSize(&rows, &bytes).ok());
  CHECK(rows == 3);  // one outbox row + two changelog rows
  int64_t folded = 0;
  REQUIRE(s->DedupCompact(&folded).ok());
  CHECK(folded == 2);
  CHECK(StateOf(s.get(), "a") == std::map<std::string, int64_t>{{"k", 5}});
  REQUIRE(s->DedupLogSize(&rows, &bytes).ok());
  CHECK(rows == 1);
  // Changes after a compaction overlay the compacted table.
  {
    DedupCommitData d;
    d.changes.emplace_back("a", Changes({{"k", &v9}, {"new", &v1}}));
    REQUIRE(s->DedupCommit(d, &epoch).ok());
  }
  CHECK(StateOf(s.get(), "a") == std::map<std::string, int64_t>{{"k", 9}, {"new", 1}});
  REQUIRE(s->DedupCompact(&folded).ok());
  CHECK(StateOf(s.get(), "a") == std::map<std::string, int64_t>{{"k", 9}, {"new", 1}});
}

TEST_CASE("staged sink rows get a never-reused epoch; a failed commit leaves nothing") {
  TempDir dir;
  auto s = MustOpen(dir.File("p.state.db"));
  int64_t cp = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &cp).ok());
  DedupCommitData d;
  d.staged.push_back({"db", {"r1", "r2"}});
  int64_t e1 = 0, e2 = 0;
  REQUIRE(s->DedupCommit(d, &e1).ok());
  REQUIRE(s->DedupCommit(d, &e2).ok());
  CHECK(e1 > cp);
  CHECK(e2 > e1);
  std::vector<std::pair<int64_t, std::string>> staged;
  REQUIRE(s->StagedEpochs(&staged).ok());
  CHECK(staged.size() == 2);
  std::vector<std::string> rows;
  REQUIRE(s->StagedRows(e1, "db", [&](int64_t, std::string_view r) {
               rows.emplace_back(r);
               return Status::Ok();
             }).ok());
  CHECK(rows == std::vector<std::string>{"r1", "r2"});

  // An outbox row that already exists makes the commit fail: all of it rolls back.
  DedupCommitData bad;
  bad.outbox.push_back({"x#0>y#0", 1, "a"});
  REQUIRE(s->DedupCommit(bad, &e1).ok());
  bad.consumed.push_back({"q#0>x#0", 0, 9, false, "", 0});
  CHECK_FALSE(s->DedupCommit(bad, &e1).ok());
  std::vector<DedupChannel> ch;
  REQUIRE(s->DedupChannels(&ch).ok());
  for (const auto& c : ch) CHECK(c.channel != "q#0>x#0");
}

TEST_CASE("--fresh empties the dedup tables") {
  TempDir dir;
  auto s = MustOpen(dir.File("p.state.db"));
  StateValue v = Int(3);
  DedupCommitData d;
  d.consumed.push_back({"a#0>b#0", 0, 3, true, "", 0});
  d.outbox.push_back({"b#0>c#0", 1, "x"});
  d.changes.emplace_back("b", Changes({{"k", &v}}));
  d.sinks.push_back({"c", 0, "o", 5, 0});
  int64_t epoch = 0;
  REQUIRE(s->DedupCommit(d, &epoch).ok());
  REQUIRE(s->Fresh().ok());
  std::vector<DedupChannel> ch;
  REQUIRE(s->DedupChannels(&ch).ok());
  CHECK(ch.empty());
  CHECK(OutboxSeqs(s.get(), "b#0>c#0").empty());
  CHECK(StateOf(s.get(), "b").empty());
  std::vector<SinkCommit> sinks;
  REQUIRE(s->DedupSinks(&sinks).ok());
  CHECK(sinks.empty());
}

}  // namespace onceflow

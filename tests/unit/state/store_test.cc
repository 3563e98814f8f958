// StateStore: creation, refusals that leave the file untouched, the process lock,
// incremental versioned state, lines of history, deletion/pruning and id high-water mark.
#include "runtime/state/store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "doctest/doctest.h"
#include "runtime/state/key_lists.h"
#include "test_util.h"

namespace onceflow {
namespace {


std::string Enc(std::initializer_list<Value> vals) {
  StateValue v(vals.begin(), vals.end());
  std::string out;
  EncodeStateValue(v, &out);
  return out;
}

// Changes for one checkpoint: key -> value, nullopt-like empty marker "~" = tombstone.
using Changes = std::map<std::pair<std::string, std::string>, std::string>;
const std::string kErase = "\x01~erase~";

int64_t Checkpoint(StateStore* s, const Changes& changes,
                   CheckpointKind kind = CheckpointKind::kCheckpoint) {
  int64_t id = 0;
  REQUIRE(s->BeginCheckpoint(kind, &id).ok());
  std::unique_ptr<CheckpointWriter> w;
  REQUIRE(s->NewWriter(id, &w).ok());
  for (const auto& [nk, v] : changes) {
    if (v == kErase)
      w->PutState(nk.first, nk.second, nullptr);
    else
      w->PutState(nk.first, nk.second, &v);
  }
  Status st = w->Commit();
  INFO(st.message());
  REQUIRE(st.ok());
  return id;
}

std::map<std::string, std::string> Restore(StateStore* s, int64_t id, const std::string& node) {
  std::map<std::string, std::string> out;
  Status st = s->RestoreState(id, node, [&](std::string_view k, std::string_view v) {
    out.emplace(std::string(k), std::string(v));
    return Status::Ok();
  });
  INFO(st.message());
  REQUIRE(st.ok());
  return out;
}

// node -> key -> value at checkpoint `id`, for each of `nodes`.
std::map<std::string, std::map<std::string, std::string>> RestoreNodes(
    StateStore* s, int64_t id, const std::vector<std::string>& nodes) {
  std::map<std::string, std::map<std::string, std::string>> all;
  for (const auto& n : nodes) all[n] = Restore(s, id, n);
  return all;
}

int64_t CountRows(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// No state row or key list belongs to a checkpoint that is gone, and every state row is
// listed under its version (key_lists.h).
void CheckStateRows(const std::string& path) {
  CHECK(CountRows(path, "SELECT count(*) FROM state WHERE version NOT IN"
                        " (SELECT id FROM checkpoints)") == 0);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  std::set<std::tuple<int64_t, std::string, std::string>> rows, listed;
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT version, node, key FROM state", -1, &st, nullptr) ==
          SQLITE_OK);
  std::set<int64_t> versions;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const auto* node = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    std::string key(static_cast<const char*>(sqlite3_column_blob(st, 2)),
                    static_cast<size_t>(sqlite3_column_bytes(st, 2)));
    rows.emplace(sqlite3_column_int64(st, 0), node, key);
    versions.insert(sqlite3_column_int64(st, 0));
  }
  sqlite3_finalize(st);
  for (int64_t v : versions) {
    Status read = ForEachListedKey(db, path, v, [&](std::string_view n, std::string_view k) {
      listed.emplace(v, std::string(n), std::string(k));
      return Status::Ok();
    });
    REQUIRE(read.ok());
  }
  sqlite3_close(db);
  for (const auto& r : rows) {
    CHECK_MESSAGE(listed.count(r) == 1, "row of version " << std::get<0>(r) << " key "
                                                          << std::get<2>(r) << " is not listed");
  }
  CHECK(CountRows(path, "SELECT count(*) FROM state_keys WHERE version NOT IN"
                        " (SELECT id FROM checkpoints)") == 0);
}

TEST_CASE("a new state file is created 0600 whatever the umask, and reopens") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  mode_t old = umask(0);
  std::string lineage;
  {
    auto s = MustOpen(path);
    umask(old);
    CHECK(s->pipeline_name() == "p");
    lineage = s->lineage_id();
    CHECK(lineage.size() == 32);
    int64_t head = -1;
    REQUIRE(s->LatestCompleted(&head).ok());
    CHECK(head == 0);
    REQUIRE(s->PutMeta("fingerprint", "abc").ok());
  }
  umask(old);
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(stat((path + ".lock").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto s = MustOpen(path);
  CHECK(s->lineage_id() == lineage);
  std::string fp;
  bool found = false;
  REQUIRE(s->GetMeta("fingerprint", &fp, &found).ok());
  CHECK(found);
  CHECK(fp == "abc");
  // An empty file (a crash right after creating it) is initialised, not refused.
  std::string empty = dir.File("empty.db");
  WriteAll(empty, "");
  MustOpen(empty);
}

TEST_CASE("refused files are reported as state errors and left byte-identical") {
  TempDir dir;
  auto refuse = [&](const std::string& path, const std::string& pipeline,
                    const std::string& expect) {
    std::string before = ReadAll(path);
    std::unique_ptr<StateStore> s;
    Status st = StateStore::Open(path, pipeline, OpenMode(), &s);
    INFO(st.message());
    CHECK(st.code() == Status::Code::kState);
    CHECK(st.message().find(path) != std::string::npos);
    CHECK(st.message().find(expect) != std::string::npos);
    CHECK(s == nullptr);
    CHECK(ReadAll(path) == before);
  };

  // A real state file with a few checkpoints, as a template.
  std::string good = dir.File("good.db");
  {
    auto s = MustOpen(good);
    for (int i = 0; i < 20; ++i) {
      Changes c;
      for (int k = 0; k < 200; ++k) {
        c[{"n", "key" + std::to_string(k)}] = std::string(40, static_cast<char>('a' + i));
      }
      Checkpoint(s.get(), c);
    }
  }
  std::string good_bytes = ReadAll(good);
  REQUIRE(good_bytes.size() > 8192);

  SUBCASE("random bytes") {
    std::string path = dir.File("random.db");
    std::mt19937 rng(42);
    std::string bytes(4096, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    WriteAll(path, bytes);
    refuse(path, "p", "not an SQLite database");
  }
  SUBCASE("a text file") {
    std::string path = dir.File("text.db");
    WriteAll(path, "hello\n");
    refuse(path, "p", "not an SQLite database");
  }
  SUBCASE("truncated to half") {
    std::string path = dir.File("half.db");
    WriteAll(path, good_bytes.substr(0, good_bytes.size() / 2));
    refuse(path, "p", "truncated");
  }
  SUBCASE("truncated inside the header") {
    std::string path = dir.File("short.db");
    WriteAll(path, good_bytes.substr(0, 60));
    refuse(path, "p", "not an SQLite database");
  }
  SUBCASE("an SQLite file of another application") {
    std::string path = dir.File("foreign.db");
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    sqlite3_close(db);
    refuse(path, "p", "another application");
  }
  SUBCASE("a schema newer than this build") {
    std::string path = dir.File("newer.db");
    std::string bytes = good_bytes;
    bytes[60] = 0;
    bytes[61] = 0;
    bytes[62] = 0;
    bytes[63] = 7;  // user_version = 7
    WriteAll(path, bytes);
    refuse(path, "p", "written by a newer onceflow: schema 7, this build reads up to 4");
  }
  SUBCASE("a state file of another pipeline") {
    refuse(good, "other", "belongs to pipeline 'p', not 'other'");
    // Still fine for its own pipeline, and for read-only commands that do not know it.
    MustOpen(good, "p");
    MustOpen(good, "", Mode(false, true));
  }
  SUBCASE("missing file without create") {
    std::unique_ptr<StateStore> s;
    Status st = StateStore::Open(dir.File("missing.db"), "p", Mode(false, false), &s);
    CHECK(st.code() == Status::Code::kState);
    CHECK(!std::filesystem::exists(dir.File("missing.db")));
  }
}

TEST_CASE("a second writer is refused while another process holds the lock") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MustOpen(path);  // create it, then release
  int to_child[2], to_parent[2];
  REQUIRE(pipe(to_child) == 0);
  REQUIRE(pipe(to_parent) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: take the lock, report, wait for the word to exit. No doctest here.
    std::unique_ptr<StateStore> s;
    char c = StateStore::Open(path, "p", OpenMode(), &s).ok() ? 'y' : 'n';
    if (write(to_parent[1], &c, 1) != 1) _exit(2);
    if (read(to_child[0], &c, 1) != 1) _exit(3);
    s.reset();
    _exit(0);
  }
  char c = 0;
  REQUIRE(read(to_parent[0], &c, 1) == 1);
  REQUIRE(c == 'y');
  CHECK(ReadAll(path + ".lock") == std::to_string(pid) + "\n");
  {
    std::unique_ptr<StateStore> s;
    Status st = StateStore::Open(path, "p", OpenMode(), &s);
    CHECK(st.code() == Status::Code::kState);
    CHECK(st.message() == "state file " + path + " is in use by process " + std::to_string(pid) +
                              " (lock " + path + ".lock)");
    // Readers take no lock: they see the last committed state while a run writes.
    auto r = MustOpen(path, "", Mode(false, true));
    std::vector<CheckpointInfo> list;
    CHECK(r->List(&list).ok());
  }
  c = 'x';
  REQUIRE(write(to_child[1], &c, 1) == 1);
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  CHECK(WIFEXITED(wstatus));
  CHECK(WEXITSTATUS(wstatus) == 0);
  // The holder is gone (a crash would release it the same way): the lock is free.
  auto s = MustOpen(path);
  // A second writer in the same process is refused too (fcntl locks cannot tell).
  std::unique_ptr<StateStore> again;
  Status st = StateStore::Open(path, "p", OpenMode(), &again);
  CHECK(st.code() == Status::Code::kState);
  CHECK(st.message().find("already open in this process") != std::string::npos);
  close(to_child[0]);
  close(to_child[1]);
  close(to_parent[0]);
  close(to_parent[1]);
}

TEST_CASE("checkpoints store only changed keys and restore each version exactly") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  std::string a1 = Enc({Value::Int(1)}), b1 = Enc({Value::Int(10)}), b2 = Enc({Value::Int(20)});
  int64_t cp1 = Checkpoint(s.get(), {{{"n", "a"}, a1}, {{"n", "b"}, b1}});
  int64_t cp2 = Checkpoint(s.get(), {{{"n", "b"}, b2}, {{"n", "a"}, kErase}});
  CHECK(cp1 == 1);
  CHECK(cp2 == 2);
  CHECK(Restore(s.get(), cp1, "n") == std::map<std::string, std::string>{{"a", a1}, {"b", b1}});
  CHECK(Restore(s.get(), cp2, "n") == std::map<std::string, std::string>{{"b", b2}});
  CHECK(Restore(s.get(), cp2, "other").empty());
  CHECK(CountRows(path, "SELECT count(*) FROM state WHERE version=2") == 2);  // b and a's tombstone

  std::string v;
  bool found = false;
  REQUIRE(s->Get("n", "a", cp1, &v, &found).ok());
  CHECK(found);
  CHECK(v == a1);
  REQUIRE(s->Get("n", "a", 0, &v, &found).ok());  // latest
  CHECK(!found);
  REQUIRE(s->Get("n", "b", 0, &v, &found).ok());
  CHECK(found);
  CHECK(v == b2);

  int64_t head = 0;
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == cp2);
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  REQUIRE(list.size() == 2);
  CHECK(list[1].parent == cp1);
  CHECK(list[1].status == CheckpointStatus::kCompleted);
  CHECK(list[1].bytes > 0);
  CheckpointDetail d;
  REQUIRE(s->Show(cp1, &d).ok());
  REQUIRE(d.state.size() == 1);
  CHECK(d.state[0].keys == 2);
  CHECK(d.state[0].bytes == static_cast<int64_t>(2 + a1.size() + b1.size()));

  // Zero-length values are values, not tombstones.
  int64_t cp3 = Checkpoint(s.get(), {{{"n", "e"}, ""}});
  CHECK(Restore(s.get(), cp3, "n").count("e") == 1);
}

TEST_CASE("one checkpoint with repeated keys across nodes keeps each key's last change") {
  // Changes arrive unsorted, from three nodes interleaved, with keys sharing their first
  // 8 bytes and keys written several times (the last write wins, tombstones included).
  TempDir dir;
  auto s = MustOpen(dir.File("p.state.db"));
  int64_t base = Checkpoint(s.get(), {{{"n1", "prefix__gone"}, Enc({Value::Int(-1)})}});
  int64_t id = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok());
  std::unique_ptr<CheckpointWriter> w;
  REQUIRE(s->NewWriter(id, &w).ok());
  std::map<std::string, std::map<std::string, std::string>> want;  // node -> key -> value
  want["n1"]["prefix__gone"] = Enc({Value::Int(-1)});
  std::mt19937 rng(3);
  const char* nodes[] = {"n2", "n1", "n10"};
  for (int i = 0; i < 3000; ++i) {
    const std::string node = nodes[rng() % 3];
    const std::string key = (rng() % 2 ? "prefix__" : "") + std::to_string(rng() % 200);
    if (rng() % 5 == 0) {
      w->PutState(node, key, nullptr);
      want[node].erase(key);
    } else {
      const std::string v = Enc({Value::Int(i)});
      w->PutState(node, key, &v);
      want[node][key] = v;
    }
  }
  w->PutState("n1", "prefix__gone", nullptr);
  want["n1"].erase("prefix__gone");
  Status st = w->Commit();
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(id > base);
  for (const char* node : nodes) CHECK(Restore(s.get(), id, node) == want[node]);
}

TEST_CASE("source offsets, sink commits and staged rows travel with their checkpoint") {
  TempDir dir;
  auto s = MustOpen(dir.File("p.state.db"));
  int64_t id = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kFinal, &id).ok());
  std::unique_ptr<CheckpointWriter> w;
  REQUIRE(s->NewWriter(id, &w).ok());
  SourceOffset o{"src", 1, "in.jsonl", 1234, 56};
  SinkCommit c{"out", 0, "/tmp/o.jsonl", 999, id};
  w->AddSourceOffset(o);
  w->AddSinkCommit(c);
  w->AddStagedRow("db", 2, "row2");
  w->AddStagedRow("db", 1, "row1");
  w->SetStats(56, 7, 3);
  REQUIRE(w->Commit(CheckpointStatus::kStopped).ok());
  CHECK(w->Commit().code() == Status::Code::kState);  // once only

  std::vector<SourceOffset> offs;
  REQUIRE(s->SourceOffsets(id, &offs).ok());
  CHECK(offs == std::vector<SourceOffset>{o});
  std::vector<SinkCommit> sinks;
  REQUIRE(s->SinkCommits(id, &sinks).ok());
  CHECK(sinks == std::vector<SinkCommit>{c});
  std::vector<std::string> rows;
  REQUIRE(s->StagedRows(id, "db", [&](int64_t, std::string_view r) {
             rows.emplace_back(r);
             return Status::Ok();
           }).ok());
  CHECK(rows == std::vector<std::string>{"row1", "row2"});
  REQUIRE(s->DeleteStagedRows(id, "db").ok());
  rows.clear();
  REQUIRE(s->StagedRows(id, "db", [&](int64_t, std::string_view r) {
             rows.emplace_back(r);
             return Status::Ok();
           }).ok());
  CHECK(rows.empty());
  CheckpointDetail d;
  REQUIRE(s->Show(id, &d).ok());
  CHECK(d.info.kind == CheckpointKind::kFinal);
  CHECK(d.info.status == CheckpointStatus::kStopped);
  CHECK(d.info.events == 56);
  CHECK(d.info.duration_ms == 7);
  CHECK(d.sources.size() == 1);
  // `stopped` is only for final checkpoints.
  int64_t id2 = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id2).ok());
  REQUIRE(s->NewWriter(id2, &w).ok());
  CHECK(!w->Commit(CheckpointStatus::kStopped).ok());
}

TEST_CASE("an uncommitted checkpoint is ignored and cleaned up on reopen; its id is not reused") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  {
    auto s = MustOpen(path);
    Checkpoint(s.get(), {{{"n", "a"}, Enc({Value::Int(1)})}});
    int64_t id = 0;
    REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok());
    CHECK(id == 2);
    std::unique_ptr<CheckpointWriter> w;
    REQUIRE(s->NewWriter(id, &w).ok());
    std::string v = Enc({Value::Int(2)});
    w->PutState("n", "a", &v);
    // No Commit: the process "crashes" here.
    std::vector<CheckpointInfo> list;
    REQUIRE(s->List(&list).ok());
    CHECK(list.size() == 1);
  }
  auto s = MustOpen(path);
  int64_t head = 0;
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == 1);
  CHECK(CountRows(path, "SELECT count(*) FROM checkpoints") == 1);
  CHECK(Restore(s.get(), 1, "n").at("a") == Enc({Value::Int(1)}));
  int64_t id = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok());
  CHECK(id == 3);
}

TEST_CASE("a process killed after a commit leaves that checkpoint complete (WAL recovery)") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MustOpen(path);
  std::string v1 = Enc({Value::Int(1)});
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: commit checkpoint 1, begin checkpoint 2, then die without closing anything.
    std::unique_ptr<StateStore> s;
    if (!StateStore::Open(path, "p", OpenMode(), &s).ok()) _exit(2);
    int64_t id = 0;
    std::unique_ptr<CheckpointWriter> w;
    if (!s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok()) _exit(3);
    if (!s->NewWriter(id, &w).ok()) _exit(4);
    w->PutState("n", "a", &v1);
    if (!w->Commit().ok()) _exit(5);
    if (!s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok()) _exit(6);
    _exit(0);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
  {
    auto r = MustOpen(path, "", Mode(false, true));
    int64_t head = 0;
    REQUIRE(r->LatestCompleted(&head).ok());
    CHECK(head == 1);
    std::vector<CheckpointInfo> list;
    REQUIRE(r->List(&list).ok());
    CHECK(list.size() == 1);  // the pending one is invisible to readers too
  }
  auto s = MustOpen(path);
  CHECK(Restore(s.get(), 1, "n").at("a") == v1);
  CHECK(Checkpoint(s.get(), {}) == 3);
}

TEST_CASE("ids are never reused after Delete or Fresh; the head cannot be deleted") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  for (int i = 0; i < 3; ++i) Checkpoint(s.get(), {{{"n", "k"}, Enc({Value::Int(i)})}});
  Status st = s->Delete(3);
  CHECK(st.code() == Status::Code::kState);
  CHECK(st.message().find("latest complete checkpoint") != std::string::npos);
  CHECK(s->Delete(99).code() == Status::Code::kState);
  REQUIRE(s->Delete(2).ok());
  CHECK(Restore(s.get(), 3, "n").at("k") == Enc({Value::Int(2)}));
  CHECK(Checkpoint(s.get(), {}) == 4);
  std::string lineage = s->lineage_id();
  REQUIRE(s->Fresh().ok());
  CHECK(s->lineage_id() != lineage);
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  CHECK(list.empty());
  int64_t head = -1;
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == 0);
  CHECK(CountRows(path, "SELECT count(*) FROM state") == 0);
  CHECK(Checkpoint(s.get(), {}) == 5);
  s.reset();
  s = MustOpen(path);
  CHECK(Checkpoint(s.get(), {}) == 6);
}

TEST_CASE("prune keeps retained checkpoints restorable exactly and drops what nothing needs") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  std::mt19937 rng(7);
  const std::vector<std::string> nodes = {"count", "window"};
  std::vector<int64_t> ids;
  for (int cp = 0; cp < 8; ++cp) {
    Changes c;
    for (int i = 0; i < 60; ++i) {
      std::string node = nodes[rng() % 2];
      std::string key = "k" + std::to_string(rng() % 40);
      c[{node, key}] = (rng() % 4 == 0) ? kErase : Enc({Value::Int(cp), Value::String(key)});
    }
    CheckpointKind kind = cp == 2 ? CheckpointKind::kSavepoint : CheckpointKind::kCheckpoint;
    ids.push_back(Checkpoint(s.get(), c, kind));
  }
  auto snapshot = [&](int64_t id) { return RestoreNodes(s.get(), id, nodes); };
  std::map<int64_t, decltype(snapshot(0))> before;
  for (int64_t id : ids) before[id] = snapshot(id);
  int64_t rows_before = CountRows(path, "SELECT count(*) FROM state");

  int deleted = 0;
  REQUIRE(s->Prune(3, &deleted).ok());
  CHECK(deleted == 4);  // 1, 2, 4, 5 go; the savepoint 3 and 6, 7, 8 stay
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  std::vector<int64_t> left;
  for (const auto& i : list) left.push_back(i.id);
  CHECK(left == std::vector<int64_t>{3, 6, 7, 8});
  for (int64_t id : left) CHECK(snapshot(id) == before[id]);
  // Pruned checkpoints with one child stay as hidden `merged` bases of their child's
  // line; no row belongs to a checkpoint that is gone, and none is listed.
  CHECK(CountRows(path, "SELECT count(*) FROM checkpoints WHERE status='merged'") == 4);
  CheckStateRows(path);
  CHECK(CountRows(path, "SELECT count(*) FROM state") <= rows_before);
  CheckpointDetail d;
  CHECK(s->Show(2, &d).code() == Status::Code::kState);  // merged: not shown
  CHECK(s->Delete(2).code() == Status::Code::kState);    // nor deletable again

  // The savepoint goes only when deleted explicitly.
  REQUIRE(s->Prune(1, &deleted).ok());
  CHECK(deleted == 2);
  REQUIRE(s->Delete(3).ok());
  CHECK(snapshot(8) == before[8]);
  CheckStateRows(path);
  REQUIRE(s->List(&list).ok());
  CHECK(list.size() == 1);
}

TEST_CASE("pruning behind incremental checkpoints stays exact and compacts superseded rows") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  std::mt19937 rng(11);
  std::map<std::string, std::string> live;  // the expected state after each checkpoint
  std::map<int64_t, std::map<std::string, std::string>> expect;
  for (int cp = 0; cp < 40; ++cp) {
    Changes c;
    const int n = cp == 0 ? 200 : 20;
    for (int i = 0; i < n; ++i) {
      std::string key = "k" + std::to_string(cp == 0 ? i : static_cast<int>(rng() % 200));
      if (cp > 0 && rng() % 5 == 0) {
        c[{"count", key}] = kErase;
        live.erase(key);
      } else {
        std::string v = Enc({Value::Int(cp), Value::String(key)});
        c[{"count", key}] = v;
        live[key] = v;
      }
    }
    const int64_t id = Checkpoint(s.get(), c, CheckpointKind::kCheckpoint);
    expect[id] = live;
    REQUIRE(s->Prune(3, nullptr).ok());
    std::vector<CheckpointInfo> list;
    REQUIRE(s->List(&list).ok());
    CHECK(list.size() == std::min<size_t>(cp + 1, 3));
    for (const auto& info : list) {
      CHECK_MESSAGE(Restore(s.get(), info.id, "count") == expect[info.id],
                    "checkpoint " << info.id << " after " << cp + 1 << " checkpoints");
    }
  }
  // Rows: the live keys, plus what the retained checkpoints and the not yet compacted
  // part of the merged chain (at most 8 merges) wrote; without compaction every change
  // ever written would stay (200 + 39 * 20).
  const int64_t rows = CountRows(path, "SELECT count(*) FROM state");
  CHECK(rows <= 200 + 20 * (8 + 3 + 1));
  CheckStateRows(path);
  // A replay from the oldest retained checkpoint branches off the chain; both lines stay
  // exact, and deleting the abandoned line's checkpoints drops their rows.
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  const int64_t from = list.front().id;
  REQUIRE(s->StartLine(from).ok());
  Changes c;
  c[{"count", "new"}] = Enc({Value::Int(1)});
  const int64_t branch = Checkpoint(s.get(), c, CheckpointKind::kCheckpoint);
  auto want = expect[from];
  want["new"] = Enc({Value::Int(1)});
  CHECK(Restore(s.get(), branch, "count") == want);
  for (const auto& info : list) {
    if (info.id != from) REQUIRE(s->Delete(info.id).ok());
  }
  CHECK(Restore(s.get(), from, "count") == expect[from]);
  CHECK(Restore(s.get(), branch, "count") == want);
  CheckStateRows(path);
}

TEST_CASE("a replay starts a new line of history; both lines stay restorable") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  std::string v1 = Enc({Value::Int(1)}), v2 = Enc({Value::Int(2)}), v3 = Enc({Value::Int(3)});
  int64_t cp1 = Checkpoint(s.get(), {{{"n", "a"}, v1}, {{"n", "b"}, v1}});
  int64_t cp2 = Checkpoint(s.get(), {{{"n", "a"}, v2}, {{"n", "b"}, kErase}});
  REQUIRE(s->StartLine(cp1).ok());
  int64_t head = 0;
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == cp1);
  s.reset();
  s = MustOpen(path);  // durable
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == cp1);
  int64_t cp3 = Checkpoint(s.get(), {{{"n", "c"}, v3}});
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == cp3);
  using M = std::map<std::string, std::string>;
  CHECK(Restore(s.get(), cp3, "n") == M{{"a", v1}, {"b", v1}, {"c", v3}});
  CHECK(Restore(s.get(), cp2, "n") == M{{"a", v2}});
  // Deleting the branch point hands its rows to both children.
  REQUIRE(s->Delete(cp1).ok());
  CHECK(Restore(s.get(), cp3, "n") == M{{"a", v1}, {"b", v1}, {"c", v3}});
  CHECK(Restore(s.get(), cp2, "n") == M{{"a", v2}});
  CheckStateRows(path);
  CHECK(s->StartLine(cp1).code() == Status::Code::kState);  // gone
  REQUIRE(s->StartLine(0).ok());                            // --from-checkpoint none
  REQUIRE(s->LatestCompleted(&head).ok());
  CHECK(head == 0);
  CHECK(Checkpoint(s.get(), {}) == 4);
}

void SqlOn(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

TEST_CASE("a version-3 file gets key lists; its checkpoints restore and prune as before") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  std::mt19937 rng(5);
  const std::vector<std::string> nodes = {"count", "window"};
  auto snapshot = [&](int64_t id) { return RestoreNodes(s.get(), id, nodes); };
  auto checkpoint = [&](int cp) {
    Changes c;
    for (int i = 0; i < 50; ++i) {
      std::string key = "k" + std::to_string(rng() % 60);
      c[{nodes[rng() % 2], key}] = (rng() % 4 == 0) ? kErase : Enc({Value::Int(cp)});
    }
    return Checkpoint(s.get(), c);
  };
  for (int cp = 0; cp < 12; ++cp) {
    checkpoint(cp);
    REQUIRE(s->Prune(3, nullptr).ok());  // leaves merged bases behind
  }
  std::map<int64_t, decltype(snapshot(0))> before;
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  for (const auto& i : list) before[i.id] = snapshot(i.id);
  s.reset();
  // What a version-3 build wrote: no key lists, the index on state(version).
  SqlOn(path,
        "DROP TABLE state_keys; CREATE INDEX state_by_version ON state(version);"
        " PRAGMA user_version=3; PRAGMA wal_checkpoint(TRUNCATE)");
  s = MustOpen(path);
  CHECK(s->schema_version() == 4);
  CHECK(CountRows(path, "SELECT count(*) FROM sqlite_master WHERE name='state_by_version'") == 0);
  CHECK(CountRows(path, "SELECT count(*) FROM state_keys") > 0);
  CheckStateRows(path);
  for (const auto& [id, want] : before) CHECK(snapshot(id) == want);
  // Prune, compaction and Delete work from the migrated lists.
  for (int cp = 12; cp < 24; ++cp) {
    const int64_t id = checkpoint(cp);
    before[id] = snapshot(id);
    REQUIRE(s->Prune(2, nullptr).ok());
  }
  REQUIRE(s->List(&list).ok());
  REQUIRE(list.size() == 2);
  REQUIRE(s->Delete(list[0].id).ok());
  CHECK(snapshot(list[1].id) == before[list[1].id]);
  CheckStateRows(path);
}

TEST_CASE("a corrupt key list is a state error, and the prune it stopped changes nothing") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  const std::string v = Enc({Value::Int(1)});
  const int64_t first = Checkpoint(s.get(), {{{"n", "a"}, v}, {{"n", "b"}, v}});
  const int64_t second = Checkpoint(s.get(), {{{"n", "a"}, kErase}});
  REQUIRE(s->StartLine(first).ok());
  const int64_t third = Checkpoint(s.get(), {{{"n", "c"}, v}});
  // A length that runs past the end of the blob. Deleting `first`, a branch point, hands
  // its rows down to both children through its list.
  SqlOn(path, ("UPDATE state_keys SET keys=x'7f61' WHERE version=" + std::to_string(first)).c_str());
  Status st = s->Delete(first);
  CHECK(st.code() == Status::Code::kState);
  CHECK(st.message().find("the key list of checkpoint " + std::to_string(first) + " is corrupt") !=
        std::string::npos);
  std::vector<CheckpointInfo> list;
  REQUIRE(s->List(&list).ok());
  CHECK(list.size() == 3);
  using M = std::map<std::string, std::string>;
  CHECK(Restore(s.get(), second, "n") == M{{"b", v}});
  CHECK(Restore(s.get(), third, "n") == M{{"a", v}, {"b", v}, {"c", v}});
}

TEST_CASE("state values round-trip through their versioned encoding") {
  StateValue v;
  v.push_back(Value::Null());
  v.push_back(Value::Bool(true));
  v.push_back(Value::Int(-42));
  v.push_back(Value::Double(2.5));
  v.push_back(Value::String(std::string("x\0y", 3)));
  v.push_back(Value::Json("[1,2]"));
  std::string enc;
  EncodeStateValue(v, &enc);
  CHECK(static_cast<uint8_t>(enc[0]) == 1);
  StateValue back;
  REQUIRE(DecodeStateValue(enc, &back));
  CHECK(back.size() == v.size());
  for (size_t i = 0; i < v.size(); ++i) CHECK(back[i] == v[i]);

  StateValue many(300, Value::Int(7));  // a count over 127 takes two varint bytes
  enc.clear();
  EncodeStateValue(many, &enc);
  REQUIRE(DecodeStateValue(enc, &back));
  CHECK(back.size() == 300);

  enc.clear();
  EncodeStateValue(StateValue(), &enc);
  REQUIRE(DecodeStateValue(enc, &back));
  CHECK(back.empty());

  CHECK(!DecodeStateValue("", &back));
  CHECK(!DecodeStateValue(std::string("\x02\x00", 2), &back));  // unknown version
  CHECK(!DecodeStateValue(std::string("\x01\x02", 2), &back));  // values missing
  std::string extra = enc + "junk";
  CHECK(!DecodeStateValue(extra, &back));  // trailing bytes
}

}  // namespace
}  // namespace onceflow

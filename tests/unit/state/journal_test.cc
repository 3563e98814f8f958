// Schema version 2: the migration from version 1 (atomic, idempotent after a crash, none
// for read-only opens), and source journals: append/read/size across reopen, StoreJournal,
// Fresh, and the pruning rule that keeps what retained checkpoints need.
#include "runtime/state/journal.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "doctest/doctest.h"
#include "test_util.h"
#include "runtime/state/store.h"

namespace onceflow {
namespace {


// user_version from the raw header of the main file (big-endian at offset 60).
int RawUserVersion(const std::string& path) {
  std::string b = ReadAll(path);
  REQUIRE(b.size() >= 100);
  return (static_cast<unsigned char>(b[60]) << 24) | (static_cast<unsigned char>(b[61]) << 16) |
         (static_cast<unsigned char>(b[62]) << 8) | static_cast<unsigned char>(b[63]);
}

void SqlExec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  INFO(sql << ": " << (err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

bool HasTable(const std::string& path, const char* table) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name=?1", -1, &st,
                             nullptr) == SQLITE_OK);
  sqlite3_bind_text(st, 1, table, -1, SQLITE_TRANSIENT);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  bool has = sqlite3_column_int(st, 0) > 0;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return has;
}

int64_t Checkpoint(StateStore* s, std::vector<SourceOffset> offsets,
                   const std::string& state_value = "") {
  int64_t id = 0;
  REQUIRE(s->BeginCheckpoint(CheckpointKind::kCheckpoint, &id).ok());
  std::unique_ptr<CheckpointWriter> w;
  REQUIRE(s->NewWriter(id, &w).ok());
  if (!state_value.empty()) w->PutState("n", "k", &state_value);
  for (auto& o : offsets) w->AddSourceOffset(std::move(o));
  Status st = w->Commit();
  INFO(st.message());
  REQUIRE(st.ok());
  return id;
}

std::string JRead(StateStore* s, const std::string& node, int instance, uint64_t offset,
                  size_t max = 1 << 20) {
  std::string out;
  Status st = s->JournalRead(node, instance, offset, max, &out);
  INFO(st.message());
  REQUIRE(st.ok());
  return out;
}

uint64_t JSize(StateStore* s, const std::string& node, int instance) {
  uint64_t n = 0;
  REQUIRE(s->JournalSize(node, instance, &n).ok());
  return n;
}

// A version-1 file: the current schema without what versions 2 to 4 added (the
// `journal` and dedup_* tables, `state_keys` in place of the index state_by_version) and
// with user_version set back to 1 is what a v1 build wrote (schema and rows). Holds two
// checkpoints of state "n"/"k".
void MakeV1File(const std::string& path) {
  {
    auto s = MustOpen(path);
    Checkpoint(s.get(), {{"in", 0, "", 10, 1}}, "one");
    Checkpoint(s.get(), {{"in", 0, "", 20, 2}}, "two");
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  SqlExec(db,
          "DROP TABLE journal; DROP TABLE dedup_channels; DROP TABLE dedup_outbox;"
          " DROP TABLE dedup_changes; DROP TABLE dedup_state; DROP TABLE dedup_sinks;"
          " DROP TABLE state_keys; CREATE INDEX state_by_version ON state(version);"
          " PRAGMA user_version=1");
  SqlExec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  REQUIRE(RawUserVersion(path) == 1);
  REQUIRE_FALSE(HasTable(path, "journal"));
}

// Runs `body` in a child process that dies with _exit (no destructors, no close: as
// kill -9) and waits for it.
template <typename F>
void InDyingChild(F body) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    body();
    _exit(0);
  }
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
}

}  // namespace

TEST_CASE("a v1 file: read-only opens read it as it is; a writable open migrates it") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MakeV1File(path);
  std::string before = ReadAll(path);
  {
    auto r = MustOpen(path, "p", Mode(false, true));
    CHECK(r->schema_version() == 1);
    std::vector<CheckpointInfo> list;
    REQUIRE(r->List(&list).ok());
    CHECK(list.size() == 2);
    std::string v;
    bool found = false;
    REQUIRE(r->Get("n", "k", 0, &v, &found).ok());
    CHECK(found);
    CHECK(v == "two");
    CHECK(JSize(r.get(), "in", 0) == 0);  // no journals in v1
    CHECK(JRead(r.get(), "in", 0, 0).empty());
  }
  CHECK(ReadAll(path) == before);  // not migrated
  CHECK_FALSE(HasTable(path, "journal"));
  {
    auto s = MustOpen(path);
    CHECK(s->schema_version() == StateStore::kSchemaVersion);
    CHECK(RawUserVersion(path) == StateStore::kSchemaVersion);  // in the main file right away
    CHECK(HasTable(path, "journal"));
    std::string v;
    bool found = false;
    REQUIRE(s->Get("n", "k", 1, &v, &found).ok());
    CHECK(v == "one");
    std::vector<SourceOffset> offs;
    REQUIRE(s->SourceOffsets(2, &offs).ok());
    REQUIRE(offs.size() == 1);
    CHECK(offs[0].offset == 20);
    REQUIRE(s->JournalAppend("in", 0, 0, "abc").ok());
    CHECK(Checkpoint(s.get(), {}) == 3);  // ids continue
  }
  auto s = MustOpen(path);  // already current: opens without migrating again
  CHECK(JRead(s.get(), "in", 0, 0) == "abc");
}

TEST_CASE(
    "a crash inside the migration leaves v1 intact; a crash after its commit is not "
    "migrated twice") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MakeV1File(path);

  SUBCASE("crash inside the transaction") {
    std::string before = ReadAll(path);
    InDyingChild([&] {
      sqlite3* db = nullptr;
      if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) _exit(2);
      if (sqlite3_exec(db,
                       "BEGIN IMMEDIATE; CREATE TABLE journal(node TEXT NOT NULL, instance"
                       " INTEGER NOT NULL, offset INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY"
                       " KEY(node, instance, offset)); PRAGMA user_version=2",
                       nullptr, nullptr, nullptr) != SQLITE_OK)
        _exit(3);
      _exit(0);  // no COMMIT
    });
    CHECK(ReadAll(path) == before);
    {
      auto r = MustOpen(path, "p", Mode(false, true));
      CHECK(r->schema_version() == 1);
    }
    auto s = MustOpen(path);
    CHECK(s->schema_version() == StateStore::kSchemaVersion);
    CHECK(RawUserVersion(path) == StateStore::kSchemaVersion);
    REQUIRE(s->JournalAppend("in", 0, 0, "x").ok());
  }
  SUBCASE("crash after the commit, before the WAL checkpoint copied the header") {
    InDyingChild([&] {
      sqlite3* db = nullptr;
      if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) _exit(2);
      if (sqlite3_exec(db,
                       "PRAGMA wal_autocheckpoint=0; BEGIN IMMEDIATE; CREATE TABLE journal(node"
                       " TEXT NOT NULL, instance INTEGER NOT NULL, offset INTEGER NOT NULL, data"
                       " BLOB NOT NULL, PRIMARY KEY(node, instance, offset));"
                       " PRAGMA user_version=2; COMMIT",
                       nullptr, nullptr, nullptr) != SQLITE_OK)
        _exit(3);
      _exit(0);  // no close: no checkpoint of the WAL into the main file
    });
    REQUIRE(RawUserVersion(path) == 1);  // the new version is only in the WAL
    {
      auto r = MustOpen(path, "p", Mode(false, true));
      CHECK(r->schema_version() == 2);  // SQLite's view, WAL included
    }
    auto s = MustOpen(path);  // must not try to create `journal` again
    CHECK(s->schema_version() == StateStore::kSchemaVersion);
    CHECK(RawUserVersion(path) == StateStore::kSchemaVersion);
    REQUIRE(s->JournalAppend("in", 0, 0, "x").ok());
  }
}

TEST_CASE("journals append contiguously, read across chunks, and survive reopen") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  {
    auto s = MustOpen(path);
    CHECK(JSize(s.get(), "in", 0) == 0);
    CHECK(JRead(s.get(), "in", 0, 0).empty());
    REQUIRE(s->JournalAppend("in", 0, 0, "abc").ok());
    REQUIRE(s->JournalAppend("in", 0, 3, "").ok());  // nothing written
    REQUIRE(s->JournalAppend("in", 0, 3, std::string("de\0fg", 5)).ok());
    REQUIRE(s->JournalAppend("in", 1, 0, "other").ok());  // another instance
    Status st = s->JournalAppend("in", 0, 7, "gap");
    CHECK(st.code() == Status::Code::kState);
    CHECK(st.message().find("ends at byte 8") != std::string::npos);
    CHECK(s->JournalAppend("in", 0, 2, "overlap").code() == Status::Code::kState);
  }
  auto s = MustOpen(path);
  CHECK(JSize(s.get(), "in", 0) == 8);
  CHECK(JSize(s.get(), "in", 1) == 5);
  CHECK(JSize(s.get(), "nope", 0) == 0);
  CHECK(JRead(s.get(), "in", 0, 0) == std::string("abcde\0fg", 8));
  CHECK(JRead(s.get(), "in", 0, 2, 3) == std::string("cde", 3));
  CHECK(JRead(s.get(), "in", 0, 4, 100) == std::string("e\0fg", 4));
  CHECK(JRead(s.get(), "in", 0, 8).empty());
  CHECK(JRead(s.get(), "in", 0, 100).empty());
  CHECK(JRead(s.get(), "in", 1, 1, 2) == "th");

  // Through the SourceJournal interface, sharing the store's mutex.
  std::mutex mu;
  StoreJournal j(s.get(), &mu, "in", 0);
  REQUIRE(j.status().ok());
  CHECK(j.size() == 8);
  REQUIRE(j.Append("hij").ok());
  CHECK(j.size() == 11);
  std::string out = "junk";
  REQUIRE(j.Read(6, 100, &out).ok());
  CHECK(out == "fghij");
  REQUIRE(j.Read(11, 100, &out).ok());
  CHECK(out.empty());
  StoreJournal fresh_instance(s.get(), &mu, "in", 7);
  CHECK(fresh_instance.size() == 0);
  s.reset();
  s = MustOpen(path);
  StoreJournal again(s.get(), &mu, "in", 0);
  CHECK(again.size() == 11);
  REQUIRE(again.Read(0, 100, &out).ok());
  CHECK(out == std::string("abcde\0fghij", 11));

  // A read-only store reads journals and refuses appends.
  auto r = MustOpen(path, "p", Mode(false, true));
  CHECK(JRead(r.get(), "in", 0, 9) == "ij");
  CHECK_FALSE(r->JournalAppend("in", 0, 11, "x").ok());
}

TEST_CASE("an append committed before a kill -9 is there after reopen") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MustOpen(path);
  InDyingChild([&] {
    std::unique_ptr<StateStore> s;
    if (!StateStore::Open(path, "p", OpenMode(), &s).ok()) _exit(2);
    std::mutex mu;
    StoreJournal j(s.get(), &mu, "in", 0);
    if (!j.Append("line 1\n").ok() || !j.Append("line 2\n").ok()) _exit(3);
    _exit(0);
  });
  auto s = MustOpen(path);
  CHECK(JRead(s.get(), "in", 0, 0) == "line 1\nline 2\n");
}

TEST_CASE("Fresh deletes every journal") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  REQUIRE(s->JournalAppend("in", 0, 0, "abc").ok());
  REQUIRE(s->JournalAppend("in2", 0, 0, "xyz").ok());
  Checkpoint(s.get(), {{"in", 0, "", 3, 1}});
  REQUIRE(s->Fresh().ok());
  CHECK(JSize(s.get(), "in", 0) == 0);
  CHECK(JSize(s.get(), "in2", 0) == 0);
  std::mutex mu;
  StoreJournal j(s.get(), &mu, "in", 0);
  CHECK(j.size() == 0);
  REQUIRE(j.Append("new").ok());
  CHECK(JRead(s.get(), "in", 0, 0) == "new");
}

TEST_CASE("pruning drops journal chunks before what the retained checkpoints need") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  auto s = MustOpen(path);
  // Four chunks of 4 bytes: [0,4) [4,8) [8,12) [12,16).
  for (const char* c : {"aaaa", "bbbb", "cccc", "dddd"}) {
    REQUIRE(s->JournalAppend("in", 0, JSize(s.get(), "in", 0), c).ok());
  }
  REQUIRE(s->JournalAppend("orphan", 0, 0, "0123").ok());
  REQUIRE(s->JournalAppend("orphan", 0, 4, "4567").ok());

  int64_t dropped = -1;
  REQUIRE(s->PruneJournals(&dropped).ok());  // no checkpoint refers to anything yet
  CHECK(dropped == 0);
  CHECK(JRead(s.get(), "in", 0, 0) == "aaaabbbbccccdddd");

  std::string scratch;
  int64_t c1 = Checkpoint(s.get(), {{"in", 0, "", 5, 1}});
  Checkpoint(s.get(), {{"in", 0, "", 9, 2}});
  Checkpoint(s.get(), {{"in", 0, "", 13, 3}});

  SUBCASE("Prune") {
    int deleted = 0;
    REQUIRE(s->Prune(2, &deleted).ok());  // drops checkpoint 1: the oldest need is 9
    CHECK(deleted == 1);
    CHECK(JRead(s.get(), "in", 0, 8) == "ccccdddd");
    CHECK(s->JournalRead("in", 0, 4, 10, &scratch).code() == Status::Code::kState);
    REQUIRE(s->Prune(1, &deleted).ok());  // now 13: [8,12) goes, [12,16) holds 13
    CHECK(JRead(s.get(), "in", 0, 13) == "ddd");
    CHECK(JRead(s.get(), "in", 0, 12) == "dddd");
    std::string out;
    Status st = s->JournalRead("in", 0, 9, 10, &out);
    CHECK(st.code() == Status::Code::kState);
    CHECK(st.message().find("no longer holds byte 9") != std::string::npos);
    // The first chunk stays (a csv header); reading it stops at the pruned gap.
    CHECK(JRead(s.get(), "in", 0, 0) == "aaaa");
    CHECK(JSize(s.get(), "in", 0) == 16);  // appends continue where the stream ended
    REQUIRE(s->JournalAppend("in", 0, 16, "eeee").ok());
    CHECK(JRead(s.get(), "in", 0, 14) == "ddeeee");
    // A journal no checkpoint refers to is kept whole.
    CHECK(JRead(s.get(), "orphan", 0, 0) == "01234567");
  }
  SUBCASE("Delete") {
    REQUIRE(s->Delete(c1).ok());
    CHECK(JRead(s.get(), "in", 0, 8) == "ccccdddd");
    CHECK_FALSE(s->JournalRead("in", 0, 4, 10, &scratch).ok());
  }
  SUBCASE("PruneJournals counts what it drops; a reopen keeps the result") {
    REQUIRE(s->Delete(c1).ok());
    REQUIRE(s->Delete(c1 + 1).ok());
    REQUIRE(s->PruneJournals(&dropped).ok());
    CHECK(dropped == 0);  // Delete already pruned to 13
    s.reset();
    s = MustOpen(path);
    CHECK(JRead(s.get(), "in", 0, 12) == "dddd");
    CHECK(JRead(s.get(), "in", 0, 0) == "aaaa");
  }
}

TEST_CASE("a newer version committed only to the WAL is refused, and nothing is written") {
  TempDir dir;
  std::string path = dir.File("p.state.db");
  MustOpen(path);
  InDyingChild([&] {
    sqlite3* db = nullptr;
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) _exit(2);
    const std::string sql = "PRAGMA wal_autocheckpoint=0; PRAGMA user_version=" +
                            std::to_string(StateStore::kSchemaVersion + 1);
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
      _exit(3);
    _exit(0);  // as a newer build killed before its WAL checkpoint
  });
  REQUIRE(RawUserVersion(path) == StateStore::kSchemaVersion);
  std::string main_before = ReadAll(path), wal_before = ReadAll(path + "-wal");
  REQUIRE_FALSE(wal_before.empty());
  for (bool read_only : {false, true}) {
    std::unique_ptr<StateStore> s;
    Status st = StateStore::Open(path, "p", Mode(false, read_only), &s);
    CHECK(st.code() == Status::Code::kState);
    const std::string want = "schema " + std::to_string(StateStore::kSchemaVersion + 1) +
                             ", this build reads up to " +
                             std::to_string(StateStore::kSchemaVersion);
    CHECK(st.message().find(want) != std::string::npos);
  }
  CHECK(ReadAll(path) == main_before);
  CHECK(ReadAll(path + "-wal") == wal_before);
}

}  // namespace onceflow

// StateStore: the on-disk format of onceflow's state file, and the rules for what a crash
// at any point leaves behind.
//
// FILE
//   An SQLite 3 database, PRAGMA application_id = 0x4F4E4346 ("ONCF"), PRAGMA user_version
//   = schema version (4; 1 to 3 are migrated, see MIGRATIONS). Created with mode 0600 by this
//   code (open(O_CREAT|O_EXCL, 0600), umask-independent) before SQLite opens it. Journal
//   mode WAL. A file that does not start with "SQLite format 3\0", whose header promises
//   more pages than the file holds, whose application_id is not ours, or whose
//   user_version is newer than this build is refused (Status::State) from its raw header
//   bytes, before SQLite opens it; a file whose meta names another pipeline is refused
//   after reading meta and before any write (and the connection of a refused file skips
//   the WAL checkpoint on close), so a refused file is never modified. The only file
//   accepted without the header is an empty
//   one (0 bytes): what a crash right after creating the file leaves; it is initialised.
//
// TABLES (schema version 4)
//   meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) — one row per setting:
//     format        "onceflow-state": the application marker (besides application_id).
//     pipeline      the pipeline name this file belongs to (one file, one pipeline).
//     fingerprint   the pipeline's topology fingerprint, written by the run ("" until then).
//     lineage       32 hex digits, random 128 bits made at creation and on --fresh; sinks key
//                   their epoch markers by (lineage, node, epoch) so a fresh start or
//                   another pipeline never collides with an old marker.
//     last_id       high-water mark of checkpoint ids; never decreases (ids never reused,
//                   even after Delete or Fresh), so a replayed epoch is never mistaken for
//                   an applied one.
//     head          id of the newest complete checkpoint of the current line of history
//                   (0 = none): what `latest` resumes from.
//     line_start    the checkpoint the current line continues from (StartLine; 0 = the
//                   beginning). Informational: the head already says where to resume.
//     created_ms    unix ms when the file was created.
//     chaos_fired   (--chaos) the places where faults fired, hex (snapshot.cc).
//     amo_read_ahead  at-most-once: per source instance, the count of records up to which
//                   records may have been processed (a lease, committed FULL ahead of
//                   processing; at_most_once.h). A resume reads past it. "" = none.
//   checkpoints(id INTEGER PRIMARY KEY, kind TEXT, status TEXT, created INTEGER,
//               events INTEGER, bytes INTEGER, duration_ms INTEGER, alignment_ms INTEGER,
//               parent INTEGER NULL)
//     kind checkpoint|savepoint|final; status pending|completed|stopped|merged (stopped:
//     final only; merged: deleted, kept only as the state base of its one child's line —
//     see Delete — never listed or restorable); created unix ms at BeginCheckpoint; events = source events covered; bytes =
//     key + value + staged-row bytes it wrote; parent = the previous checkpoint of its line
//     (NULL = the first of its line). A pending row is a checkpoint that began but never
//     committed: ignored by every reader and deleted by the next writable Open.
//   state(node TEXT, key BLOB, version INTEGER, value BLOB NULL,
//         PRIMARY KEY(node, key, version)) WITHOUT ROWID
//     Keyed state per node (never per instance, so parallelism may change between runs).
//     key = key.h's EncodeKey bytes; version = id of the checkpoint that wrote the row;
//     value = EncodeStateValue bytes, NULL = tombstone (the key was erased). The state at
//     checkpoint C: for each (node, key), the row with the greatest version in line(C) = {C,
//     parent(C), parent(parent(C)), ...}, unless it is a tombstone. No index on version:
//     Delete, Prune and the clean-up of pending checkpoints find a version's rows through
//     its key lists (state_keys).
//   state_keys(version, seq, node TEXT, keys BLOB, PRIMARY KEY(version, seq))  (since v4)
//     The keys each version wrote to `state`, one blob per node and 64 KiB of keys
//     (key_lists.h: format, and the invariant that every state row is listed). Written in
//     the transaction that writes the rows.
//   source_offsets(checkpoint, node, instance, name, offset, count) — each source
//     instance's resume position at that checkpoint (complete per checkpoint).
//   sink_commits(checkpoint, node, instance, path, length, epoch) — each sink instance's
//     pre-commit at the barrier (a file sink's fsynced length of `path`).
//   sink_staging(checkpoint, node, seq, row BLOB) — rows an `sqlite` sink staged for epoch
//     `checkpoint`; the sink deletes them after applying them durably to its database.
//   journal(node TEXT, instance INTEGER, offset INTEGER, data BLOB,
//           PRIMARY KEY(node, instance, offset))                               (since v2)
//     The input of a source that cannot rewind (`stdin`), journaled before it is decoded
//     (journal.h), one row per appended chunk; offset = the stream offset of the chunk's
//     first byte. The stream runs on across runs (each run's stdin continues it), and the
//     chunks of one (node, instance) are contiguous: each starts where the previous one
//     ends, so the journal's size is the last offset + length(data). The source's
//     source_offsets rows are offsets into this stream. Pruning (PruneJournals, run by
//     Prune and Delete) drops the chunks that end at or before the smallest offset any
//     complete checkpoint recorded for that (node, instance), except the first chunk
//     (offset 0: a csv stream's header); a journal no checkpoint refers to is kept whole.
//     A rowid table on purpose: chunks are large blobs, which WITHOUT ROWID tables store
//     poorly; the primary key's index serves every query.
//   dedup_channels(channel TEXT PRIMARY KEY, produced, consumed, ended, pos_name,
//                  pos_offset) WITHOUT ROWID                                   (since v3)
//     Dedup mode: one row per channel, named "<from>#<instance>><to>#<instance>". Its
//     producer writes `produced` (the last sequence number it committed on the channel);
//     its consumer writes `consumed` (the last sequence it committed as applied), `ended`
//     (it applied the channel's end) and, for a channel fed by a source, pos_name and
//     pos_offset: with `consumed` (then a record count) the source position to re-read
//     from. The same channel names must come back on resume: a change of parallelism
//     changes them and is refused.
//   dedup_outbox(channel, seq, data BLOB, PRIMARY KEY(channel, seq))           (since v3)
//     Outputs an operator task committed and may still have to send again: one row per
//     (channel, sequence), data = the encoded envelope (runtime/guarantees/dedup.cc). A
//     producer deletes the rows its consumer's commit covers (`consumed`), so the table
//     holds what is in flight. Sources have no outbox: they re-read their input.
//   dedup_changes(id INTEGER PRIMARY KEY, node, data BLOB)                     (since v3)
//     The changelog of keyed state: one row per commit and node, data = the changed keys
//     and values (tombstones for erased keys) in commit order. Folded into dedup_state by
//     DedupCompact (one transaction), in id order.
//   dedup_state(node, key, value, PRIMARY KEY(node, key)) WITHOUT ROWID        (since v3)
//     Compacted keyed state of dedup mode: the state of a node is dedup_state overlaid with
//     its dedup_changes rows in id order.
//   dedup_sinks(node, instance, path, length, PRIMARY KEY(node, instance))     (since v3)
//     The committed length of each `file` sink instance's output in dedup mode.
//   Staged rows of `sqlite` sinks in dedup mode use sink_staging, keyed by an epoch id
//   drawn from last_id like checkpoint ids (never reused), applied after the commit and
//   rolled forward on the next start if a crash came between.
//
// MIGRATIONS
//   A writable Open of a file with an older user_version migrates it in one transaction
//   (committed with synchronous=FULL) that also sets the new user_version, then copies the
//   new header into the main file with a WAL checkpoint. A crash inside the transaction
//   leaves the old version intact (the transaction is atomic), and the next writable Open
//   migrates again. A crash after its commit but before the WAL checkpoint leaves the new
//   version only in the WAL: Open takes the version from SQLite (main file + WAL), not from
//   the raw header, so it does not migrate twice. A read-only Open does not migrate: it
//   reads an older file as it is (a v1 file has no journals: they read as empty).
//   1 -> 2  creates `journal` (empty). No other table changes.
//   2 -> 3  creates the dedup_* tables (empty). No other table changes.
//   3 -> 4  creates `state_keys`, lists the keys of every version in `state` (read in
//           version order through the index state_by_version), then drops that index.
//           The 100,000 rows of a full checkpoint went into two B-trees with it: 120 ms of
//           commit, 70 ms with key lists (state_bench).
//   A file whose version is newer than this build is refused untouched (see FILE).
//
// WRITES AND CRASHES
//   Every change is one SQLite transaction; a crash (or power cut) at any point leaves each
//   transaction either wholly there or wholly absent:
//   - Creation: the schema, application_id and user_version are written in one
//     transaction in rollback-journal mode, and only then is the file switched to WAL. A
//     crash before that commit leaves an empty file (or a hot journal SQLite rolls back to
//     empty): the next Open initialises it. A crash after it leaves a valid file of the
//     current version.
//   - BeginCheckpoint bumps last_id and inserts the pending row in one NORMAL transaction.
//     If a power cut loses it, that id may be handed out again — harmless, nothing durable
//     referred to it (a later FULL commit makes every earlier WAL frame durable too).
//   - CheckpointWriter::Commit writes state, offsets, sink commits and staged rows, marks
//     the row complete and moves the head, in one transaction committed with
//     synchronous=FULL: the completion record is never lost once Commit returned ok. A
//     crash before that leaves the previous checkpoint the latest complete one and a
//     pending row (cleaned up on the next writable Open).
//   - Delete/Prune merge a checkpoint into its only child's line (or move its rows to its
//     children) and delete, then prune the journals, in one transaction each (NORMAL: a
//     delete lost to a power cut only brings a deletable checkpoint back, with the journal
//     chunks it needs: both were in that transaction).
//   - JournalAppend inserts one chunk in one NORMAL transaction. A committed WAL
//     transaction is in the OS's page cache when COMMIT returns, so a crash of the process
//     (kill -9, --chaos crash) never loses it; a power cut may lose appends made after the
//     last fsync of the WAL. Every checkpoint that refers to journal bytes commits with
//     FULL after they were appended (they are appended before they are decoded), and that
//     fsync makes every earlier WAL frame durable too: a power cut only loses journal bytes
//     no checkpoint refers to, i.e. input past the resume point.
//   - Fresh (which also empties `journal`) and StartLine commit with FULL: a run must not
//     start writing its sinks on the strength of a "continues from" that a power cut could
//     take back.
//
// SYNCHRONOUS
//   The connection runs with synchronous=NORMAL (in WAL mode: the WAL is fsynced at each
//   checkpoint of it, not at each commit — a power cut may lose the last commits but never
//   corrupts). Commits that others act on (a checkpoint's completion record, Fresh,
//   StartLine) switch to FULL for that one transaction (fsync of the WAL at commit), as the
//   ARCHITECTURE requires of the completion record. The pragma is switched between
//   transactions on the same connection, never inside one.
//
// WAL POLICY
//   SQLite's automatic checkpoint is off (wal_autocheckpoint=0): at its default it copied
//   the WAL into the file at almost every commit of a large checkpoint, so a page a
//   checkpoint rewrote was written twice per commit. Instead, after a completed
//   checkpoint, when kTruncateEvery of them have committed since the last copy or the WAL
//   passed kWalCheckpointBytes (and on a writable open and on close), a
//   wal_checkpoint(TRUNCATE) copies the WAL
//   once and empties it: pages rewritten by several checkpoints are copied once, and the
//   WAL stays bounded (about kWalCheckpointBytes plus one checkpoint). journal_size_limit
//   = 64 MB truncates a WAL that a burst made big once it is reset. A TRUNCATE that finds
//   a reader is skipped (busy) and retried after the next commit, so a long
//   `checkpoints list` cannot stall a run. (state_bench: the incremental commit of 10k of
//   1M keys went from 0.120 to 0.082 s and from 51 to 26 MB written.)
#include "runtime/state/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "runtime/core/hashed_key.h"
#include "runtime/core/key.h"
#include "runtime/core/prefetch.h"
#include "runtime/core/varint.h"
#include "runtime/state/key_lists.h"
#include "runtime/state/sqlite_stmt.h"

namespace onceflow {
namespace {

constexpr char kFormatMarker[] = "onceflow-state";
constexpr int kTruncateEvery = 16;
constexpr int64_t kWalCheckpointBytes = int64_t{64} << 20;
constexpr uint8_t kStateValueVersion = 1;
constexpr size_t kCommitPrefetch = 8;  // state changes (CommitWriter)
constexpr int kRowsPerInsert = 32;     // state rows per INSERT statement (CommitWriter)

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewLineageId() {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got < sizeof(b)) {  // no entropy source: fall back to time and pid, still unique enough
    uint64_t t = static_cast<uint64_t>(NowMs()), p = static_cast<uint64_t>(getpid());
    std::memcpy(b, &t, 8);
    std::memcpy(b + 8, &p, 8);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

const char* const kSchemaV1[] = {
    "CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL)",
    "CREATE TABLE checkpoints(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,"
    " created INTEGER NOT NULL, events INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0, duration_ms INTEGER NOT NULL DEFAULT 0,"
    " alignment_ms INTEGER NOT NULL DEFAULT 0, parent INTEGER)",
    "CREATE INDEX checkpoints_by_parent ON checkpoints(parent)",
    "CREATE TABLE state(node TEXT NOT NULL, key BLOB NOT NULL, version INTEGER NOT NULL,"
    " value BLOB, PRIMARY KEY(node, key, version)) WITHOUT ROWID",
    "CREATE INDEX state_by_version ON state(version)",
    "CREATE TABLE source_offsets(checkpoint INTEGER NOT NULL, node TEXT NOT NULL,"
    " instance INTEGER NOT NULL, name TEXT NOT NULL, offset INTEGER NOT NULL,"
    " count INTEGER NOT NULL, PRIMARY KEY(checkpoint, node, instance, name))",
    "CREATE TABLE sink_commits(checkpoint INTEGER NOT NULL, node TEXT NOT NULL,"
    " instance INTEGER NOT NULL, path TEXT NOT NULL, length INTEGER NOT NULL,"
    " epoch INTEGER NOT NULL, PRIMARY KEY(checkpoint, node, instance, path))",
    "CREATE TABLE sink_staging(checkpoint INTEGER NOT NULL, node TEXT NOT NULL,"
    " seq INTEGER NOT NULL, row BLOB NOT NULL, PRIMARY KEY(checkpoint, node, seq))",
};

// Version 1 -> 2: source journals. A rowid table (not WITHOUT ROWID): its rows are chunks
// of up to hundreds of KB, and SQLite's WITHOUT ROWID tables suit small rows; the primary
// key's index serves every lookup and the size and prune queries without reading blobs.
const char* const kSchemaV2[] = {
    "CREATE TABLE journal(node TEXT NOT NULL, instance INTEGER NOT NULL,"
    " offset INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(node, instance, offset))",
};

// Version 2 -> 3: dedup mode (effectively-once per hop). See TABLES.
const char* const kSchemaV3[] = {
    "CREATE TABLE dedup_channels(channel TEXT PRIMARY KEY, produced INTEGER NOT NULL DEFAULT 0,"
    " consumed INTEGER NOT NULL DEFAULT 0, ended INTEGER NOT NULL DEFAULT 0,"
    " pos_name TEXT NOT NULL DEFAULT '', pos_offset INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
    "CREATE TABLE dedup_outbox(channel TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(channel, seq))",
    "CREATE TABLE dedup_changes(id INTEGER PRIMARY KEY, node TEXT NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE dedup_state(node TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY(node, key)) WITHOUT ROWID",
    "CREATE TABLE dedup_sinks(node TEXT NOT NULL, instance INTEGER NOT NULL, path TEXT NOT NULL,"
    " length INTEGER NOT NULL, PRIMARY KEY(node, instance))",
};

// Brings the schema from `from` to StateStore::kSchemaVersion, inside the caller's
// transaction. Each step is one case; later versions add `case 2:` and so on.
Status Migrate(sqlite3* db, const std::string& path, int from) {
  switch (from) {
    case 0:
      for (const char* sql : kSchemaV1) ONCEFLOW_RETURN_IF_ERROR(ExecOn(db, path, sql));
      [[fallthrough]];
    case 1:
      for (const char* sql : kSchemaV2) ONCEFLOW_RETURN_IF_ERROR(ExecOn(db, path, sql));
      [[fallthrough]];
    case 2:
      for (const char* sql : kSchemaV3) ONCEFLOW_RETURN_IF_ERROR(ExecOn(db, path, sql));
      [[fallthrough]];
    case 3:
      ONCEFLOW_RETURN_IF_ERROR(MigrateToKeyLists(db, path));
      [[fallthrough]];
    default:
      break;
  }
  std::string pragmas = "PRAGMA application_id=" + std::to_string(StateStore::kApplicationId) +
                        "; PRAGMA user_version=" + std::to_string(StateStore::kSchemaVersion);
  return ExecOn(db, path, pragmas.c_str());
}

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Checks the raw header bytes without SQLite: refuses non-SQLite and truncated files.
// *empty = the file has 0 bytes (created but never initialised).
Status InspectHeader(const std::string& path, bool* empty, int64_t* version) {
  *empty = false;
  *version = 0;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::State("state file " + path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status::State("state file " + path + ": not a regular file");
  }
  if (st.st_size == 0) {
    close(fd);
    *empty = true;
    return Status::Ok();
  }
  unsigned char h[100];
  ssize_t n = pread(fd, h, sizeof(h), 0);
  close(fd);
  if (n < static_cast<ssize_t>(sizeof(h)) || std::memcmp(h, "SQLite format 3", 16) != 0) {
    return Status::State("state file " + path +
                         ": not an onceflow state file (not an SQLite database)");
  }
  uint32_t page_size = (uint32_t{h[16]} << 8) | h[17];
  if (page_size == 1) page_size = 65536;
  if (page_size < 512 || (page_size & (page_size - 1)) != 0) {
    return Status::State("state file " + path + ": corrupt SQLite header (page size)");
  }
  // The in-header page count is valid when the change counter (24) equals the
  // version-valid-for number (92). A file shorter than it promises was truncated —
  // unless a WAL is there: a process killed while a WAL checkpoint copied pages back may
  // leave page 1 (with the new count) written and later pages not yet, which is legal,
  // since the WAL still holds every one of them and SQLite replays it.
  struct stat wal;
  const bool has_wal = stat((path + "-wal").c_str(), &wal) == 0 && wal.st_size > 0;
  uint32_t pages = Be32(h + 28);
  if (!has_wal && Be32(h + 24) == Be32(h + 92) && pages != 0 &&
      static_cast<uint64_t>(st.st_size) < static_cast<uint64_t>(pages) * page_size) {
    return Status::State("state file " + path + ": truncated (header says " +
                         std::to_string(static_cast<uint64_t>(pages) * page_size) +
                         " bytes, the file has " + std::to_string(st.st_size) + ")");
  }
  // application_id (offset 68) and user_version (offset 60) are read from the raw header,
  // not through SQLite: a foreign or newer file is refused before SQLite opens it (SQLite
  // could otherwise roll back a hot journal or recover a WAL: a write). Both are written
  // by the creating transaction before the file switches to WAL, so the main file's
  // header always holds them; a migration ends with a WAL checkpoint for the same reason.
  int32_t app = static_cast<int32_t>(Be32(h + 68));
  if (app != StateStore::kApplicationId) {
    return Status::State("state file " + path +
                         ": not an onceflow state file (an SQLite database of another "
                         "application: application_id " +
                         std::to_string(app) + ")");
  }
  *version = static_cast<int32_t>(Be32(h + 60));
  if (*version > StateStore::kSchemaVersion) {
    return Status::State("state file " + path + ": written by a newer onceflow: schema " +
                         std::to_string(*version) + ", this build reads up to " +
                         std::to_string(StateStore::kSchemaVersion));
  }
  if (*version < 1) {
    return Status::State("state file " + path + ": onceflow marker without a schema (version " +
                         std::to_string(*version) + ")");
  }
  return Status::Ok();
}

Status ReadMetaOn(sqlite3* db, const std::string& path, const std::string& k, std::string* v,
                  bool* found) {
  Stmt s(db, "SELECT v FROM meta WHERE k=?1");
  s.Bind(1, k);
  int rc = s.Step();
  if (rc == SQLITE_ROW) {
    *v = s.Text(0);
    *found = true;
    return Status::Ok();
  }
  if (rc == SQLITE_DONE) {
    *found = false;
    return Status::Ok();
  }
  return SqlError(path, "reading meta", db);
}

// Checks, on an open connection and before any write, that the file is an onceflow state
// file of `pipeline` whose tables are readable.
Status CheckMeta(sqlite3* db, const std::string& path, const std::string& pipeline) {
  std::string v;
  bool found = false;
  Status st = ReadMetaOn(db, path, "format", &v, &found);
  if (!st.ok() || !found || v != kFormatMarker) {
    return Status::State("state file " + path + ": not an onceflow state file (no format marker" +
                         (st.ok() ? std::string(")") : "; " + st.message() + ")"));
  }
  ONCEFLOW_RETURN_IF_ERROR(ReadMetaOn(db, path, "pipeline", &v, &found));
  if (!found) return Status::State("state file " + path + ": no pipeline name recorded");
  if (!pipeline.empty() && v != pipeline) {
    return Status::State("state file " + path + " belongs to pipeline '" + v + "', not '" +
                         pipeline + "'");
  }
  // Reading a whole table proves the pages behind the header are readable too.
  Stmt q(db, "SELECT count(*), coalesce(max(id), 0) FROM checkpoints");
  if (q.Step() != SQLITE_ROW) return SqlError(path, "corrupt", db);
  return Status::Ok();
}

// PRAGMA user_version through SQLite (which sees a committed migration still in the WAL,
// unlike the raw header InspectHeader reads).
Status UserVersionOn(sqlite3* db, const std::string& path, int64_t* version) {
  Stmt q(db, "PRAGMA user_version");
  if (q.Step() != SQLITE_ROW) return SqlError(path, "reading the schema version", db);
  *version = q.Int(0);
  return Status::Ok();
}

void FsyncDir(const std::string& path) {
  std::string dir = ".";
  size_t slash = path.rfind('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : path.substr(0, slash);
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

const char* StatusSql(CheckpointStatus s) { return CheckpointStatusName(s); }

bool ParseKind(const std::string& s, CheckpointKind* k) {
  if (s == "checkpoint")
    *k = CheckpointKind::kCheckpoint;
  else if (s == "savepoint")
    *k = CheckpointKind::kSavepoint;
  else if (s == "final")
    *k = CheckpointKind::kFinal;
  else
    return false;
  return true;
}
bool ParseStatus(const std::string& s, CheckpointStatus* st) {
  if (s == "pending")
    *st = CheckpointStatus::kPending;
  else if (s == "completed")
    *st = CheckpointStatus::kCompleted;
  else if (s == "stopped")
    *st = CheckpointStatus::kStopped;
  else if (s == "merged")
    *st = CheckpointStatus::kMerged;
  else
    return false;
  return true;
}

// A checkpoint that can be listed, shown, restored and resumed from.
bool Complete(const CheckpointInfo& info) {
  return info.status == CheckpointStatus::kCompleted || info.status == CheckpointStatus::kStopped;
}

constexpr char kInfoColumns[] =
    "id, kind, status, created, events, bytes, duration_ms, alignment_ms, coalesce(parent, 0)";

CheckpointInfo InfoFrom(const Stmt& s) {
  CheckpointInfo i;
  i.id = s.Int(0);
  ParseKind(s.Text(1), &i.kind);
  ParseStatus(s.Text(2), &i.status);
  i.created_ms = s.Int(3);
  i.events = s.Int(4);
  i.bytes = s.Int(5);
  i.duration_ms = s.Int(6);
  i.alignment_ms = s.Int(7);
  i.parent = s.Int(8);
  return i;
}

}  // namespace

const char* CheckpointKindName(CheckpointKind k) {
  switch (k) {
    case CheckpointKind::kCheckpoint:
      return "checkpoint";
    case CheckpointKind::kSavepoint:
      return "savepoint";
    case CheckpointKind::kFinal:
      return "final";
  }
  return "checkpoint";
}

const char* CheckpointStatusName(CheckpointStatus s) {
  switch (s) {
    case CheckpointStatus::kPending:
      return "pending";
    case CheckpointStatus::kCompleted:
      return "completed";
    case CheckpointStatus::kStopped:
      return "stopped";
    case CheckpointStatus::kMerged:
      return "merged";
  }
  return "pending";
}

// ---- state value encoding ----

void EncodeStateValue(const StateValue& value, std::string* out) {
  out->push_back(static_cast<char>(kStateValueVersion));
  PutVarint(value.size(), out);  // the count
  for (const Value& v : value) EncodeValue(v, out);
}

bool DecodeStateValue(std::string_view bytes, StateValue* value) {
  value->clear();
  if (bytes.empty() || static_cast<uint8_t>(bytes[0]) != kStateValueVersion) return false;
  bytes.remove_prefix(1);
  uint64_t n = 0;
  if (!GetVarint(&bytes, &n) || n > bytes.size()) return false;  // every value takes at least one byte
  for (uint64_t i = 0; i < n; ++i) {
    Value v;
    if (!DecodeValue(&bytes, &v)) return false;
    value->push_back(std::move(v));
  }
  return bytes.empty();
}

// ---- CheckpointWriter ----

CheckpointWriter::StateChange& CheckpointWriter::NewChange(std::string_view node,
                                                          std::string_view key, bool tombstone) {
  StateChange& c = state_.emplace_back();
  c.node.assign(node);
  c.key.assign(key);
  c.tombstone = tombstone;
  return c;
}

void CheckpointWriter::PutState(std::string_view node, std::string_view key,
                                const std::string* value) {
  StateChange& c = NewChange(node, key, value == nullptr);
  if (value) c.value = *value;
}

void CheckpointWriter::PutStateValue(std::string_view node, std::string_view key,
                                     const StateValue* value) {
  StateChange& c = NewChange(node, key, value == nullptr);
  if (value) EncodeStateValue(*value, &c.value);  // in place: no temporary string
}

void CheckpointWriter::AddStagedRow(std::string_view node, int64_t seq, std::string row) {
  staged_.push_back(StagedRow{std::string(node), seq, std::move(row)});
}

void CheckpointWriter::SetStats(int64_t events, int64_t duration_ms, int64_t alignment_ms) {
  events_ = events;
  duration_ms_ = duration_ms;
  alignment_ms_ = alignment_ms;
}

Status CheckpointWriter::Commit(CheckpointStatus status) {
  if (committed_) return Status::State("checkpoint " + std::to_string(id_) + " already committed");
  if (status == CheckpointStatus::kPending || status == CheckpointStatus::kMerged ||
      (status == CheckpointStatus::kStopped && kind_ != CheckpointKind::kFinal)) {
    return Status::Invalid(std::string("checkpoint ") + std::to_string(id_) +
                           ": cannot commit with status " + CheckpointStatusName(status));
  }
  Status st = store_->CommitWriter(this, status);
  if (st.ok()) committed_ = true;
  return st;
}

// ---- StateStore ----

Status StateStore::Open(const std::string& path, const std::string& pipeline_name, OpenMode mode,
                        std::unique_ptr<StateStore>* store) {
  store->reset();
  std::unique_ptr<StateStore> s(new StateStore());
  s->path_ = path;
  s->read_only_ = mode.read_only;

  // A writer that may create the file creates its missing folders too (a pipeline's
  // `state: out/x.state.db` on a fresh checkout), before the lock file goes there.
  struct stat existing;
  if (!mode.read_only && mode.create_if_missing && stat(path.c_str(), &existing) != 0) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Status::State("state file " + path + ": cannot create folder '" + parent.string() +
                           "': " + ec.message());
    }
  }
  // The lock comes first for a writer: nobody else may change the file between our
  // inspection and our writes. A file that is plainly not usable (not ours, newer,
  // truncated) is refused before, so no lock file appears beside it; it is inspected
  // again under the lock.
  if (!mode.read_only) {
    bool empty = false;
    int64_t raw_version = 0;
    if (stat(path.c_str(), &existing) == 0) {
      ONCEFLOW_RETURN_IF_ERROR(InspectHeader(path, &empty, &raw_version));
    }
    ONCEFLOW_RETURN_IF_ERROR(s->lock_.Acquire(path + ".lock", path));
  }

  bool create = false;
  int64_t version = 0;     // user_version in the raw header of the main file
  int64_t db_version = 0;  // ... as SQLite sees it (main file + WAL)
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return Status::State("state file " + path + ": " + std::strerror(errno));
    }
    if (mode.read_only || !mode.create_if_missing) {
      return Status::State("state file " + path + " does not exist");
    }
    // Create it ourselves so its mode is 0600 whatever the umask (SQLite would use 0644
    // minus umask); fchmod because O_CREAT's mode is itself filtered by the umask.
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Status::State("state file " + path + ": cannot create: " + std::strerror(errno));
    }
    int rc = fchmod(fd, 0600);
    close(fd);
    if (rc != 0) return Status::State("state file " + path + ": cannot chmod 0600");
    create = true;
  } else {
    bool empty = false;
    ONCEFLOW_RETURN_IF_ERROR(InspectHeader(path, &empty, &version));
    if (empty) {
      if (mode.read_only) return Status::State("state file " + path + " is empty");
      create = true;  // a crash right after creation: initialise it
    }
  }
  // Process-wide, once, and only before SQLite's first use in the process (a later call
  // fails harmlessly): no memory statistics, whose bookkeeping takes a global mutex on
  // every allocation SQLite makes — several per row of a checkpoint.
  static std::once_flag configure;
  std::call_once(configure, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  int flags = mode.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  // NOMUTEX: the store is externally synchronised (store.h), so SQLite's own per-call
  // mutexes only cost time (about a tenth of a large checkpoint's commit).
  if (sqlite3_open_v2(path.c_str(), &s->db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    return SqlError(path, "cannot open", s->db_);
  }
  sqlite3_busy_timeout(s->db_, 5000);
  // Until Open succeeds, closing must not checkpoint a WAL into the main file (SQLite does
  // that when the last connection closes): a refused file stays untouched.
  sqlite3_db_config(s->db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_extended_result_codes(s->db_, 1);
  // Still before any write: a state file of another pipeline is refused untouched.
  if (!create) {
    ONCEFLOW_RETURN_IF_ERROR(CheckMeta(s->db_, path, pipeline_name));
    // The raw header may lag behind a migration committed to the WAL (a crash before the
    // WAL checkpoint that follows it): SQLite's view is the real version.
    ONCEFLOW_RETURN_IF_ERROR(UserVersionOn(s->db_, path, &db_version));
    if (db_version > kSchemaVersion) {
      return Status::State("state file " + path + ": written by a newer onceflow: schema " +
                           std::to_string(db_version) + ", this build reads up to " +
                           std::to_string(kSchemaVersion));
    }
    if (db_version < 1) {
      return Status::State("state file " + path + ": onceflow marker without a schema (version " +
                           std::to_string(db_version) + ")");
    }
    // A read-only store of an older file reads it as it is (no journals in v1).
    s->schema_version_ = static_cast<int>(db_version);
  }

  if (create) {
    // Schema first, in rollback-journal mode and one transaction, then WAL: a crash in
    // between leaves either an empty file or a complete v1 file (see the header).
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA synchronous=FULL"));
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("BEGIN IMMEDIATE"));
    Status m = Migrate(s->db_, path, 0);
    auto put = [&](const char* k, const std::string& v) {
      Stmt q(s->db_, "INSERT INTO meta(k, v) VALUES(?1, ?2)");
      q.Bind(1, k).Bind(2, v);
      return q.Step() == SQLITE_DONE ? Status::Ok() : SqlError(path, "writing meta", s->db_);
    };
    if (m.ok()) m = put("format", kFormatMarker);
    if (m.ok()) m = put("pipeline", pipeline_name);
    if (m.ok()) m = put("fingerprint", "");
    if (m.ok()) m = put("lineage", NewLineageId());
    if (m.ok()) m = put("last_id", "0");
    if (m.ok()) m = put("head", "0");
    if (m.ok()) m = put("line_start", "0");
    if (m.ok()) m = put("created_ms", std::to_string(NowMs()));
    if (!m.ok()) {
      s->Exec("ROLLBACK");
      return m;
    }
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("COMMIT"));
    FsyncDir(path);  // the new directory entry survives a power cut too
  } else if (!mode.read_only && version < kSchemaVersion) {
    // `version` is the raw header's; the WAL may already hold a committed migration (a
    // crash before the WAL checkpoint below), so the migration starts from SQLite's view.
    if (db_version < kSchemaVersion) {
      // One FULL transaction: a crash in it leaves the file at its old version, intact.
      ONCEFLOW_RETURN_IF_ERROR(s->WithTransaction(true, [&] {
        ONCEFLOW_RETURN_IF_ERROR(Migrate(s->db_, path, static_cast<int>(db_version)));
        if (mode.in_migration_hook) mode.in_migration_hook();
        return Status::Ok();
      }));
    }
    s->schema_version_ = kSchemaVersion;
    // Copy the new header into the main file now (see InspectHeader).
    sqlite3_wal_checkpoint_v2(s->db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }

  if (!mode.read_only) {
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA journal_mode=WAL"));
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA synchronous=NORMAL"));
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA wal_autocheckpoint=0"));
    // Statement journals in memory, not in a temporary file: CommitWriter's multi-row
    // INSERTs each need one, and on disk they tripled what an incremental checkpoint wrote.
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA temp_store=MEMORY"));
    ONCEFLOW_RETURN_IF_ERROR(s->Exec("PRAGMA journal_size_limit=67108864"));
    // Checkpoints that began but never committed (a crash mid-checkpoint) are dropped; their
    // ids stay used (last_id is not lowered).
    ONCEFLOW_RETURN_IF_ERROR(s->WithTransaction(false, [&] {
      std::vector<int64_t> pending;
      {
        Stmt q(s->db_, "SELECT id FROM checkpoints WHERE status='pending'");
        int rc;
        while ((rc = q.Step()) == SQLITE_ROW) pending.push_back(q.Int(0));
        if (rc != SQLITE_DONE) return s->Error("listing pending checkpoints");
      }
      for (int64_t id : pending) ONCEFLOW_RETURN_IF_ERROR(DeleteVersionRows(s->db_, path, id));
      const char* const kCleanup[] = {
          "DELETE FROM source_offsets WHERE checkpoint IN"
          " (SELECT id FROM checkpoints WHERE status='pending')",
          "DELETE FROM sink_commits WHERE checkpoint IN"
          " (SELECT id FROM checkpoints WHERE status='pending')",
          "DELETE FROM sink_staging WHERE checkpoint IN"
          " (SELECT id FROM checkpoints WHERE status='pending')",
          "DELETE FROM checkpoints WHERE status='pending'",
      };
      for (const char* sql : kCleanup) ONCEFLOW_RETURN_IF_ERROR(s->Exec(sql));
      return Status::Ok();
    }));
    // A process killed before its kTruncateEvery-th commit never emptied the WAL, and the
    // next one counts from zero again: under frequent crashes (a soak with crash-prob
    // restarting every few seconds) the WAL grew without bound. Empty it at every
    // writable open instead, best effort like the others (WAL POLICY).
    sqlite3_wal_checkpoint_v2(s->db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }

  std::string v;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(s->GetMeta("pipeline", &v, &found));
  s->pipeline_ = v;
  ONCEFLOW_RETURN_IF_ERROR(s->GetMeta("lineage", &v, &found));
  s->lineage_ = v;
  sqlite3_db_config(s->db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
  s->opened_ = true;
  *store = std::move(s);
  return Status::Ok();
}

StateStore::~StateStore() {
  if (db_) {
    // Only a store that opened fully may write on close: a refused file stays untouched.
    if (!read_only_ && opened_) {
      // Leave an empty WAL behind (best effort: skipped when a reader is active).
      sqlite3_exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
    }
    sqlite3_close_v2(db_);
  }
  // After SQLite closed: nobody may write while we still might. A refused file keeps no
  // lock file beside it that this open created.
  if (opened_) {
    lock_.Release();
  } else {
    lock_.RemoveIfCreated();
  }
}

Status StateStore::Exec(const char* sql) { return ExecOn(db_, path_, sql); }

Status StateStore::Error(const std::string& what) const { return SqlError(path_, what, db_); }

Status StateStore::WithTransaction(bool full_sync, const std::function<Status()>& body) {
  if (read_only_) return Status::State("state file " + path_ + " is open read-only");
  // synchronous can only change between transactions; FULL fsyncs the WAL at this COMMIT.
  if (full_sync) ONCEFLOW_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
  Status st = Exec("BEGIN IMMEDIATE");
  if (st.ok()) {
    st = body();
    if (st.ok()) {
      st = Exec("COMMIT");
      if (!st.ok()) Exec("ROLLBACK");
    } else {
      Exec("ROLLBACK");
    }
  }
  if (full_sync) {
    Status back = Exec("PRAGMA synchronous=NORMAL");
    if (st.ok()) st = back;
  }
  return st;
}

Status StateStore::GetMeta(const std::string& key, std::string* value, bool* found) {
  return ReadMetaOn(db_, path_, key, value, found);
}

Status StateStore::PutMeta(const std::string& key, const std::string& value, bool full_sync) {
  return WithTransaction(full_sync, [&] {
    Stmt q(db_, "INSERT INTO meta(k, v) VALUES(?1, ?2) ON CONFLICT(k) DO UPDATE SET v=excluded.v");
    q.Bind(1, key).Bind(2, value);
    return q.Step() == SQLITE_DONE ? Status::Ok() : Error("writing meta " + key);
  });
}

namespace {
Status MetaInt(sqlite3* db, const std::string& path, const char* k, int64_t* v) {
  std::string s;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(ReadMetaOn(db, path, k, &s, &found));
  if (!found) return Status::State("state file " + path + ": meta '" + k + "' missing");
  char* end = nullptr;
  *v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0') {
    return Status::State("state file " + path + ": meta '" + k + "' is not a number");
  }
  return Status::Ok();
}
Status SetMetaOn(sqlite3* db, const std::string& path, const char* k, const std::string& v) {
  Stmt q(db, "INSERT INTO meta(k, v) VALUES(?1, ?2) ON CONFLICT(k) DO UPDATE SET v=excluded.v");
  q.Bind(1, k).Bind(2, v);
  return q.Step() == SQLITE_DONE ? Status::Ok() : SqlError(path, "writing meta", db);
}
}  // namespace

Status StateStore::BeginCheckpoint(CheckpointKind kind, int64_t* id) {
  return WithTransaction(false, [&] {
    int64_t last = 0, head = 0;
    ONCEFLOW_RETURN_IF_ERROR(MetaInt(db_, path_, "last_id", &last));
    ONCEFLOW_RETURN_IF_ERROR(MetaInt(db_, path_, "head", &head));
    int64_t next = last + 1;
    ONCEFLOW_RETURN_IF_ERROR(SetMetaOn(db_, path_, "last_id", std::to_string(next)));
    Stmt q(db_,
           "INSERT INTO checkpoints(id, kind, status, created, parent) VALUES(?1, ?2, 'pending',"
           " ?3, ?4)");
    q.Bind(1, next).Bind(2, CheckpointKindName(kind)).Bind(3, NowMs());
    if (head > 0)
      q.Bind(4, head);
    else
      q.BindNull(4);
    if (q.Step() != SQLITE_DONE) return Error("recording checkpoint");
    *id = next;
    return Status::Ok();
  });
}

Status StateStore::LoadInfo(int64_t id, CheckpointInfo* info, bool* found) {
  std::string sql = std::string("SELECT ") + kInfoColumns + " FROM checkpoints WHERE id=?1";
  Stmt q(db_, sql.c_str());
  q.Bind(1, id);
  int rc = q.Step();
  if (rc == SQLITE_ROW) {
    *info = InfoFrom(q);
    *found = true;
    return Status::Ok();
  }
  if (rc == SQLITE_DONE) {
    *found = false;
    return Status::Ok();
  }
  return Error("reading checkpoint");
}

Status StateStore::NewWriter(int64_t id, std::unique_ptr<CheckpointWriter>* writer) {
  CheckpointInfo info;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &info, &found));
  if (!found || info.status != CheckpointStatus::kPending) {
    return Status::State("state file " + path_ + ": checkpoint " + std::to_string(id) +
                         " is not pending");
  }
  writer->reset(new CheckpointWriter(this, id, info.kind));
  return Status::Ok();
}

Status StateStore::CommitWriter(CheckpointWriter* w, CheckpointStatus status) {
  // Written in (node, key) order: B-tree inserts in order. An order of indexes is sorted
  // rather than the changes themselves (moving three strings per swap cost more than the
  // comparisons), by (node rank, KeyPrefix of the key, key, arrival):
  // most comparisons are integer compares, not two memcmp calls — this sort was a quarter
  // of a 100k-key checkpoint's commit, which at the end of a run nothing overlaps. Ties
  // keep arrival order and keep-last makes a repeated key's last change win.
  const auto& changes = w->state_;
  std::vector<std::string_view> nodes;
  for (const auto& c : changes) {
    if (nodes.empty() || nodes.back() != c.node) nodes.push_back(c.node);
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  struct Ord {
    uint32_t rank;
    uint32_t index;
    uint64_t prefix;
  };
  std::vector<Ord> ord;
  ord.reserve(changes.size());
  uint32_t rank = 0;
  for (uint32_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    if (i == 0 || changes[i - 1].node != c.node) {
      rank = static_cast<uint32_t>(std::lower_bound(nodes.begin(), nodes.end(), c.node) -
                                   nodes.begin());
    }
    ord.push_back({rank, i, KeyPrefix(c.key)});
  }
  std::sort(ord.begin(), ord.end(), [&](const Ord& a, const Ord& b) {
    if (a.rank != b.rank) return a.rank < b.rank;
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    const int k = changes[a.index].key.compare(changes[b.index].key);
    return k != 0 ? k < 0 : a.index < b.index;
  });
  std::vector<uint32_t> order(ord.size());
  for (size_t i = 0; i < ord.size(); ++i) order[i] = ord[i].index;
  ord = {};
  Status st = WithTransaction(true, [&] {
    CheckpointInfo info;
    bool found = false;
    ONCEFLOW_RETURN_IF_ERROR(LoadInfo(w->id_, &info, &found));
    if (!found || info.status != CheckpointStatus::kPending) {
      return Status::State("state file " + path_ + ": checkpoint " + std::to_string(w->id_) +
                           " is not pending (deleted, or cleaned up by a later open)");
    }
    int64_t bytes = 0;
    {
      // kRowsPerInsert rows per statement: SQLite's cost per executed statement (step,
      // reset, program start) was a third of a row's; the last rows go one at a time.
      // Bound without copies (the changes outlive the statements); the version once.
      static const std::string kInsertMany = [] {
        std::string sql = "INSERT OR REPLACE INTO state(node, key, version, value) VALUES";
        for (int r = 0; r < kRowsPerInsert; ++r) {
          const int p = 4 * r;
          sql += (r ? ",(?" : "(?") + std::to_string(p + 1) + ",?" + std::to_string(p + 2) +
                 ",?" + std::to_string(p + 3) + ",?" + std::to_string(p + 4) + ")";
        }
        return sql;
      }();
      Stmt many(db_, kInsertMany.c_str());
      Stmt one(db_, "INSERT OR REPLACE INTO state(node, key, version, value) VALUES(?1,?2,?3,?4)");
      if (!many.ok() || !one.ok()) return Error("preparing state insert");
      for (int r = 0; r < kRowsPerInsert; ++r) many.Bind(4 * r + 3, w->id_);
      one.Bind(3, w->id_);
      auto bind = [](Stmt& st, int first, const CheckpointWriter::StateChange& c) {
        st.BindStatic(first, c.node).BindBlobStatic(first + 1, c.key);
        if (c.tombstone)
          st.BindNull(first + 3);
        else
          st.BindBlobStatic(first + 3, c.value);
      };
      const CheckpointWriter::StateChange* pending[kRowsPerInsert];
      int held = 0;
      KeyListWriter listed(db_, path_, w->id_);
      for (size_t i = 0; i < order.size(); ++i) {
        // The changes are visited in key order, not where they lie: load a few ahead.
        if (i + kCommitPrefetch < order.size()) {
          const auto* ahead = reinterpret_cast<const char*>(&changes[order[i + kCommitPrefetch]]);
          PrefetchLine(ahead);
          PrefetchLine(ahead + sizeof(changes[0]) - 1);
        }
        const auto& c = changes[order[i]];
        if (i + 1 < order.size()) {
          const auto& next = changes[order[i + 1]];
          if (next.node == c.node && next.key == c.key) continue;  // a later change wins
        }
        pending[held++] = &c;
        if (held == kRowsPerInsert) {
          for (int r = 0; r < kRowsPerInsert; ++r) bind(many, 4 * r + 1, *pending[r]);
          if (many.Step() != SQLITE_DONE) return Error("writing state");
          many.Rewind();
          held = 0;
        }
        ONCEFLOW_RETURN_IF_ERROR(listed.Add(c.node, c.key));
        bytes += static_cast<int64_t>(c.key.size() + c.value.size());
      }
      for (int r = 0; r < held; ++r) {
        bind(one, 1, *pending[r]);
        if (one.Step() != SQLITE_DONE) return Error("writing state");
        one.Rewind();
      }
      ONCEFLOW_RETURN_IF_ERROR(listed.Finish());
    }
    {
      Stmt ins(db_,
               "INSERT OR REPLACE INTO source_offsets(checkpoint, node, instance, name, offset,"
               " count) VALUES(?1,?2,?3,?4,?5,?6)");
      for (const auto& o : w->sources_) {
        ins.Bind(1, w->id_).Bind(2, o.node).Bind(3, o.instance).Bind(4, o.name);
        ins.Bind(5, o.offset).Bind(6, o.count);
        if (ins.Step() != SQLITE_DONE) return Error("writing source offsets");
        ins.Reset();
      }
    }
    {
      Stmt ins(db_,
               "INSERT OR REPLACE INTO sink_commits(checkpoint, node, instance, path, length,"
               " epoch) VALUES(?1,?2,?3,?4,?5,?6)");
      for (const auto& c : w->sinks_) {
        ins.Bind(1, w->id_).Bind(2, c.node).Bind(3, c.instance).Bind(4, c.path);
        ins.Bind(5, c.length).Bind(6, c.epoch);
        if (ins.Step() != SQLITE_DONE) return Error("writing sink commits");
        ins.Reset();
      }
    }
    {
      Stmt ins(
          db_,
          "INSERT OR REPLACE INTO sink_staging(checkpoint, node, seq, row) VALUES(?1,?2,?3,?4)");
      for (const auto& r : w->staged_) {
        ins.Bind(1, w->id_).Bind(2, r.node).Bind(3, r.seq).BindBlob(4, r.row);
        if (ins.Step() != SQLITE_DONE) return Error("writing staged rows");
        ins.Reset();
        bytes += static_cast<int64_t>(r.row.size());
      }
    }
    int64_t duration = w->duration_ms_ >= 0 ? w->duration_ms_ : NowMs() - info.created_ms;
    Stmt up(db_,
            "UPDATE checkpoints SET status=?2, events=?3, bytes=?4, duration_ms=?5,"
            " alignment_ms=?6 WHERE id=?1");
    up.Bind(1, w->id_).Bind(2, StatusSql(status)).Bind(3, w->events_).Bind(4, bytes);
    up.Bind(5, duration).Bind(6, w->alignment_ms_);
    if (up.Step() != SQLITE_DONE) return Error("completing checkpoint");
    // The head moves only forward along the line this checkpoint began on: if a StartLine
    // moved the head elsewhere meanwhile, that line wins (the checkpoint stays restorable).
    int64_t head = 0;
    ONCEFLOW_RETURN_IF_ERROR(MetaInt(db_, path_, "head", &head));
    if (head == info.parent) {
      ONCEFLOW_RETURN_IF_ERROR(SetMetaOn(db_, path_, "head", std::to_string(w->id_)));
    }
    w->bytes_written_ = bytes;
    if (w->in_txn_hook_) w->in_txn_hook_();
    return Status::Ok();
  });
  if (!st.ok()) return st;
  struct stat wal;
  const bool wal_big = ::stat((path_ + "-wal").c_str(), &wal) == 0 && wal.st_size > kWalCheckpointBytes;
  if (++commits_since_truncate_ >= kTruncateEvery || wal_big) {
    commits_since_truncate_ = 0;
    // Best effort: SQLITE_BUSY (a reader) just postpones it to the next round.
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }
  return Status::Ok();
}

Status StateStore::LatestCompleted(int64_t* id) { return MetaInt(db_, path_, "head", id); }

Status StateStore::List(std::vector<CheckpointInfo>* out) {
  out->clear();
  std::string sql = std::string("SELECT ") + kInfoColumns +
                    " FROM checkpoints WHERE status IN ('completed', 'stopped') ORDER BY id";
  Stmt q(db_, sql.c_str());
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out->push_back(InfoFrom(q));
  return rc == SQLITE_DONE ? Status::Ok() : Error("listing checkpoints");
}

Status StateStore::Line(int64_t id, std::vector<int64_t>* ids) {
  ids->clear();
  Stmt q(db_, "SELECT coalesce(parent, 0) FROM checkpoints WHERE id=?1");
  int64_t cur = id;
  while (cur > 0) {
    ids->push_back(cur);
    q.Bind(1, cur);
    int rc = q.Step();
    if (rc != SQLITE_ROW) {
      return rc == SQLITE_DONE ? Status::State("state file " + path_ + ": checkpoint " +
                                               std::to_string(cur) + " is missing from the line")
                               : Error("reading the line of history");
    }
    int64_t parent = q.Int(0);
    q.Reset();
    if (parent >= cur) return Status::State("state file " + path_ + ": corrupt line of history");
    cur = parent;
  }
  std::sort(ids->begin(), ids->end());
  return Status::Ok();
}

namespace {
// The newest-version-on-the-line scan shared by RestoreState, Show and Get: rows arrive
// ordered by (node, key, version); for each (node, key) the last row whose version is on
// the line wins.
class LineScan {
 public:
  explicit LineScan(const std::vector<int64_t>* line) : line_(line) {}
  bool OnLine(int64_t v) const { return std::binary_search(line_->begin(), line_->end(), v); }

 private:
  const std::vector<int64_t>* line_;
};
}  // namespace

Status StateStore::RestoreState(
    int64_t id, const std::string& node,
    const std::function<Status(std::string_view key, std::string_view value)>& fn) {
  CheckpointInfo info;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &info, &found));
  if (!found || !Complete(info)) {
    return Status::State("state file " + path_ + ": no complete checkpoint " + std::to_string(id));
  }
  std::vector<int64_t> line;
  ONCEFLOW_RETURN_IF_ERROR(Line(id, &line));
  LineScan scan(&line);
  // Ordered by the primary key (node, key, version): no sort, one pass.
  Stmt q(db_,
         "SELECT key, version, value FROM state WHERE node=?1 AND version<=?2"
         " ORDER BY key, version");
  q.Bind(1, node).Bind(2, id);
  std::string cur_key, cur_value;
  bool have = false, live = false;
  auto flush = [&]() -> Status {
    if (have && live) return fn(cur_key, cur_value);
    return Status::Ok();
  };
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    if (!scan.OnLine(q.Int(1))) continue;
    std::string_view key = q.Blob(0);
    if (!have || key != cur_key) {
      ONCEFLOW_RETURN_IF_ERROR(flush());
      cur_key.assign(key);
      have = true;
    }
    live = !q.IsNull(2);
    if (live)
      cur_value.assign(q.Blob(2));
    else
      cur_value.clear();
  }
  if (rc != SQLITE_DONE) return Error("reading state");
  return flush();
}

Status StateStore::Show(int64_t id, CheckpointDetail* out) {
  *out = CheckpointDetail();
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &out->info, &found));
  if (!found || !Complete(out->info)) {
    return Status::State("state file " + path_ + ": no checkpoint " + std::to_string(id));
  }
  std::vector<std::string> nodes;
  {
    Stmt q(db_, "SELECT DISTINCT node FROM state WHERE version<=?1 ORDER BY node");
    q.Bind(1, id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) nodes.push_back(q.Text(0));
    if (rc != SQLITE_DONE) return Error("reading state nodes");
  }
  for (const auto& n : nodes) {
    NodeStateStats stats;
    stats.node = n;
    ONCEFLOW_RETURN_IF_ERROR(RestoreState(id, n, [&](std::string_view k, std::string_view v) {
      stats.keys++;
      stats.bytes += static_cast<int64_t>(k.size() + v.size());
      return Status::Ok();
    }));
    if (stats.keys > 0) out->state.push_back(stats);
  }
  ONCEFLOW_RETURN_IF_ERROR(SourceOffsets(id, &out->sources));
  return SinkCommits(id, &out->sinks);
}

Status StateStore::SourceOffsets(int64_t id, std::vector<SourceOffset>* out) {
  out->clear();
  Stmt q(db_,
         "SELECT node, instance, name, offset, count FROM source_offsets WHERE checkpoint=?1"
         " ORDER BY node, instance, name");
  q.Bind(1, id);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    SourceOffset o;
    o.node = q.Text(0);
    o.instance = static_cast<int>(q.Int(1));
    o.name = q.Text(2);
    o.offset = q.Int(3);
    o.count = q.Int(4);
    out->push_back(std::move(o));
  }
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading source offsets");
}

Status StateStore::SinkCommits(int64_t id, std::vector<SinkCommit>* out) {
  return ReadSinkCommits(
      "SELECT node, instance, path, length, epoch FROM sink_commits WHERE checkpoint=?1"
      " ORDER BY node, instance, path",
      [id](Stmt& q) { q.Bind(1, id); }, "reading sink commits", out);
}

Status StateStore::ReadSinkCommits(const char* sql, const std::function<void(Stmt&)>& bind,
                                   const char* what, std::vector<SinkCommit>* out) {
  out->clear();
  Stmt q(db_, sql);
  bind(q);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    SinkCommit c;
    c.node = q.Text(0);
    c.instance = static_cast<int>(q.Int(1));
    c.path = q.Text(2);
    c.length = q.Int(3);
    c.epoch = q.Int(4);
    out->push_back(std::move(c));
  }
  return rc == SQLITE_DONE ? Status::Ok() : Error(what);
}

Status StateStore::StagedRows(int64_t id, const std::string& node,
                              const std::function<Status(int64_t, std::string_view)>& fn) {
  Stmt q(db_, "SELECT seq, row FROM sink_staging WHERE checkpoint=?1 AND node=?2 ORDER BY seq");
  q.Bind(1, id).Bind(2, node);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) ONCEFLOW_RETURN_IF_ERROR(fn(q.Int(0), q.Blob(1)));
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading staged rows");
}

Status StateStore::DeleteStagedRows(int64_t id, const std::string& node) {
  return WithTransaction(false, [&] {
    Stmt q(db_, "DELETE FROM sink_staging WHERE checkpoint=?1 AND node=?2");
    q.Bind(1, id).Bind(2, node);
    return q.Step() == SQLITE_DONE ? Status::Ok() : Error("deleting staged rows");
  });
}

Status StateStore::StagedEpochs(std::vector<std::pair<int64_t, std::string>>* out) {
  out->clear();
  Stmt q(db_, "SELECT DISTINCT checkpoint, node FROM sink_staging ORDER BY checkpoint, node");
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out->emplace_back(q.Int(0), q.Text(1));
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading staged epochs");
}

Status StateStore::Get(const std::string& node, std::string_view key, int64_t id,
                       std::string* value, bool* found) {
  *found = false;
  if (id == 0) {
    ONCEFLOW_RETURN_IF_ERROR(LatestCompleted(&id));
    if (id == 0) return Status::State("state file " + path_ + ": no complete checkpoint");
  }
  CheckpointInfo info;
  bool exists = false;
  ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &info, &exists));
  if (!exists || !Complete(info)) {
    return Status::State("state file " + path_ + ": no checkpoint " + std::to_string(id));
  }
  std::vector<int64_t> line;
  ONCEFLOW_RETURN_IF_ERROR(Line(id, &line));
  LineScan scan(&line);
  Stmt q(db_,
         "SELECT version, value FROM state WHERE node=?1 AND key=?2 AND version<=?3"
         " ORDER BY version DESC");
  q.Bind(1, node).BindBlob(2, key).Bind(3, id);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    if (!scan.OnLine(q.Int(0))) continue;
    if (!q.IsNull(1)) {
      value->assign(q.Blob(1));
      *found = true;
    }
    return Status::Ok();
  }
  return rc == SQLITE_DONE ? Status::Ok() : Error("reading state");
}

// Deletes checkpoint `id` inside the caller's transaction. Its state rows are what its
// descendants see for keys they did not change since, so before they go each child gets a
// copy of every row it does not override (INSERT OR IGNORE keeps the child's own row),
// and the child is re-parented to id's parent. Every remaining checkpoint's line then
// yields exactly the same newest versions as before (tombstones included — dropping a
// tombstone would bring an erased key, e.g. a closed window, back to life). A child that
// becomes the first of its line drops its tombstones: nothing older can be hidden there.
Status StateStore::DeleteLocked(int64_t id) {
  CheckpointInfo info;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &info, &found));
  if (!found || info.status == CheckpointStatus::kMerged) {
    return Status::State("state file " + path_ + ": no checkpoint " + std::to_string(id));
  }
  std::vector<int64_t> children;
  {
    Stmt q(db_, "SELECT id FROM checkpoints WHERE parent=?1 ORDER BY id");
    q.Bind(1, id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) children.push_back(q.Int(0));
    if (rc != SQLITE_DONE) return Error("reading children");
  }
  if (children.size() == 1 && info.status != CheckpointStatus::kPending) {
    return MergeLocked(info, children[0]);
  }
  for (int64_t child : children) {
    Stmt copy(db_,
              "INSERT OR IGNORE INTO state(node, key, version, value)"
              " SELECT node, key, ?4, value FROM state WHERE node=?1 AND key=?2 AND version=?3");
    copy.Bind(3, id).Bind(4, child);
    KeyListWriter listed(db_, path_, child);
    ONCEFLOW_RETURN_IF_ERROR(
        ForEachListedKey(db_, path_, id, [&](std::string_view node, std::string_view key) {
          copy.BindStatic(1, node).BindBlobStatic(2, key);
          if (copy.Step() != SQLITE_DONE) return Error("handing state down");
          copy.Rewind();
          return sqlite3_changes(db_) > 0 ? listed.Add(node, key) : Status::Ok();
        }));
    ONCEFLOW_RETURN_IF_ERROR(listed.Finish());
    Stmt rep(db_, "UPDATE checkpoints SET parent=?2 WHERE id=?1");
    rep.Bind(1, child);
    if (info.parent > 0)
      rep.Bind(2, info.parent);
    else
      rep.BindNull(2);
    if (rep.Step() != SQLITE_DONE) return Error("re-parenting");
    if (info.parent == 0) {
      Stmt drop(db_,
                "DELETE FROM state WHERE node=?1 AND key=?2 AND version=?3 AND value IS NULL");
      drop.Bind(3, child);
      ONCEFLOW_RETURN_IF_ERROR(
          ForEachListedKey(db_, path_, child, [&](std::string_view node, std::string_view key) {
            drop.BindStatic(1, node).BindBlobStatic(2, key);
            if (drop.Step() != SQLITE_DONE) return Error("dropping tombstones");
            drop.Rewind();
            return Status::Ok();
          }));
    }
  }
  ONCEFLOW_RETURN_IF_ERROR(DeleteVersionRows(db_, path_, id));
  const char* const kDeletes[] = {
      "DELETE FROM source_offsets WHERE checkpoint=?1",
      "DELETE FROM sink_commits WHERE checkpoint=?1",
      "DELETE FROM sink_staging WHERE checkpoint=?1",
      "DELETE FROM checkpoints WHERE id=?1",
  };
  for (const char* sql : kDeletes) {
    Stmt d(db_, sql);
    d.Bind(1, id);
    if (d.Step() != SQLITE_DONE) return Error("deleting checkpoint");
  }
  return children.empty() ? DropOrphanedMerged(info.parent) : Status::Ok();
}

// Deletes checkpoint info.id, whose only child is `child`, by keeping it as a merged base
// of the child's line (its offsets and commits go; its state rows stay, reachable only
// through the child). Superseded base rows — a key's rows in the merged chain below a
// newer row in the chain or in the child — cost space, not correctness, so they are
// compacted away once every kCompactAfter merges, in one pass driven by the keys that the
// members merged since the last pass and the child wrote (older members were compacted
// among themselves already): the deletes then cluster on pages (one pass per
// kCompactAfter prunes touches each page about once, where a pass per prune would dirty
// nearly as many pages every time), and the work stays proportional to the changes.
Status StateStore::MergeLocked(const CheckpointInfo& info, int64_t child) {
  constexpr size_t kCompactAfter = 8;
  std::vector<int64_t> chain = {info.id};  // newest first
  for (int64_t p = info.parent; p > 0;) {
    CheckpointInfo pi;
    bool found = false;
    ONCEFLOW_RETURN_IF_ERROR(LoadInfo(p, &pi, &found));
    if (!found || pi.status != CheckpointStatus::kMerged) break;
    chain.push_back(p);
    p = pi.parent;
  }
  if (chain.size() % kCompactAfter == 0) {
    std::set<int64_t> versions(chain.begin(), chain.end());
    versions.insert(child);
    // Never the chain's oldest member: only newer rows supersede its rows.
    std::vector<int64_t> recent(chain.begin(),
                                chain.begin() + std::min(kCompactAfter, chain.size() - 1));
    recent.push_back(child);
    // Keys the recent members and the child wrote.
    std::vector<std::pair<std::string, std::string>> keys;
    for (int64_t v : recent) {
      ONCEFLOW_RETURN_IF_ERROR(
          ForEachListedKey(db_, path_, v, [&](std::string_view node, std::string_view key) {
            keys.emplace_back(node, key);
            return Status::Ok();
          }));
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    // All versions of one key are adjacent in the primary key (node, key, version): a
    // short range scan per key; every row of the chain but the newest one goes.
    Stmt rows(db_, "SELECT version FROM state WHERE node=?1 AND key=?2 AND version<=?3");
    Stmt del(db_, "DELETE FROM state WHERE node=?1 AND key=?2 AND version=?3");
    std::vector<int64_t> found;
    for (const auto& [node, key] : keys) {
      found.clear();
      rows.Bind(1, node).BindBlob(2, key).Bind(3, child);
      int rc;
      while ((rc = rows.Step()) == SQLITE_ROW) {
        if (versions.count(rows.Int(0))) found.push_back(rows.Int(0));
      }
      rows.Reset();
      if (rc != SQLITE_DONE) return Error("reading state");
      if (found.size() < 2) continue;
      std::sort(found.begin(), found.end());
      found.pop_back();  // the newest stays
      for (int64_t v : found) {
        del.Bind(1, node).BindBlob(2, key).Bind(3, v);
        if (del.Step() != SQLITE_DONE) return Error("compacting state");
        del.Reset();
      }
    }
  }
  const char* const kMerges[] = {
      "DELETE FROM source_offsets WHERE checkpoint=?1",
      "DELETE FROM sink_commits WHERE checkpoint=?1",
      "DELETE FROM sink_staging WHERE checkpoint=?1",
      "UPDATE checkpoints SET status='merged' WHERE id=?1",
  };
  for (const char* sql : kMerges) {
    Stmt d(db_, sql);
    d.Bind(1, info.id);
    if (d.Step() != SQLITE_DONE) return Error("merging checkpoint");
  }
  return Status::Ok();
}

// Deletes merged checkpoint `id` and its rows when nothing descends from it any more (its
// last child was deleted), then its parent likewise.
Status StateStore::DropOrphanedMerged(int64_t id) {
  while (id > 0) {
    CheckpointInfo info;
    bool found = false;
    ONCEFLOW_RETURN_IF_ERROR(LoadInfo(id, &info, &found));
    if (!found || info.status != CheckpointStatus::kMerged) return Status::Ok();
    Stmt q(db_, "SELECT count(*) FROM checkpoints WHERE parent=?1");
    q.Bind(1, id);
    if (q.Step() != SQLITE_ROW) return Error("reading children");
    if (q.Int(0) > 0) return Status::Ok();
    ONCEFLOW_RETURN_IF_ERROR(DeleteVersionRows(db_, path_, id));
    Stmt d(db_, "DELETE FROM checkpoints WHERE id=?1");
    d.Bind(1, id);
    if (d.Step() != SQLITE_DONE) return Error("deleting a merged checkpoint");
    id = info.parent;
  }
  return Status::Ok();
}

Status StateStore::Delete(int64_t id) {
  return WithTransaction(false, [&] {
    int64_t head = 0;
    ONCEFLOW_RETURN_IF_ERROR(MetaInt(db_, path_, "head", &head));
    if (id == head) {
      return Status::State("state file " + path_ + ": checkpoint " + std::to_string(id) +
                           " is the latest complete checkpoint (the next run resumes from it);"
                           " use --fresh or --from-checkpoint to leave it");
    }
    ONCEFLOW_RETURN_IF_ERROR(DeleteLocked(id));
    return PruneJournalsLocked(nullptr);
  });
}

Status StateStore::Prune(int keep, int* deleted) {
  if (deleted) *deleted = 0;
  if (keep < 1) return Status::Invalid("prune: --keep must be at least 1");
  return WithTransaction(false, [&] {
    int64_t head = 0;
    ONCEFLOW_RETURN_IF_ERROR(MetaInt(db_, path_, "head", &head));
    std::vector<int64_t> victims;
    {
      Stmt q(db_,
             "SELECT id FROM checkpoints WHERE status IN ('completed', 'stopped') AND kind != 'savepoint'"
             " ORDER BY id DESC");
      int rc, n = 0;
      while ((rc = q.Step()) == SQLITE_ROW) {
        int64_t id = q.Int(0);
        if (n++ >= keep && id != head) victims.push_back(id);
      }
      if (rc != SQLITE_DONE) return Error("listing checkpoints");
    }
    // Oldest first: each deletion hands its rows one step down the line.
    std::sort(victims.begin(), victims.end());
    for (int64_t id : victims) ONCEFLOW_RETURN_IF_ERROR(DeleteLocked(id));
    if (deleted) *deleted = static_cast<int>(victims.size());
    return PruneJournalsLocked(nullptr);
  });
}

Status StateStore::Fresh() {
  std::string lineage = NewLineageId();
  Status st = WithTransaction(true, [&] {
    const char* const kDeletes[] = {
        "DELETE FROM state",        "DELETE FROM source_offsets", "DELETE FROM sink_commits",
        "DELETE FROM sink_staging", "DELETE FROM checkpoints",
    };
    for (const char* sql : kDeletes) ONCEFLOW_RETURN_IF_ERROR(Exec(sql));
    if (schema_version_ >= 2) ONCEFLOW_RETURN_IF_ERROR(Exec("DELETE FROM journal"));
    if (schema_version_ >= 4) ONCEFLOW_RETURN_IF_ERROR(Exec("DELETE FROM state_keys"));
    if (schema_version_ >= 3) {
      for (const char* t : {"dedup_channels", "dedup_outbox", "dedup_changes", "dedup_state",
                            "dedup_sinks"}) {
        ONCEFLOW_RETURN_IF_ERROR(Exec(("DELETE FROM " + std::string(t)).c_str()));
      }
    }
    // last_id stays: ids are never reused.
    ONCEFLOW_RETURN_IF_ERROR(SetMetaOn(db_, path_, "lineage", lineage));
    ONCEFLOW_RETURN_IF_ERROR(SetMetaOn(db_, path_, "head", "0"));
    return SetMetaOn(db_, path_, "line_start", "0");
  });
  if (st.ok()) lineage_ = lineage;
  return st;
}

Status StateStore::StartLine(int64_t from_id) {
  return WithTransaction(true, [&] {
    if (from_id != 0) {
      CheckpointInfo info;
      bool found = false;
      ONCEFLOW_RETURN_IF_ERROR(LoadInfo(from_id, &info, &found));
      if (!found || !Complete(info)) {
        return Status::State("state file " + path_ + ": no complete checkpoint " +
                             std::to_string(from_id));
      }
    }
    ONCEFLOW_RETURN_IF_ERROR(SetMetaOn(db_, path_, "head", std::to_string(from_id)));
    return SetMetaOn(db_, path_, "line_start", std::to_string(from_id));
  });
}

// ---- source journals ----

Status StateStore::JournalSize(const std::string& node, int instance, uint64_t* size) {
  *size = 0;
  if (schema_version_ < 2) return Status::Ok();  // a v1 file opened read-only
  Stmt q(db_,
         "SELECT offset + length(data) FROM journal WHERE node=?1 AND instance=?2"
         " ORDER BY offset DESC LIMIT 1");
  q.Bind(1, node).Bind(2, int64_t{instance});
  int rc = q.Step();
  if (rc == SQLITE_ROW) *size = static_cast<uint64_t>(q.Int(0));
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? Status::Ok() : Error("reading journal size");
}

Status StateStore::JournalAppend(const std::string& node, int instance, uint64_t offset,
                                 std::string_view bytes) {
  if (bytes.empty()) return Status::Ok();
  return WithTransaction(false, [&] {
    uint64_t size = 0;
    ONCEFLOW_RETURN_IF_ERROR(JournalSize(node, instance, &size));
    if (offset != size) {
      return Status::State("state file " + path_ + ": journal of " + node + "[" +
                           std::to_string(instance) + "] ends at byte " + std::to_string(size) +
                           ", cannot append at " + std::to_string(offset));
    }
    Stmt ins(db_, "INSERT INTO journal(node, instance, offset, data) VALUES(?1,?2,?3,?4)");
    ins.Bind(1, node).Bind(2, int64_t{instance}).Bind(3, static_cast<int64_t>(offset));
    ins.BindBlob(4, bytes);
    return ins.Step() == SQLITE_DONE ? Status::Ok() : Error("appending to the journal");
  });
}

Status StateStore::JournalRead(const std::string& node, int instance, uint64_t offset, size_t max,
                               std::string* out) {
  out->clear();
  uint64_t size = 0;
  ONCEFLOW_RETURN_IF_ERROR(JournalSize(node, instance, &size));
  if (offset >= size || max == 0) return Status::Ok();
  auto pruned = [&] {
    return Status::State("state file " + path_ + ": journal of " + node + "[" +
                         std::to_string(instance) + "] no longer holds byte " +
                         std::to_string(offset) + " (pruned with the checkpoints that needed it)");
  };
  // The chunk holding `offset` is the last one starting at or before it; then the chunks
  // after it, as long as they are contiguous.
  Stmt first(db_, "SELECT max(offset) FROM journal WHERE node=?1 AND instance=?2 AND offset<=?3");
  first.Bind(1, node).Bind(2, int64_t{instance}).Bind(3, static_cast<int64_t>(offset));
  if (first.Step() != SQLITE_ROW) return Error("reading the journal");
  if (first.IsNull(0)) return pruned();
  int64_t start = first.Int(0);
  Stmt q(db_,
         "SELECT offset, data FROM journal WHERE node=?1 AND instance=?2 AND offset>=?3"
         " ORDER BY offset");
  q.Bind(1, node).Bind(2, int64_t{instance}).Bind(3, start);
  uint64_t expect = static_cast<uint64_t>(start);
  int rc = SQLITE_DONE;
  while (out->size() < max) {
    rc = q.Step();
    if (rc != SQLITE_ROW) break;
    uint64_t at = static_cast<uint64_t>(q.Int(0));
    if (at != expect) break;  // a gap: pruned (cannot happen after the first chunk)
    std::string_view data = q.Blob(1);
    expect = at + data.size();
    if (expect <= offset) continue;  // the chunk before a pruned gap
    if (at < offset) data.remove_prefix(static_cast<size_t>(offset - at));
    out->append(data.substr(0, max - out->size()));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("reading the journal");
  if (out->empty()) return pruned();
  return Status::Ok();
}

Status StateStore::PruneJournals(int64_t* dropped_bytes) {
  return WithTransaction(false, [&] { return PruneJournalsLocked(dropped_bytes); });
}

Status StateStore::DedupPruneJournals(const std::map<std::pair<std::string, int>, int64_t>& needs) {
  return WithTransaction(false, [&] { return PruneJournalsLocked(nullptr, &needs); });
}

Status StateStore::PruneJournalsLocked(int64_t* dropped_bytes,
                                       const std::map<std::pair<std::string, int>, int64_t>* needs) {
  if (dropped_bytes) *dropped_bytes = 0;
  if (schema_version_ < 2) return Status::Ok();
  std::vector<std::pair<std::string, int64_t>> journals;
  {
    Stmt q(db_, "SELECT DISTINCT node, instance FROM journal ORDER BY node, instance");
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) journals.emplace_back(q.Text(0), q.Int(1));
    if (rc != SQLITE_DONE) return Error("listing journals");
  }
  for (const auto& [node, instance] : journals) {
    // The oldest position any complete checkpoint (of any line) may resume this source from.
    Stmt need(db_,
              "SELECT min(o.offset) FROM source_offsets o JOIN checkpoints c ON c.id=o.checkpoint"
              " WHERE o.node=?1 AND o.instance=?2 AND c.status!='pending'");
    need.Bind(1, node).Bind(2, instance);
    if (need.Step() != SQLITE_ROW) return Error("reading source offsets");
    // Dedup mode: the lowest position its consumers committed is needed too (and without
    // it, nothing may go).
    const std::map<std::pair<std::string, int>, int64_t>::const_iterator dedup =
        needs != nullptr ? needs->find({node, static_cast<int>(instance)})
                         : std::map<std::pair<std::string, int>, int64_t>::const_iterator();
    if (needs != nullptr && dedup == needs->end()) continue;
    int64_t needed = 0;
    if (need.IsNull(0)) {
      if (needs == nullptr) continue;  // no checkpoint yet: a resume replays the whole journal
      needed = dedup->second;
    } else {
      needed = needs != nullptr ? std::min(need.Int(0), dedup->second) : need.Int(0);
    }
    // Chunks before the one holding that offset end at or before it.
    Stmt holder(db_,
                "SELECT max(offset) FROM journal WHERE node=?1 AND instance=?2 AND offset<=?3");
    holder.Bind(1, node).Bind(2, instance).Bind(3, needed);
    if (holder.Step() != SQLITE_ROW) return Error("reading the journal");
    if (holder.IsNull(0)) continue;
    int64_t keep_from = holder.Int(0);
    if (dropped_bytes) {
      Stmt sum(db_,
               "SELECT coalesce(sum(length(data)), 0) FROM journal WHERE node=?1 AND"
               " instance=?2 AND offset>0 AND offset<?3");
      sum.Bind(1, node).Bind(2, instance).Bind(3, keep_from);
      if (sum.Step() != SQLITE_ROW) return Error("reading the journal");
      *dropped_bytes += sum.Int(0);
    }
    // The first chunk (offset 0) stays: it holds a csv stream's header.
    Stmt del(db_, "DELETE FROM journal WHERE node=?1 AND instance=?2 AND offset>0 AND offset<?3");
    del.Bind(1, node).Bind(2, instance).Bind(3, keep_from);
    if (del.Step() != SQLITE_DONE) return Error("pruning the journal");
  }
  return Status::Ok();
}

}  // namespace onceflow

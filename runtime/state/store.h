// StateStore: the one SQLite file that holds everything durable about a pipeline's runs —
// checkpoints, versioned keyed state, source offsets, sink pre-commits, staged sink rows
// and the journals of sources that cannot rewind (`stdin`). The on-disk format (table by
// table) and what a crash at any point leaves behind are documented at the top of store.cc.
//
// Model:
//   - A checkpoint has an id that is never reused (a high-water mark survives Delete and
//     Fresh). BeginCheckpoint allocates it and records it `pending`; a CheckpointWriter
//     collects what the checkpoint holds and Commit() writes it all in one transaction,
//     committed with synchronous=FULL, which also marks it complete. A checkpoint that
//     never committed stays pending and is ignored, then removed by the next writable Open.
//   - Keyed state is stored per node (not per instance) by (key, version = id of the
//     checkpoint that wrote it); a NULL value is a tombstone. A checkpoint writes only the
//     keys that changed, and the state at checkpoint C is, for each key, the newest version
//     on C's line of history (C and its ancestors through `parent`), unless a tombstone.
//   - Lines of history: the store keeps a head (the newest complete checkpoint of the
//     current line). A new checkpoint's parent is the head; Commit moves the head to it.
//     StartLine(ID) durably moves the head back to ID (a replay with --from-checkpoint), so
//     `latest` then means the newest checkpoint of the replay's line.
//   - `final` checkpoints commit with status `completed` (every source ended) or `stopped`
//     (signal, --max-events, --duration); both are complete, restorable checkpoints.
//   - Journals: per source (node, instance), the bytes of a stream that cannot be rewound,
//     appended before they are decoded (runtime/state/journal.h wraps them as a
//     SourceJournal). Offsets count bytes of the whole stream across runs. Journal bytes
//     wholly before the smallest offset any complete checkpoint recorded for that source
//     are dropped by Prune and Delete (see PruneJournals).
//
// Locking: a writable store holds an exclusive fcntl lock on `<state>.lock` (see
// file_lock.h) for its whole life; a second writer (another process) is refused with
// Status::State naming the holder's pid. Read-only stores take no lock: SQLite's WAL lets
// them read the last committed snapshot while a run writes, so `checkpoints list` and
// `state get` work during a run.
//
// Threading: a StateStore and its writers are externally synchronised — one thread at a
// time (during a run, the snapshot guarantee's writer thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/state/file_lock.h"
#include "runtime/state/keyed_state.h"

struct sqlite3;

namespace onceflow {

enum class CheckpointKind { kCheckpoint, kSavepoint, kFinal };
// kMerged: a deleted checkpoint kept only as the base of its one child's line (see
// StateStore::Delete); never listed, shown or restorable.
enum class CheckpointStatus { kPending, kCompleted, kStopped, kMerged };
const char* CheckpointKindName(CheckpointKind k);      // "checkpoint" | "savepoint" | "final"
const char* CheckpointStatusName(CheckpointStatus s);  // "pending" | "completed" | "stopped" | "merged"

// Stored state values: one version byte, a varint count, then each Value in key.h's
// self-delimiting EncodeValue encoding. Decode returns false on bad or unknown bytes.
void EncodeStateValue(const StateValue& value, std::string* out);
bool DecodeStateValue(std::string_view bytes, StateValue* value);

struct CheckpointInfo {
  int64_t id = 0;
  CheckpointKind kind = CheckpointKind::kCheckpoint;
  CheckpointStatus status = CheckpointStatus::kPending;
  int64_t created_ms = 0;   // unix ms when BeginCheckpoint ran
  int64_t events = 0;       // source events covered (caller's count)
  int64_t bytes = 0;        // bytes of state values + keys + staged rows it wrote
  int64_t duration_ms = 0;  // barrier injection (Begin) to completion, unless the caller says
  int64_t alignment_ms = 0;
  int64_t parent = 0;  // previous checkpoint on its line of history; 0 = none
};

struct SourceOffset {
  std::string node;
  int instance = 0;
  std::string name;    // what the offset is into (a file path, "stdin", a generator)
  int64_t offset = 0;  // position to resume from (bytes, or record index)
  int64_t count = 0;   // records read up to that position
  bool operator==(const SourceOffset&) const = default;
};

struct SinkCommit {
  std::string node;
  int instance = 0;
  std::string path;    // the file a `file` sink wrote (its length belongs to that path)
  int64_t length = 0;  // fsynced length at the barrier
  int64_t epoch = 0;   // the checkpoint id whose pre-commit this is
  bool operator==(const SinkCommit&) const = default;
};

struct NodeStateStats {
  std::string node;
  int64_t keys = 0;   // live keys at the checkpoint
  int64_t bytes = 0;  // their key + value bytes
};

struct CheckpointDetail {
  CheckpointInfo info;
  std::vector<NodeStateStats> state;  // by node name
  std::vector<SourceOffset> sources;
  std::vector<SinkCommit> sinks;
};

struct OpenMode {
  bool create_if_missing = true;
  bool read_only = false;
  // Fault injection (--chaos crash-at=in-migration): called inside the transaction that
  // migrates an older file's schema, after the migration and before COMMIT.
  std::function<void()> in_migration_hook;
};

class StateStore;
class Stmt;  // runtime/state/sqlite_stmt.h

// ---- dedup mode (effectively-once per hop): see the dedup_* tables in store.cc ----
struct DedupChannel {
  std::string channel;    // "<from>#<instance>><to>#<instance>"
  int64_t produced = 0;   // producer: last sequence committed on the channel
  int64_t consumed = 0;   // consumer: last sequence (or source record count) applied
  bool ended = false;     // consumer: applied the channel's end
  std::string pos_name;   // consumer of a source channel: where `consumed` is in the input
  int64_t pos_offset = 0;
};

// What one task commits at once in dedup mode (StateStore::DedupCommit): its consumed
// positions, its state changes, its outputs, its sinks' progress.
struct DedupCommitData {
  std::vector<DedupChannel> consumed;                    // sets consumed/ended/pos_*
  std::vector<std::pair<std::string, int64_t>> produced;  // sets produced
  struct Output {
    std::string channel;
    int64_t seq = 0;
    std::string data;
  };
  std::vector<Output> outbox;
  std::vector<std::pair<std::string, int64_t>> trim;  // delete outbox rows with seq <= n
  std::vector<std::pair<std::string, std::string>> changes;  // node, changelog blob
  std::vector<SinkCommit> sinks;                              // `file` sink lengths
  struct Staged {
    std::string node;
    std::vector<std::string> rows;
  };
  std::vector<Staged> staged;  // `sqlite` sink rows, staged under a new epoch id
  // Fault injection (crash-at=in-dedup-commit): inside the transaction, before COMMIT.
  std::function<void()> in_txn_hook;
};

// Changelog blobs: a sequence of (u32 key length, key, u8 has_value, [u32 value length,
// EncodeStateValue bytes]). Decode returns false on bad bytes.
void AppendChange(std::string_view key, const StateValue* value, std::string* blob);
bool ForEachChange(std::string_view blob,
                   const std::function<void(std::string_view key, const std::string_view* value)>& fn);

// Collects one checkpoint's contents; Commit writes them in one transaction. State changes
// are buffered and written sorted by (node, key) (sorted inserts are much faster in
// SQLite's B-tree). Source offsets and sink commits are complete per checkpoint (each
// source and sink instance reports its position at every barrier); state is incremental.
class CheckpointWriter {
 public:
  int64_t id() const { return id_; }
  // A changed key: `value` is an EncodeStateValue encoding, or nullptr for a tombstone (the
  // key was erased). A second change of the same (node, key) replaces the first.
  void PutState(std::string_view node, std::string_view key, const std::string* value);
  // Convenience for KeyedState::CollectChanges output (nullptr = erased).
  void PutStateValue(std::string_view node, std::string_view key, const StateValue* value);
  // Room for `n` more state changes (a caller that knows how many it will put).
  void ReserveState(size_t n) { state_.reserve(state_.size() + n); }
  void AddSourceOffset(SourceOffset offset) { sources_.push_back(std::move(offset)); }
  void AddSinkCommit(SinkCommit commit) { sinks_.push_back(std::move(commit)); }
  // A row an `sqlite` sink staged for this epoch; `seq` orders rows within the node.
  void AddStagedRow(std::string_view node, int64_t seq, std::string row);
  // Optional statistics; duration defaults to now - created.
  void SetStats(int64_t events, int64_t duration_ms = -1, int64_t alignment_ms = 0);
  // Fault injection (--chaos crash-at=in-checkpoint-txn): called inside the transaction,
  // after everything is written and before COMMIT.
  void SetInTransactionHook(std::function<void()> hook) { in_txn_hook_ = std::move(hook); }
  // After a successful Commit: the bytes it wrote (keys + values + staged rows).
  int64_t bytes_written() const { return bytes_written_; }

  // Writes everything and marks the checkpoint complete (`completed`, or `stopped` for a
  // final checkpoint of an interrupted run), then makes it the head of the current line.
  // One transaction, committed with synchronous=FULL. On failure nothing of it is visible
  // and the checkpoint stays pending. A writer commits at most once.
  Status Commit(CheckpointStatus status = CheckpointStatus::kCompleted);

 private:
  friend class StateStore;
  CheckpointWriter(StateStore* store, int64_t id, CheckpointKind kind)
      : store_(store), id_(id), kind_(kind) {}
  struct StateChange {
    std::string node, key, value;
    bool tombstone = false;
  };
  StateChange& NewChange(std::string_view node, std::string_view key, bool tombstone);
  struct StagedRow {
    std::string node;
    int64_t seq;
    std::string row;
  };
  StateStore* store_;
  int64_t id_;
  CheckpointKind kind_;
  bool committed_ = false;
  std::vector<StateChange> state_;
  std::vector<SourceOffset> sources_;
  std::vector<SinkCommit> sinks_;
  std::vector<StagedRow> staged_;
  int64_t events_ = 0, duration_ms_ = -1, alignment_ms_ = 0;
  int64_t bytes_written_ = 0;
  std::function<void()> in_txn_hook_;
};

class StateStore {
 public:
  static constexpr int kSchemaVersion = 4;
  // PRAGMA application_id of every onceflow state file: "ONCF".
  static constexpr int32_t kApplicationId = 0x4F4E4346;

  // Opens (or creates, mode 0600) the state file `path` of pipeline `pipeline_name` (empty:
  // accept any pipeline — for read-only commands that do not know it). Refuses, with
  // Status::State naming the file and the reason and without modifying it: a file that is
  // not SQLite or is truncated, an SQLite file of another application, a schema newer than
  // this build, a state file of another pipeline, a file locked by another process.
  static Status Open(const std::string& path, const std::string& pipeline_name, OpenMode mode,
                     std::unique_ptr<StateStore>* store);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::string& path() const { return path_; }
  const std::string& pipeline_name() const { return pipeline_; }
  const std::string& lineage_id() const { return lineage_; }  // 32 hex digits
  bool read_only() const { return read_only_; }
  // The file's schema version: kSchemaVersion, except for an older file opened read-only
  // (not migrated; a v1 file has no journals and reads them as empty).
  int schema_version() const { return schema_version_; }

  // Free-form meta values (e.g. "fingerprint"). Keys listed in store.cc are reserved.
  Status GetMeta(const std::string& key, std::string* value, bool* found);
  // full_sync: committed with synchronous=FULL (durable across a power cut once it returned).
  Status PutMeta(const std::string& key, const std::string& value, bool full_sync = false);

  // ---- writing checkpoints ----
  // Allocates a never-reused id and records it pending with parent = the current head.
  Status BeginCheckpoint(CheckpointKind kind, int64_t* id);
  // A writer for the pending checkpoint `id` (from BeginCheckpoint).
  Status NewWriter(int64_t id, std::unique_ptr<CheckpointWriter>* writer);

  // ---- reading ----
  // The head of the current line: its newest complete checkpoint; *id = 0 when none.
  Status LatestCompleted(int64_t* id);
  // Every complete checkpoint (pending ones excluded), by id.
  Status List(std::vector<CheckpointInfo>* out);
  Status Show(int64_t id, CheckpointDetail* out);
  // Visits each live key of `node` at checkpoint `id` (its newest version on id's line;
  // tombstones skipped), in key order. A non-ok Status from fn stops and is returned.
  Status RestoreState(
      int64_t id, const std::string& node,
      const std::function<Status(std::string_view key, std::string_view value)>& fn);
  Status SourceOffsets(int64_t id, std::vector<SourceOffset>* out);
  Status SinkCommits(int64_t id, std::vector<SinkCommit>* out);
  // Staged rows of `node` for epoch `id`, in seq order.
  Status StagedRows(int64_t id, const std::string& node,
                    const std::function<Status(int64_t seq, std::string_view row)>& fn);
  // Drops the staged rows of `node` for epoch `id` (after the sink applied them durably).
  Status DeleteStagedRows(int64_t id, const std::string& node);
  // Every (epoch, node) that still has staged rows, by epoch.
  Status StagedEpochs(std::vector<std::pair<int64_t, std::string>>* out);
  // Checkpoint `id` and its ancestors through `parent` (its line of history), sorted.
  Status Line(int64_t id, std::vector<int64_t>* ids);
  // The value of (node, key) at checkpoint `id` (0 = latest); *found false when the key is
  // absent or erased there.
  Status Get(const std::string& node, std::string_view key, int64_t id, std::string* value,
             bool* found);

  // ---- maintenance ----
  // Deletes checkpoint `id` (any kind). Refuses the head of the current line (the next run
  // resumes from it). Every remaining checkpoint restores exactly as before:
  //   - With exactly one child (what pruning meets), `id` becomes a `merged` checkpoint:
  //     its offsets and commits go, its row stays as the base of the child's line, and
  //     its state rows (and those of merged ancestors below it) that the child rewrote
  //     are deleted — work proportional to the child's changes, not to the state, so
  //     pruning behind incremental checkpoints stays incremental.
  //   - Otherwise (several children, or none) its state rows that children still need
  //     are handed down to each child and it is deleted; merged ancestors left without
  //     children are deleted with their rows.
  // Journal chunks no remaining checkpoint needs go in the same transaction
  // (PruneJournals).
  Status Delete(int64_t id);
  // Keeps the `keep` newest complete `checkpoint`/`final` checkpoints (and always the head
  // and every savepoint); deletes the others as Delete does, then drops the journal chunks
  // no remaining checkpoint needs (PruneJournals), all in one transaction. *deleted may be
  // null.
  Status Prune(int keep, int* deleted);
  // --fresh: deletes every checkpoint, state row, offset, commit, staged row and journal;
  // makes a new lineage id; keeps the id high-water mark. Durable (FULL) before it returns.
  Status Fresh();
  // Records durably that this run continues from checkpoint `from_id` (0: from the
  // beginning, keeping the old checkpoints): the head moves there.
  Status StartLine(int64_t from_id);

  // ---- dedup mode ----
  // One transaction, synchronous=NORMAL (see store.cc, DEDUP). *epoch is set to the epoch
  // id the staged rows were stored under (0 when none).
  Status DedupCommit(const DedupCommitData& data, int64_t* epoch);
  Status DedupChannels(std::vector<DedupChannel>* out);
  // Outbox rows of `channel` in seq order.
  Status DedupOutbox(const std::string& channel,
                     const std::function<Status(int64_t seq, std::string_view data)>& fn);
  Status DedupSinks(std::vector<SinkCommit>* out);
  // The committed state of `node`: dedup_state rows, then the changelog in commit order
  // (value nullptr: erased). Later visits of a key override earlier ones.
  Status DedupState(const std::string& node,
                    const std::function<Status(std::string_view key, const std::string_view* value)>& fn);
  // The live keys of `node` as DedupState leaves them (later changes win, erased keys
  // gone), visited in key order. A non-ok Status from fn stops and is returned.
  Status DedupLiveState(const std::string& node,
                        const std::function<Status(const std::string& key,
                                                   const std::string& value)>& fn);
  // Folds the changelog into dedup_state in one transaction, then copies the WAL back when
  // it grew past its bound. *rows (may be null): changelog rows folded.
  Status DedupCompact(int64_t* rows);
  // Rows and bytes of the dedup log (outbox + changelog), for the run summary.
  Status DedupLogSize(int64_t* rows, int64_t* bytes);
  // Replaces everything dedup mode committed by `state` (node -> key -> value bytes),
  // `channels` (consumed positions) and `sinks`, in one transaction committed with
  // synchronous=FULL: a resume from a savepoint (--from-checkpoint) or from nothing.
  struct DedupResetData {
    std::vector<std::tuple<std::string, std::string, std::string>> state;  // node, key, value
    std::vector<DedupChannel> channels;
    std::vector<SinkCommit> sinks;
  };
  Status DedupReset(const DedupResetData& data);
  // PruneJournals for dedup mode: `needs` holds, per journaled source (node, instance),
  // the lowest stream offset its consumers committed; chunks wholly before it (and before
  // every checkpoint's offset — savepoints) go, the first chunk stays. One transaction.
  Status DedupPruneJournals(const std::map<std::pair<std::string, int>, int64_t>& needs);

  // ---- source journals (stdin) ----
  // A journal is the byte stream of one source instance (node, instance), stored as
  // chunks keyed by the stream offset of their first byte. Offsets are contiguous: a
  // chunk starts where the previous one ends.
  //
  // The journal's size: the offset just after its last chunk (0 when empty).
  Status JournalSize(const std::string& node, int instance, uint64_t* size);
  // Appends `bytes` as one chunk at `offset`, which must equal JournalSize (Status::State
  // otherwise). One transaction, committed with synchronous=NORMAL: once it returned, a
  // crash of the process (kill -9) cannot lose it; a power cut can lose only appends
  // after the last FULL commit (a checkpoint's), which no checkpoint refers to. Empty
  // `bytes` write nothing.
  Status JournalAppend(const std::string& node, int instance, uint64_t offset,
                       std::string_view bytes);
  // Reads up to `max` journaled bytes from `offset` on, concatenating chunks, into *out
  // (replaced). Empty when offset >= JournalSize. Status::State when `offset` lies in a
  // part that pruning already dropped.
  Status JournalRead(const std::string& node, int instance, uint64_t offset, size_t max,
                     std::string* out);
  // Drops journal chunks that no complete checkpoint needs: for each journaled (node,
  // instance) with at least one source_offsets row in a complete checkpoint (any line),
  // every chunk that ends at or before the smallest such offset, except the first chunk
  // (offset 0, which holds a csv stream's header). A journal that no checkpoint refers to
  // is kept whole (a run that crashed before its first checkpoint replays all of it).
  // Prune and Delete run this in their own transaction; *dropped_bytes may be null.
  Status PruneJournals(int64_t* dropped_bytes = nullptr);

 private:
  friend class CheckpointWriter;
  StateStore() = default;
  Status Exec(const char* sql);
  Status LoadInfo(int64_t id, CheckpointInfo* info, bool* found);
  Status DeleteLocked(int64_t id);                     // inside a transaction
  Status MergeLocked(const CheckpointInfo& info, int64_t child);  // inside a transaction
  Status DropOrphanedMerged(int64_t id);                          // inside a transaction
  // inside a transaction; `needs`: dedup mode's lowest committed offset per journaled
  // (node, instance) — only those are pruned, and not past it.
  Status PruneJournalsLocked(
      int64_t* dropped_bytes,
      const std::map<std::pair<std::string, int>, int64_t>* needs = nullptr);
  Status CommitWriter(CheckpointWriter* w, CheckpointStatus status);
  Status WithTransaction(bool full_sync, const std::function<Status()>& body);
  Status Error(const std::string& what) const;
  // Appends the rows of `sql` — (node, instance, path, length, epoch), bound by the caller
  // through `bind` — to *out. What sink_commits and dedup_sinks are read through.
  Status ReadSinkCommits(const char* sql, const std::function<void(Stmt&)>& bind,
                         const char* what, std::vector<SinkCommit>* out);

  std::string path_, pipeline_, lineage_;
  bool read_only_ = false;
  int schema_version_ = kSchemaVersion;
  bool opened_ = false;  // Open finished: the file is ours and may be written
  sqlite3* db_ = nullptr;
  FileLock lock_;
  int commits_since_truncate_ = 0;
};

}  // namespace onceflow

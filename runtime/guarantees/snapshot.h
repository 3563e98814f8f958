// Checkpointing guarantees on barrier snapshots: effectively-once / snapshot (aligned
// barriers, two-phase sinks, file sinks cut back on resume) — and, with AtLeastOnceOptions,
// at-least-once: barriers are tracked, not aligned (a task never stops reading a channel;
// it snapshots once barrier n arrived on all of them, so its state holds everything before
// n and maybe some records after it, which the rewound sources replay: effects repeat,
// none is lost), sinks write at once and flush + fsync at every barrier, and a resumed
// file sink keeps what it wrote after the checkpoint (those records repeat) and only cuts
// a torn last line. With AtMostOnceOptions it is at-most-once: the same as at-least-once
// plus read-ahead leases committed ahead of processing, which a resume skips past instead
// of replaying, and failed records dropped (at_most_once.h). The protocol, step by step
// (ARCHITECTURE.md):
//
//   1. Every `checkpoint.interval` the checkpoint thread begins checkpoint n in the state
//      file (a pending row; ids are never reused) and publishes n; each source task
//      injects barrier n before its next read (BarrierToInject), reporting its position,
//      its chain's state changes and its sink's pre-commit (OnSnapshot). At most one
//      checkpoint is in flight: the next one is begun only after n completed.
//   2. Consumer tasks align n (executor + BarrierAligner), report the same way and forward
//      n. Sinks pre-commit at the barrier: a `file` sink fsyncs and reports its length; a
//      two-phase (`sqlite`) sink hands over the rows of epoch n.
//   3. When every task reported n, the checkpoint thread writes it all — state changes
//      sorted by key, source offsets, sink lengths, staged rows — in ONE transaction of
//      the state file committed with synchronous=FULL (StateStore::CheckpointWriter). n is
//      complete once that commit returned.
//   4. Then each two-phase sink applies epoch n to its own database with an "epoch
//      applied" marker (Sink::ApplyEpoch, idempotent), and the staged rows are deleted;
//      old checkpoints are pruned to `checkpoint.retain`.
//   5. At the end of a clean run (every source ended, or a stop) every task hands over a
//      final snapshot after its last output; End() commits them as checkpoint kind
//      `final` (status completed / stopped) and applies it the same way.
//
// Dead letters (on_error: dead_letter) are held by each task until its barrier and handed
// over in its snapshot; the checkpoint thread appends them to their files and syncs just
// before the checkpoint's commit, which records each file's length (node "~dead-letter").
// A resume cuts each dead-letter file back to the length its checkpoint recorded (a
// fresh start empties it, as it does the file sinks): a record replayed after a recovery
// is dead-lettered once.
//
// Recovery rolls forward (RollForward, run before anything else touches a sink): staged
// epochs of complete checkpoints are applied (a no-op where the marker exists); then the
// run restores every task from the latest complete checkpoint (Start + BeforeOpen),
// rewinds sources (AfterOpen), and `file` sinks cut their file to the recorded length.
// A failure of any task ends the attempt (the executor stops every task); the caller
// starts a new executor with a new SnapshotGuarantee resuming from the latest checkpoint,
// which is exactly "pause everything, restore everything, rewind, resume".
//
// Tasks that end: a task whose inputs all ended hands over its final snapshot (after its
// operators' Finish, with its sink's last pre-commit) and exits. Every later checkpoint
// counts that snapshot as the task's report: its state changes and staged rows once (in
// the first checkpoint after its end), its sources' end positions and its sink's final
// length in every one. That is consistent: whatever the ended task emitted reached its
// consumers before their channel's end, and an ended channel counts as aligned, so the
// consumers' snapshots hold all of it. So checkpoints go on while some sources have
// ended and others have not (a finite side input beside an unbounded stream). A source
// that stops reading first injects any barrier already published (OnSourceEnd). No new
// checkpoint begins once every source has ended or the run is stopping: the final
// checkpoint follows.
//
// Threading: the checkpoint thread owns the StateStore while the run lasts (the store is
// single-threaded: every use goes through store_mu_, which also serves the crash path's
// PersistBeforeCrash from any thread). Task threads only append their snapshots under
// mu_ and never wait for the checkpoint thread, so a slow disk slows checkpoints, not the
// data path.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/chaos/chaos.h"
#include "runtime/core/registry.h"
#include "runtime/guarantees/at_most_once.h"
#include "runtime/guarantees/guarantee.h"
#include "runtime/state/store.h"

namespace onceflow {

struct Applier;  // a sink instance that applies staged epochs (snapshot.cc)
class StoreJournal;

struct SnapshotOptions {
  StateStore* store = nullptr;  // open, writable (locked); outlives the guarantee
  const Registry* registry = nullptr;
  Chaos* chaos = nullptr;   // may be null
  int64_t resume_from = 0;  // complete checkpoint to restore; 0 = start from the beginning
  // Nodes whose stored state must not be restored (added, removed or changed since the
  // checkpoint: --allow-topology-change); they start empty.
  std::set<std::string> skip_restore;
  int64_t interval_ms = 1000;
  int retain = 3;
  BarrierMode alignment = BarrierMode::kAligned;
  bool two_phase_sinks = true;
  // A resumed sink is cut back to the length its checkpoint recorded (exact outputs).
  bool cut_sinks_back = true;
  const char* name = "effectively-once (snapshot)";
  // At-most-once: source instances commit read-ahead leases before processing and a
  // resume skips past them (ReadAhead, at_most_once.h).
  bool read_ahead = false;
  // drop_failed_records() (at-most-once).
  bool drop_failed_records = false;
  // Bumped (by a SIGUSR1 handler) to ask for a savepoint: a retained checkpoint of kind
  // `savepoint`, taken at once (or right after the checkpoint in flight). May be null.
  const std::atomic<int>* savepoint_requests = nullptr;
};

// The options of the at-least-once guarantee: the snapshot machinery without alignment,
// two-phase commit or cut-back (see the file comment).
inline SnapshotOptions AtLeastOnceOptions(SnapshotOptions o) {
  o.alignment = BarrierMode::kTracking;
  o.two_phase_sinks = false;
  o.cut_sinks_back = false;
  o.name = "at-least-once";
  return o;
}

// The options of the at-most-once guarantee: at-least-once's checkpoints (they persist the
// state periodically), plus read-ahead leases instead of replay and dropped failed records.
inline SnapshotOptions AtMostOnceOptions(SnapshotOptions o) {
  o = AtLeastOnceOptions(o);
  o.read_ahead = true;
  o.drop_failed_records = true;
  o.name = "at-most-once";
  return o;
}

// Totals over the checkpoints this guarantee committed (for the run summary).
struct CheckpointTotals {
  int count = 0;
  double total_ms = 0, max_ms = 0, total_alignment_ms = 0;
  int64_t total_bytes = 0;
  int64_t last_id = 0;
};

// The places where --chaos faults fired, kept in the state file (meta "chaos_fired") so
// a restarted process does not fire them again (SPEC §6): saved just before a
// self-inflicted crash, loaded when a run starts.
Status SaveFiredFaults(StateStore* store, const Chaos& chaos);
Status LoadFiredFaults(StateStore* store, Chaos* chaos);

// Applies every staged sink epoch of a complete checkpoint still in the state file (crash
// after a checkpoint completed, before its sink applied it), idempotently; deletes staged
// rows of checkpoints that never completed. Run before any sink opens.
// every_epoch: apply every staged epoch, not only those of checkpoints on the current
// line (dedup mode, whose epochs are not checkpoints).
Status RollForward(StateStore* store, const PipelineSpec& spec, const Registry& registry,
                   bool every_epoch = false);

class SnapshotGuarantee final : public Guarantee {
 public:
  explicit SnapshotGuarantee(SnapshotOptions options);
  ~SnapshotGuarantee() override;

  const char* name() const override { return options_.name; }
  Status Start(const GuaranteeContext& ctx) override;
  Status BeforeSourceBatch(const SourceBatch& batch) override;
  FailureAction OnTaskFailure(int node, int instance, const Status& error) override;
  Status End(const RunEnd& end) override;

  bool snapshots() const override { return true; }
  BarrierMode alignment() const override { return options_.alignment; }
  bool two_phase_sinks() const override { return options_.two_phase_sinks; }
  bool drop_failed_records() const override { return options_.drop_failed_records; }
  Status BeforeOpen(int node, int instance, NodeContext* ctx, KeyedState* state) override;
  Status AfterOpen(int node, int instance, Source* source) override;
  uint64_t BarrierToInject() const override { return barrier_.load(std::memory_order_acquire); }
  uint64_t OnSourceEnd(int task) override;
  Status OnSnapshot(uint64_t checkpoint, TaskSnapshot&& snapshot) override;
  void PersistBeforeCrash() override;

  const CheckpointTotals& totals() const { return totals_; }  // after End()
  // Records source `node`'s instances had read where this run resumed them: the restored
  // checkpoint (0 when starting from the beginning), or past a read-ahead lease. After
  // every source opened.
  uint64_t restored_count(int node) const;
  // Records of source `node` a resume skipped past its read-ahead lease (at-most-once:
  // read before the crash, lost unless they had been processed). After every source opened.
  uint64_t skipped_ahead(int node) const;
  // Bytes this run appended to the journals of sources that cannot rewind (stdin).
  uint64_t journaled_bytes() const;
  // The newest checkpoint committed so far (0: none); any thread, for status lines.
  int64_t last_checkpoint() const { return last_checkpoint_.load(std::memory_order_relaxed); }

 private:
  void Loop();
  // Writes checkpoint `id` (kind/status) from `snaps` in one transaction, then applies
  // two-phase sink epochs and prunes. id 0: begins a new checkpoint of `kind` first.
  Status Commit(int64_t id, CheckpointKind kind, CheckpointStatus status,
                std::vector<TaskSnapshot> snaps, std::chrono::steady_clock::time_point began);
  Status GetApplier(int node, Sink** sink);
  // Saves the fired faults before a self-inflicted crash; store_mu_ held. Logs a failure
  // (the crash happens anyway).
  void SaveFiredLocked();
  Status LoadRestore();
  // Appends the dead letters of `snaps` to their files (synced) and records every
  // dead-letter file's length in `w`.
  Status WriteDeadLetters(const std::vector<TaskSnapshot>& snaps, int64_t id, CheckpointWriter* w);
  // Under mu_: every task reported the checkpoint in flight or has ended.
  bool AllReported() const;
  // Under mu_: the snapshots checkpoint `id` commits — each task's report, or the final
  // snapshot of a task that ended without one (its state and rows only the first time).
  // *used_final: the tasks whose final snapshot stood in for a report.
  std::vector<TaskSnapshot> TakeSnapshots(bool final_checkpoint, std::vector<bool>* used_final);

  const SnapshotOptions options_;
  const PipelineSpec* spec_ = nullptr;
  const Plan* plan_ = nullptr;
  int tasks_ = 0;

  // ---- restore data, filled by Start, each slot read by one task thread ----
  // [node][instance] -> keys to restore
  std::vector<std::vector<std::vector<std::pair<std::string, StateValue>>>> restore_state_;
  std::map<std::pair<int, int>, SourcePosition> restore_offsets_;
  std::map<std::pair<int, int>, SinkCommit> restore_sinks_;
  std::unique_ptr<ReadAhead> read_ahead_;  // options_.read_ahead
  std::vector<std::string> dead_letter_paths_;  // distinct, sorted; fixed by Start

  // ---- checkpoint thread ----
  std::atomic<uint64_t> barrier_{0};
  int savepoints_seen_ = 0;  // checkpoint thread only
  mutable std::mutex mu_;    // guards the fields below
  std::condition_variable cv_;
  bool stopping_ = false;
  bool failed_ = false;
  int sources_ended_ = 0;
  int source_tasks_ = 0;
  uint64_t inflight_ = 0;
  std::vector<std::optional<TaskSnapshot>> reports_;  // per task, of the checkpoint in flight
  std::vector<std::optional<TaskSnapshot>> finals_;   // per task, once it ended
  // Per task: its final snapshot's state changes and staged rows went into a committed
  // checkpoint already (later checkpoints take only its positions and lengths).
  std::vector<bool> final_included_;
  Status error_;  // a checkpoint that failed: fails the run
  std::atomic<bool> has_error_{false};
  std::thread thread_;

  std::mutex store_mu_;                               // every use of options_.store
  std::map<int, std::unique_ptr<Applier>> appliers_;  // checkpoint thread / End only
  // Journals of `stdin`-like sources, made in BeforeOpen (task threads, under mu_).
  struct Journal {
    std::unique_ptr<StoreJournal> journal;
    uint64_t initial_size = 0;
  };
  std::map<std::pair<int, int>, Journal> journals_;
  // Read-ahead resumes (AfterOpen, task threads, under mu_): per source instance, the
  // count it resumed at and the records skipped to get there.
  std::map<std::pair<int, int>, std::pair<uint64_t, uint64_t>> resumed_ahead_;
  CheckpointTotals totals_;
  std::atomic<int64_t> last_checkpoint_{0};
};

}  // namespace onceflow

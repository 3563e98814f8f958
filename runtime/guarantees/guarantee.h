// Guarantee: the control-path strategy of a run, chosen once at start-up (one per
// `--semantics`/`--mode`). The data path (executor, channels, operators) is the same under
// every guarantee; the executor calls the strategy at a few control points and never
// branches on the mode itself:
//
//   Start             Run thread, once, before any task thread starts.
//   BeforeSourceBatch a source task thread, after Read() returned records and before any
//                     of them enters the chain: where at-most-once persists the offset
//                     *ahead* of processing (a crash then loses, never repeats, the batch).
//   OnTaskFailure     the failing task's thread: recover or fail the run.
//   End               Run thread, once, after every task thread has been joined.
//
//   BeforeOpen        a task thread, before a node instance opens: restore its keyed
//                     state and tell a sink where to resume (NodeContext fields).
//   AfterOpen         a task thread, after a source instance opened: rewind it.
//   BarrierToInject   a source task thread, before each Read: the newest checkpoint whose
//                     barrier sources must inject (0: none). Sources inject it once.
//   OnSourceEnd       a source task thread, when it stops reading for good (end of input
//                     or a stop request): returns a barrier it must still inject before
//                     its end travels downstream, so a checkpoint in flight completes.
//   OnSnapshot        a task thread, at barrier n (after alignment, per alignment()): the
//                     task's copy of its changed state, its sources' positions and its
//                     sink's pre-commit. n = 0: the task's final snapshot at its end.
//   PersistBeforeCrash any thread, just before a --chaos crash kills the process.
//
// Barriers travel as Envelope::Kind::kBarrier; the executor aligns them with a
// BarrierAligner in the mode alignment() names.
//
// Sequenced channels (dedup mode, sequenced() true): every channel carries sequence
// numbers, and each task commits {consumed positions, state changes, outputs} through
// CommitTask; the executor sends outputs only after their commit and recovers a failed task
// alone (runtime/exec/sequenced.cc describes the protocol):
//
//   CommittedChannel  any task thread, at open: what the state file holds for a channel.
//   Outbox            a producer task thread, at open: its committed, unsent outputs.
//   CommitTask        a task thread: one task's commit (one transaction).
//   AfterApply        a task thread: a sink applied the rows staged under `epoch`.
//   OnLocalRecovery   a task thread: it restarted alone after a transient failure.
//
// What must not happen is mode checks scattered through the executor or the operators.
//
// Threading: BeforeSourceBatch may be called concurrently from several source threads
// and OnTaskFailure concurrently from several failing threads; implementations must be
// thread-safe there. Start and End are called on the Run thread alone.
#pragma once

#include <cstddef>
#include <string>

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/core/status.h"
#include "runtime/guarantees/barrier_aligner.h"
#include "runtime/plan/plan.h"
#include "runtime/spec/pipeline_spec.h"
#include "runtime/state/keyed_state.h"
#include "runtime/state/store.h"

namespace onceflow {

struct GuaranteeContext {
  const PipelineSpec* spec = nullptr;
  const Plan* plan = nullptr;
  int tasks = 0;  // task threads of the run (Σ chain parallelism)
};

// What one task hands over at a barrier: copies, so the task resumes at once while the
// guarantee's writer stores them.
struct TaskSnapshot {
  int task = 0;
  struct StateChange {
    int node = 0;
    std::string key;                  // EncodeKey bytes
    std::optional<StateValue> value;  // nullopt: the key was erased
  };
  struct SourceSnap {
    int node = 0, instance = 0;
    SourcePosition position;
  };
  struct SinkSnap {
    int node = 0, instance = 0;
    SinkPreCommit pre_commit;
  };
  std::vector<StateChange> state;
  std::vector<SourceSnap> sources;
  std::vector<SinkSnap> sinks;
  struct DeadLetters {
    int node = 0;
    std::vector<std::string> lines;  // JSONL lines without their newline
  };
  std::vector<DeadLetters> dead_letters;  // lines held since the previous barrier
  int64_t alignment_ns = 0;
};

// A batch a source instance has just read and not yet processed.
struct SourceBatch {
  int node = 0;  // index in PipelineSpec::nodes
  int instance = 0;
  const Source* source = nullptr;  // Position() is just after the batch's last record
  size_t records = 0;
};

enum class FailureAction {
  kFailRun,  // record the error, cancel every task, Run() returns the error
  kRecover,  // restore and continue in-process (needs executor support: see executor.cc)
};

// How the run ended, for End().
struct RunEnd {
  std::string exit_reason;  // RunStats::exit_reason
  Status error;             // the error that failed the run, else Ok
};

class Guarantee {
 public:
  virtual ~Guarantee() = default;
  // "at-most-once", ...: for logs and the summary.
  virtual const char* name() const = 0;
  virtual Status Start(const GuaranteeContext& ctx) = 0;
  // A non-Ok status fails the run (e.g. the offset could not be persisted).
  virtual Status BeforeSourceBatch(const SourceBatch& batch) = 0;
  virtual FailureAction OnTaskFailure(int node, int instance, const Status& error) = 0;
  // A record an operator fails on (--chaos fail=) is dropped and counted in the node's
  // `dropped` instead of failing the task (at-most-once: losing it is allowed, recovering
  // would be a restart). Asked per batch by the tasks of a node that may fail.
  virtual bool drop_failed_records() const { return false; }
  // May turn a successful run into a failed one (e.g. the final commit failed).
  virtual Status End(const RunEnd& end) = 0;

  // ---- checkpointing guarantees (defaults: none) ----
  // Whether tasks take snapshots at all (OnSnapshot calls, state change collection).
  virtual bool snapshots() const { return false; }
  virtual BarrierMode alignment() const { return BarrierMode::kAligned; }
  // Sinks of two-phase types hold their output until checkpoints complete.
  virtual bool two_phase_sinks() const { return false; }
  virtual Status BeforeOpen(int node, int instance, NodeContext* ctx, KeyedState* state) {
    return Status::Ok();
  }
  virtual Status AfterOpen(int node, int instance, Source* source) { return Status::Ok(); }
  virtual uint64_t BarrierToInject() const { return 0; }
  virtual uint64_t OnSourceEnd(int task) { return 0; }
  // A non-Ok status fails the task (e.g. the checkpoint cannot be stored).
  virtual Status OnSnapshot(uint64_t checkpoint, TaskSnapshot&& snapshot) { return Status::Ok(); }
  virtual void PersistBeforeCrash() {}

  // ---- sequenced channels (dedup mode; defaults: none) ----
  virtual bool sequenced() const { return false; }
  virtual DedupChannel CommittedChannel(const std::string& name) const {
    DedupChannel c;
    c.channel = name;
    return c;
  }
  virtual Status Outbox(const std::string& name,
                        const std::function<Status(int64_t seq, std::string_view data)>& fn) {
    return Status::Ok();
  }
  // *epoch: the epoch the staged sink rows were stored under (0: none).
  virtual Status CommitTask(const DedupCommitData& data, int64_t* epoch) { return Status::Ok(); }
  virtual Status AfterApply(int64_t epoch, const std::string& node) { return Status::Ok(); }
  virtual const std::string& lineage() const {
    static const std::string kNone;
    return kNone;
  }
  // Before a task recovers alone from `error`; false: the run must give up instead
  // (recovery.max_recoveries). RecoveredLocally: how long the recovery took.
  virtual bool OnLocalRecovery(int node, const Status& error) { return false; }
  virtual void RecoveredLocally(double ms) {}
  // Savepoints without barriers: the executor pauses its sources once SavepointDue() and,
  // when every channel is drained and committed, hands over the sources' positions (also
  // at the end of a run stopped by a signal). The Run thread calls both.
  virtual bool SavepointDue() { return false; }
  virtual Status Savepoint(const std::vector<TaskSnapshot::SourceSnap>& sources) {
    return Status::Ok();
  }
};

}  // namespace onceflow

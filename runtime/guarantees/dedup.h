// DedupGuarantee: effectively-once through at-least-once delivery plus per-task
// deduplication (MillWheel, Kafka Streams), `--mode dedup`.
//
// The control path lives in two places: this strategy owns the state file (each task's
// commit is one transaction, a background thread compacts the state changelog) and what a
// restart reads back; the executor's sequenced-channel code (runtime/exec/sequenced.cc)
// stamps sequence numbers, drops duplicates, holds outputs until their commit, answers
// re-send requests and restarts a failed task alone. In short:
//
//   - Every channel carries sequence numbers: a per-channel counter for operator
//     producers, the source's record count for a channel out of a source chain (sources
//     have no outbox: they re-read their input, which is deterministic, from the lowest
//     position any of their consumers committed, and skip per channel what that consumer
//     already has).
//   - A consumer applies an envelope only when it starts at or before its last applied
//     position and ends after it; earlier ones are duplicates, later ones (a gap, left
//     over from before a restart) are dropped until the producer sends again in order.
//   - Each task commits, every few envelopes or milliseconds, {positions applied per
//     input channel, its state changelog, its outputs with their sequence numbers, its
//     sink's progress} atomically, and only then sends those outputs ("strong
//     productions"). A producer keeps committed outputs until its consumer's commit
//     covers them, then trims them from the state file: the log is what is in flight.
//   - A transient failure restarts the failed task alone from its last commit; it asks
//     its producers to send again from there, and every other task keeps running.
//   - A killed process restarts every task from its own last commit.
//
// There are no global checkpoints in this mode: `checkpoints list` shows none, and
// --from-checkpoint is refused.
//
// Threading: CommitTask, AfterApply, BeforeOpen and OnLocalRecovery may be called from any
// task thread at once; one mutex serialises the store (one SQLite connection).
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/chaos/chaos.h"
#include "runtime/core/registry.h"
#include "runtime/guarantees/guarantee.h"
#include "runtime/state/journal.h"
#include "runtime/state/store.h"

namespace onceflow {

struct DedupOptions {
  StateStore* store = nullptr;  // open, writable (locked); outlives the guarantee
  const Registry* registry = nullptr;
  Chaos* chaos = nullptr;  // may be null
  int max_recoveries = 100;
  // Before the run: replace what dedup mode committed by savepoint `restore_from`'s
  // contents (0: by nothing, a start from the beginning); -1: resume from the commits.
  int64_t restore_from = -1;
  // Bumped (by a SIGUSR1 handler) to ask for a savepoint. May be null.
  const std::atomic<int>* savepoint_requests = nullptr;
};

struct DedupTotals {
  int64_t commits = 0;
  int64_t commit_bytes = 0;        // outputs + changelog bytes committed
  int recoveries = 0;              // local (in-process) recoveries
  std::vector<double> recovery_ms;
  int64_t log_rows_max = 0, log_bytes_max = 0;  // dedup log (outbox + changelog) sampled
  int64_t log_rows_end = 0, log_bytes_end = 0;
  int64_t compactions = 0;
  int savepoints = 0;
};

// The name of the channel from instance `up` of node `from` to instance `down` of `to`,
// as the state file keys it.
std::string SequencedChannelName(const std::string& from, int up, const std::string& to,
                                 int down);

class DedupGuarantee : public Guarantee {
 public:
  explicit DedupGuarantee(DedupOptions options);
  ~DedupGuarantee() override;

  const char* name() const override { return "effectively-once (dedup)"; }
  Status Start(const GuaranteeContext& ctx) override;
  Status BeforeSourceBatch(const SourceBatch&) override { return Status::Ok(); }
  FailureAction OnTaskFailure(int node, int instance, const Status& error) override;
  Status End(const RunEnd& end) override;

  Status BeforeOpen(int node, int instance, NodeContext* ctx, KeyedState* state) override;
  Status AfterOpen(int node, int instance, Source* source) override;
  void PersistBeforeCrash() override;

  bool sequenced() const override { return true; }
  bool two_phase_sinks() const override { return true; }
  DedupChannel CommittedChannel(const std::string& name) const override;
  Status Outbox(const std::string& name,
                const std::function<Status(int64_t, std::string_view)>& fn) override;
  Status CommitTask(const DedupCommitData& data, int64_t* epoch) override;
  Status AfterApply(int64_t epoch, const std::string& node) override;
  const std::string& lineage() const override { return options_.store->lineage_id(); }
  bool OnLocalRecovery(int node, const Status& error) override;
  void RecoveredLocally(double ms) override;
  bool SavepointDue() override;
  Status Savepoint(const std::vector<TaskSnapshot::SourceSnap>& sources) override;

  // Whether the state file held committed positions when the run started (a resume).
  bool resuming() const { return !committed_.empty(); }
  const DedupTotals& totals() const { return totals_; }
  uint64_t journaled_bytes() const;

 private:
  void CompactLoop();
  Status RestoreFrom(int64_t id);
  Status PruneJournals();
  Status RestoreKeyedState(int node, int instance, KeyedState* state);

  DedupOptions options_;
  const PipelineSpec* spec_ = nullptr;
  const Plan* plan_ = nullptr;
  std::map<std::string, DedupChannel> committed_;  // read at Start, then immutable
  std::map<std::pair<std::string, int>, SinkCommit> sinks_;  // guarded by store_mu_

  std::mutex store_mu_;  // the store: one connection, one transaction at a time
  struct Journal {
    std::unique_ptr<StoreJournal> journal;
    uint64_t initial_size = 0;
  };
  std::map<std::pair<int, int>, Journal> journals_;  // guarded by mu_

  std::mutex mu_;  // totals_, stop_, error_
  std::condition_variable cv_;
  bool stop_ = false;
  Status error_;
  DedupTotals totals_;
  std::thread compactor_;
  int savepoints_seen_ = 0;  // Run thread only
};

}  // namespace onceflow

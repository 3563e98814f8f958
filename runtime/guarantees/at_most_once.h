// At-most-once: no event's effect twice; events may be lost on a failure.
//
// Design. At-most-once runs on the snapshot machinery of at-least-once (snapshot.h,
// AtMostOnceOptions): tracked (unaligned) barriers persist the keyed state, the source
// offsets and the sinks' lengths periodically, sinks write at once and a resumed `file`
// sink only cuts a torn last line. What makes it at-most-once is ReadAhead below: before
// a source instance hands on a record beyond its *lease*, the lease is extended and
// committed to the state file with synchronous=FULL. A resume restores the latest
// complete checkpoint (its state holds the effect of no record beyond its offsets, and
// maybe of some records after them: barriers are not aligned) and then moves every source
// past its lease — past anything the crashed process may have processed — so no record is
// processed twice; the records between are lost (and counted). A `--chaos fail=` failure
// drops the failing record (counted in the node's `dropped`) instead of recovering.
//
// Why a lease and not "the position after this batch": an fsync per 256-record batch
// would cap a run at a few tens of thousands of events/s. A lease lets one FULL commit
// cover many batches: it says "records up to count N may have been processed". It is
// sized from the source's observed rate (about kLeaseSeconds of records, or longer when
// commits are slow; between kMinLease and kMaxLease, growing at most kLeaseGrowth-fold per
// lease: a burst cannot inflate it at once, and a fast source still reaches its size in a
// few leases — at twofold, the first dozen leases of a fast file each held it up for an
// fsync, a tenth of a second at the start of a run),
// so a fast source commits a few times a second and a slow or
// rate-limited one does not skip seconds of input on resume. Records, not bytes: counts
// are comparable across every source type (a byte offset cannot be extrapolated), and a
// resume reaches count N by seeking to the position stored with the lease (the exact
// position when it was granted) and reading forward, discarding, until count N — the
// reading costs at most one lease of input. Nothing is buffered in memory, so the data
// path is unchanged.
//
// The leases of all source instances are stored together as meta "amo_read_ahead" (one
// line per instance); only the one writer thread rewrites it, so two sources extending at
// once can never store an older lease over a newer one. They are
// cleared when a run starts from the beginning or replays a chosen checkpoint (its
// offsets are then exact) and after a clean final checkpoint (its offsets are exact too:
// a stopped run resumes where it stopped, losing nothing).
//
// StatelessGuarantee is the executor's default when a run is given no guarantee (unit
// tests of the executor): nothing is persisted, any failure fails the run.
//
// The commits run on ReadAhead's own writer thread, requested when half a lease is used:
// the state file is also held by the checkpoint thread for whole checkpoint commits (a
// second or more for a large state on a busy disk), and a source that waited for it at
// every lease ran at a third of its speed. The next lease is sized to outlast the last
// commit's latency, so a source waits only when a commit is slower than that.
//
// Threading: Extend runs on source task threads (any number at once) and holds
// ReadAhead's mutex only briefly (a per-batch lock, never across a commit); the writer
// thread calls `persist` without that mutex (persist takes the caller's store lock);
// Load, Skip, Stop and Clear run on one thread each (Start, the source's own task thread
// at open, End).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/guarantees/guarantee.h"

namespace onceflow {

class StateStore;

class StatelessGuarantee final : public Guarantee {
 public:
  const char* name() const override { return "at-most-once"; }
  Status Start(const GuaranteeContext&) override { return Status::Ok(); }
  Status BeforeSourceBatch(const SourceBatch&) override { return Status::Ok(); }
  // Nothing to recover from: a failed task fails the run; what was in flight is lost.
  FailureAction OnTaskFailure(int, int, const Status&) override { return FailureAction::kFailRun; }
  Status End(const RunEnd&) override { return Status::Ok(); }
};

// One source instance's lease: records up to `until` (a count of records read by the
// instance) may have been processed; `at` is the instance's exact position when the
// lease was granted.
struct ReadAheadLease {
  std::string node;
  int instance = 0;
  SourcePosition at;
  uint64_t until = 0;
  bool operator==(const ReadAheadLease& o) const {
    return node == o.node && instance == o.instance && at.name == o.at.name &&
           at.offset == o.at.offset && at.count == o.at.count && until == o.until;
  }
};

// The meta value: one line per lease, "node instance offset count until name" (the name,
// a file path that may hold spaces, last). Decode returns false on a malformed value.
std::string EncodeLeases(const std::vector<ReadAheadLease>& leases);
bool DecodeLeases(const std::string& text, std::vector<ReadAheadLease>* leases);

// How many records a lease covers, from the rate the instance read at (records / seconds;
// unknown when 0): about `horizon` seconds of input, within [kMinLease, kMaxLease].
constexpr uint64_t kMinLease = 1024;
constexpr uint64_t kMaxLease = uint64_t{1} << 22;
constexpr uint64_t kLeaseGrowth = 8;
constexpr double kLeaseSeconds = 0.25;
uint64_t LeaseSize(uint64_t records, double seconds, double horizon = kLeaseSeconds);
// The lease after one of `previous` records: LeaseSize over a horizon of kLeaseSeconds or
// twice the last commit's latency, whichever is longer (so the next lease, requested when
// half of this one is used, is durable before this one runs out), but at most twice the
// previous one (a rate measured over a run's first milliseconds is noise; doubling reaches
// the rate-based size within a few commits while a crash early in a run loses little).
uint64_t NextLeaseSize(uint64_t previous, uint64_t records, double seconds, double latency_s);

class ReadAhead {
 public:
  static constexpr char kMetaKey[] = "amo_read_ahead";
  using Clock = std::chrono::steady_clock;
  // Commits the meta value (every lease) with synchronous=FULL; called on the writer
  // thread only, never with ReadAhead's mutex held.
  using Persist = std::function<Status(const std::string& value)>;

  explicit ReadAhead(Persist persist);
  ~ReadAhead();  // Stop()
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Reads the stored leases (none when the meta is absent or empty); before any Extend.
  // Caller holds the store.
  Status Load(StateStore* store);
  // Stops the writer thread (a request not yet committed is dropped: the lease in force
  // stays what was committed). Idempotent.
  void Stop();
  // After Stop: forgets every lease, durably. Caller holds the store.
  Status Clear(StateStore* store);

  // A source instance is about to process records up to `after` (its position after the
  // batch). Returns at once while `after` is inside the committed lease; once half of it is
  // used, asks the writer thread for the next lease (committed in the background, so a
  // slow disk or a checkpoint holding the store delays nothing while the lease lasts).
  // Beyond the lease it waits until a lease covering `after` is committed. A failed
  // commit is returned (by this or a later call): no record beyond the lease is processed.
  Status Extend(const std::string& node, int instance, const SourcePosition& after);
  // Waits until no request is pending (tests).
  void WaitIdle();

  // After a source instance was opened and rewound to its checkpoint: moves it past its
  // lease (seek to the lease's position if that is further, then read and discard up to
  // the lease's count or the end of the input). Returns the records discarded in *skipped:
  // lost under at-most-once. The instance then keeps that lease until it reads past it.
  Status Skip(const std::string& node, int instance, Source* source, uint64_t* skipped);

 private:
  struct Slot {
    ReadAheadLease lease;      // committed
    ReadAheadLease wanted;     // requested (wanted.until > lease.until: pending)
    bool in_flight = false;    // `wanted` is being committed
    Clock::time_point asked{};  // when the previous request was made ({}: none yet)
    uint64_t asked_count = 0;   // the count it was made at
  };
  void Request(Slot& slot, const SourcePosition& after);  // mu_ held
  bool Pending() const;                                    // mu_ held
  void WriterLoop();

  const Persist persist_;
  std::mutex mu_;
  std::condition_variable cv_;  // requests (writer), commits and errors (sources)
  std::map<std::pair<std::string, int>, Slot> leases_;
  double latency_s_ = 0;  // the last commit's
  Status error_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace onceflow

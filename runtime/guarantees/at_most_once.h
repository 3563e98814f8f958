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
// sized from the source's observed rate (about kLeaseSeconds of records, between
// kMinLease and kMaxLease, growing at most twofold per lease), so a fast source commits a few times a second and a slow or
// rate-limited one does not skip seconds of input on resume. Records, not bytes: counts
// are comparable across every source type (a byte offset cannot be extrapolated), and a
// resume reaches count N by seeking to the position stored with the lease (the exact
// position when it was granted) and reading forward, discarding, until count N — the
// reading costs at most one lease of input. Nothing is buffered in memory, so the data
// path is unchanged.
//
// The leases of all source instances are stored together as meta "amo_read_ahead" (one
// line per instance); a new lease rewrites the whole value under ReadAhead's mutex, so
// two sources extending at once can never store an older lease over a newer one. They are
// cleared when a run starts from the beginning or replays a chosen checkpoint (its
// offsets are then exact) and after a clean final checkpoint (its offsets are exact too:
// a stopped run resumes where it stopped, losing nothing).
//
// StatelessGuarantee is the executor's default when a run is given no guarantee (unit
// tests of the executor): nothing is persisted, any failure fails the run.
//
// Threading: ReadAhead::Extend runs on source task threads (any number at once) and
// serialises on its mutex; Load, Skip and Clear run on one thread each (Start, the
// source's own task thread at open, End). Lock order: ReadAhead's mutex, then the
// caller's store lock inside `persist`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
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

// How many records the next lease covers, from the rate the instance read at since its
// previous lease (records / seconds; 0 when unknown): about kLeaseSeconds of input,
// within [kMinLease, kMaxLease].
constexpr uint64_t kMinLease = 1024;
constexpr uint64_t kMaxLease = uint64_t{1} << 22;
constexpr double kLeaseSeconds = 0.25;
uint64_t LeaseSize(uint64_t records, double seconds);
// The lease after one of `previous` records: LeaseSize, but at most twice the previous one
// (a rate measured over the first milliseconds of a run is noise; doubling reaches the
// rate-based size within a few commits while a crash early in a run loses little).
uint64_t NextLeaseSize(uint64_t previous, uint64_t records, double seconds);

class ReadAhead {
 public:
  static constexpr char kMetaKey[] = "amo_read_ahead";
  using Clock = std::chrono::steady_clock;

  // Reads the stored leases (none when the meta is absent or empty). Caller holds the store.
  Status Load(StateStore* store);
  // Forgets every lease, durably. Caller holds the store.
  Status Clear(StateStore* store);

  // A source instance is about to process records up to `after` (its position after the
  // batch). When that goes beyond its lease, grants a new one and calls persist(meta
  // value) — which must commit it with synchronous=FULL — before returning; a failure
  // leaves the old lease in force and is returned. *extended (may be null) says whether it
  // did.
  Status Extend(const std::string& node, int instance, const SourcePosition& after,
                const std::function<Status(const std::string&)>& persist, bool* extended = nullptr);

  // After a source instance was opened and rewound to its checkpoint: moves it past its
  // lease (seek to the lease's position if that is further, then read and discard up to
  // the lease's count or the end of the input). Returns the records discarded in *skipped:
  // lost under at-most-once. The instance then keeps that lease until it reads past it.
  Status Skip(const std::string& node, int instance, Source* source, uint64_t* skipped);

 private:
  struct Slot {
    ReadAheadLease lease;
    Clock::time_point granted{};  // when `lease` was granted in this process ({}: loaded)
  };
  std::mutex mu_;
  std::map<std::pair<std::string, int>, Slot> leases_;
};

}  // namespace onceflow

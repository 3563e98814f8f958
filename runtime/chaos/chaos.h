// Fault injection (SPEC §6, ARCHITECTURE.md "Failure injection as a first-class seam").
// Every injected fault goes through here: the `--chaos` spec (ChaosSpec), the decisions
// (Chaos: does this operator fail on this record, does the process die at this source
// event or at this hazard point) and the crash itself (CrashNow).
//
// Decisions are reproducible: a probabilistic decision is a pure function of (seed, node,
// position), StableHash mapped to [0, 1) and compared with P, so the same seed gives the
// same faults on every run and under every guarantee. A fault fires at most once at a
// given *place* (kind, node, position): a place that fired is remembered in memory (so
// in-process recoveries replay it cleanly) and can be exported just before a
// self-inflicted crash into the state file and imported after the restart (so the
// restarted process replays it cleanly too). Every run therefore makes progress.
//
// Counting that is not a pure function of positions, per *process invocation*:
//   crash=N          the source events this process has seen (OnSourceEvent calls); the
//                    place is (crash-count, N), so once exported and imported it never
//                    fires again, although the count restarts at 0 in the new process.
//   crash-at=POINT:K the passages of POINT in this process; place (crash-at POINT, K).
//
// Threading: ChaosSpec is a plain value. A Chaos is shared by every task thread: every
// method is thread-safe. enabled() is a const bool read with no lock, so with an empty
// spec the hot path pays one predictable branch. When enabled, the probabilistic checks
// are lock-free hashes; the mutex is taken only when a fault would fire (to consult and
// record the fired set), at each Passage(), and by Export/ImportFired.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "runtime/core/status.h"

namespace onceflow {

// The hazard points a crash can be aimed at (ARCHITECTURE.md "Hazards").
enum class HazardPoint : uint8_t {
  kBeforeBarrier,            // a source is about to inject a barrier
  kAfterBarrier,             // a task forwarded a barrier (its snapshot taken)
  kAfterSinkWrite,           // a sink's write(2) returned, its commit not yet done
  kInCheckpointTxn,          // inside the checkpoint's SQLite transaction, before COMMIT
  kAfterCheckpointComplete,  // the checkpoint committed, sinks not yet told
  kInDedupCommit,            // inside a dedup per-batch commit transaction
  // Inside the transaction that migrates an older state file's schema, before COMMIT.
  // Fires whenever a migration runs (K is ignored): the fired set cannot be recorded in
  // the file being migrated, and the migration runs once per file anyway.
  kInMigration,
};
inline constexpr int kHazardPointCount = 7;

// "before-barrier", ... (the spelling of --chaos).
const char* HazardPointName(HazardPoint point);
// Parses a spelling of HazardPointName; false when unknown.
bool ParseHazardPoint(std::string_view name, HazardPoint* point);
// Every spelling, in enum order (for did-you-mean and help).
std::vector<std::string> HazardPointNames();

// The parsed `--chaos` value. Empty (the default) means no fault injection.
struct ChaosSpec {
  struct Fail {
    std::string node;
    double probability = 0;
  };
  struct CrashAt {
    HazardPoint point = HazardPoint::kBeforeBarrier;
    uint64_t passage = 1;  // K >= 1
  };

  uint64_t seed = 0;
  std::vector<Fail> fail;               // in the order given; one entry per node
  std::optional<uint64_t> crash_after;  // crash=N, N >= 1
  double crash_probability = 0;         // crash-prob=P
  std::vector<CrashAt> crash_at;        // in the order given, no duplicates

  // Parses "seed=7,fail=parse:0.01,crash-at=after-sink-write:3". "" is the empty spec.
  // Items are separated by ',', surrounding spaces are ignored. Errors are
  // Status::Invalid naming the item: unknown item (with "did you mean"), malformed
  // number, probability outside [0, 1], N or K below 1, an item given twice (seed,
  // crash, crash-prob, fail for the same node, crash-at for the same point and K).
  // Node names are not checked here: see NodeNames().
  static Status Parse(std::string_view text, ChaosSpec* out);

  // The node names used by `fail=` items, in the order given, for the caller to check
  // against the pipeline ("fail=prase:0.1: 'prase' is not a node; did you mean ...").
  std::vector<std::string> NodeNames() const;
  // True when the spec injects nothing (a seed alone injects nothing).
  bool empty() const;
  // The canonical spelling, parseable again: for logs and the summary.
  std::string ToString() const;
};

// The decisions of one run. See the file comment for reproducibility and threading.
class Chaos {
 public:
  // A place where a fault fired. `kind` separates operator failures, probabilistic
  // crashes, the crash=N count and crash-at passages; `node` is the operator or source
  // node (or the hazard point's name for kCrashAt, "" for kCrashCount).
  enum class Kind : uint8_t { kFail = 1, kCrashProb = 2, kCrashCount = 3, kCrashAt = 4 };
  struct Place {
    Kind kind = Kind::kFail;
    std::string node;
    uint64_t position = 0;
    bool operator<(const Place& o) const {
      return std::tie(kind, node, position) < std::tie(o.kind, o.node, o.position);
    }
    bool operator==(const Place& o) const {
      return kind == o.kind && node == o.node && position == o.position;
    }
  };

  Chaos() = default;  // disabled
  explicit Chaos(ChaosSpec spec);
  Chaos(const Chaos&) = delete;
  Chaos& operator=(const Chaos&) = delete;

  // False for an empty spec: every decision below is then false without looking further.
  bool enabled() const { return enabled_; }
  const ChaosSpec& spec() const { return spec_; }

  // Should operator `node` fail (throw / return a transient error) on the record at
  // source `position`? True at most once per (node, position); records the place.
  bool ShouldFail(std::string_view node, uint64_t position);
  // The probability configured for `node` (0 when none): lets a task skip ShouldFail
  // entirely for nodes that never fail.
  double FailProbability(std::string_view node) const;

  // A source `source` is about to hand on the event at `position` (stable across runs,
  // e.g. its offset). Counts it for crash=N and draws crash-prob from (seed, source,
  // position). True means: crash now (export the fired set, then CrashNow()). The place
  // is recorded before returning.
  bool OnSourceEvent(std::string_view source, uint64_t position);

  // A thread passes hazard `point`. True on the K-th passage of a configured
  // crash-at=POINT:K whose place has not fired; the place is recorded.
  bool Passage(HazardPoint point);

  // The pure draw behind the probabilistic decisions: StableHash of (seed, kind, node,
  // position) mapped to [0, 1). Exposed for tests and for callers that only need it.
  static double Draw(uint64_t seed, Kind kind, std::string_view node, uint64_t position);

  // The fired places, serialised compactly and canonically (sorted): a version byte 1,
  // then per place: kind byte, varint node length, node bytes, varint position. An empty
  // set exports as "" (so "no chaos" stores nothing).
  std::string ExportFired() const;
  // Adds the places in `bytes` (an ExportFired value) to the fired set. Status::State
  // on malformed bytes (the set is then unchanged).
  Status ImportFired(std::string_view bytes);
  bool HasFired(const Place& place) const;
  size_t fired_count() const;

 private:
  // Records `place`; false when it had fired already.
  bool Fire(Place place);

  ChaosSpec spec_;
  bool enabled_ = false;
  std::map<std::string, double, std::less<>> fail_;  // node -> P, read-only after ctor
  std::atomic<uint64_t> source_events_{0};
  mutable std::mutex mu_;
  std::set<Place> fired_;                      // guarded by mu_
  uint64_t passages_[kHazardPointCount] = {};  // guarded by mu_
};

// Kills this process at once with SIGKILL, as `kill -9` would: no destructor, no atexit
// handler, no stdio flush, no SQLite rollback; a parent sees WIFSIGNALED with signal 9.
// The one place a self-inflicted crash happens. Never returns.
[[noreturn]] void CrashNow();

}  // namespace onceflow

// Unit tests of BarrierAligner, driven step by step like Heron's checkpoint-gateway test:
// every callback appends a line to a log, and each step checks what was delivered,
// buffered or aligned. No threads, no clock: a fake clock is a counter.
#include "runtime/guarantees/barrier_aligner.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace onceflow {
namespace {

RecordBatch Batch(std::initializer_list<int64_t> values) {
  RecordBatch batch;
  for (int64_t v : values) {
    Record r;
    r.Set("v", Value::Int(v));
    batch.push_back(std::move(r));
  }
  return batch;
}

// Owns an aligner and logs what it does: "c0:1,2" (records of channel 0 delivered),
// "end c1", "wm c0", "aligned 5 after 30ns", "abort 5".
struct Harness {
  explicit Harness(int channels, BarrierMode mode = BarrierMode::kAligned,
                   size_t max_buffered = 1024)
      : aligner(channels, BarrierAligner::Options{mode, max_buffered},
                BarrierAligner::Callbacks{
                    [this](uint64_t id, int64_t ns) {
                      log.push_back("aligned " + std::to_string(id) + " after " +
                                    std::to_string(ns) + "ns");
                    },
                    [this](uint64_t id) { log.push_back("abort " + std::to_string(id)); },
                    [this](int channel, Envelope& env) { Deliver(channel, env); },
                    [this] { return now; }}) {}

  void Deliver(int channel, Envelope& env) {
    const std::string c = "c" + std::to_string(channel);
    switch (env.kind) {
      case Envelope::Kind::kBatch: {
        std::string line = c + ":";
        for (size_t i = 0; i < env.batch.size(); ++i) {
          line += (i ? "," : "") + std::to_string(env.batch[i].Get("v")->as_int());
        }
        log.push_back(line);
        break;
      }
      case Envelope::Kind::kEnd:
        log.push_back("end " + c);
        break;
      case Envelope::Kind::kWatermark:
        log.push_back("wm " + c);
        break;
      case Envelope::Kind::kBarrier:
        log.push_back("BARRIER DELIVERED " + c);
        break;
    }
  }

  // Returns the log since the previous call and clears it.
  std::vector<std::string> Take() {
    std::vector<std::string> out;
    out.swap(log);
    return out;
  }

  int64_t now = 0;
  std::vector<std::string> log;
  BarrierAligner aligner;
};

using Log = std::vector<std::string>;

TEST_CASE("aligned: buffer after the first barrier, release on the last") {
  Harness h(3);
  BarrierAligner& a = h.aligner;
  a.OnRecords(0, Batch({1}));
  a.OnRecords(1, Batch({2}));
  CHECK(h.Take() == Log{"c0:1", "c1:2"});

  h.now = 100;
  a.OnBarrier(0, 1);
  CHECK(a.IsBlocked(0));
  CHECK_FALSE(a.IsBlocked(1));
  CHECK(a.aligning() == 1);

  // These should be buffered: channel 0 is blocked.
  a.OnRecords(0, Batch({3}));
  a.OnRecords(0, Batch({4}));
  CHECK(h.Take().empty());
  CHECK(a.buffered() == 2);

  // Channel 1 still flows until its barrier arrives.
  a.OnRecords(1, Batch({5}));
  CHECK(h.Take() == Log{"c1:5"});
  a.OnBarrier(1, 1);
  CHECK(a.IsBlocked(1));
  a.OnRecords(1, Batch({6}));
  CHECK(h.Take().empty());

  a.OnRecords(2, Batch({7}));
  CHECK(h.Take() == Log{"c2:7"});
  h.now = 130;
  a.OnBarrier(2, 1);
  // Things should have been drained: aligned first, then the buffer in FIFO order per
  // channel.
  CHECK(h.Take() == Log{"aligned 1 after 30ns", "c0:3", "c0:4", "c1:6"});
  CHECK(a.buffered() == 0);
  for (int c = 0; c < 3; ++c) CHECK_FALSE(a.IsBlocked(c));
  CHECK(a.aligning() == 0);

  // The next checkpoint aligns the same way.
  a.OnBarrier(2, 2);
  a.OnBarrier(1, 2);
  a.OnBarrier(0, 2);
  CHECK(h.Take() == Log{"aligned 2 after 0ns"});
}

TEST_CASE("aligned: released records keep FIFO order per channel, watermarks and ends too") {
  Harness h(2);
  BarrierAligner& a = h.aligner;
  a.OnBarrier(0, 1);
  a.OnRecords(0, Batch({1, 2}));
  Envelope wm;
  wm.kind = Envelope::Kind::kWatermark;
  a.OnEnvelope(0, std::move(wm));
  a.OnRecords(0, Batch({3}));
  a.OnEnd(0);
  CHECK(h.Take().empty());
  CHECK_FALSE(a.IsEnded(0));  // a buffered end is not processed yet
  a.OnBarrier(1, 1);
  CHECK(h.Take() == Log{"aligned 1 after 0ns", "c0:1,2", "wm c0", "c0:3", "end c0"});
  CHECK(a.IsEnded(0));
  CHECK_FALSE(a.AllEnded());
}

TEST_CASE("aligned: a single-input task aligns at its first barrier") {
  for (BarrierMode mode :
       {BarrierMode::kAligned, BarrierMode::kUnaligned, BarrierMode::kTracking}) {
    Harness h(1, mode);
    h.aligner.OnRecords(0, Batch({1}));
    h.aligner.OnBarrier(0, 1);
    h.aligner.OnRecords(0, Batch({2}));
    CHECK(h.Take() == Log{"c0:1", "aligned 1 after 0ns", "c0:2"});
    CHECK_FALSE(h.aligner.IsBlocked(0));
  }
}

TEST_CASE("aligned: a newer barrier abandons the current alignment and resets") {
  Harness h(3);
  BarrierAligner& a = h.aligner;
  h.now = 10;
  a.OnBarrier(0, 1);
  a.OnRecords(0, Batch({1}));
  a.OnBarrier(0, 2);  // buffered behind checkpoint 1 on channel 0
  a.OnRecords(0, Batch({2}));
  a.OnBarrier(1, 1);
  a.OnRecords(1, Batch({3}));
  CHECK(h.Take().empty());

  // Channel 2 skips checkpoint 1 (say it was abandoned upstream) and sends 2.
  h.now = 50;
  a.OnBarrier(2, 2);
  // 1 is given up; channel 0's buffer is released up to its copy of 2, which counts for
  // 2 and blocks channel 0 again (record 2 stays buffered); channel 1 is released.
  CHECK(h.Take() == Log{"abort 1", "c0:1", "c1:3"});
  CHECK(a.aligning() == 2);
  CHECK(a.IsBlocked(0));
  CHECK_FALSE(a.IsBlocked(1));
  CHECK(a.IsBlocked(2));
  CHECK(a.buffered() == 1);

  // A stale copy of 1 on channel 1 is ignored; it neither blocks nor aligns.
  a.OnBarrier(1, 1);
  CHECK(h.Take().empty());
  CHECK_FALSE(a.IsBlocked(1));

  h.now = 80;
  a.OnBarrier(1, 2);
  CHECK(h.Take() == Log{"aligned 2 after 30ns", "c0:2"});
  CHECK(a.newest_barrier() == 2);

  // Stale copies after completion are ignored too.
  a.OnBarrier(0, 2);
  a.OnBarrier(0, 1);
  CHECK(h.Take().empty());
  CHECK_FALSE(a.IsBlocked(0));
}

TEST_CASE("aligned: end of input on a channel counts as its barrier") {
  Harness h(3);
  BarrierAligner& a = h.aligner;
  a.OnBarrier(0, 1);
  a.OnRecords(0, Batch({1}));
  a.OnBarrier(1, 1);
  CHECK(h.Take().empty());
  // Channel 2 ends instead of sending barrier 1: its end is processed (delivered), then
  // the alignment completes.
  a.OnRecords(2, Batch({2}));
  a.OnEnd(2);
  CHECK(h.Take() == Log{"c2:2", "end c2", "aligned 1 after 0ns", "c0:1"});
  CHECK(a.IsEnded(2));
}

TEST_CASE("aligned: a channel that ended before the barrier is aligned for every barrier") {
  Harness h(3);
  BarrierAligner& a = h.aligner;
  a.OnEnd(1);
  CHECK(h.Take() == Log{"end c1"});
  a.OnBarrier(0, 1);
  CHECK(a.IsBlocked(0));
  a.OnBarrier(2, 1);
  CHECK(h.Take() == Log{"aligned 1 after 0ns"});
  // With a single live channel left, the next barrier aligns at once.
  a.OnEnd(2);
  a.OnBarrier(0, 2);
  CHECK(h.Take() == Log{"end c2", "aligned 2 after 0ns"});
  CHECK_FALSE(a.IsBlocked(0));
  a.OnEnd(0);
  CHECK(a.AllEnded());
}

TEST_CASE("aligned: the buffer bound aborts the alignment instead of growing") {
  Harness h(2, BarrierMode::kAligned, /*max_buffered=*/2);
  BarrierAligner& a = h.aligner;
  a.OnBarrier(0, 1);
  a.OnRecords(0, Batch({1}));
  a.OnRecords(0, Batch({2}));
  CHECK(h.Take().empty());
  a.OnRecords(0, Batch({3}));  // the third envelope exceeds the bound
  CHECK(h.Take() == Log{"abort 1", "c0:1", "c0:2", "c0:3"});
  CHECK_FALSE(a.IsBlocked(0));
  CHECK(a.buffered() == 0);
  a.OnBarrier(1, 1);  // now stale
  CHECK(h.Take().empty());
  CHECK_FALSE(a.IsBlocked(1));
}

TEST_CASE("unaligned: snapshot at the first barrier, never block, ignore the other copies") {
  Harness h(3, BarrierMode::kUnaligned);
  BarrierAligner& a = h.aligner;
  a.OnBarrier(1, 1);
  CHECK(h.Take() == Log{"aligned 1 after 0ns"});
  CHECK_FALSE(a.IsBlocked(1));
  a.OnRecords(1, Batch({1}));
  a.OnBarrier(0, 1);
  a.OnRecords(0, Batch({2}));
  a.OnBarrier(2, 1);
  CHECK(h.Take() == Log{"c1:1", "c0:2"});
  a.OnBarrier(2, 3);
  a.OnBarrier(0, 2);  // older than 3: ignored
  CHECK(h.Take() == Log{"aligned 3 after 0ns"});
  CHECK(a.buffered() == 0);
}

TEST_CASE("tracking: never block, snapshot when the last copy arrived") {
  Harness h(2, BarrierMode::kTracking);
  BarrierAligner& a = h.aligner;
  h.now = 5;
  a.OnBarrier(0, 1);
  CHECK_FALSE(a.IsBlocked(0));
  a.OnRecords(0, Batch({1}));
  CHECK(h.Take() == Log{"c0:1"});
  h.now = 25;
  a.OnBarrier(1, 1);
  CHECK(h.Take() == Log{"aligned 1 after 20ns"});
  // A newer barrier abandons the older one here too.
  a.OnBarrier(0, 2);
  a.OnBarrier(0, 3);
  CHECK(h.Take() == Log{"abort 2"});
  a.OnEnd(1);
  CHECK(h.Take() == Log{"end c1", "aligned 3 after 0ns"});
}

}  // namespace
}  // namespace onceflow

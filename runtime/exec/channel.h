// Bounded channels between tasks. A Channel is a FIFO of Envelopes (a batch of records or
// a control item) from exactly one producer task to exactly one consumer task; its
// capacity is counted in envelopes, and a full channel blocks its producer (backpressure:
// nothing between tasks is unbounded).
//
// A consumer usually reads several channels (fan-in, or one channel per upstream
// instance). It does not block on any one of them: every channel it reads signals the
// consumer's single Notifier on each push, and the consumer polls its channels round robin
// and sleeps on the Notifier only when all were empty (see Notifier for the protocol that
// avoids lost wake-ups).
//
// Threading: Push is called by the producer thread only, TryPop / Recycle by the consumer
// thread only, Cancel and size() from any thread. One mutex per channel, taken once per
// envelope (a batch of ~1024 records), never per record; waiting uses condition variables,
// never spinning — the machine often has more threads than cores.
//
// Batch recycling: the queue is a ring of Envelope slots, and both ends *swap* vectors with
// a slot instead of moving them: TryPop leaves the consumer's finished (cleared) vector in
// the slot it empties, and Push hands that vector to the producer in exchange for the batch
// it enqueues. Vectors thus circulate with their capacity intact and the steady state
// allocates no batch storage.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/core/record.h"

namespace onceflow {

// What travels on a channel.
struct Envelope {
  enum class Kind : uint8_t {
    kBatch,      // `batch` holds records
    kEnd,        // the producer will send nothing more; see `exhausted`
    kBarrier,    // checkpoint barrier `id` (snapshot / at-least-once; not produced yet)
    kWatermark,  // event-time watermark `ts` (windows; not produced yet)
  };
  Kind kind = Kind::kBatch;
  RecordBatch batch;
  uint64_t id = 0;
  int64_t ts = 0;
  // kEnd only: true when the producer's input really ended (every source upstream reached
  // its end), false when the run was stopped early (signal, --max-events, --duration). A
  // consumer runs its operators' Finish() only when every input ended exhausted: `emit:
  // final` values must not be emitted for a stopped run (SPEC §2).
  bool exhausted = false;
  // Sequenced channels (dedup mode): the envelope covers positions (seq_start, seq_end] —
  // one sequence number of an operator's output, or a range of record counts of a source
  // (with pos_name/pos_offset, the source position at seq_end). An exhausted kEnd is
  // sequenced too; a kEnd that is not exhausted (a stopped run) is not.
  int64_t seq_start = 0;
  int64_t seq_end = 0;
  int64_t pos_offset = 0;
  std::string pos_name;
  // Out of a source chain: the record count before the source Read the batch came from;
  // a record's own position is src_base + origin.read_index + 1.
  int64_t src_base = 0;
};

// One per consumer task: the place where it sleeps while all its channels are empty.
//
// Protocol (no lost wake-up): the consumer reads Epoch(), then polls every channel; only if
// all were empty it calls Wait(epoch). A producer pushes first and signals after, so a push
// that the poll missed has bumped the epoch and Wait returns at once.
class Notifier {
 public:
  uint64_t Epoch() const {
    std::lock_guard<std::mutex> lock(mu_);
    return epoch_;
  }
  void Signal() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++epoch_;
      if (!waiting_) return;
    }
    cv_.notify_one();
  }
  // Blocks until the epoch moved past `seen` or Cancel() was called. Returns false once
  // cancelled.
  bool Wait(uint64_t seen) {
    std::unique_lock<std::mutex> lock(mu_);
    waiting_ = true;
    cv_.wait(lock, [&] { return epoch_ != seen || cancelled_; });
    waiting_ = false;
    return !cancelled_;
  }
  // Like Wait, but gives up after `timeout_ms`; returns false only once cancelled.
  bool WaitFor(uint64_t seen, int64_t timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    waiting_ = true;
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                 [&] { return epoch_ != seen || cancelled_; });
    waiting_ = false;
    return !cancelled_;
  }
  void Cancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t epoch_ = 0;
  bool waiting_ = false;
  bool cancelled_ = false;
};

class Channel {
 public:
  // `capacity` >= 1 envelopes. `consumer` (may be null in tests) is signalled on each
  // push and on cancellation; it must outlive the channel's use.
  explicit Channel(size_t capacity, Notifier* consumer = nullptr);
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Producer: enqueues `*env`, blocking while the channel is full. On return `env->batch`
  // is an empty vector (a recycled one with capacity when available) ready for reuse.
  // Returns false, leaving the envelope unsent, once the channel is cancelled.
  bool Push(Envelope* env);
  // Convenience for control items.
  bool PushEnd(bool exhausted);

  // Consumer: moves the oldest envelope into `*env` and returns true, or returns false
  // when the channel is empty (or cancelled). Whatever vector `env->batch` held before is
  // cleared and kept for recycling, so pass the envelope of the previous pop back in.
  bool TryPop(Envelope* env);

  // Wakes every thread blocked in Push (and the consumer's notifier); from then on Push
  // and TryPop fail. Used when a run fails, so no thread stays blocked.
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Envelopes queued now (approximate when read from another thread; for progress).
  size_t size() const { return size_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  Notifier* const consumer_;
  std::mutex mu_;
  std::condition_variable not_full_;
  std::vector<Envelope> ring_;          // capacity_ slots, guarded by mu_
  size_t head_ = 0;                     // oldest slot, guarded by mu_
  size_t count_ = 0;                    // guarded by mu_
  bool producer_waiting_ = false;       // guarded by mu_
  std::atomic<bool> cancelled_{false};  // written under mu_
  std::atomic<size_t> size_{0};
};

}  // namespace onceflow

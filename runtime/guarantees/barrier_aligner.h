// BarrierAligner: checkpoint-barrier alignment for one task with N input channels, as
// pure logic (Heron's checkpoint gateway): no threads, no I/O, no clock of its own. The
// task's loop feeds it what it pops from each channel; it hands back, through injected
// callbacks, the items the task should process now, and tells the task when to snapshot.
//
// Protocol (asynchronous barrier snapshots, ARCHITECTURE.md):
//
//   kAligned (effectively-once / snapshot). When barrier n arrives on channel c, c is
//     *blocked*: the task should stop popping it (IsBlocked(c)). Once n arrived on every
//     channel that has not ended, on_aligned(n) is called (the task snapshots its state
//     and forwards barrier n), every channel unblocks, and whatever was buffered is
//     delivered in FIFO order per channel. A channel that ended (kEnd) counts as aligned
//     for every later barrier, so one live channel left aligns at its first barrier.
//   kUnaligned (at-least-once as ARCHITECTURE.md words it): on_aligned(n) at the *first*
//     copy of barrier n; never blocks; later copies of n (and older ids) are ignored.
//   kTracking (Flink's BarrierTracker): never blocks, like kUnaligned, but on_aligned(n)
//     fires when n arrived on every non-ended channel, like kAligned. See the note in
//     the report/issue: snapshotting at the *first* barrier can miss the effect of
//     records that precede n on a slower channel (their source offsets are already
//     inside checkpoint n, so they are never replayed); at the last barrier the
//     snapshot holds everything before n on every channel plus some records after it,
//     which at-least-once allows (they repeat).
//
// Newer barrier while aligning (Flink's BarrierBuffer): if barrier m > n arrives on an
// unblocked channel while n is being aligned, n is abandoned (on_abort(n)), every
// channel unblocks, and alignment of m starts with that channel as its first arrival.
// The channels that had delivered n but not m get their buffered items (all of which
// followed n on that channel) delivered in FIFO order; a copy of m met among them counts
// for m when it is reached (and blocks the channel again from that point). Barriers with
// an id not above the newest one seen (stale copies of a completed or abandoned
// checkpoint) are dropped.
//
// Blocking versus buffering: the executor should stop popping a channel while
// IsBlocked(channel), so nothing needs buffering and memory stays bounded by the channel
// capacities. Items fed for a blocked channel anyway are buffered, at most
// `max_buffered` envelopes in total; one more aborts the alignment (on_abort(n), as
// Flink's alignment size limit does), unblocks every channel and delivers the buffer:
// a checkpoint is lost, never data or order. Items for unblocked channels are delivered
// at once, synchronously, inside the call that fed them.
//
// Barriers are consumed here and never delivered; batches, watermarks and ends are
// delivered through `deliver` (the task processes them; an end also tells it that the
// channel is done). Callbacks run inside the feeding call, on the caller's thread; they
// must not call back into the aligner.
//
// Threading: none. One instance belongs to one task and is used by that task's thread
// only (like an Operator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "runtime/core/record.h"
#include "runtime/exec/channel.h"

namespace onceflow {

enum class BarrierMode : uint8_t {
  kAligned,    // block channels until barrier n arrived on all: exact snapshot
  kUnaligned,  // snapshot at the first barrier n, never block
  kTracking,   // snapshot when barrier n arrived on all, never block
};

class BarrierAligner {
 public:
  struct Callbacks {
    // The task snapshots its state for checkpoint `id` and forwards barrier `id`.
    // `alignment_ns` is now() at this call minus now() when the first copy of `id`
    // arrived (0 when it aligned at once, and always 0 in kUnaligned mode).
    std::function<void(uint64_t id, int64_t alignment_ns)> on_aligned;
    // Checkpoint `id` will not be aligned by this task (a newer barrier overtook it, or
    // the buffer bound was hit). May be empty.
    std::function<void(uint64_t id)> on_abort;
    // An item from `channel` for the task to process now: kBatch, kWatermark or kEnd.
    // The aligner does not look at `env` after the call, so the callee may swap or move
    // its batch (channel batch recycling).
    std::function<void(int channel, Envelope& env)> deliver;
    // Monotonic clock in nanoseconds, for alignment time. May be empty (times are 0).
    std::function<int64_t()> now_ns;
  };

  struct Options {
    BarrierMode mode = BarrierMode::kAligned;
    // Envelopes held for blocked channels, in total, before the alignment is aborted.
    size_t max_buffered = 1024;
  };

  // `channels` >= 1 input channels, numbered 0..channels-1.
  BarrierAligner(int channels, Options options, Callbacks callbacks);
  BarrierAligner(const BarrierAligner&) = delete;
  BarrierAligner& operator=(const BarrierAligner&) = delete;

  // Feeds one item popped from `channel`. Any kind; kBarrier uses `env.id`.
  void OnEnvelope(int channel, Envelope env);
  // Conveniences for OnEnvelope.
  void OnBarrier(int channel, uint64_t checkpoint_id);
  void OnRecords(int channel, RecordBatch batch);
  void OnEnd(int channel, bool exhausted = true);

  // True while the task should not pop `channel` (it delivered the barrier being aligned).
  bool IsBlocked(int channel) const { return channels_[channel].blocked; }
  // True once kEnd was *processed* for `channel` (a buffered end does not count yet).
  bool IsEnded(int channel) const { return channels_[channel].ended; }
  // True when every channel's end was processed.
  bool AllEnded() const { return live_channels_ == 0; }
  // The checkpoint being aligned, or 0 when none is.
  uint64_t aligning() const { return aligning_; }
  // The newest barrier id seen (aligned, aborted or being aligned), 0 before any.
  uint64_t newest_barrier() const { return newest_; }
  // Envelopes buffered now, over all channels.
  size_t buffered() const { return buffered_; }
  int channels() const { return static_cast<int>(channels_.size()); }

 private:
  struct ChannelState {
    bool blocked = false;
    bool ended = false;
    bool arrived = false;  // barrier `aligning_` arrived on this channel
    std::deque<Envelope> buffer;
  };

  // Processes one item of an unblocked channel.
  void Process(int channel, Envelope& env);
  void ProcessBarrier(int channel, uint64_t id);
  void StartAlignment(int channel, uint64_t id);
  // Calls on_aligned and unblocks when barrier `aligning_` arrived on every channel that
  // has not ended.
  void MaybeComplete();
  void Abort();
  void UnblockAll();
  // Delivers buffered items of unblocked channels until none is left (an item may block
  // its channel again: the rest then waits, in order).
  void Drain();
  int64_t Now() const { return callbacks_.now_ns ? callbacks_.now_ns() : 0; }

  const Options options_;
  const Callbacks callbacks_;
  std::vector<ChannelState> channels_;
  int live_channels_;  // channels whose end was not processed
  uint64_t aligning_ = 0;
  uint64_t newest_ = 0;
  int64_t started_ns_ = 0;
  size_t buffered_ = 0;
};

}  // namespace onceflow

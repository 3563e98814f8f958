// BarrierAligner: see barrier_aligner.h for the protocol. Single-threaded by contract.
#include "runtime/guarantees/barrier_aligner.h"

#include <cassert>
#include <utility>

namespace onceflow {

BarrierAligner::BarrierAligner(int channels, Options options, Callbacks callbacks)
    : options_(options),
      callbacks_(std::move(callbacks)),
      channels_(static_cast<size_t>(channels)),
      live_channels_(channels) {
  assert(channels >= 1);
  assert(callbacks_.on_aligned && callbacks_.deliver);
}

void BarrierAligner::OnEnvelope(int channel, Envelope env) {
  assert(channel >= 0 && channel < channels());
  ChannelState& ch = channels_[channel];
  if (ch.blocked) {
    // The caller should not have popped this channel (IsBlocked): hold the item, bounded.
    ch.buffer.push_back(std::move(env));
    ++buffered_;
    if (buffered_ > options_.max_buffered) Abort();
  } else {
    Process(channel, env);
  }
  Drain();
}

void BarrierAligner::OnBarrier(int channel, uint64_t checkpoint_id) {
  Envelope env;
  env.kind = Envelope::Kind::kBarrier;
  env.id = checkpoint_id;
  OnEnvelope(channel, std::move(env));
}

void BarrierAligner::OnRecords(int channel, RecordBatch batch) {
  Envelope env;
  env.kind = Envelope::Kind::kBatch;
  env.batch = std::move(batch);
  OnEnvelope(channel, std::move(env));
}

void BarrierAligner::OnEnd(int channel, bool exhausted) {
  Envelope env;
  env.kind = Envelope::Kind::kEnd;
  env.exhausted = exhausted;
  OnEnvelope(channel, std::move(env));
}

void BarrierAligner::Process(int channel, Envelope& env) {
  ChannelState& ch = channels_[channel];
  switch (env.kind) {
    case Envelope::Kind::kBarrier:
      ProcessBarrier(channel, env.id);
      return;
    case Envelope::Kind::kEnd:
      if (ch.ended) return;  // a second end is a producer bug; count the channel once
      ch.ended = true;
      ch.arrived = false;
      --live_channels_;
      callbacks_.deliver(channel, env);
      // An ended channel counts as aligned: it may have been the last one missing.
      MaybeComplete();
      return;
    case Envelope::Kind::kBatch:
    case Envelope::Kind::kWatermark:
      callbacks_.deliver(channel, env);
      return;
  }
}

void BarrierAligner::ProcessBarrier(int channel, uint64_t id) {
  ChannelState& ch = channels_[channel];
  if (options_.mode == BarrierMode::kUnaligned) {
    if (id <= newest_) return;  // another copy of a barrier already snapshotted
    newest_ = id;
    callbacks_.on_aligned(id, 0);
    return;
  }
  if (id > newest_) {
    if (aligning_ != 0) {
      // A newer checkpoint overtook the one being aligned (its barrier n was lost or
      // n was abandoned upstream): give n up, release every channel, align m afresh.
      const uint64_t abandoned = aligning_;
      aligning_ = 0;
      UnblockAll();
      if (callbacks_.on_abort) callbacks_.on_abort(abandoned);
    }
    StartAlignment(channel, id);
    return;
  }
  if (id == aligning_ && !ch.arrived) {
    ch.arrived = true;
    if (options_.mode == BarrierMode::kAligned) ch.blocked = true;
    MaybeComplete();
  }
  // Otherwise stale: a copy of a checkpoint already aligned or abandoned. Dropped.
}

void BarrierAligner::StartAlignment(int channel, uint64_t id) {
  newest_ = id;
  aligning_ = id;
  started_ns_ = Now();
  ChannelState& ch = channels_[channel];
  ch.arrived = true;
  if (options_.mode == BarrierMode::kAligned) ch.blocked = true;
  MaybeComplete();
}

void BarrierAligner::MaybeComplete() {
  if (aligning_ == 0) return;
  for (const ChannelState& ch : channels_) {
    if (!ch.ended && !ch.arrived) return;
  }
  const uint64_t id = aligning_;
  aligning_ = 0;
  UnblockAll();
  // The snapshot happens here, before any buffered item (all of which followed barrier
  // `id` on its channel) is delivered by Drain().
  callbacks_.on_aligned(id, Now() - started_ns_);
}

void BarrierAligner::Abort() {
  if (aligning_ == 0) return;
  const uint64_t abandoned = aligning_;
  aligning_ = 0;
  UnblockAll();
  if (callbacks_.on_abort) callbacks_.on_abort(abandoned);
}

void BarrierAligner::UnblockAll() {
  for (ChannelState& ch : channels_) {
    ch.blocked = false;
    ch.arrived = false;
  }
}

void BarrierAligner::Drain() {
  // Each pass delivers, per channel, buffered items until the buffer is empty or the
  // channel blocks again (a buffered barrier m). Delivering a barrier can complete an
  // alignment and unblock a channel visited earlier in the pass, hence the outer loop.
  bool progress = true;
  while (progress && buffered_ > 0) {
    progress = false;
    for (int c = 0; c < channels(); ++c) {
      ChannelState& ch = channels_[c];
      while (!ch.blocked && !ch.buffer.empty()) {
        Envelope env = std::move(ch.buffer.front());
        ch.buffer.pop_front();
        --buffered_;
        Process(c, env);
        progress = true;
      }
    }
  }
}

}  // namespace onceflow

// Event time for `window` and `join`: reading a record's time field, the watermark, and
// the rule for late records.
//
// Watermark (SPEC §3): the minimum over the operator's input channels of (max event time
// seen on that channel − lateness). A channel is one upstream instance's stream on one
// edge (NodeContext::channel); records of one channel arrive in the order they were sent,
// so with event times ordered per channel nothing is ever late and the output does not
// depend on how the channels interleave. A channel that has carried no record yet holds
// the watermark at −∞ until it does, until an in-band watermark of its sender moves it
// (Operator::OnWatermark), or until it ends (+∞). Once every channel ended the watermark
// is +∞ and everything open fires.
//
// Where the watermark lives: like all operator state, in the host-owned KeyedState, so
// checkpoints, dedup commits, replays and `state get` cover it. It is one entry per
// instance under a reserved key, ["#watermarks", instance, salt] (a 4th null when the
// node's own key has 3 fields, so it can never equal a record key), whose salt makes the
// key hash to this very instance: a restore places every key by its hash, and this one
// must come back here. The value: [parallelism, channels, max_0, …, max_{n−1}]. An entry
// written with another parallelism or channel count (a restore with a new parallelism)
// describes channels that no longer exist and is dropped: the watermark starts again at
// −∞, which delays firing but never fires early.
//
// Late records (counted in the node's `skipped`; written to the dead-letter file with
// error "late record" when the node has `on_error: dead_letter`; otherwise dropped, never
// an error whatever on_error says): see window.cc and join.cc for what late means there.
//
// Threading: one instance per operator instance (task thread).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "operators/ops/keyed.h"
#include "runtime/core/key.h"
#include "runtime/core/node.h"
#include "runtime/plan/partitioner.h"
#include "runtime/state/keyed_state.h"

namespace onceflow::ops {

constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();

// Reads rec's key (encoded into *key) and event time (epoch ms, an integer or a finite
// number, from `time_field`). A missing key field or a missing or non-numeric time is a
// data error: reported through ctx.errors, returns false with *st holding the handler's
// verdict.
inline bool ReadKeyAndTime(const Record& rec, const std::vector<std::string>& key_fields,
                           const std::string& time_field, std::string_view op, NodeContext& ctx,
                           std::string* key, int64_t* t, Status* st) {
  if (!ExtractKey(rec, key_fields, op, ctx.errors, key, st)) return false;
  const Value* v = rec.Get(time_field);
  if (EventTimeMs(v, t)) return true;
  *st = ctx.errors->OnRecordError(
      rec, std::string(op) + ": time field '" + time_field +
               (v == nullptr ? "' is missing" : "' is not a number (epoch ms)"));
  return false;
}

// A late record: dead-lettered under `on_error: dead_letter`, else counted and dropped.
inline Status DropLate(NodeContext& ctx, const Record& rec) {
  if (ctx.spec != nullptr && ctx.spec->on_error == OnError::kDeadLetter) {
    return ctx.errors->OnRecordError(rec, "late record");
  }
  if (ctx.metrics != nullptr) ctx.metrics->skipped.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

// a + b, saturating at the int64 range (event times near its ends must not wrap).
inline int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

class WatermarkTracker {
 public:
  // Loads this instance's channel maxima from ctx.state (after a restore) or starts them
  // at −∞. `key_fields`: the node's key, to keep the reserved key distinct from record keys.
  void Open(NodeContext& ctx, int64_t lateness, size_t key_fields) {
    state_ = ctx.state;
    lateness_ = lateness;
    parallelism_ = ctx.parallelism;
    key_fields_ = key_fields;
    max_.assign(static_cast<size_t>(std::max(1, ctx.input_channels)), kNoTime);
    key_.clear();
    for (int64_t salt = 0;; ++salt) {
      key_.clear();
      EncodeValue(Value::String("#watermarks"), &key_);
      EncodeValue(Value::Int(ctx.instance), &key_);
      EncodeValue(Value::Int(salt), &key_);
      if (key_fields == 3) EncodeValue(Value::Null(), &key_);
      if (parallelism_ <= 1 || HashDestination(key_, parallelism_) == ctx.instance) break;
    }
    // Entries of other instances or parallelisms (restored here by their hash) are stale.
    std::vector<std::string> stale;
    state_->ForEach([&](std::string_view k, const StateValue& v) {
      if (k == key_) {
        if (v.size() == max_.size() + 2 && v[0].as_int() == parallelism_ &&
            v[1].as_int() == static_cast<int64_t>(max_.size())) {
          for (size_t c = 0; c < max_.size(); ++c) max_[c] = v[c + 2].as_int();
        } else {
          stale.emplace_back(k);
        }
      } else if (IsReserved(k)) {
        stale.emplace_back(k);
      }
    });
    for (const auto& k : stale) state_->Erase(k);
    Recompute();
    dirty_ = false;
  }

  // Whether `key` is a watermark entry (of any instance) rather than a record key: it
  // starts with "#watermarks" and has another number of fields than the node's key.
  bool IsReserved(std::string_view key) const {
    Value v;
    size_t n = 0;
    bool first = true;
    while (!key.empty()) {
      if (!DecodeValue(&key, &v)) return false;
      if (first && !(v.is_string() && v.str() == "#watermarks")) return false;
      first = false;
      ++n;
    }
    return n != key_fields_;
  }
  bool IsOwnKey(std::string_view key) const { return key == key_; }

  // A record of time t arrived on `channel`.
  void Observe(int channel, int64_t t) {
    int64_t& m = max_[Index(channel)];
    if (t <= m) return;
    const bool was_min = m == min_;
    m = t;
    dirty_ = true;
    if (was_min) Recompute();
  }
  // The channel carries no record before `ts` any more (kChannelEnded: ended).
  void Advance(int channel, int64_t ts) { Observe(channel, ts); }

  // The current watermark: kNoTime until every channel saw something.
  int64_t watermark() const {
    if (min_ == kNoTime || min_ == std::numeric_limits<int64_t>::max()) return min_;
    return SatAdd(min_, -lateness_);
  }

  // Writes changed maxima to the state (once per batch, not per record).
  void Flush() {
    if (!dirty_) return;
    dirty_ = false;
    StateValue& v = state_->Upsert(key_);
    v.clear();
    v.push_back(Value::Int(parallelism_));
    v.push_back(Value::Int(static_cast<int64_t>(max_.size())));
    for (int64_t m : max_) v.push_back(Value::Int(m));
  }

 private:
  size_t Index(int channel) const {
    return channel >= 0 && static_cast<size_t>(channel) < max_.size() ? static_cast<size_t>(channel)
                                                                      : 0;
  }
  void Recompute() {
    min_ = std::numeric_limits<int64_t>::max();
    for (int64_t m : max_) min_ = std::min(min_, m);
  }

  KeyedState* state_ = nullptr;
  int64_t lateness_ = 0;
  int parallelism_ = 1;
  size_t key_fields_ = 0;
  std::string key_;
  std::vector<int64_t> max_;
  int64_t min_ = kNoTime;
  bool dirty_ = false;
};

// Visits the stored entries of an event-time operator (not the watermark entries) after
// a restore, each as runs of `stride` values; a value of another shape is a state error
// (the options changed since it was written).
template <typename F>
Status ForEachStored(const KeyedState& state, const WatermarkTracker& wm, size_t stride,
                     std::string_view op, F&& fn) {
  Status st;
  state.ForEach([&](std::string_view key, const StateValue& v) {
    if (wm.IsReserved(key)) return;
    if (v.size() % stride != 0 && st.ok()) {
      st =
          Status::State(std::string(op) + ": the stored state of a key holds " +
                        std::to_string(v.size()) + " values, not a multiple of " +
                        std::to_string(stride) + " (were the options changed? start with --fresh)");
    }
    for (size_t i = 0; i + stride <= v.size(); i += stride) fn(key, &v[i]);
  });
  return st;
}

}  // namespace onceflow::ops

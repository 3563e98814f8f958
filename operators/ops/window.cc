// The `window` operator: aggregates per key over event-time windows.
//
//   tumbling  `size`:          windows [k·size, (k+1)·size)
//   sliding   `size`, `slide`: windows [k·slide, k·slide + size); a record belongs to every
//                              one that contains its time (about size/slide of them; none
//                              when slide > size leaves its time between two windows, and
//                              such a record is ignored)
//   session   `gap`:           a key's records closer than `gap` in event time form one
//                              window [first time, last time + gap); a record that bridges
//                              two sessions merges them
//
// Bounds are epoch milliseconds, aligned on the epoch. The aggregates are `aggregate`'s
// (aggregates.h). A window fires — one output record {<key fields>, window_start,
// window_end, <aggregates>} — when the watermark (event_time.h) reaches its end, and every
// open window fires at the end of input. Firing order is (window_end, key bytes), so the
// output of an instance is deterministic given its input channels' records.
//
// Late records: a record is late when every window it belongs to ends at or before the
// watermark (tumbling/sliding: the last window containing its time; session: time + gap
// <= watermark), i.e. when it could only change windows that have fired. A sliding-window
// record that is not late joins only those of its windows that end after the watermark.
// `lateness` holds the watermark back to let records that much out of order still count.
//
// State per record key (ctx.state, nothing else): the key's open windows, each as
// [start, end, <aggregate slots>], back to back. Keys whose windows all fired are erased.
// The watermark lives under its own reserved key (event_time.h). The order of windows
// to fire is a derived index (end, key) rebuilt from the state at Open, which runs after
// every restore.
//
// Threading: one instance per task thread.
#include <set>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/aggregates.h"
#include "operators/ops/event_time.h"
#include "operators/ops/keyed.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

namespace {

// Floor division (event times may be negative).
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

class WindowOperator : public Operator {
 public:
  explicit WindowOperator(const NodeSpec& spec)
      : key_fields_(KeyFieldsOf(spec)),
        time_field_(spec.options.GetString("time")),
        size_(Given(spec.options, "size") ? spec.options.GetDurationMs("size") : 0),
        slide_(Given(spec.options, "slide") ? spec.options.GetDurationMs("slide") : size_),
        gap_(Given(spec.options, "gap") ? spec.options.GetDurationMs("gap") : 0),
        lateness_(Given(spec.options, "lateness") ? spec.options.GetDurationMs("lateness") : 0),
        aggs_(spec),
        stride_(2 + static_cast<size_t>(aggs_.slots())) {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    wm_.Open(ctx, lateness_, key_fields_.size());
    index_.clear();
    return ForEachStored(*ctx.state, wm_, stride_, "window",
                         [&](std::string_view key, const Value* w) {
                           index_.emplace(w[1].as_int(), std::string(key));
                         });
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    KeyedState& state = *ctx_->state;
    Status st;
    for (Record& rec : in) {
      int64_t t = 0;
      if (!ReadKeyAndTime(rec, key_fields_, time_field_, "window", *ctx_, &key_, &t, &st)) {
        if (!st.ok()) return st;
        continue;
      }
      // With a slide longer than the size, a time between two windows is in none.
      if (gap_ == 0 && LastEnd(t) <= t) continue;
      const int64_t wm = wm_.watermark();
      if (gap_ > 0 ? SatAdd(t, gap_) <= wm : LastEnd(t) <= wm) {
        ONCEFLOW_RETURN_IF_ERROR(DropLate(*ctx_, rec));
        continue;
      }
      if (!aggs_.Read(rec, "window", ctx_->errors, &st)) {
        if (!st.ok()) return st;
        continue;
      }
      StateValue& v = state.Upsert(key_);
      if (gap_ > 0) {
        AddToSession(v, t);
      } else {
        AddToWindows(v, t, wm);
      }
      wm_.Observe(ctx_->channel, t);
    }
    wm_.Flush();
    Fire(wm_.watermark(), out);
    return Status::Ok();
  }

  Status OnWatermark(int channel, int64_t ts, Emitter& out) override {
    wm_.Advance(channel, ts);
    wm_.Flush();
    Fire(wm_.watermark(), out);
    return Status::Ok();
  }

  Status Finish(Emitter& out) override {
    Fire(std::numeric_limits<int64_t>::max(), out);
    return Status::Ok();
  }

 private:
  // The end of the last window that contains t (tumbling/sliding).
  int64_t LastEnd(int64_t t) const { return SatAdd(FloorDiv(t, slide_) * slide_, size_); }

  // Tumbling/sliding: folds the record into each of its windows that has not fired.
  void AddToWindows(StateValue& v, int64_t t, int64_t wm) {
    for (int64_t start = FloorDiv(t, slide_) * slide_; start > t - size_; start -= slide_) {
      const int64_t end = SatAdd(start, size_);
      if (end <= wm) break;  // this one and every earlier one have fired
      size_t at = Find(v, start);
      if (at == v.size()) {
        v.push_back(Value::Int(start));
        v.push_back(Value::Int(end));
        aggs_.AppendInit(&v);
        index_.emplace(end, key_);
      }
      aggs_.Apply(&v[at + 2]);
    }
  }

  // Session: merges [t, t + gap) with every open session of the key it overlaps.
  void AddToSession(StateValue& v, int64_t t) {
    int64_t start = t, end = SatAdd(t, gap_);
    size_t target = v.size();
    for (size_t i = 0; i + stride_ <= v.size();) {
      const int64_t s = v[i].as_int(), e = v[i + 1].as_int();
      if (!(s < SatAdd(t, gap_) && t < e)) {
        i += stride_;
        continue;
      }
      start = std::min(start, s);
      end = std::max(end, e);
      index_.erase({e, key_});
      if (target == v.size()) {
        target = i;
        i += stride_;
        continue;
      }
      // A second overlapping session: fold it into the first and remove it.
      aggs_.Merge(&v[i + 2], &v[target + 2]);
      v.erase(v.begin() + static_cast<ptrdiff_t>(i),
              v.begin() + static_cast<ptrdiff_t>(i + stride_));
      if (i < target) target -= stride_;
    }
    if (target == v.size()) {
      v.push_back(Value::Null());
      v.push_back(Value::Null());
      aggs_.AppendInit(&v);
    }
    v[target].SetInt(start);
    v[target + 1].SetInt(end);
    aggs_.Apply(&v[target + 2]);
    index_.emplace(end, key_);
  }

  size_t Find(const StateValue& v, int64_t start) const {
    for (size_t i = 0; i + stride_ <= v.size(); i += stride_) {
      if (v[i].as_int() == start) return i;
    }
    return v.size();
  }

  // Emits every window whose end is at or before `wm`, in (end, key) order, and removes it.
  void Fire(int64_t wm, Emitter& out) {
    KeyedState& state = *ctx_->state;
    while (!index_.empty() && index_.begin()->first <= wm) {
      auto node = index_.extract(index_.begin());
      const int64_t end = node.value().first;
      const std::string& key = node.value().second;
      const StateValue* found = state.Find(key);
      if (found == nullptr) continue;
      size_t at = found->size();
      for (size_t i = 0; i + stride_ <= found->size(); i += stride_) {
        if ((*found)[i + 1].as_int() == end) {
          at = i;
          break;
        }
      }
      if (at == found->size()) continue;
      Record& o = out.batch()->emplace_back();
      o.mutable_fields().reserve(key_fields_.size() + 2 + aggs_.size());
      KeyRecord(key, key_fields_, &o);
      o.Append("window_start", (*found)[at]);
      o.Append("window_end", (*found)[at + 1]);
      aggs_.AppendOutputs(&(*found)[at + 2], &o);
      if (found->size() == stride_) {
        state.Erase(key);
      } else {
        StateValue& v = state.Upsert(key);
        v.erase(v.begin() + static_cast<ptrdiff_t>(at),
                v.begin() + static_cast<ptrdiff_t>(at + stride_));
      }
    }
  }

  const std::vector<std::string> key_fields_;
  const std::string time_field_;
  const int64_t size_, slide_, gap_, lateness_;
  Aggregates aggs_;
  const size_t stride_;
  NodeContext* ctx_ = nullptr;
  WatermarkTracker wm_;
  std::set<std::pair<int64_t, std::string>> index_;  // (window end, key) of open windows
  std::string key_;
};

// The option node `name` when given, else the node itself (for error positions).
const YNode* At(const NodeSpec& spec, const char* name) {
  const YNode* n = spec.options.Raw(name);
  return n != nullptr ? n : spec.at;
}

}  // namespace

NodeTypeDef WindowDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "window";
  d.summary = "event-time windows (tumbling, sliding, session) with aggregates per key";
  d.options = {
      RequiredOption("key", OptionType::kFieldList, "field or list of fields to group by"),
      RequiredOption("time", OptionType::kString,
                     "field holding the event time in epoch milliseconds"),
      Option("size", OptionType::kDuration, "",
             "window length: tumbling windows, or sliding ones with `slide`"),
      Option("slide", OptionType::kDuration, "",
             "sliding windows: a window of `size` starts every `slide`"),
      Option("gap", OptionType::kDuration, "",
             "session windows: a key's session ends after `gap` without records"),
      Option("lateness", OptionType::kDuration, "0ms",
             "how far records may arrive out of event-time order and still count"),
  };
  for (OptionDef& o : AggregateOptions()) d.options.push_back(std::move(o));
  d.keyed = true;
  d.event_time_option = "time";
  d.stateful = false;  // state yes, but `emit:` does not apply: windows fire on the watermark
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    const bool size = Given(spec.options, "size"), slide = Given(spec.options, "slide"),
               gap = Given(spec.options, "gap");
    if (gap && (size || slide)) {
      diags.Error(*At(spec, "gap"),
                  "node '" + spec.id + "': `gap` (session windows) cannot be combined with " +
                      (size ? "`size`" : "`slide`"),
                  "use `size` (tumbling), `size` + `slide` (sliding) or `gap` (session)");
    } else if (slide && !size) {
      diags.Error(*At(spec, "slide"), "node '" + spec.id + "': `slide` needs `size`",
                  "a sliding window of `size` starts every `slide`");
    } else if (!size && !gap && spec.at != nullptr) {
      diags.Error(*spec.at, "node '" + spec.id + "': window needs `size` or `gap`",
                  "use `size` (tumbling), `size` + `slide` (sliding) or `gap` (session)");
    }
    for (const char* name : {"size", "slide", "gap"}) {
      if (Given(spec.options, name) && spec.options.GetDurationMs(name) <= 0) {
        diags.Error(*At(spec, name), "node '" + spec.id + "': `" + name + "` must be positive");
      }
    }
    if (Given(spec.options, "lateness") && spec.options.GetDurationMs("lateness") < 0) {
      diags.Error(*At(spec, "lateness"), "node '" + spec.id + "': `lateness` cannot be negative");
    }
    CheckAggregates(spec, diags, {"window_start", "window_end"});
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<WindowOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

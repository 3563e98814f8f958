// The `join` operator: an interval join of two keyed inputs on event time.
//
// Input port 0 (the first of `input:`) is the left side, port 1 the right. Every pair of
// a left and a right record with equal key and |t_left − t_right| <= within is emitted
// once, when the second of the two arrives: {<key fields>, left: {…}, right: {…}} (the
// sides as nested objects). Pairs are emitted in arrival order of the later record, then
// in arrival order of the buffered one.
//
// Each record is buffered until the watermark (event_time.h, over the channels of both
// inputs) passes t + within: no record that could still pair with it can arrive after
// that. A record with t + within < watermark is late (it would be evicted at once, and
// some of its partners may be gone): it is counted, dead-lettered under `on_error:
// dead_letter`, and never paired.
//
// State per record key (ctx.state, nothing else): the buffered records of the key, each
// as [side (0 left, 1 right), event time, record JSON], back to back. The watermark lives
// under its own reserved key. The eviction order is a derived index rebuilt at Open.
//
// Threading: one instance per task thread.
#include <set>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/event_time.h"
#include "operators/ops/keyed.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

namespace {

constexpr size_t kStride = 3;

class JoinOperator : public Operator {
 public:
  explicit JoinOperator(const NodeSpec& spec)
      : key_fields_(KeyFieldsOf(spec)),
        time_field_(spec.options.GetString("time")),
        within_(spec.options.GetDurationMs("within")) {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    wm_.Open(ctx, 0, key_fields_.size());
    index_.clear();
    return ForEachStored(*ctx.state, wm_, kStride, "join",
                         [&](std::string_view key, const Value* r) {
                           index_.emplace(SatAdd(r[1].as_int(), within_), std::string(key));
                         });
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    KeyedState& state = *ctx_->state;
    Status st;
    const int side = port == 0 ? 0 : 1;
    for (Record& rec : in) {
      int64_t t = 0;
      if (!ReadKeyAndTime(rec, key_fields_, time_field_, "join", *ctx_, &key_, &t, &st)) {
        if (!st.ok()) return st;
        continue;
      }
      if (SatAdd(t, within_) < wm_.watermark()) {
        ONCEFLOW_RETURN_IF_ERROR(DropLate(*ctx_, rec));
        continue;
      }
      std::string json = rec.ToJson();
      StateValue& v = state.Upsert(key_);
      for (size_t i = 0; i + kStride <= v.size(); i += kStride) {
        if (v[i].as_int() == side) continue;
        const int64_t other = v[i + 1].as_int();
        if ((other > t ? other - t : t - other) > within_) continue;
        Record& o = out.batch()->emplace_back();
        o.mutable_fields().reserve(key_fields_.size() + 2);
        KeyRecord(key_, key_fields_, &o);
        o.Append("left", side == 0 ? Value::Json(json) : v[i + 2]);
        o.Append("right", side == 1 ? Value::Json(json) : v[i + 2]);
      }
      v.push_back(Value::Int(side));
      v.push_back(Value::Int(t));
      v.push_back(Value::Json(std::move(json)));
      index_.emplace(SatAdd(t, within_), key_);
      wm_.Observe(ctx_->channel, t);
    }
    wm_.Flush();
    Evict();
    return Status::Ok();
  }

  Status OnWatermark(int channel, int64_t ts, Emitter& out) override {
    wm_.Advance(channel, ts);
    wm_.Flush();
    Evict();
    return Status::Ok();
  }

 private:
  // Drops the buffered records with t + within < watermark.
  void Evict() {
    const int64_t wm = wm_.watermark();
    if (index_.empty() || index_.begin()->first >= wm) return;
    std::set<std::string> keys;
    while (!index_.empty() && index_.begin()->first < wm) {
      keys.insert(std::move(index_.extract(index_.begin()).value().second));
    }
    KeyedState& state = *ctx_->state;
    for (const std::string& key : keys) {
      const StateValue* found = state.Find(key);
      if (found == nullptr) continue;
      size_t keep = 0;
      for (size_t i = 0; i + kStride <= found->size(); i += kStride) {
        if (SatAdd((*found)[i + 1].as_int(), within_) >= wm) ++keep;
      }
      if (keep == 0) {
        state.Erase(key);
        continue;
      }
      StateValue& v = state.Upsert(key);
      size_t w = 0;
      for (size_t i = 0; i + kStride <= v.size(); i += kStride) {
        if (SatAdd(v[i + 1].as_int(), within_) < wm) continue;
        if (w != i) {
          for (size_t j = 0; j < kStride; ++j) v[w + j] = std::move(v[i + j]);
        }
        w += kStride;
      }
      v.resize(w);
    }
  }

  const std::vector<std::string> key_fields_;
  const std::string time_field_;
  const int64_t within_;
  NodeContext* ctx_ = nullptr;
  WatermarkTracker wm_;
  // (t + within, key) per buffered record: what to evict when the watermark passes.
  std::multiset<std::pair<int64_t, std::string>> index_;
  std::string key_;
};

}  // namespace

NodeTypeDef JoinDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "join";
  d.summary = "interval join of two keyed inputs on event time: {<key>, left, right}";
  d.options = {
      RequiredOption("key", OptionType::kFieldList,
                     "field or list of fields both inputs are joined on"),
      RequiredOption("time", OptionType::kString,
                     "field holding the event time in epoch milliseconds (both inputs)"),
      RequiredOption("within", OptionType::kDuration,
                     "pairs whose event times differ by at most this much are joined"),
  };
  d.keyed = true;
  d.event_time_option = "time";
  d.stateful = false;  // state yes, but `emit:` does not apply: each pair is emitted once
  d.min_inputs = 2;
  d.max_inputs = 2;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    if (Given(spec.options, "within") && spec.options.GetDurationMs("within") < 0) {
      diags.Error(*spec.options.Raw("within"),
                  "node '" + spec.id + "': `within` cannot be negative");
    }
    for (const auto& k : KeyFieldsOf(spec)) {
      if ((k == "left" || k == "right") && spec.options.Raw("key") != nullptr) {
        diags.Error(*spec.options.Raw("key"), "node '" + spec.id + "': key field '" + k +
                                                  "' would clash with the output field '" + k +
                                                  "'");
      }
    }
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<JoinOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

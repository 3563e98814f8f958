// The `distinct` operator: passes the first record of each key and drops the repeats.
//
// With `ttl` (event time, read from the epoch-milliseconds field `time`): a key is
// remembered for ttl after the event time of the record that passed; a repeat whose
// event time is at least ttl later passes again (and starts a new period). Entries whose
// period has ended relative to the newest event time seen are erased from the state
// (KeyedState::Erase, so checkpoints record the deletion); the sweep runs when event time
// has advanced by a ttl since the last one and at least as many records as there are keys
// have arrived since, so its cost stays O(1) per record. Erasure only bounds memory: an
// expired entry and an erased one decide alike, except for records that arrive more than
// ttl out of order, which may pass where the entry was already erased.
//
// State per key: {first-seen event time (kInt)} when `time` is given, else {true}; with
// emit: final also the record itself (JSON), which Finish() emits once per key.
//
// Threading: one instance per task thread.
#include <cmath>
#include <limits>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/keyed.h"

namespace onceflow::ops {

namespace {

class DistinctOperator : public Operator {
 public:
  explicit DistinctOperator(const NodeSpec& spec)
      : key_fields_(KeyFieldsOf(spec)),
        final_(spec.emit == EmitMode::kFinal),
        ttl_ms_(Given(spec.options, "ttl") ? spec.options.GetDurationMs("ttl") : 0),
        time_field_(Given(spec.options, "time") ? spec.options.GetString("time") : "") {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    max_time_ = std::numeric_limits<int64_t>::min();
    last_sweep_time_ = std::numeric_limits<int64_t>::min();
    since_sweep_ = 0;
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    KeyedState& state = *ctx_->state;
    Status st;
    for (Record& rec : in) {
      if (!ExtractKey(rec, key_fields_, "distinct", ctx_->errors, &key_, &st)) {
        if (!st.ok()) return st;
        continue;
      }
      int64_t t = 0;
      if (!time_field_.empty()) {
        const Value* v = rec.Get(time_field_);
        if (v == nullptr || !v->is_number() ||
            (v->type() == ValueType::kDouble && !std::isfinite(v->as_double()))) {
          ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(
              rec, "distinct: time field '" + time_field_ +
                       (v == nullptr ? "' is missing" : "' is not a number (epoch ms)")));
          continue;
        }
        t = v->type() == ValueType::kInt ? v->as_int() : static_cast<int64_t>(v->as_double());
        if (t > max_time_) max_time_ = t;
      }
      const StateValue* seen = state.Find(key_);
      bool pass = seen == nullptr;
      if (!pass && ttl_ms_ > 0 && !seen->empty() && (*seen)[0].type() == ValueType::kInt) {
        pass = t - (*seen)[0].as_int() >= ttl_ms_;
      }
      if (!pass) continue;
      StateValue& v = state.Upsert(key_);
      v.clear();
      v.push_back(time_field_.empty() ? Value::Bool(true) : Value::Int(t));
      if (final_) {
        v.push_back(Value::Json(rec.ToJson()));
      } else {
        out.Emit(std::move(rec));
      }
    }
    if (ttl_ms_ > 0) MaybeSweep(state, in.size());
    return Status::Ok();
  }

  Status Finish(Emitter& out) override {
    if (!final_) return Status::Ok();
    const KeyedState& state = *ctx_->state;
    std::string error;
    for (const SortedEntry& e : SortedEntries(state)) {
      const StateValue& v = *e.value;
      if (v.size() < 2 || v[1].type() != ValueType::kJson) continue;
      Record& o = out.batch()->emplace_back();
      if (!json_.ParseObject(v[1].str(), &o, &error)) out.batch()->pop_back();
    }
    return Status::Ok();
  }

 private:
  void MaybeSweep(KeyedState& state, size_t records) {
    since_sweep_ += records;
    if (max_time_ == std::numeric_limits<int64_t>::min()) return;
    bool time_advanced = last_sweep_time_ == std::numeric_limits<int64_t>::min() ||
                         max_time_ - last_sweep_time_ >= ttl_ms_;
    if (!time_advanced || since_sweep_ < state.size()) return;
    last_sweep_time_ = max_time_;
    since_sweep_ = 0;
    expired_.clear();
    const int64_t horizon = max_time_ - ttl_ms_;
    state.ForEach([&](std::string_view k, const StateValue& v) {
      if (!v.empty() && v[0].type() == ValueType::kInt && v[0].as_int() <= horizon) {
        expired_.emplace_back(k);
      }
    });
    for (const auto& k : expired_) state.Erase(k);
  }

  std::vector<std::string> key_fields_;
  bool final_;
  int64_t ttl_ms_;
  std::string time_field_;
  NodeContext* ctx_ = nullptr;
  std::string key_;
  // Sweep pacing only (not state: losing it on recovery changes when memory is
  // reclaimed, never which records pass).
  int64_t max_time_ = 0, last_sweep_time_ = 0;
  size_t since_sweep_ = 0;
  std::vector<std::string> expired_;
  JsonParser json_;
};

}  // namespace

NodeTypeDef DistinctDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "distinct";
  d.summary = "pass the first record of each key, drop repeats (optionally within a ttl)";
  d.options = {
      RequiredOption("key", OptionType::kFieldList, "field or list of fields that identify a repeat"),
      Option("ttl", OptionType::kDuration, "",
             "forget a key this long (event time) after the record that passed, e.g. 10m; "
             "needs `time`. Default: remember forever"),
      Option("time", OptionType::kString, "", "field holding the event time in epoch milliseconds"),
  };
  d.keyed = true;
  d.stateful = true;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    if (Given(spec.options, "ttl") && !Given(spec.options, "time")) {
      diags.Error(*spec.options.Raw("ttl"),
                  "node '" + spec.id + "': ttl is measured in event time and needs `time`",
                  "add `time: FIELD` naming the epoch-milliseconds field");
    }
    if (Given(spec.options, "ttl") && spec.options.GetDurationMs("ttl") <= 0) {
      diags.Error(*spec.options.Raw("ttl"), "node '" + spec.id + "': ttl must be positive");
    }
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<DistinctOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

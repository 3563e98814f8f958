// The `count` operator: counts records per key. State per key (in ctx.state, the only
// place it lives): one kInt. Output: {<key fields>, count: N} — after each batch for every
// key the batch changed (emit: updates), or once per key at the end (emit: final); see
// keyed.h for the emit rules.
//
// Hot path: the batch's keys are encoded into one reused buffer (BatchKeys) and each is
// looked up once, with the state prefetched a few keys ahead.
//
// Threading: one instance per task thread; its KeyedState belongs to that thread.
#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/keyed.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

namespace {

class CountOperator : public Operator {
 public:
  explicit CountOperator(const NodeSpec& spec)
      : key_fields_(KeyFieldsOf(spec)), final_(spec.emit == EmitMode::kFinal) {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    changed_ = ChangedKeys();
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    KeyedState& state = *ctx_->state;
    Status st;
    keys_.Encode(in, key_fields_);  // to prefetch ahead (see BatchKeys)
    keys_.PrefetchStart(state);
    for (size_t i = 0; i < in.size(); ++i) {
      keys_.Prefetch(state, i);
      if (!keys_.has(i)) {
        // Reports the missing key field through on_error.
        if (!ExtractKey(in[i], key_fields_, "count", ctx_->errors, &key_, &st) && !st.ok()) {
          return st;
        }
        continue;
      }
      std::string_view key = keys_.key(i);
      StateValue& v = state.Upsert(key);
      if (v.empty()) {
        v.push_back(Value::Int(1));
      } else {
        v[0].SetInt(v[0].as_int() + 1);
      }
      if (!final_) changed_.Note(key);
    }
    if (!final_) {
      changed_.Drain([&](std::string_view key) {
        if (const StateValue* v = state.Find(key)) EmitKey(key, *v, out);
      });
    }
    return Status::Ok();
  }

  Status Finish(Emitter& out) override {
    if (!final_) return Status::Ok();
    const KeyedState& state = *ctx_->state;
    for (std::string_view key : SortedKeys(state)) EmitKey(key, *state.Find(key), out);
    return Status::Ok();
  }

 private:
  void EmitKey(std::string_view key, const StateValue& v, Emitter& out) {
    Record& o = out.batch()->emplace_back();
    o.mutable_fields().reserve(key_fields_.size() + 1);  // one allocation, exact size
    KeyRecord(key, key_fields_, &o);
    o.Append("count", Value::Int(v.empty() ? 0 : v[0].as_int()));
  }

  std::vector<std::string> key_fields_;
  bool final_;
  NodeContext* ctx_ = nullptr;
  std::string key_;
  BatchKeys keys_;
  ChangedKeys changed_;
};

}  // namespace

NodeTypeDef CountDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "count";
  d.summary = "count records per key: {<key fields>, count}";
  d.options = {
      RequiredOption("key", OptionType::kFieldList,
                     "field or list of fields to count by, e.g. word or [user, page]"),
  };
  d.keyed = true;
  d.stateful = true;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    for (const auto& k : KeyFieldsOf(spec)) {
      if (k == "count") {
        diags.Error(*spec.options.Raw("key"),
                    "node '" + spec.id + "': key field 'count' would clash with the output "
                    "field 'count'",
                    "rename the field first (e.g. with map)");
      }
    }
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<CountOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

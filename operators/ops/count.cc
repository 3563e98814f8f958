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

class CountOperator : public KeyedFold<CountOperator> {
 public:
  explicit CountOperator(const NodeSpec& spec) : KeyedFold(spec, "count") {}
  static constexpr size_t kStateValues = 1;

  Status Fold(const Record& rec, const HashedKey& key, KeyedState& state, bool* changed) {
    StateValue& v = state.Upsert(key);
    if (v.empty()) {
      v.push_back(Value::Int(1));
    } else {
      v[0].SetInt(v[0].as_int() + 1);
    }
    *changed = true;
    return Status::Ok();
  }

  void EmitKey(std::string_view key, const StateValue& v, Emitter& out) {
    Record& o = out.batch()->emplace_back();
    o.mutable_fields().reserve(key_fields_.size() + 1);  // one allocation, exact size
    KeyRecord(key, key_fields_, &o);
    o.Append("count", Value::Int(v.empty() ? 0 : v[0].as_int()));
  }
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

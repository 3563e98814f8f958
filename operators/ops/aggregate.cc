// The `aggregate` operator: sum / min / max / avg / count per key.
//
// Aggregates are declared with shorthands — `sum: amount` or `sum: [amount, qty]` (also
// min, max, avg) giving output fields sum_amount, …, and `count: true` giving `count` —
// (`count: FIELD` gives count_FIELD), and/or named with
// `fields: {OUT: "sum(amount)", n: "count()"}`. Output: the key fields,
// then the shorthands (sum, min, max, avg, count, each in the order listed), then
// `fields` in YAML order.
//
// Values: a record without the field, or with null there, is ignored by that aggregate
// (as in SQL); an aggregate that has seen no value outputs null. sum and avg need numbers
// (anything else is a data error, and the record changes nothing); integer sums stay
// int64 until they would overflow, then continue as double. min/max compare numbers
// numerically and strings bytewise; numbers sort before strings. count() counts records,
// count(FIELD) the records where FIELD is non-null.
//
// State per key (ctx.state): one Value per slot — sum, min, max and count take one, avg
// two (sum, count) — in the order of the aggregates.
//
// Threading: one instance per task thread.
#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/aggregates.h"
#include "operators/ops/keyed.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

namespace {

class AggregateOperator : public KeyedFold<AggregateOperator> {
 public:
  explicit AggregateOperator(const NodeSpec& spec) : KeyedFold(spec, "aggregate"), aggs_(spec) {}
  static constexpr size_t kStateValues = 2;  // or more: one slot per aggregate

  Status Fold(const Record& rec, const HashedKey& key, KeyedState& state, bool* changed) {
    Status st;
    if (!aggs_.Read(rec, "aggregate", ctx_->errors, &st)) return st;
    bool inserted = false;
    StateValue& acc = state.Upsert(key, &inserted);
    const size_t slots = static_cast<size_t>(aggs_.slots());
    if (inserted || acc.size() != slots) {
      if (!inserted) {
        return Status::State("aggregate: the stored state of a key holds " +
                             std::to_string(acc.size()) + " values, this node needs " +
                             std::to_string(slots) +
                             " (were the aggregates changed? start with --fresh)");
      }
      acc.clear();
      aggs_.AppendInit(&acc);
    }
    aggs_.Apply(acc.data());
    *changed = true;
    return Status::Ok();
  }

  void EmitKey(std::string_view key, const StateValue& acc, Emitter& out) {
    Record& o = out.batch()->emplace_back();
    o.mutable_fields().reserve(key_fields_.size() + aggs_.size());  // one allocation
    KeyRecord(key, key_fields_, &o);
    if (acc.size() != static_cast<size_t>(aggs_.slots())) return;
    aggs_.AppendOutputs(acc.data(), &o);
  }

 private:
  Aggregates aggs_;
};

}  // namespace

NodeTypeDef AggregateDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "aggregate";
  d.summary = "sum / min / max / avg / count per key";
  d.options = {
      RequiredOption("key", OptionType::kFieldList, "field or list of fields to group by"),
  };
  for (OptionDef& o : AggregateOptions()) d.options.push_back(std::move(o));
  d.keyed = true;
  d.stateful = true;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) { CheckAggregates(spec, diags, {}); };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<AggregateOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

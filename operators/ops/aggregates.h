// The aggregate functions shared by `aggregate` and `window`: the options that declare
// them (sum/min/max/avg/count shorthands and named `fields`), their checks, and the fold
// of one record into a run of state slots. See aggregate.cc for the user-facing rules.
//
// Slots: every aggregate keeps one Value in the state (avg two: sum, count), in the order
// of the aggregates, so an operator can keep several aggregate runs in one StateValue
// (`window` keeps one per open window).
//
// Threading: an Aggregates object belongs to one operator instance.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/core/registry.h"
#include "runtime/state/keyed_state.h"

namespace onceflow::ops {

enum class AggFn { kSum, kMin, kMax, kAvg, kCount };

struct AggItem {
  AggFn fn;
  std::string field;  // empty for count()
  std::string out;
  int slot = 0;
};

class Aggregates {
 public:
  explicit Aggregates(const NodeSpec& spec);

  // Number of state slots one run of the aggregates takes.
  int slots() const { return slots_; }

  // Reads rec's aggregated fields and checks them before anything is changed, so a bad
  // record changes nothing: on a bad value reports it through `errors` (message prefixed
  // with `op`) and returns false with *st holding the handler's verdict.
  bool Read(const Record& rec, std::string_view op, ErrorHandler* errors, Status* st);
  // Appends the initial slots (nothing seen) to *acc.
  void AppendInit(StateValue* acc) const;
  // Folds the record of the last successful Read into slots [acc, acc + slots()).
  void Apply(Value* acc) const;
  // Folds the run `from` into the run `into` (merging two session windows).
  void Merge(const Value* from, Value* into) const;
  // Appends the output fields of the run at `acc`.
  void AppendOutputs(const Value* acc, Record* out) const;
  size_t size() const { return items_.size(); }

 private:
  std::vector<AggItem> items_;
  int slots_ = 0;
  std::vector<const Value*> values_;  // per item: the record's value, or null
};

// The option-table rows of the aggregates (sum, min, max, avg, count, fields).
std::vector<OptionDef> AggregateOptions();
// The checks of the aggregate options: at least one aggregate, valid `fields`
// expressions, no output field produced twice or clashing with a key field or with one
// of `reserved` (e.g. window_start).
void CheckAggregates(const NodeSpec& spec, Diagnostics& diags,
                     const std::vector<std::string>& reserved);

}  // namespace onceflow::ops

// The aggregate functions shared by `aggregate` and `window` (see aggregates.h).
#include "operators/ops/aggregates.h"

#include <cstdint>

#include "operators/common/option_defs.h"
#include "operators/ops/keyed.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses "sum(amount)", "count()", "count(*)", "count(x)".
bool ParseAggExpr(std::string_view text, AggItem* item, std::string* error) {
  text = Trim(text);
  size_t open = text.find('(');
  if (open == std::string_view::npos || text.back() != ')') {
    *error = "expected FUNCTION(FIELD), e.g. sum(amount) or count()";
    return false;
  }
  std::string_view fn = Trim(text.substr(0, open));
  std::string_view arg = Trim(text.substr(open + 1, text.size() - open - 2));
  if (fn == "sum") {
    item->fn = AggFn::kSum;
  } else if (fn == "min") {
    item->fn = AggFn::kMin;
  } else if (fn == "max") {
    item->fn = AggFn::kMax;
  } else if (fn == "avg") {
    item->fn = AggFn::kAvg;
  } else if (fn == "count") {
    item->fn = AggFn::kCount;
  } else {
    *error = "unknown aggregate function '" + std::string(fn) + "' (sum, min, max, avg, count)";
    return false;
  }
  if (item->fn == AggFn::kCount && (arg.empty() || arg == "*")) {
    item->field.clear();
    return true;
  }
  if (arg.empty()) {
    *error = std::string(fn) + "() needs a field, e.g. " + std::string(fn) + "(amount)";
    return false;
  }
  item->field = std::string(arg);
  return true;
}

int SlotCount(AggFn fn) { return fn == AggFn::kAvg ? 2 : 1; }

// Builds the aggregate list from the options. With `diags`, reports problems there.
std::vector<AggItem> BuildItems(const NodeSpec& spec, Diagnostics* diags) {
  std::vector<AggItem> items;
  const std::pair<const char*, AggFn> shorthands[] = {
      {"sum", AggFn::kSum}, {"min", AggFn::kMin}, {"max", AggFn::kMax}, {"avg", AggFn::kAvg}};
  for (const auto& [name, fn] : shorthands) {
    if (!Given(spec.options, name)) continue;
    for (const auto& field : spec.options.GetList(name)) {
      items.push_back(AggItem{fn, field, std::string(name) + "_" + field});
    }
  }
  // `count: true` counts records (output `count`); `count: FIELD` (or a list) counts the
  // records where FIELD is non-null (output count_FIELD), like the other shorthands.
  const YNode* count = spec.options.Raw("count");
  if (count != nullptr && count->is_scalar() && !count->quoted &&
      (count->scalar == "true" || count->scalar == "false")) {
    if (count->scalar == "true") items.push_back(AggItem{AggFn::kCount, "", "count"});
  } else if (Given(spec.options, "count")) {
    for (const auto& field : spec.options.GetList("count")) {
      items.push_back(AggItem{AggFn::kCount, field, "count_" + field});
    }
  }
  if (const YNode* fields = spec.options.Raw("fields"); fields != nullptr && fields->is_map()) {
    for (const auto& [k, v] : fields->entries) {
      AggItem item{AggFn::kCount, "", k.scalar};
      std::string error;
      if (!v.is_scalar()) {
        if (diags) {
          diags->Error(v, "node '" + spec.id + "': fields." + k.scalar +
                              " must be an aggregate expression like \"sum(amount)\", not " +
                              v.KindName());
        }
        continue;
      }
      if (!ParseAggExpr(v.scalar, &item, &error)) {
        if (diags) diags->Error(v, "node '" + spec.id + "': fields." + k.scalar + ": " + error);
        continue;
      }
      items.push_back(std::move(item));
    }
  }
  int slot = 0;
  for (auto& item : items) {
    item.slot = slot;
    slot += SlotCount(item.fn);
  }
  return items;
}

// a < b in min/max order: numbers (numerically) before strings (bytewise).
bool Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.type() == ValueType::kInt && b.type() == ValueType::kInt) return a.as_int() < b.as_int();
    return a.ToDouble() < b.ToDouble();
  }
  if (a.is_number() != b.is_number()) return a.is_number();
  return a.str() < b.str();
}

void AddTo(Value* acc, const Value& v) {
  if (acc->is_null()) {
    *acc = v;
    return;
  }
  if (acc->type() == ValueType::kInt && v.type() == ValueType::kInt) {
    int64_t r;
    if (!__builtin_add_overflow(acc->as_int(), v.as_int(), &r)) {
      acc->SetInt(r);
      return;
    }
  }
  acc->SetDouble(acc->ToDouble() + v.ToDouble());
}

const char* FnName(AggFn fn) {
  switch (fn) {
    case AggFn::kSum:
      return "sum";
    case AggFn::kMin:
      return "min";
    case AggFn::kMax:
      return "max";
    case AggFn::kAvg:
      return "avg";
    case AggFn::kCount:
      return "count";
  }
  return "?";
}

}  // namespace

Aggregates::Aggregates(const NodeSpec& spec) : items_(BuildItems(spec, nullptr)) {
  for (const auto& item : items_) slots_ += SlotCount(item.fn);
  values_.resize(items_.size());
}

bool Aggregates::Read(const Record& rec, std::string_view op, ErrorHandler* errors, Status* st) {
  for (size_t i = 0; i < items_.size(); ++i) {
    const AggItem& item = items_[i];
    const Value* v = item.field.empty() ? nullptr : rec.Get(item.field);
    values_[i] = (v == nullptr || v->is_null()) ? nullptr : v;
    if (values_[i] == nullptr) continue;
    bool numeric = item.fn == AggFn::kSum || item.fn == AggFn::kAvg;
    bool ok =
        numeric ? v->is_number() : (item.fn == AggFn::kCount || v->is_number() || v->is_string());
    if (!ok) {
      *st = errors->OnRecordError(rec, std::string(op) + ": " + FnName(item.fn) + "(" + item.field +
                                           "): " + v->ToJson() + " is not a " +
                                           (numeric ? "number" : "number or string"));
      return false;
    }
  }
  return true;
}

void Aggregates::AppendInit(StateValue* acc) const {
  for (const auto& item : items_) {
    switch (item.fn) {
      case AggFn::kCount:
        acc->push_back(Value::Int(0));
        break;
      case AggFn::kAvg:
        acc->push_back(Value::Null());
        acc->push_back(Value::Int(0));
        break;
      default:
        acc->push_back(Value::Null());
        break;
    }
  }
}

void Aggregates::Apply(Value* acc) const {
  for (size_t i = 0; i < items_.size(); ++i) {
    const AggItem& item = items_[i];
    const Value* v = values_[i];
    Value& a = acc[item.slot];
    switch (item.fn) {
      case AggFn::kCount:
        if (item.field.empty() || v != nullptr) a.SetInt(a.as_int() + 1);
        break;
      case AggFn::kSum:
        if (v != nullptr) AddTo(&a, *v);
        break;
      case AggFn::kAvg:
        if (v != nullptr) {
          AddTo(&a, *v);
          Value& n = acc[item.slot + 1];
          n.SetInt(n.as_int() + 1);
        }
        break;
      case AggFn::kMin:
        if (v != nullptr && (a.is_null() || Less(*v, a))) a = *v;
        break;
      case AggFn::kMax:
        if (v != nullptr && (a.is_null() || Less(a, *v))) a = *v;
        break;
    }
  }
}

void Aggregates::Merge(const Value* from, Value* into) const {
  for (const auto& item : items_) {
    const Value& f = from[item.slot];
    Value& a = into[item.slot];
    switch (item.fn) {
      case AggFn::kCount:
        a.SetInt(a.as_int() + f.as_int());
        break;
      case AggFn::kAvg:
        if (!f.is_null()) AddTo(&a, f);
        into[item.slot + 1].SetInt(into[item.slot + 1].as_int() + from[item.slot + 1].as_int());
        break;
      case AggFn::kSum:
        if (!f.is_null()) AddTo(&a, f);
        break;
      case AggFn::kMin:
        if (!f.is_null() && (a.is_null() || Less(f, a))) a = f;
        break;
      case AggFn::kMax:
        if (!f.is_null() && (a.is_null() || Less(a, f))) a = f;
        break;
    }
  }
}

void Aggregates::AppendOutputs(const Value* acc, Record* o) const {
  for (const auto& item : items_) {
    const Value& a = acc[item.slot];
    if (item.fn == AggFn::kAvg) {
      int64_t n = acc[item.slot + 1].as_int();
      o->Append(item.out, n == 0 || a.is_null()
                              ? Value::Null()
                              : Value::Double(a.ToDouble() / static_cast<double>(n)));
    } else {
      o->Append(item.out, a);
    }
  }
}

std::vector<OptionDef> AggregateOptions() {
  return {
      Option("sum", OptionType::kFieldList, "",
             "field(s) to sum, output sum_FIELD; integers stay integers"),
      Option("min", OptionType::kFieldList, "",
             "field(s) to take the minimum of, output min_FIELD"),
      Option("max", OptionType::kFieldList, "",
             "field(s) to take the maximum of, output max_FIELD"),
      Option("avg", OptionType::kFieldList, "", "field(s) to average, output avg_FIELD"),
      Option("count", OptionType::kFieldList, "",
             "true: add `count`, the records per key; FIELD(s): add count_FIELD, the records "
             "where FIELD is not null"),
      Option("fields", OptionType::kMap, "",
             "named aggregates, e.g. {total: \"sum(amount)\", n: \"count()\"}; functions sum, "
             "min, max, avg, count(FIELD) or count()"),
  };
}

void CheckAggregates(const NodeSpec& spec, Diagnostics& diags,
                     const std::vector<std::string>& reserved) {
  const YNode* fields = spec.options.Raw("fields");
  if (fields != nullptr && !fields->is_map()) {
    diags.Error(*fields, "node '" + spec.id +
                             "': fields must be a map of OUTPUT: \"fn(field)\", not " +
                             fields->KindName());
  }
  std::vector<AggItem> items = BuildItems(spec, &diags);
  bool any_fields = fields != nullptr && fields->is_map() && !fields->entries.empty();
  if (items.empty() && !any_fields) {
    const YNode* at = spec.at != nullptr ? spec.at : spec.options.Raw("key");
    if (at != nullptr) {
      diags.Error(*at, "node '" + spec.id + "': " + spec.type + " needs at least one aggregate",
                  "add e.g. `sum: amount`, `count: true` or `fields: {n: \"count()\"}`");
    }
    return;
  }
  std::vector<std::string> keys = KeyFieldsOf(spec);
  std::vector<std::string> seen;
  for (const auto& item : items) {
    const YNode* at = nullptr;
    if (fields != nullptr && fields->is_map()) at = fields->FindKey(item.out);
    if (at == nullptr) at = spec.options.Raw(FnName(item.fn));
    if (at == nullptr) at = spec.at;
    if (at == nullptr) continue;
    for (const auto& k : keys) {
      if (k == item.out) {
        diags.Error(*at, "node '" + spec.id + "': output field '" + item.out +
                             "' clashes with a key field");
      }
    }
    for (const auto& r : reserved) {
      if (r == item.out) {
        diags.Error(*at, "node '" + spec.id + "': output field '" + item.out +
                             "' clashes with the output field '" + r + "' of " + spec.type);
      }
    }
    for (const auto& s : seen) {
      if (s == item.out) {
        diags.Error(*at,
                    "node '" + spec.id + "': output field '" + item.out + "' is produced twice");
      }
    }
    seen.push_back(item.out);
  }
}

}  // namespace onceflow::ops

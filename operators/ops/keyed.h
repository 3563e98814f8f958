// Helpers shared by the keyed, stateful operators (count, aggregate, distinct): key
// extraction with a data error for a missing key field, and the `emit` bookkeeping.
//
// emit: updates — each key changed by an input batch is emitted once, after the batch,
// with its value at the end of the batch (updates are coalesced per batch: still every
// change, at batch granularity), keys in key-byte order so output is deterministic.
// emit: final — Finish() emits every key once, in key-byte order.
//
// Threading: one instance per operator instance (task thread).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "runtime/core/key.h"
#include "runtime/core/node.h"
#include "runtime/spec/pipeline_spec.h"
#include "runtime/state/keyed_state.h"

namespace onceflow::ops {

// The key fields of a keyed node: spec.key when the validator filled it, else the option.
inline std::vector<std::string> KeyFieldsOf(const NodeSpec& spec) {
  if (!spec.key.empty()) return spec.key;
  return spec.options.GetList("key");
}

// Encodes rec's key into *key (cleared first). On a missing key field reports a data error
// through `errors` and returns false with *st holding the handler's verdict.
inline bool ExtractKey(const Record& rec, const std::vector<std::string>& fields,
                       std::string_view op, ErrorHandler* errors, std::string* key,
                       Status* st) {
  key->clear();
  if (EncodeKey(rec, fields, key)) return true;
  std::string missing;
  for (const auto& f : fields) {
    if (rec.Get(f) == nullptr) {
      missing = f;
      break;
    }
  }
  *st = errors->OnRecordError(rec, std::string(op) + ": key field '" + missing + "' is missing");
  return false;
}

// The set of keys changed in the current batch.
class ChangedKeys {
 public:
  void Note(std::string_view key) {
    // absl::string_view is not std::string_view in Debian's Abseil: convert for the
    // heterogeneous lookup (no std::string is built unless the key is new).
    absl::string_view k(key.data(), key.size());
    if (!set_.contains(k)) set_.emplace(key);
  }
  bool empty() const { return set_.empty(); }
  // Calls fn(key) for each changed key in byte order, then forgets them.
  template <typename F>
  void Drain(F&& fn) {
    order_.clear();
    order_.reserve(set_.size());
    for (const auto& k : set_) order_.push_back(k);
    std::sort(order_.begin(), order_.end());
    for (std::string_view k : order_) fn(k);
    set_.clear();
  }

 private:
  absl::flat_hash_set<std::string> set_;
  std::vector<std::string_view> order_;
};

// Every key of `state` in byte order (for emit: final).
inline std::vector<std::string_view> SortedKeys(const KeyedState& state) {
  std::vector<std::string_view> keys;
  keys.reserve(state.size());
  state.ForEach([&](std::string_view k, const StateValue&) { keys.push_back(k); });
  std::sort(keys.begin(), keys.end());
  return keys;
}

// Starts an output record with the decoded key fields.
inline bool KeyRecord(std::string_view key, const std::vector<std::string>& fields, Record* out) {
  return DecodeKey(key, fields, out);
}

}  // namespace onceflow::ops

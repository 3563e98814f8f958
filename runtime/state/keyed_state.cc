// KeyedState's out-of-line parts: change collection and size estimates. Same threading
// contract as keyed_state.h (one owning task thread).
#include "runtime/state/keyed_state.h"

#include <algorithm>

namespace onceflow {
namespace {

size_t ValueBytes(const Value& v) {
  // Strings and JSON own their text (beyond the inline small-string buffer, which
  // sizeof(Value) already counts).
  size_t n = sizeof(Value);
  if (v.type() == ValueType::kString || v.type() == ValueType::kJson) {
    if (v.str().capacity() > 15) n += v.str().capacity();
  }
  return n;
}

}  // namespace

void KeyedState::CollectChanges(
    uint64_t since, const std::function<void(std::string_view, const StateValue*)>& fn) {
  for (const auto& [k, i] : index_) {
    if (entries_[i].epoch >= since) fn(k, &entries_[i].value);
  }
  // A key erased twice (or erased, re-inserted, erased again) is recorded once per erase;
  // report it once. Sorting also gives the store its writes in key order.
  std::sort(tombstones_.begin(), tombstones_.end());
  tombstones_.erase(std::unique(tombstones_.begin(), tombstones_.end()), tombstones_.end());
  for (const auto& k : tombstones_) {
    if (index_.find(k) == index_.end()) fn(k, nullptr);
  }
  tombstones_.clear();
}

size_t KeyedState::ApproximateBytes() const {
  // Per entry: the index slot (key string object + index), the entry, heap text of long keys, and the
  // heap parts of values. flat_hash_map keeps ~1/8 slack plus one control byte per slot.
  size_t bytes = index_.capacity() * (sizeof(std::string) + sizeof(uint32_t) + 1) +
                 entries_.capacity() * sizeof(Entry);
  for (const auto& [k, i] : index_) {
    const Entry& e = entries_[i];
    if (k.capacity() > 15) bytes += k.capacity();
    // StateValue keeps 2 values inline; more spill to the heap.
    if (e.value.capacity() > 2) bytes += e.value.capacity() * sizeof(Value);
    for (const Value& v : e.value) bytes += ValueBytes(v) - sizeof(Value);
  }
  for (const auto& k : tombstones_) bytes += sizeof(std::string) + k.size();
  return bytes;
}

}  // namespace onceflow

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
  for (const Entry& e : entries_) {
    if (e.epoch != kFree && e.epoch >= since) fn(e.key, &e.value);
  }
  // A key erased twice (or erased, re-inserted, erased again) is recorded once per erase;
  // report it once. Sorting also gives the store its writes in key order.
  std::sort(tombstones_.begin(), tombstones_.end());
  tombstones_.erase(std::unique(tombstones_.begin(), tombstones_.end()), tombstones_.end());
  for (const auto& k : tombstones_) {
    if (Find(k) == nullptr) fn(k, nullptr);
  }
  tombstones_.clear();
}

size_t KeyedState::ApproximateBytes() const {
  // The index slots (8 bytes each), the entries (key string object, epoch, inline
  // values), heap text of long keys, and the heap parts of values.
  size_t bytes = index_.capacity() * 8 + entries_.capacity() * sizeof(Entry);
  for (const Entry& e : entries_) {
    if (e.epoch == kFree) continue;
    if (e.key.capacity() > 15) bytes += e.key.capacity();
    // StateValue keeps 2 values inline; more spill to the heap.
    if (e.value.capacity() > 2) bytes += e.value.capacity() * sizeof(Value);
    for (const Value& v : e.value) bytes += ValueBytes(v) - sizeof(Value);
  }
  for (const auto& k : tombstones_) bytes += sizeof(std::string) + k.size();
  return bytes;
}

}  // namespace onceflow

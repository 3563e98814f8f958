// KeyedState: the host-owned keyed state of one operator instance. Operators keep all
// their state here (a small vector of Values per key); the host can therefore snapshot,
// restore, query and redistribute every operator's state without knowing the operator.
//
// Every mutation stamps the entry with the current epoch (set by the host before each
// checkpoint interval), so a checkpoint writes only the keys changed since the previous
// one: CollectChanges(since). Erased keys are remembered as tombstones until collected.
//
// Threading: owned by one task thread; the host calls the epoch/collect methods from that
// same thread (at a barrier), never concurrently with the operator.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "runtime/core/record.h"

namespace onceflow {

using StateValue = absl::InlinedVector<Value, 2>;

class KeyedState {
 public:
  // Returns the value for `key` or nullptr. Does not mark the entry changed.
  const StateValue* Find(std::string_view key) const {
    auto it = index_.find(Av(key));
    return it == index_.end() ? nullptr : &entries_[it->second].value;
  }
  // Returns the value for `key`, inserting an empty one when absent (*inserted = true),
  // and marks it changed in the current epoch. The reference is valid until the next
  // insertion or erase.
  StateValue& Upsert(std::string_view key, bool* inserted = nullptr) {
    auto [it, ins] = index_.try_emplace(Av(key), 0);
    if (ins) it->second = NewEntry();
    Entry& e = entries_[it->second];
    e.epoch = epoch_;
    if (inserted) *inserted = ins;
    return e.value;
  }
  // Starts loading the index slot `key` hashes to into the cache, so that an Upsert or
  // Find of it a few keys later does not stall on the miss (large states do not fit in
  // cache; operators prefetch a few keys ahead within a batch).
  void Prefetch(std::string_view key) const { index_.prefetch(Av(key)); }
  // Second stage, a few keys after Prefetch(key): looks the key up (its slot is cached by
  // now) and starts loading its value, the other miss of an update.
  void PrefetchValue(std::string_view key) const {
    auto it = index_.find(Av(key));
    if (it != index_.end()) __builtin_prefetch(&entries_[it->second]);
  }
  // Removes `key`; returns whether it existed. Records a tombstone for checkpoints.
  bool Erase(std::string_view key) {
    auto it = index_.find(Av(key));
    if (it == index_.end()) return false;
    FreeEntry(it->second);
    index_.erase(it);
    tombstones_.emplace_back(key);
    return true;
  }
  size_t size() const { return index_.size(); }
  bool empty() const { return index_.empty(); }

  // Visits every entry (unspecified order).
  template <typename F>
  void ForEach(F&& fn) const {
    for (const auto& [k, i] : index_) fn(std::string_view(k), entries_[i].value);
  }

  // ---- host side ----
  uint64_t epoch() const { return epoch_; }
  void SetEpoch(uint64_t e) { epoch_ = e; }
  // Visits entries changed at or after `since` (value non-null), then keys erased since
  // the last call and not re-inserted (value null), each once; then forgets the
  // tombstones. Tombstones are visited in key order; live entries in map order.
  void CollectChanges(uint64_t since,
                      const std::function<void(std::string_view, const StateValue*)>& fn);
  // Keys erased since the last CollectChanges (may hold duplicates and keys re-inserted
  // since). For tests and size estimates.
  size_t PendingTombstones() const { return tombstones_.size(); }
  // Puts an entry back without marking it changed (restore from a checkpoint).
  void Restore(std::string_view key, StateValue value) {
    auto [it, ins] = index_.try_emplace(Av(key), 0);
    if (ins) it->second = NewEntry();
    Entry& e = entries_[it->second];
    e.value = std::move(value);
    e.epoch = 0;
  }
  void Clear() {
    index_.clear();
    entries_.clear();
    free_.clear();
    tombstones_.clear();
  }
  // Approximate bytes held (keys + values), for summaries.
  size_t ApproximateBytes() const;

 private:
  // Debian's Abseil is built with its own absl::string_view (not an alias of
  // std::string_view), and heterogeneous lookup only accepts that type: convert, so a
  // lookup never builds a std::string.
  static absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

  struct Entry {
    StateValue value;
    uint64_t epoch = 0;
  };
  uint32_t NewEntry() {
    if (!free_.empty()) {
      uint32_t i = free_.back();
      free_.pop_back();
      return i;
    }
    entries_.emplace_back();
    return static_cast<uint32_t>(entries_.size() - 1);
  }
  void FreeEntry(uint32_t i) {
    entries_[i] = Entry();
    free_.push_back(i);
  }

  // Why an index plus a separate entry array: the hash probe (the cache-missing part of
  // every update) then walks slots of a key and a 4-byte index — about as compact as a
  // hand-written counter's map — instead of slots that also carry the whole value.
  absl::flat_hash_map<std::string, uint32_t> index_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;  // entries_ slots of erased keys, reused first
  std::vector<std::string> tombstones_;
  uint64_t epoch_ = 1;
};

}  // namespace onceflow

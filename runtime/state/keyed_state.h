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

#include "absl/container/inlined_vector.h"
#include "runtime/core/key_map.h"
#include "runtime/core/record.h"

namespace onceflow {

using StateValue = absl::InlinedVector<Value, 2>;

class KeyedState {
 public:
  // Lookups take a HashedKey (key_map.h): the hot loops hash a key once and reuse the hash
  // for the prefetches and the update. Plain keys convert (hashed on the spot).

  // Returns the value for `key` or nullptr. Does not mark the entry changed.
  const StateValue* Find(const HashedKey& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second].value;
  }
  const StateValue* Find(std::string_view key) const { return Find(HashedKey(key)); }
  // Returns the value for `key`, inserting an empty one when absent (*inserted = true),
  // and marks it changed in the current epoch. The reference is valid until the next
  // insertion or erase.
  StateValue& Upsert(const HashedKey& key, bool* inserted = nullptr) {
    bool ins = false;
    auto it = index_.lazy_emplace(key, [&](const auto& ctor) {
      ins = true;
      ctor(std::string(key.bytes), NewEntry());
    });
    Entry& e = entries_[it->second];
    e.epoch = epoch_;
    if (inserted) *inserted = ins;
    return e.value;
  }
  StateValue& Upsert(std::string_view key, bool* inserted = nullptr) {
    return Upsert(HashedKey(key), inserted);
  }
  // Starts loading the index slot `key` hashes to into the cache, so that an Upsert or
  // Find of it a few keys later does not stall on the miss (large states do not fit in
  // cache; operators prefetch a few keys ahead within a batch).
  void Prefetch(const HashedKey& key) const { index_.prefetch(key); }
  // Second stage, a few keys after Prefetch(key): looks the key up (its slot is cached by
  // now) and starts loading its value, the other miss of an update.
  void PrefetchValue(const HashedKey& key) const {
    auto it = index_.find(key);
    if (it != index_.end()) {
      // An entry spans two or three cache lines; the epoch and the first values sit in
      // the first two.
      const char* e = reinterpret_cast<const char*>(&entries_[it->second]);
      __builtin_prefetch(e);
      __builtin_prefetch(e + 64);
    }
  }
  // Removes `key`; returns whether it existed. Records a tombstone for checkpoints.
  bool Erase(std::string_view key) {
    auto it = index_.find(key);
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
    auto it = index_.lazy_emplace(key, [&](const auto& ctor) { ctor(std::string(key), NewEntry()); });
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
  struct Entry {
    uint64_t epoch = 0;  // first: every update writes it, next to the first value
    StateValue value;
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
  KeyMap<uint32_t> index_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;  // entries_ slots of erased keys, reused first
  std::vector<std::string> tombstones_;
  uint64_t epoch_ = 1;
};

}  // namespace onceflow

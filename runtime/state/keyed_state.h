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
#include "runtime/core/hashed_key.h"
#include "runtime/core/record.h"
#include "runtime/state/key_index.h"

namespace onceflow {

using StateValue = absl::InlinedVector<Value, 2>;

class KeyedState {
 public:
  // Lookups take a HashedKey (hashed_key.h): the hot loops hash a key once and reuse the hash
  // for the prefetches and the update. Plain keys convert (hashed on the spot).

  // Returns the value for `key` or nullptr. Does not mark the entry changed.
  const StateValue* Find(const HashedKey& key) const {
    const uint32_t e = index_.Find(key.hash, IsKey(key.bytes));
    return e == KeyIndex::kNone ? nullptr : &entries_[e].value;
  }
  const StateValue* Find(std::string_view key) const { return Find(HashedKey(key)); }
  // Returns the value for `key`, inserting an empty one when absent (*inserted = true),
  // and marks it changed in the current epoch. The reference is valid until the next
  // insertion or erase.
  StateValue& Upsert(const HashedKey& key, bool* inserted = nullptr) {
    bool ins = false;
    const uint32_t i = index_.FindOrInsert(key.hash, IsKey(key.bytes),
                                           [&] { return NewEntry(key.bytes); }, &ins);
    Entry& e = entries_[i];
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
  void Prefetch(const HashedKey& key) const { index_.Prefetch(key.hash); }
  // Second stage, a few keys after Prefetch(key): reads the slot (cached by now) and
  // starts loading the entry — key, epoch and the first values, the other miss of an
  // update — without comparing the key yet (that would wait for the entry).
  // `values`: how many of the entry's first values the caller will touch (entries are
  // cache-line aligned; the key, epoch and first value share the first line, so a count
  // needs one line where a sum and a count need three).
  void PrefetchValue(const HashedKey& key, size_t values = 2) const {
    index_.PrefetchEntries(key.hash, entries_.data(), values <= 1 ? 64 : sizeof(Entry));
  }
  // Removes `key`; returns whether it existed. Records a tombstone for checkpoints.
  bool Erase(std::string_view key) {
    const HashedKey hk(key);
    const uint32_t i = index_.Find(hk.hash, IsKey(key));
    if (i == KeyIndex::kNone) return false;
    index_.Erase(hk.hash, i);
    tombstones_.emplace_back(key);
    FreeEntry(i);
    return true;
  }
  size_t size() const { return index_.size(); }
  bool empty() const { return index_.size() == 0; }

  // Visits every entry (in no promised order: first insertion, with erased entries'
  // places reused).
  template <typename F>
  void ForEach(F&& fn) const {
    for (const Entry& e : entries_) {
      if (e.epoch != kFree) fn(std::string_view(e.key), e.value);
    }
  }

  // ---- host side ----
  uint64_t epoch() const { return epoch_; }
  void SetEpoch(uint64_t e) { epoch_ = e; }
  // Visits entries changed at or after `since` (value non-null), then keys erased since
  // the last call and not re-inserted (value null), each once; then forgets the
  // tombstones. Tombstones are visited in key order; live entries in ForEach's order.
  void CollectChanges(uint64_t since,
                      const std::function<void(std::string_view, const StateValue*)>& fn);
  // Keys erased since the last CollectChanges (may hold duplicates and keys re-inserted
  // since). For tests and size estimates.
  size_t PendingTombstones() const { return tombstones_.size(); }
  // Puts an entry back without marking it changed (restore from a checkpoint).
  void Restore(std::string_view key, StateValue value) {
    bool ins = false;
    const uint32_t i =
        index_.FindOrInsert(KeyMapHash(key), IsKey(key), [&] { return NewEntry(key); }, &ins);
    Entry& e = entries_[i];
    e.value = std::move(value);
    e.epoch = 0;
  }
  void Clear() {
    index_.Clear();
    entries_.clear();
    free_.clear();
    tombstones_.clear();
  }
  // Approximate bytes held (keys + values), for summaries.
  size_t ApproximateBytes() const;

 private:
  static constexpr uint64_t kFree = UINT64_MAX;  // the epoch of an erased entry
  struct alignas(64) Entry {
    std::string key;
    uint64_t epoch = 0;  // every update writes it, next to the key and the first value
    StateValue value;
  };
  // Whether entry i holds `key` (for KeyIndex).
  struct KeyTest {
    const std::vector<Entry>* entries;
    std::string_view key;
    bool operator()(uint32_t i) const { return internal::KeyBytesEqual((*entries)[i].key, key); }
  };
  KeyTest IsKey(std::string_view key) const { return {&entries_, key}; }
  uint32_t NewEntry(std::string_view key) {
    uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      entries_.emplace_back();
      i = static_cast<uint32_t>(entries_.size() - 1);
    }
    entries_[i].key.assign(key.data(), key.size());
    entries_[i].epoch = 0;
    return i;
  }
  void FreeEntry(uint32_t i) {
    entries_[i] = Entry();
    entries_[i].epoch = kFree;
    free_.push_back(i);
  }

  // The index maps hashes to entry numbers (key_index.h says why not a hash map of
  // strings); the entries hold the keys and values.
  KeyIndex index_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;  // entries_ slots of erased keys, reused first
  std::vector<std::string> tombstones_;
  uint64_t epoch_ = 1;
};

}  // namespace onceflow

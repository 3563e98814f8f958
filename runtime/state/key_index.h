// KeyIndex: the hash index of KeyedState — from a key's hash to the number of the entry
// that holds the key (the caller's array; the index never sees key bytes, it asks the
// caller whether entry e holds the key).
//
// Why not absl::flat_hash_map<std::string, uint32_t>: keyed operators prefetch the state
// of the keys a few records ahead, in two stages (the index slot, then the entry). absl's
// prefetch loads the start of a 16-slot probe group while the key's slot may lie anywhere
// in its 640 bytes, so the second stage still missed the cache on the slot — a third of
// the time of `count` and `aggregate` went to that one load. Here a slot is 8 bytes (32
// bits of the hash and the entry number) and probing is linear from hash & mask, so the
// slot a key lives in is almost always on the line the first stage loaded, and the second
// stage reads it without a miss to prefetch the entry. At 10,000 keys the whole index
// is 256 KB.
//
// Linear probing, load at most 3/4, erase by backward shift (no tombstones). A slot's tag
// is the hash's low 32 bits: its home (tag & mask) and the filter compared before asking
// the caller. Capacity is at most 2^31 slots.
//
// Threading: none (owned by one KeyedState, one thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/core/hashed_key.h"
#include "runtime/core/prefetch.h"

namespace onceflow {

class KeyIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  void Clear() {
    slots_.clear();
    mask_ = 0;
    size_ = 0;
  }
  // Empties the index but keeps its slots (for maps refilled at every batch or flush).
  void Reset() {
    if (size_ == 0) return;
    std::fill(slots_.begin(), slots_.end(), Slot{0, 0});
    size_ = 0;
  }

  // Stage 1 of a lookup some records ahead: loads the key's home slot.
  void Prefetch(size_t hash) const {
    if (!slots_.empty()) PrefetchLine(&slots_[Tag(hash) & mask_]);
  }
  // Stage 2: starts loading the first `bytes` of entries[e] for each entry e whose slot
  // tag matches (the key's entry, bar a tag collision), without comparing keys (that
  // would wait for the entry).
  template <typename T>
  void PrefetchEntries(size_t hash, const T* entries, size_t bytes) const {
    ForTagMatches(hash, [&](uint32_t e) {
      const char* p = reinterpret_cast<const char*>(entries + e);
      for (size_t off = 0; off < bytes; off += 64) PrefetchLine(p + off);
    });
  }
  // Calls fn(entry) for each entry whose slot tag matches.
  template <typename F>
  void ForTagMatches(size_t hash, F&& fn) const {
    if (slots_.empty()) return;
    const uint32_t tag = Tag(hash);
    for (size_t i = tag & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.ref == 0) return;
      if (s.tag == tag) fn(s.ref - 1);
    }
  }
  // The entry holding the key (is_key(entry) says whether an entry does), or kNone.
  template <typename IsKey>
  uint32_t Find(size_t hash, IsKey&& is_key) const {
    if (slots_.empty()) return kNone;
    const uint32_t tag = Tag(hash);
    for (size_t i = tag & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.ref == 0) return kNone;
      if (s.tag == tag && is_key(s.ref - 1)) return s.ref - 1;
    }
  }
  // Find, or when absent adds the entry make() returns (*inserted = true). make() may not
  // touch the index.
  template <typename IsKey, typename Make>
  uint32_t FindOrInsert(size_t hash, IsKey&& is_key, Make&& make, bool* inserted) {
    if ((size_ + 1) * 4 > slots_.size() * 3) Grow();
    const uint32_t tag = Tag(hash);
    size_t i = tag & mask_;
    for (;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.ref == 0) break;
      if (s.tag == tag && is_key(s.ref - 1)) {
        *inserted = false;
        return s.ref - 1;
      }
    }
    const uint32_t entry = make();
    slots_[i] = {tag, entry + 1};
    ++size_;
    *inserted = true;
    return entry;
  }
  // Removes the slot of `entry`, which must be in the index under `hash`.
  void Erase(size_t hash, uint32_t entry) {
    const uint32_t tag = Tag(hash);
    size_t i = tag & mask_;
    while (slots_[i].ref != entry + 1) i = (i + 1) & mask_;
    // Backward shift: later slots of the run whose home is not in (i, j] move into the
    // hole, so every key stays reachable from its home without tombstones.
    for (size_t j = i;;) {
      j = (j + 1) & mask_;
      if (slots_[j].ref == 0) break;
      const size_t home = slots_[j].tag & mask_;
      const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = {0, 0};
    --size_;
  }

 private:
  struct Slot {
    uint32_t tag;
    uint32_t ref;  // entry + 1; 0: empty
  };
  static uint32_t Tag(size_t hash) { return static_cast<uint32_t>(hash); }

  void Grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{0, 0});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.ref == 0) continue;
      size_t i = s.tag & mask_;
      while (slots_[i].ref != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// IndexedMap: encoded key -> V on a KeyIndex, insert-only and emptied as a whole, for
// the maps the hot paths refill at every batch or flush: the keys a batch changed, the
// rows a sink holds until its next transaction. Lookups take the batch's precomputed
// hashes and prefetch exactly, as KeyedState does; entries keep their insertion order
// and are visited in key byte order on request.
template <typename V>
class IndexedMap {
 public:
  struct Entry {
    std::string key;
    size_t hash;
    V value;
    HashedKey hashed() const { return HashedKey(key, hash); }
  };

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void Prefetch(const HashedKey& k) const { index_.Prefetch(k.hash); }
  // After Prefetch(k), a few keys later: starts loading k's entry.
  void PrefetchEntry(const HashedKey& k) const {
    index_.PrefetchEntries(k.hash, entries_.data(), 128);
  }
  // The value of `k`, value-initialised when the key is new (*inserted = true).
  V& FindOrInsert(const HashedKey& k, bool* inserted = nullptr) {
    bool ins = false;
    const uint32_t e = index_.FindOrInsert(
        k.hash,
        [&](uint32_t i) { return internal::KeyBytesEqual(entries_[i].key, k.bytes); },
        [&] {
          entries_.push_back(Entry{std::string(k.bytes), k.hash, V()});
          return static_cast<uint32_t>(entries_.size() - 1);
        },
        &ins);
    if (inserted != nullptr) *inserted = ins;
    return entries_[e].value;
  }
  void Clear() {
    entries_.clear();
    index_.Reset();
  }
  // Calls fn(entry) for every entry in key byte order; stops at (and returns) the first
  // non-ok Status when fn returns one.
  template <typename F>
  auto ForEachSorted(F&& fn) {
    // Sorted by (KeyPrefix, then the bytes): the same order as comparing the bytes, but
    // most comparisons are one integer compare (with `emit: updates` this sort runs for
    // every input batch).
    order_.clear();
    order_.reserve(entries_.size());
    for (uint32_t i = 0; i < entries_.size(); ++i) order_.emplace_back(KeyPrefix(entries_[i].key), i);
    std::sort(order_.begin(), order_.end(), [&](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first
                                : entries_[a.second].key < entries_[b.second].key;
    });
    using R = decltype(fn(entries_[0]));
    for (const auto& [prefix, i] : order_) {
      if constexpr (std::is_void_v<R>) {
        fn(entries_[i]);
      } else {
        R r = fn(entries_[i]);
        if (!r.ok()) return r;
      }
    }
    if constexpr (!std::is_void_v<R>) return R();
  }

 private:
  KeyIndex index_;
  std::vector<Entry> entries_;
  std::vector<std::pair<uint64_t, uint32_t>> order_;
};

}  // namespace onceflow

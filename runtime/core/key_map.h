// KeyMap: a hash map from encoded keys (key.h) to V whose lookups can reuse a hash computed
// once. The keyed hot paths look every key up two or three times — prefetch the slot,
// prefetch the value, update — and with absl's own hasher each lookup hashed the key again
// (three hashes and three string compares per record were a third of `count`'s time).
// A HashedKey carries its hash; the map's hasher returns it as is, and hashes plain keys
// (std::string, std::string_view) with the same function, so the two kinds of lookup
// always agree.
//
// Threading: plain values and maps; no shared state.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "runtime/core/key.h"

namespace onceflow {

// The map hash of an encoded key: StableHash, remixed so that it is independent of the
// partition hash (StableHash modulo the parallelism). Without the remix every key of one
// instance would share the low bits that absl keeps in a slot's control byte.
inline size_t KeyMapHash(std::string_view key) {
  uint64_t h = StableHash(key);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<size_t>(h);
}

struct HashedKey {
  HashedKey() = default;
  explicit HashedKey(std::string_view k) : bytes(k), hash(KeyMapHash(k)) {}
  HashedKey(std::string_view k, size_t h) : bytes(k), hash(h) {}
  std::string_view bytes;
  size_t hash = 0;
};

namespace internal {

// Keys are short (a tag byte and a word): compared inline rather than through a memcmp
// call; the probe compares only keys whose control byte matched, so nearly every
// comparison is a match.
inline bool KeyBytesEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && BytesEqual(a.data(), b.data(), a.size());
}

struct KeyMapHasher {
  using is_transparent = void;
  size_t operator()(const HashedKey& k) const { return k.hash; }
  size_t operator()(const std::string& k) const { return KeyMapHash(k); }
  size_t operator()(std::string_view k) const { return KeyMapHash(k); }
  size_t operator()(absl::string_view k) const { return KeyMapHash({k.data(), k.size()}); }
};

struct KeyMapEq {
  using is_transparent = void;
  static std::string_view View(const HashedKey& k) { return k.bytes; }
  static std::string_view View(const std::string& k) { return k; }
  static std::string_view View(std::string_view k) { return k; }
  static std::string_view View(absl::string_view k) { return {k.data(), k.size()}; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return KeyBytesEqual(View(a), View(b));
  }
};

}  // namespace internal

// Keys are stored as std::string; look them up by HashedKey (hash reused) or by any string
// type (hashed on the spot).
template <typename V>
using KeyMap = absl::flat_hash_map<std::string, V, internal::KeyMapHasher, internal::KeyMapEq>;
using KeySet = absl::flat_hash_set<std::string, internal::KeyMapHasher, internal::KeyMapEq>;

}  // namespace onceflow

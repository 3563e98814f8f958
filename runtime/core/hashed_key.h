// HashedKey: an encoded key (key.h) with its hash computed once. The keyed hot paths look
// every key up two or three times — prefetch the slot, prefetch the entry, update — and
// hashing it for each lookup (with absl's hasher, and memcmp calls for the compares) was
// a third of `count`'s time. Lookups in KeyIndex-based maps (key_index.h) take a
// HashedKey; BatchKeys hashes a batch's keys once.
//
// Threading: plain values; no shared state.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#include "runtime/core/key.h"
#include "runtime/core/record.h"

namespace onceflow {

// The map hash of an encoded key: StableHash, remixed so that it is independent of the
// partition hash (StableHash modulo the parallelism). Without the remix every key of one
// instance would share the low bits that the index keeps in its slots.
inline size_t KeyMapHashOf(uint64_t stable_hash) {
  uint64_t h = stable_hash;
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<size_t>(h);
}
inline size_t KeyMapHash(std::string_view key) { return KeyMapHashOf(StableHash(key)); }

struct HashedKey {
  HashedKey() = default;
  explicit HashedKey(std::string_view k) : bytes(k), hash(KeyMapHash(k)) {}
  HashedKey(std::string_view k, size_t h) : bytes(k), hash(h) {}
  std::string_view bytes;
  size_t hash = 0;
};

// The first 8 bytes of `k`, zero-padded, as a big-endian integer: when two keys' prefixes
// differ they compare as the keys do bytewise (a zero pad byte sorts like a shorter key),
// so sorts of keys compare integers first and bytes only on a tie.
inline uint64_t KeyPrefix(std::string_view k) {
  uint64_t p = 0;
  const size_t n = k.size() < 8 ? k.size() : 8;
  for (size_t i = 0; i < n; ++i) p |= uint64_t{static_cast<unsigned char>(k[i])} << (56 - 8 * i);
  return p;
}

namespace internal {

// Keys are short (a tag byte and a word): compared inline rather than through a memcmp
// call; a probe compares only keys whose tag matched, so nearly every comparison is a
// match.
inline bool KeyBytesEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && BytesEqual(a.data(), b.data(), a.size());
}

}  // namespace internal

}  // namespace onceflow

// Key encoding and hashing. A key (one or more fields of a record) is encoded into a
// compact, self-delimiting byte string: equal keys give equal bytes, the bytes decode back
// to the fields, and they are the identity of keyed state (in memory and in SQLite).
// StableHash is fixed across processes and platforms (unlike absl::Hash), so hash
// partitioning — and state stored per key — stays valid across restarts and when
// `parallelism` changes.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/record.h"

namespace onceflow {

// Appends the encoding of `rec`'s key fields to *out. Returns false (out unspecified) when
// a key field is missing. A one-field string key encodes as a tag byte + the raw bytes, so
// the common case costs one small copy.
bool EncodeKey(const Record& rec, const std::vector<std::string>& fields, std::string* out);
// Appends the key's fields, named after `fields`, to *rec. Returns false on bad bytes.
bool DecodeKey(std::string_view key, const std::vector<std::string>& fields, Record* rec);
// Encodes/decodes one value (also used for stored state values).
void EncodeValue(const Value& v, std::string* out);
bool DecodeValue(std::string_view* in, Value* v);
// A whole record (field names and values, in order), self-contained: for rows a
// two-phase sink holds back in a checkpoint. DecodeRecord appends the fields to *rec and
// returns false on bad bytes.
void EncodeRecord(const Record& rec, std::string* out);
bool DecodeRecord(std::string_view bytes, Record* rec);

// Whether `s` holds a NUL byte (a string key holding one is escaped in its encoding).
// Short strings — most keys — are scanned inline rather than through a memchr call.
inline bool HasNul(std::string_view s) {
  if (s.size() > 32) return std::memchr(s.data(), '\0', s.size()) != nullptr;
  for (char c : s) {
    if (c == '\0') return true;
  }
  return false;
}

// 64-bit hash, stable across processes (wyhash-style mixing).
uint64_t StableHash(std::string_view bytes);
// StableHash of the key encoding of the one-field string key `s` (EncodeKey of a record
// whose key field holds Value::String(s)), computed without building the encoding.
// Requires that `s` holds no NUL byte (such strings are escaped; use StableHash of the
// encoding then).
uint64_t StableHashOfStringKey(std::string_view s);

namespace internal {
inline constexpr uint64_t kHashP0 = 0xa0761d6478bd642full, kHashP1 = 0xe7037ed1a0b428dbull;
inline uint64_t HashMix(uint64_t a, uint64_t b) {
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
}  // namespace internal

// Bytes a caller of StableHashOfStringKeyPadded guarantees readable from s.data().
inline constexpr size_t kStringKeyHashPadding = 16;
// StableHashOfStringKey(s), for `s` followed in memory by readable bytes up to
// s.data() + kStringKeyHashPadding (their contents do not matter). A key of up to 13
// bytes — a word — is hashed from two unaligned loads, masked, without a branch on its
// length: StableHashOfStringKey's loads branch on it, and word lengths do not predict.
inline uint64_t StableHashOfStringKeyPadded(std::string_view s) {
  using internal::HashMix;
  using internal::kHashP0;
  using internal::kHashP1;
  const size_t n = s.size();
  if (n > 13) return StableHashOfStringKey(s);
  // The encoding E = 's' + s + '\0' (n + 2 <= 15 bytes) as two zero-filled words.
  auto bytes = [](size_t k) {  // the low k bytes (k <= 8, or "negative": none)
    return k >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * k)) - 1;
  };
  uint64_t lo, hi;
  std::memcpy(&lo, s.data(), 8);
  std::memcpy(&hi, s.data() + 7, 8);
  const size_t len = n + 2;
  const uint64_t word0 = ('s' | (lo << 8)) & bytes(n + 1);
  const uint64_t word1 = n > 7 ? hi & bytes(n - 7) : 0;
  const uint64_t h0 = 0x9e3779b97f4a7c15ull ^ len;
  // As StableHash: len / 8 full words (0 or 1), then the tail of len % 8 bytes.
  const bool two = len >= 8;
  const uint64_t h = two ? HashMix(h0 ^ word0 ^ kHashP0, kHashP1) : h0;
  const uint64_t tail = two ? word1 : word0;
  return HashMix(HashMix(h ^ tail ^ kHashP1, kHashP0 ^ (len & 7)), kHashP0);
}

// StableHash(...) mod n, the partition a hashed key goes to among n; a power of two (the
// usual parallelism) takes a mask instead of a 64-bit division.
inline int HashToPartition(uint64_t hash, int n) {
  const uint64_t m = static_cast<uint64_t>(n);
  return static_cast<int>((m & (m - 1)) == 0 ? hash & (m - 1) : hash % m);
}
// StableHash of the key encoding of the one-field string key `s`, with or without NUL
// bytes. *plain: s holds none, so the hash is StableHashOfStringKey(s) (what a value may
// memoise, Value::MemoiseKeyHash); otherwise it is hashed from the escaped encoding.
inline uint64_t StringKeyHash(std::string_view s, bool* plain) {
  *plain = !HasNul(s);
  if (*plain) return StableHashOfStringKey(s);
  std::string key;
  EncodeValue(Value::String(s), &key);
  return StableHash(key);
}
// The partition (of n) that hash partitioning on one field sends a record to when that
// field holds the string `s`: HashToPartition(StringKeyHash(s)). The one definition
// shared by the hash partitioner and operators that place their output in partitions
// themselves (Emitter::hashed).
inline int StringKeyPartition(std::string_view s, int n) {
  bool plain;
  return HashToPartition(StringKeyHash(s, &plain), n);
}


}  // namespace onceflow

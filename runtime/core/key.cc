// Key and state-value encoding, and the stable hash used for partitioning.
//
// Encoding of one value: a tag byte, then
//   'n' null | 'f' false | 't' true | 'i' + 8 bytes big-endian (sign bit flipped, so
//   byte order = numeric order) | 'd' + 8 bytes IEEE-754 (order-preserving transform) |
//   's' + bytes + 0x00 terminator, with 0x00 escaped as 0x00 0xFF | 'j' + JSON text
//   escaped the same way.
// Keys are the concatenation of their fields' encodings, so they compare bytewise in a
// sensible order (used for deterministic `emit: final` output) and decode without
// knowing the types in advance. This format is stored in state files: changing it
// requires a schema migration.
#include "runtime/core/key.h"

#include <algorithm>
#include <cstring>

namespace onceflow {

namespace {

void PutU64(uint64_t v, std::string* out) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (i * 8)) & 0xFF));
}

bool GetU64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  uint64_t r = 0;
  for (int i = 0; i < 8; ++i) r = (r << 8) | static_cast<unsigned char>((*in)[i]);
  in->remove_prefix(8);
  *v = r;
  return true;
}

void PutEscaped(std::string_view s, std::string* out) {
  // Fast path: most keys hold no NUL byte and are copied in one append.
  const char* p = s.data();
  size_t n = s.size();
  while (const void* nul = std::memchr(p, '\0', n)) {
    size_t k = static_cast<const char*>(nul) - p + 1;
    out->append(p, k);
    out->push_back('\xFF');
    p += k;
    n -= k;
  }
  out->append(p, n);
  out->push_back('\0');
}

bool GetEscaped(std::string_view* in, std::string* s) {
  // Copies run by run between NUL bytes (memchr + one append) rather than byte by byte:
  // decoding keys is on the path of every `emit: updates` record.
  s->clear();
  const char* d = in->data();
  const size_t n = in->size();
  size_t i = 0;
  while (const void* nul = std::memchr(d + i, '\0', n - i)) {
    size_t k = static_cast<const char*>(nul) - d;
    s->append(d + i, k - i);
    if (k + 1 < n && d[k + 1] == '\xFF') {
      s->push_back('\0');
      i = k + 2;
      continue;
    }
    in->remove_prefix(k + 1);
    return true;
  }
  return false;
}

}  // namespace

void EncodeValue(const Value& v, std::string* out) {
  switch (v.type()) {
    case ValueType::kNull: out->push_back('n'); break;
    case ValueType::kBool: out->push_back(v.as_bool() ? 't' : 'f'); break;
    case ValueType::kInt:
      out->push_back('i');
      PutU64(static_cast<uint64_t>(v.as_int()) ^ (uint64_t{1} << 63), out);
      break;
    case ValueType::kDouble: {
      out->push_back('d');
      uint64_t bits;
      double d = v.as_double();
      std::memcpy(&bits, &d, 8);
      bits = (bits & (uint64_t{1} << 63)) ? ~bits : bits | (uint64_t{1} << 63);
      PutU64(bits, out);
      break;
    }
    case ValueType::kString:
      out->push_back('s');
      PutEscaped(v.str(), out);
      break;
    case ValueType::kJson:
      out->push_back('j');
      PutEscaped(v.str(), out);
      break;
  }
}

bool DecodeValue(std::string_view* in, Value* v) {
  if (in->empty()) return false;
  char tag = (*in)[0];
  in->remove_prefix(1);
  switch (tag) {
    case 'n': *v = Value::Null(); return true;
    case 't': *v = Value::Bool(true); return true;
    case 'f': *v = Value::Bool(false); return true;
    case 'i': {
      uint64_t u;
      if (!GetU64(in, &u)) return false;
      *v = Value::Int(static_cast<int64_t>(u ^ (uint64_t{1} << 63)));
      return true;
    }
    case 'd': {
      uint64_t bits;
      if (!GetU64(in, &bits)) return false;
      bits = (bits & (uint64_t{1} << 63)) ? bits & ~(uint64_t{1} << 63) : ~bits;
      double d;
      std::memcpy(&d, &bits, 8);
      *v = Value::Double(d);
      return true;
    }
    case 's':
    case 'j': {
      std::string s;
      if (!GetEscaped(in, &s)) return false;
      *v = tag == 's' ? Value::String(std::move(s)) : Value::Json(std::move(s));
      return true;
    }
    default:
      return false;
  }
}

bool EncodeKey(const Record& rec, const std::vector<std::string>& fields, std::string* out) {
  for (const auto& f : fields) {
    const Value* v = rec.Get(f);
    if (v == nullptr) return false;
    EncodeValue(*v, out);
  }
  return true;
}

void EncodeRecord(const Record& rec, std::string* out) {
  for (const auto& f : rec) {
    PutEscaped(f.first, out);
    EncodeValue(f.second, out);
  }
}

bool DecodeRecord(std::string_view bytes, Record* rec) {
  std::string name;
  while (!bytes.empty()) {
    Value v;
    if (!GetEscaped(&bytes, &name) || !DecodeValue(&bytes, &v)) return false;
    rec->Append(name, std::move(v));
  }
  return true;
}

bool DecodeKey(std::string_view key, const std::vector<std::string>& fields, Record* rec) {
  for (const auto& f : fields) {
    Value v;
    if (!DecodeValue(&key, &v)) return false;
    rec->Append(f, std::move(v));
  }
  return key.empty();
}

namespace {

constexpr uint64_t kP0 = internal::kHashP0, kP1 = internal::kHashP1;

inline uint64_t Mix(uint64_t a, uint64_t b) { return internal::HashMix(a, b); }

// Bytes [from, from + count) of `s` (count <= 8) as a little-endian word, zero beyond the
// end of `s`. Short runs are assembled from overlapping loads (the overlapping bytes land
// on the same bit positions, so OR-ing them is exact), without a loop or a memcpy call.
inline uint64_t LoadUpTo(std::string_view s, size_t from, size_t count) {
  if (from >= s.size()) return 0;
  const size_t n = std::min(count, s.size() - from);
  const char* p = s.data() + from;
  if (n == 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << (8 * (n - 4)));
  }
  auto byte = [&](size_t i) { return static_cast<uint64_t>(static_cast<unsigned char>(p[i])); };
  return byte(0) | (byte(n / 2) << (8 * (n / 2))) | (byte(n - 1) << (8 * (n - 1)));
}

}  // namespace

uint64_t StableHashOfStringKey(std::string_view s) {
  // Mirrors StableHash over E = 's' + s + '\0' (length s.size() + 2). Byte i >= 1 of E is
  // s[i - 1]; the terminator, like the zero fill of StableHash's tail word, is 0, so word
  // k of E is s[8k - 1 .. 8k + 7) (or 's' plus s[0 .. 7) for k = 0) zero-filled.
  const size_t len = s.size() + 2;
  uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
  const size_t full = len / 8;
  for (size_t k = 0; k < full; ++k) {
    uint64_t w = k == 0 ? ('s' | (LoadUpTo(s, 0, 7) << 8)) : LoadUpTo(s, 8 * k - 1, 8);
    h = Mix(h ^ w ^ kP0, kP1);
  }
  const size_t rest = len % 8;
  uint64_t tail = 0;
  if (rest > 0) {
    tail = full == 0 ? ('s' | (LoadUpTo(s, 0, rest - 1) << 8)) : LoadUpTo(s, 8 * full - 1, rest);
  }
  h = Mix(h ^ tail ^ kP1, kP0 ^ rest);
  return Mix(h, kP0);
}

uint64_t StableHash(std::string_view bytes) {
  // wyhash-style: multiply-mix 8 bytes at a time; fixed seed and constants. The tail (0..7
  // bytes, zero-filled) is assembled by LoadUpTo from overlapping loads: a memcpy of a
  // variable length through the stack stalled on store forwarding, and this hash runs for
  // every keyed record.
  uint64_t h = 0x9e3779b97f4a7c15ull ^ bytes.size();
  const size_t full = bytes.size() / 8;
  for (size_t k = 0; k < full; ++k) h = Mix(h ^ LoadUpTo(bytes, 8 * k, 8) ^ kP0, kP1);
  const size_t n = bytes.size() % 8;
  const uint64_t tail = n == 0 ? 0 : LoadUpTo(bytes, 8 * full, n);
  h = Mix(h ^ tail ^ kP1, kP0 ^ n);
  return Mix(h, kP0);
}

}  // namespace onceflow

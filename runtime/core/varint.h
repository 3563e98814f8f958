// Unsigned LEB128 varints: 7 bits per byte, low bits first, the high bit set on every byte
// but the last. Used by the state file's encodings (state values, key lists) and the
// chaos record of fired faults.
//
// Threading: none.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace onceflow {

inline void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Reads one varint off the front of *in; false when it is cut off or overflows 64 bits.
inline bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    if (shift == 63 && byte > 1) return false;  // overflows 64 bits
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace onceflow

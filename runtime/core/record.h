// Records: the unit of data on every channel. A record is a JSON object: an ordered list
// of (field name, Value). Values are scalars, or nested arrays/objects kept as compact JSON
// text (kJson) so the hot path never builds a DOM. Field names and short strings (up to 15
// bytes) live inline (small-string optimisation), and up to four fields live inline in the
// record, so a typical record costs no heap allocation.
//
// Threading: plain values; a record belongs to one thread at a time (it moves through a
// channel inside its batch).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"

namespace onceflow {

enum class ValueType : uint8_t { kNull, kBool, kInt, kDouble, kString, kJson };

class Value {
 public:
  Value() = default;
  static Value Null() { return Value(); }
  static Value Bool(bool b) { Value v; v.type_ = ValueType::kBool; v.i_ = b ? 1 : 0; return v; }
  static Value Int(int64_t i) { Value v; v.type_ = ValueType::kInt; v.i_ = i; return v; }
  static Value Double(double d) { Value v; v.type_ = ValueType::kDouble; v.d_ = d; return v; }
  static Value String(std::string s) {
    Value v; v.type_ = ValueType::kString; v.s_ = std::move(s); return v;
  }
  static Value String(std::string_view s) { return String(std::string(s)); }
  static Value String(const char* s) { return String(std::string(s)); }
  // `json` must be a valid, compact JSON array or object.
  static Value Json(std::string json) {
    Value v; v.type_ = ValueType::kJson; v.s_ = std::move(json); return v;
  }

  ValueType type() const { return type_; }
  bool is_null() const { return type_ == ValueType::kNull; }
  bool is_number() const { return type_ == ValueType::kInt || type_ == ValueType::kDouble; }
  bool is_string() const { return type_ == ValueType::kString; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }
  double as_double() const { return d_; }
  // The number as a double (kInt converted); 0 for non-numbers.
  double ToDouble() const {
    return type_ == ValueType::kInt ? static_cast<double>(i_)
                                    : (type_ == ValueType::kDouble ? d_ : 0.0);
  }
  // String contents (kString) or JSON text (kJson).
  const std::string& str() const { return s_; }
  std::string& mutable_str() { return s_; }

  // Appends this value's JSON encoding.
  void AppendJson(std::string* out) const;
  // The text a `lines` or `csv` sink writes: strings unquoted, everything else as JSON.
  void AppendText(std::string* out) const;
  std::string ToJson() const { std::string s; AppendJson(&s); return s; }

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  ValueType type_ = ValueType::kNull;
  union {
    int64_t i_ = 0;
    double d_;
  };
  std::string s_;
};

// Where a record came from, for error messages and dead letters: the index of the source
// node in the plan and the source's position of the event (1-based line, or record index).
struct Origin {
  int32_t source = -1;
  uint64_t position = 0;
};

class Record {
 public:
  using Field = std::pair<std::string, Value>;
  using Fields = absl::InlinedVector<Field, 4>;

  Record() = default;

  // Returns the field's value or nullptr. Linear scan: records are small.
  const Value* Get(std::string_view name) const {
    for (const auto& f : fields_) {
      if (f.first == name) return &f.second;
    }
    return nullptr;
  }
  Value* GetMutable(std::string_view name) {
    for (auto& f : fields_) {
      if (f.first == name) return &f.second;
    }
    return nullptr;
  }
  // Sets a field, replacing an existing one of that name (keeping its position).
  void Set(std::string_view name, Value v) {
    if (Value* cur = GetMutable(name)) {
      *cur = std::move(v);
      return;
    }
    fields_.emplace_back(std::string(name), std::move(v));
  }
  // Appends a field without checking for an existing one (caller guarantees uniqueness).
  void Append(std::string_view name, Value v) { fields_.emplace_back(std::string(name), std::move(v)); }
  bool Erase(std::string_view name);
  void Clear() { fields_.clear(); }

  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  const Fields& fields() const { return fields_; }
  Fields& mutable_fields() { return fields_; }
  Fields::const_iterator begin() const { return fields_.begin(); }
  Fields::const_iterator end() const { return fields_.end(); }

  // Appends the compact JSON object encoding, fields in order.
  void AppendJson(std::string* out) const;
  std::string ToJson() const { std::string s; AppendJson(&s); return s; }

  // Equality compares fields in order and ignores origin.
  friend bool operator==(const Record& a, const Record& b) { return a.fields_ == b.fields_; }

  Origin origin;

 private:
  Fields fields_;
};

using RecordBatch = std::vector<Record>;

// Appends `s` as a JSON string literal (quoted, escaped; invalid UTF-8 bytes replaced by
// U+FFFD so output is always valid JSON).
void AppendJsonString(std::string_view s, std::string* out);

// Parses one JSON object (a JSONL line) into `rec` (cleared first). Nested arrays and
// objects become kJson values holding their compact text; integers that fit int64 become
// kInt, other numbers kDouble. Returns false and sets *error on malformed input or a
// non-object. Uses simdjson's on-demand parser; `parser` may be reused across calls (one
// per thread) and `line` need not be padded.
class JsonParser {
 public:
  JsonParser();
  ~JsonParser();
  bool ParseObject(std::string_view line, Record* rec, std::string* error);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace onceflow

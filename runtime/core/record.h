// Records: the unit of data on every channel. A record is a JSON object: an ordered list
// of (field name, Value). Values are scalars, or nested arrays/objects kept as compact JSON
// text (kJson) so the hot path never builds a DOM. Field names and short strings (up to 15
// bytes) live inline (small-string optimisation), and one field lives inline in the record,
// so a one-field record (a token) costs no heap allocation and a record with more fields
// one allocation (see Record::Fields).
//
// Threading: plain values; a record belongs to one thread at a time (it moves through a
// channel inside its batch).
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"

namespace onceflow {

enum class ValueType : uint8_t { kNull, kBool, kInt, kDouble, kString, kJson };

class Value {
 public:
  // User-provided (not `= default`) on purpose: value-initialisation (`Value()`,
  // emplace_back()) then runs just the member initialisers instead of first zeroing the
  // whole object, which compiles to a `rep stos` that was a quarter of split's time.
  Value() {}
  static Value Null() { return Value(); }
  static Value Bool(bool b) { Value v; v.type_ = ValueType::kBool; v.i_ = b ? 1 : 0; return v; }
  static Value Int(int64_t i) { Value v; v.type_ = ValueType::kInt; v.i_ = i; return v; }
  static Value Double(double d) { Value v; v.type_ = ValueType::kDouble; v.d_ = d; return v; }
  static Value String(std::string s) {
    Value v; v.type_ = ValueType::kString; v.s_ = std::move(s); return v;
  }
  static Value String(std::string_view s) { return String(std::string(s)); }
  static Value String(const char* s) { return String(std::string(s)); }
  // A string constructed in place (no temporary std::string, no assign): what Record::
  // AppendString builds a token's value with.
  struct InPlaceString {};
  Value(InPlaceString, std::string_view s) : type_(ValueType::kString), s_(s.data(), s.size()) {}
  // `json` must be a valid, compact JSON array or object.
  static Value Json(std::string json) {
    Value v; v.type_ = ValueType::kJson; v.s_ = std::move(json); return v;
  }

  // In-place updates for hot accumulators (count, sum): no temporary Value is built.
  // Only a string or JSON value holds characters: updating a number in place (a count)
  // leaves the string, on the next cache line of a state entry, untouched.
  void SetInt(int64_t i) {
    if (HoldsText()) s_.clear();
    type_ = ValueType::kInt;
    key_hash_known_ = false;
    i_ = i;
  }
  void SetDouble(double d) {
    if (HoldsText()) s_.clear();
    type_ = ValueType::kDouble;
    key_hash_known_ = false;
    d_ = d;
  }
  void SetString(std::string_view s) {
    type_ = ValueType::kString;
    key_hash_known_ = false;
    s_.assign(s.data(), s.size());
  }
  // Memoises the key hash of the string this value holds, StableHashOfStringKey(s) (key.h;
  // s holds no NUL byte), for a producer that computed it anyway — split, placing each
  // token in the partition of a keyed consumer — so that the consumer does not hash the
  // same bytes again. The hash lives in the union a string does not use; every later
  // change of the value forgets it (Python memoises its strings' hashes the same way).
  void MemoiseKeyHash(uint64_t hash) {
    i_ = static_cast<int64_t>(hash);
    key_hash_known_ = true;
  }
  // The key hash MemoiseKeyHash stored, if this is still that string.
  bool KnownKeyHash(uint64_t* hash) const {
    if (!key_hash_known_) return false;
    *hash = static_cast<uint64_t>(i_);
    return true;
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
  bool HoldsText() const { return type_ == ValueType::kString || type_ == ValueType::kJson; }
  // String contents (kString) or JSON text (kJson).
  const std::string& str() const { return s_; }
  std::string& mutable_str() {
    key_hash_known_ = false;  // the caller may change the string
    return s_;
  }

  // Appends this value's JSON encoding.
  void AppendJson(std::string* out) const;
  // The text a `lines` or `csv` sink writes: strings unquoted, everything else as JSON.
  void AppendText(std::string* out) const;
  std::string ToJson() const { std::string s; AppendJson(&s); return s; }

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  ValueType type_ = ValueType::kNull;
  bool key_hash_known_ = false;  // kString only: i_ holds its key hash
  // s_ is empty unless HoldsText(): every setter of another type clears it.
  union {
    int64_t i_ = 0;
    double d_;
  };
  std::string s_;
};

// Field storage of records that spill out of the inline slot comes from a small
// per-thread cache of freed blocks (FieldBlockCache) instead of straight from malloc.
// Why: a source batch allocates a few hundred such blocks and the last operator of the
// chain frees them all together; glibc's per-thread cache keeps only 7 blocks per size,
// so the rest went through malloc's locked, coalescing slow path (_int_malloc/_int_free
// were ~13% of the orders pipeline). Blocks are recycled LIFO per size class, capped
// per thread.
//
// Across threads: when a producer task allocates the blocks and a consumer task frees
// them, the consumer's cache only fills and the producer's only empties. So a thread
// hands full lists (kChain blocks of one class) to a process-wide depot and a thread
// whose list ran dry takes one back: one mutex acquisition per kChain blocks instead of
// glibc's cross-arena free (5% of the split orders pipeline's samples) and a malloc per
// record. Each thread keeps one spare full list so that a thread both allocating and
// freeing around a list boundary does not ping-pong with the depot.
namespace internal {

// Under AddressSanitizer the cache is bypassed: recycled blocks would hide use-after-free.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kFieldCacheEnabled = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kFieldCacheEnabled = false;
#else
inline constexpr bool kFieldCacheEnabled = true;
#endif
#else
inline constexpr bool kFieldCacheEnabled = true;
#endif

class FieldBlockCache {
 public:
  static void* Allocate(size_t bytes) {
    if (!kFieldCacheEnabled) return ::operator new(bytes);
    const size_t c = ClassOf(bytes);
    if (c >= kClasses) return ::operator new(bytes);
    State& st = state_;
    List& l = st.lists[c];
    if (l.head == nullptr && !Refill(c, bytes)) return ::operator new(bytes);
    FreeBlock* b = l.head;
    l.head = b->next;
    --l.count;
    st.bytes -= bytes;
    return b;
  }
  static void Deallocate(void* p, size_t bytes) {
    if (!kFieldCacheEnabled) {
      ::operator delete(p);
      return;
    }
    const size_t c = ClassOf(bytes);
    State& st = state_;
    if (c >= kClasses || st.reaped) {
      ::operator delete(p);
      return;
    }
    if (!st.registered) Register();
    List& l = st.lists[c];
    if (l.count == kChain) Spill(c, bytes);  // makes room in l
    if (st.bytes + bytes > kMaxBytes) {
      ::operator delete(p);
      return;
    }
    FreeBlock* b = static_cast<FreeBlock*>(p);
    b->next = l.head;
    l.head = b;
    ++l.count;
    st.bytes += bytes;
  }
  // Returns this thread's cached blocks to the heap.
  static void Release();
  // Release() for good: called at thread exit, later frees bypass the cache.
  static void ReleaseAtExit();

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // Size classes are exact byte sizes in steps of 16 (all field blocks are multiples of
  // sizeof(Record::Field), itself a multiple of 16 on 64-bit targets), so a recycled
  // block is always exactly the size asked for.
  static constexpr size_t kGranule = 16;
  static constexpr size_t kClasses = 1024 / kGranule + 1;
  static constexpr size_t kMaxBytes = size_t{1} << 20;  // per thread
  static constexpr uint32_t kChain = 64;                // blocks per list handed over
  static size_t ClassOf(size_t bytes) {
    return bytes % kGranule == 0 ? bytes / kGranule : kClasses;
  }
  struct List {
    FreeBlock* head;
    uint32_t count;
  };
  // Trivially destructible, so the hot-path access needs no TLS init guard; the cache is
  // drained at thread exit by a separate guard object that Register() creates.
  struct State {
    List lists[kClasses];   // the blocks in use for this class
    List spares[kClasses];  // a full list kept back (count == kChain) or empty
    size_t bytes;           // in lists and spares
    bool registered;
    bool reaped;  // the thread is exiting: free directly from now on
  };
  // Slow paths (record.cc). Refill: lists[c] is empty; takes the spare or a list from the
  // depot; false when neither has one. Spill: lists[c] is full; it becomes the spare,
  // the previous spare going to the depot.
  static bool Refill(size_t c, size_t bytes);
  static void Spill(size_t c, size_t bytes);
  static void FreeList(FreeBlock* head);
  static void Register();
  struct Depot;  // record.cc
  static Depot& depot();
  static thread_local State state_;
};

// Whether the n bytes at x and y are equal. Short runs (4..16 bytes: field names, keys)
// are compared with two overlapping word loads each instead of a memcmp call.
template <typename T>
inline bool EndsEqual(const char* x, const char* y, size_t n) {
  T x0, y0, x1, y1;
  std::memcpy(&x0, x, sizeof(T));
  std::memcpy(&y0, y, sizeof(T));
  std::memcpy(&x1, x + n - sizeof(T), sizeof(T));
  std::memcpy(&y1, y + n - sizeof(T), sizeof(T));
  return x0 == y0 && x1 == y1;
}
inline bool BytesEqual(const char* x, const char* y, size_t n) {
  if (n >= 8 && n <= 16) return EndsEqual<uint64_t>(x, y, n);
  if (n >= 4 && n < 8) return EndsEqual<uint32_t>(x, y, n);
  return std::memcmp(x, y, n) == 0;
}

// std::allocator-compatible front end of FieldBlockCache (stateless: all instances equal).
template <typename T>
class FieldAllocator {
 public:
  using value_type = T;
  FieldAllocator() = default;
  template <typename U>
  FieldAllocator(const FieldAllocator<U>&) {}  // NOLINT(runtime/explicit): rebinding
  T* allocate(size_t n) { return static_cast<T*>(FieldBlockCache::Allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FieldBlockCache::Deallocate(p, n * sizeof(T)); }
  friend bool operator==(const FieldAllocator&, const FieldAllocator&) { return true; }
  friend bool operator!=(const FieldAllocator&, const FieldAllocator&) { return false; }
};

}  // namespace internal

// Where a record came from, for error messages and dead letters: the index of the source
// node in the plan and the source's position of the event (1-based line, or record index).
struct Origin {
  int32_t source = -1;
  // Dedup mode only: the index of the source record in the batch its source Read
  // returned (records made from it by chained operators keep it). The sequenced executor
  // numbers source records by count — the read's starting count + read_index + 1 — since
  // `position` is a line number, or a generated number across every instance, and is not
  // a count (runtime/exec/sequenced.cc). Fits in what was padding.
  uint32_t read_index = 0;
  uint64_t position = 0;
};

class Record {
 public:
  using Field = std::pair<std::string, Value>;
  // One inline field: most records on the hot paths of word-count-like pipelines carry a
  // single field (a token), and a record of ~100 bytes instead of ~340 keeps a batch of a
  // few thousand of them in L2. Records with more fields keep theirs in one heap block,
  // which also makes moving them cheap (see Grow for the growth policy); that block comes
  // from FieldBlockCache (see FieldAllocator).
  using Fields = absl::InlinedVector<Field, 1, internal::FieldAllocator<Field>>;

  // User-provided for the same reason as Value(): batch->emplace_back() must not zero the
  // record (inline field storage included) before constructing it.
  Record() {}

  // Returns the field's value or nullptr. Linear scan: records are small.
  const Value* Get(std::string_view name) const {
    for (const auto& f : fields_) {
      if (NameEquals(f.first, name)) return &f.second;
    }
    return nullptr;
  }
  Value* GetMutable(std::string_view name) {
    for (auto& f : fields_) {
      if (NameEquals(f.first, name)) return &f.second;
    }
    return nullptr;
  }
  // Sets a field, replacing an existing one of that name (keeping its position).
  void Set(std::string_view name, Value v) {
    if (Value* cur = GetMutable(name)) {
      *cur = std::move(v);
      return;
    }
    Grow();
    fields_.emplace_back(std::string(name), std::move(v));
  }
  // Appends a field without checking for an existing one (caller guarantees uniqueness).
  void Append(std::string_view name, Value v) {
    Grow();
    fields_.emplace_back(std::string(name), std::move(v));
  }
  // Appends a null field and returns its value, to be filled in place: a producer of many
  // small records (split) then copies each string once instead of through temporaries.
  // Caller guarantees uniqueness, as with Append.
  Value& AppendSlot(std::string_view name) {
    Grow();
    return fields_
        .emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                      std::forward_as_tuple())
        .second;
  }
  // AppendSlot(name) holding the string `s`, built in place: the token producer's path.
  Value& AppendString(std::string_view name, std::string_view s) {
    Grow();
    return fields_
        .emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                      std::forward_as_tuple(Value::InPlaceString{}, s))
        .second;
  }
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
  // Field names are short: compare them inline (see internal::BytesEqual) instead of
  // calling memcmp; Get runs several times per record on hot paths and the names usually
  // differ in length or first byte anyway.
  static bool NameEquals(const std::string& a, std::string_view b) {
    const size_t n = b.size();
    if (a.size() != n) return false;
    if (n == 0) return true;
    if (a[0] != b[0]) return false;
    return internal::BytesEqual(a.data(), b.data(), n);
  }
  // The first spill from the inline slot goes straight to room for four fields, instead
  // of InlinedVector's doubling (1 -> 2 -> 4), so a typical multi-field record allocates
  // once.
  void Grow() {
    if (fields_.size() == fields_.capacity() && fields_.size() < 4) fields_.reserve(4);
  }

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
  // The same, where `readable` bytes from line.data() may be read (>= line.size()): with
  // SIMDJSON_PADDING bytes beyond the line the text is parsed in place instead of copied.
  bool ParseObject(std::string_view line, size_t readable, Record* rec, std::string* error);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace onceflow

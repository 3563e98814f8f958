// Helpers shared by the keyed, stateful operators (count, aggregate, distinct): key
// extraction with a data error for a missing key field, and the `emit` bookkeeping.
//
// emit: updates — each key changed by an input batch is emitted once, after the batch,
// with its value at the end of the batch (updates are coalesced per batch: still every
// change, at batch granularity), keys in key-byte order so output is deterministic.
// emit: final — Finish() emits every key once, in key-byte order.
//
// Threading: one instance per operator instance (task thread).
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/key.h"
#include "runtime/core/hashed_key.h"
#include "runtime/core/node.h"
#include "runtime/spec/pipeline_spec.h"
#include "runtime/state/key_index.h"
#include "runtime/state/keyed_state.h"

namespace onceflow::ops {

// The key fields of a keyed node: spec.key when the validator filled it, else the option.
inline std::vector<std::string> KeyFieldsOf(const NodeSpec& spec) {
  if (!spec.key.empty()) return spec.key;
  return spec.options.GetList("key");
}

// Encodes rec's key into *key (cleared first). On a missing key field reports a data error
// through `errors` and returns false with *st holding the handler's verdict.
inline bool ExtractKey(const Record& rec, const std::vector<std::string>& fields,
                       std::string_view op, ErrorHandler* errors, std::string* key,
                       Status* st) {
  key->clear();
  if (EncodeKey(rec, fields, key)) return true;
  std::string missing;
  for (const auto& f : fields) {
    if (rec.Get(f) == nullptr) {
      missing = f;
      break;
    }
  }
  *st = errors->OnRecordError(rec, std::string(op) + ": key field '" + missing + "' is missing");
  return false;
}

// The encoded keys of one input batch, computed before the batch is applied, so that an
// operator can prefetch the state slot of the key kPrefetchDistance records ahead: with
// many distinct keys the state does not fit in cache, and the probe's miss was most of
// the per-record cost of count and aggregate. Records without their key fields get no key
// (has(i) is false); the operator reports them in place, so errors keep their order.
class BatchKeys {
 public:
  static constexpr size_t kPrefetchDistance = 16;

  void Encode(const RecordBatch& in, const std::vector<std::string>& fields) {
    len_ = 0;
    spans_.resize(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      const Record& rec = in[i];
      const size_t start = len_;
      Span& sp = spans_[i];
      uint64_t stable = 0;
      bool known = false;
      if (!(fields.size() == 1 && AppendStringKey(rec, fields[0], &stable, &known))) {
        scratch_.clear();
        if (!EncodeKey(rec, fields, &scratch_)) {
          sp = {start, kMissing, 0};
          continue;
        }
        std::memcpy(Room(scratch_.size()), scratch_.data(), scratch_.size());
        len_ += scratch_.size();
      }
      // Hashed once here, while the bytes are in cache (unless the producer memoised the
      // hash in the value): the prefetches and the update reuse it.
      const std::string_view bytes(buf_.get() + start, len_ - start);
      sp = {start, len_ - start, known ? KeyMapHashOf(stable) : KeyMapHash(bytes)};
    }
  }
  size_t size() const { return spans_.size(); }
  bool has(size_t i) const { return spans_[i].length != kMissing; }
  std::string_view key(size_t i) const {
    return std::string_view(buf_.get() + spans_[i].offset, spans_[i].length);
  }
  HashedKey hashed(size_t i) const { return HashedKey(key(i), spans_[i].hash); }
  // Call once per record i, before applying it (after PrefetchStart): prefetches the index
  // slot of the key kPrefetchDistance records ahead and the value of the key half as far
  // ahead, whose slot was prefetched by then.
  // `values`: how many state values per key the operator touches (KeyedState::PrefetchValue).
  void Prefetch(const KeyedState& state, size_t i, size_t values) const {
    const size_t slot = i + kPrefetchDistance;
    const size_t value = i + kPrefetchDistance / 2;
    if (slot < spans_.size() && has(slot)) state.Prefetch(hashed(slot));
    if (value < spans_.size() && has(value)) state.PrefetchValue(hashed(value), values);
  }
  // Before the first Prefetch(state, 0): the slots of the first keys.
  void PrefetchStart(const KeyedState& state) const {
    for (size_t i = 0; i < kPrefetchDistance && i < spans_.size(); ++i) {
      if (has(i)) state.Prefetch(hashed(i));
    }
  }

 private:
  static constexpr size_t kMissing = static_cast<size_t>(-1);
  // The common key, one string field without NUL bytes, encoded inline (the same bytes as
  // EncodeKey: 's', the string, a 0 terminator) without EncodeKey's per-value dispatch
  // and escaping calls. Returns false, appending nothing, for any other key.
  // *known: the value carried its key hash (Value::KnownKeyHash), now in *stable.
  bool AppendStringKey(const Record& rec, const std::string& field, uint64_t* stable,
                       bool* known) {
    const Value* v = rec.Get(field);
    if (v == nullptr || !v->is_string()) return false;
    const std::string& s = v->str();
    *known = v->KnownKeyHash(stable);  // implies no NUL byte
    if (!*known && HasNul(s)) return false;
    char* out = Room(s.size() + 2);
    out[0] = 's';
    std::memcpy(out + 1, s.data(), s.size());
    out[s.size() + 1] = '\0';
    len_ += s.size() + 2;
    return true;
  }
  // Makes room for n more bytes at buf_ + len_ and returns that place. A plain buffer
  // rather than a std::string: appending a key took three out-of-line calls with their
  // capacity checks, a sixth of the cost of `count` per record.
  char* Room(size_t n) {
    if (len_ + n > cap_) {
      size_t cap = cap_ == 0 ? 4096 : cap_;
      while (len_ + n > cap) cap *= 2;
      std::unique_ptr<char[]> bigger(new char[cap]);
      if (len_ > 0) std::memcpy(bigger.get(), buf_.get(), len_);
      buf_ = std::move(bigger);
      cap_ = cap;
    }
    return buf_.get() + len_;
  }
  struct Span {
    size_t offset;
    size_t length;  // kMissing: the record lacks a key field
    size_t hash;    // KeyMapHash of the key
  };
  std::unique_ptr<char[]> buf_;  // the keys, back to back: len_ bytes of cap_
  size_t len_ = 0, cap_ = 0;
  std::string scratch_;          // a key of the general path, before it is appended
  std::vector<Span> spans_;      // one per record
};

// The set of keys changed in the current batch.
class ChangedKeys {
 public:
  void Note(const HashedKey& key) { set_.FindOrInsert(key); }
  bool empty() const { return set_.empty(); }
  // Calls fn(key) for each changed key in byte order, then forgets them.
  template <typename F>
  void Drain(F&& fn) {
    set_.ForEachSorted([&](const IndexedMap<Unit>::Entry& e) { fn(e.hashed()); });
    set_.Clear();
  }

 private:
  struct Unit {};
  IndexedMap<Unit> set_;
};

// Every entry of `state` in key byte order, with its value (for emit: final): emitting
// then needs no second lookup of each key (hashing and probing 100,000 keys again took
// a third of a word count's final emit). Sorted by (KeyPrefix, bytes) — byte order, with
// most comparisons one integer compare.
struct SortedEntry {
  std::string_view key;
  const StateValue* value;
};
inline std::vector<SortedEntry> SortedEntries(const KeyedState& state) {
  struct Item {
    uint64_t prefix;
    SortedEntry entry;
  };
  std::vector<Item> items;
  items.reserve(state.size());
  state.ForEach([&](std::string_view k, const StateValue& v) {
    items.push_back({KeyPrefix(k), {k, &v}});
  });
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.prefix != b.prefix ? a.prefix < b.prefix : a.entry.key < b.entry.key;
  });
  std::vector<SortedEntry> out;
  out.reserve(items.size());
  for (const Item& i : items) out.push_back(i.entry);
  return out;
}
// Every key of `state` in byte order.
inline std::vector<std::string_view> SortedKeys(const KeyedState& state) {
  std::vector<std::string_view> keys;
  keys.reserve(state.size());
  for (const SortedEntry& e : SortedEntries(state)) keys.push_back(e.key);
  return keys;
}

// Starts an output record with the decoded key fields.
inline bool KeyRecord(std::string_view key, const std::vector<std::string>& fields, Record* out) {
  return DecodeKey(key, fields, out);
}

// The skeleton shared by the keyed folds (count, aggregate): per batch, encode the keys and
// prefetch their state ahead, report records without a key through on_error, fold each
// record into its key's state, then emit as `emit:` says (see the top of this file).
// Derived (CRTP, so the per-record call is not virtual) provides
//   Status Fold(const Record& rec, const HashedKey& key, KeyedState& state, bool* changed);
//     folds rec into key's state and sets *changed, or reports a data error itself
//   void EmitKey(std::string_view key, const StateValue& value, Emitter& out);
//   static constexpr size_t kStateValues: how many state values per key Fold touches (1,
//     or 2 for "more than one")
template <typename Derived>
class KeyedFold : public Operator {
 public:
  KeyedFold(const NodeSpec& spec, const char* op_name)
      : key_fields_(KeyFieldsOf(spec)), final_(spec.emit == EmitMode::kFinal), op_name_(op_name) {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    changed_ = ChangedKeys();
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    KeyedState& state = *ctx_->state;
    Derived& self = static_cast<Derived&>(*this);
    Status st;
    keys_.Encode(in, key_fields_);  // to prefetch ahead (see BatchKeys)
    keys_.PrefetchStart(state);
    for (size_t i = 0; i < in.size(); ++i) {
      keys_.Prefetch(state, i, Derived::kStateValues);
      if (!keys_.has(i)) {
        // Reports the missing key field through on_error.
        if (!ExtractKey(in[i], key_fields_, op_name_, ctx_->errors, &key_, &st) && !st.ok()) {
          return st;
        }
        continue;
      }
      const HashedKey key = keys_.hashed(i);
      bool changed = false;
      ONCEFLOW_RETURN_IF_ERROR(self.Fold(in[i], key, state, &changed));
      if (changed && !final_) changed_.Note(key);
    }
    if (!final_) {
      changed_.Drain([&](const HashedKey& key) {
        if (const StateValue* v = state.Find(key)) self.EmitKey(key.bytes, *v, out);
      });
    }
    return Status::Ok();
  }

  Status Finish(Emitter& out) override {
    if (!final_) return Status::Ok();
    const KeyedState& state = *ctx_->state;
    Derived& self = static_cast<Derived&>(*this);
    for (const SortedEntry& e : SortedEntries(state)) self.EmitKey(e.key, *e.value, out);
    return Status::Ok();
  }

 protected:
  const std::vector<std::string> key_fields_;
  const bool final_;
  NodeContext* ctx_ = nullptr;

 private:
  const char* op_name_;
  std::string key_;
  BatchKeys keys_;
  ChangedKeys changed_;
};

}  // namespace onceflow::ops

// Value and Record encoding (JSON out) and JsonParser (JSON in, simdjson on-demand).
#include "runtime/core/record.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "fmt/format.h"
#include "simdjson.h"

namespace onceflow {

namespace {

const char kHex[] = "0123456789abcdef";

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
size_t Utf8SeqLen(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  // Reject overlong encodings, surrogates and out-of-range code points.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    return 0;
  }
  return n;
}

void AppendDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");  // JSON has no NaN/Inf
    return;
  }
  // Shortest round-trip representation; keep a ".0" so it reads back as a double.
  auto start = out->size();
  fmt::format_to(std::back_inserter(*out), "{}", d);
  std::string_view txt(out->data() + start, out->size() - start);
  if (txt.find_first_of(".eEn") == std::string_view::npos) out->append(".0");
}

}  // namespace

void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  size_t run = 0;  // start of the current run of bytes copied verbatim
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t n = Utf8SeqLen(s, i);
      if (n > 0) {
        i += n;
        continue;
      }
    }
    out->append(s.data() + run, i - run);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->append("\xEF\xBF\xBD");  // invalid UTF-8 byte -> U+FFFD
        }
    }
    ++i;
    run = i;
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

void Value::AppendJson(std::string* out) const {
  switch (type_) {
    case ValueType::kNull: out->append("null"); break;
    case ValueType::kBool: out->append(i_ ? "true" : "false"); break;
    case ValueType::kInt: fmt::format_to(std::back_inserter(*out), "{}", i_); break;
    case ValueType::kDouble: AppendDouble(d_, out); break;
    case ValueType::kString: AppendJsonString(s_, out); break;
    case ValueType::kJson: out->append(s_); break;
  }
}

void Value::AppendText(std::string* out) const {
  if (type_ == ValueType::kString) {
    out->append(s_);
  } else {
    AppendJson(out);
  }
}

bool operator==(const Value& a, const Value& b) {
  if (a.type_ != b.type_) {
    // 2 and 2.0 are the same JSON number.
    if (a.is_number() && b.is_number()) return a.ToDouble() == b.ToDouble();
    return false;
  }
  switch (a.type_) {
    case ValueType::kNull: return true;
    case ValueType::kBool:
    case ValueType::kInt: return a.i_ == b.i_;
    case ValueType::kDouble: return a.d_ == b.d_;
    case ValueType::kString:
    case ValueType::kJson: return a.s_ == b.s_;
  }
  return false;
}

bool Record::Erase(std::string_view name) {
  for (auto it = fields_.begin(); it != fields_.end(); ++it) {
    if (it->first == name) {
      fields_.erase(it);
      return true;
    }
  }
  return false;
}

void Record::AppendJson(std::string* out) const {
  out->push_back('{');
  bool first = true;
  for (const auto& [name, value] : fields_) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(name, out);
    out->push_back(':');
    value.AppendJson(out);
  }
  out->push_back('}');
}

// ---------------------------------------------------------------------------------------
// FieldBlockCache

namespace internal {

thread_local FieldBlockCache::State FieldBlockCache::state_{};

namespace {

// Drains the cache when its thread exits, so cached blocks are not leaked.
struct CacheReaper {
  ~CacheReaper() { FieldBlockCache::ReleaseAtExit(); }
};

}  // namespace

void FieldBlockCache::Register() {
  static thread_local CacheReaper reaper;
  (void)reaper;
  state_.registered = true;
}

// The process-wide depot of full lists (see record.h). Bounded: beyond kMaxBytes the
// lists are freed instead, so a thread that only frees cannot grow it without limit.
struct FieldBlockCache::Depot {
  static constexpr size_t kMaxBytes = size_t{64} << 20;
  std::mutex mu;
  std::vector<FreeBlock*> lists[kClasses];  // each holds kChain blocks
  std::atomic<size_t> available[kClasses] = {};  // lists[c].size(), read without mu
  size_t bytes = 0;
};

FieldBlockCache::Depot& FieldBlockCache::depot() {
  // Never destroyed: a thread may still hand blocks over while statics are torn down.
  static Depot* d = new Depot();
  return *d;
}

void FieldBlockCache::FreeList(FreeBlock* head) {
  while (head != nullptr) {
    FreeBlock* next = head->next;
    ::operator delete(head);
    head = next;
  }
}

bool FieldBlockCache::Refill(size_t c, size_t bytes) {
  State& st = state_;
  if (st.reaped) return false;
  if (!st.registered) Register();
  List& sp = st.spares[c];
  if (sp.count > 0) {
    st.lists[c] = sp;
    sp = {nullptr, 0};
    return true;
  }
  Depot& d = depot();
  if (d.available[c].load(std::memory_order_relaxed) == 0) return false;
  FreeBlock* head = nullptr;
  {
    std::lock_guard<std::mutex> lock(d.mu);
    if (d.lists[c].empty()) return false;
    head = d.lists[c].back();
    d.lists[c].pop_back();
    d.available[c].store(d.lists[c].size(), std::memory_order_relaxed);
    d.bytes -= kChain * bytes;
  }
  st.lists[c] = {head, kChain};
  st.bytes += kChain * bytes;
  return true;
}

void FieldBlockCache::Spill(size_t c, size_t bytes) {
  State& st = state_;
  List& l = st.lists[c];
  List& sp = st.spares[c];
  if (sp.count > 0) {
    Depot& d = depot();
    bool kept = false;
    {
      std::lock_guard<std::mutex> lock(d.mu);
      if (d.bytes + kChain * bytes <= Depot::kMaxBytes) {
        d.lists[c].push_back(sp.head);
        d.available[c].store(d.lists[c].size(), std::memory_order_relaxed);
        d.bytes += kChain * bytes;
        kept = true;
      }
    }
    if (!kept) FreeList(sp.head);
    st.bytes -= kChain * bytes;
  }
  sp = l;
  l = {nullptr, 0};
}

void FieldBlockCache::Release() {
  State& st = state_;
  for (size_t c = 0; c < kClasses; ++c) {
    FreeList(st.lists[c].head);
    FreeList(st.spares[c].head);
    st.lists[c] = {nullptr, 0};
    st.spares[c] = {nullptr, 0};
  }
  st.bytes = 0;
}

void FieldBlockCache::ReleaseAtExit() {
  state_.reaped = true;
  Release();
}

}  // namespace internal

// ---------------------------------------------------------------------------------------
// JsonParser

struct JsonParser::Impl {
  simdjson::ondemand::parser parser;
  simdjson::padded_string buffer;  // reused copy of the line with SIMDJSON_PADDING
  size_t capacity = 0;
  simdjson::dom::parser nested;     // normalises nested arrays/objects
  // Field count of the previous object: JSONL lines usually share a shape, so reserving
  // it up front allocates the record's field storage once instead of growing it.
  size_t last_fields = 0;
  // The field names of the previous object, in order (distinct). While an object's keys
  // follow them, a key cannot repeat an earlier one — those are the shape's other names —
  // so the duplicate-key scan (one compare per earlier field) is skipped.
  std::vector<std::string> shape;
};

JsonParser::JsonParser() : impl_(new Impl) {}
JsonParser::~JsonParser() { delete impl_; }

namespace {

// Converts one on-demand value; nested arrays/objects keep their compact raw JSON.
simdjson::error_code ConvertValue(simdjson::ondemand::value val, simdjson::dom::parser& dp,
                                  Value* out) {
  simdjson::ondemand::json_type t;
  auto err = val.type().get(t);
  if (err) return err;
  switch (t) {
    case simdjson::ondemand::json_type::null: {
      bool is_null = false;
      if ((err = val.is_null().get(is_null))) return err;
      if (!is_null) return simdjson::INCORRECT_TYPE;
      *out = Value::Null();
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::boolean: {
      bool b;
      if ((err = val.get_bool().get(b))) return err;
      *out = Value::Bool(b);
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::number: {
      // One pass for the common cases: get_number_type() scans the digits and the get_*
      // call then parses them again. get_number() only peeks, so anything it does not
      // return as int64 or a short double (uint64 beyond int64, integers beyond uint64,
      // errors) takes the original two-step path below, with its exact results. Short:
      // simdjson 3.0.1's get_number() loses floats of more than 19 significant digits
      // (its slow path writes to a copy of the result and returns 0.0), and a token of at
      // most 20 characters holding '.' or 'e' cannot have that many.
      simdjson::ondemand::number num;
      if (val.get_number().get(num) == simdjson::SUCCESS) {
        if (num.is_int64()) {
          out->SetInt(num.get_int64());
          return simdjson::SUCCESS;
        }
        if (num.is_double()) {
          std::string_view tok = val.raw_json_token();
          while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t' || tok.back() == '\n' ||
                                  tok.back() == '\r')) {
            tok.remove_suffix(1);
          }
          if (tok.size() <= 20) {
            out->SetDouble(num.get_double());
            return simdjson::SUCCESS;
          }
        }
      }
      simdjson::ondemand::number_type nt;
      if ((err = val.get_number_type().get(nt))) return err;
      if (nt == simdjson::ondemand::number_type::signed_integer) {
        int64_t i;
        if ((err = val.get_int64().get(i))) return err;
        *out = Value::Int(i);
      } else {
        double d;
        if ((err = val.get_double().get(d))) return err;
        *out = Value::Double(d);
      }
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::string: {
      std::string_view s;
      if ((err = val.get_string().get(s))) return err;
      out->SetString(s);  // in place: no temporary Value
      return simdjson::SUCCESS;
    }
    case simdjson::ondemand::json_type::array:
    case simdjson::ondemand::json_type::object: {
      std::string_view raw;
      if (t == simdjson::ondemand::json_type::array) {
        simdjson::ondemand::array a;
        if ((err = val.get_array().get(a))) return err;
        if ((err = a.raw_json().get(raw))) return err;
      } else {
        simdjson::ondemand::object o;
        if ((err = val.get_object().get(o))) return err;
        if ((err = o.raw_json().get(raw))) return err;
      }
      // raw_json() of a nested value includes trailing whitespace; normalise to
      // compact JSON so equal values compare equal.
      simdjson::dom::element el;
      if ((err = dp.parse(raw.data(), raw.size()).get(el))) return err;
      *out = Value::Json(simdjson::minify(el));
      return simdjson::SUCCESS;
    }
    default:
      return simdjson::INCORRECT_TYPE;
  }
}

}  // namespace

bool JsonParser::ParseObject(std::string_view line, Record* rec, std::string* error) {
  return ParseObject(line, line.size(), rec, error);
}

bool JsonParser::ParseObject(std::string_view line, size_t readable, Record* rec,
                             std::string* error) {
  rec->Clear();
  Impl& im = *impl_;
  const char* json = line.data();
  size_t capacity = readable;
  if (readable < line.size() + simdjson::SIMDJSON_PADDING) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the end (their values do not
    // matter, stage 1 pads the last block itself): copy the line where it may.
    if (line.size() + simdjson::SIMDJSON_PADDING > im.capacity) {
      im.capacity = (line.size() + simdjson::SIMDJSON_PADDING) * 2;
      im.buffer = simdjson::padded_string(im.capacity);
    }
    std::memcpy(im.buffer.data(), line.data(), line.size());
    json = im.buffer.data();
    capacity = im.capacity;
  }
  simdjson::ondemand::document doc;
  auto err = im.parser.iterate(json, line.size(), capacity).get(doc);
  simdjson::ondemand::object obj;
  if (!err) err = doc.get_object().get(obj);
  if (!err) {
    rec->mutable_fields().reserve(im.last_fields);
    size_t i = 0;
    bool same_shape = true;
    for (auto field : obj) {
      std::string_view key;
      if ((err = field.unescaped_key().get(key))) break;
      simdjson::ondemand::value v;
      if ((err = field.value().get(v))) break;
      // Convert straight into the field's slot (no temporary Value). A duplicate key
      // keeps its first position and takes the last value, as Set() would.
      Value* slot;
      if (same_shape && i < im.shape.size() && im.shape[i].size() == key.size() &&
          internal::BytesEqual(im.shape[i].data(), key.data(), key.size())) {
        slot = &rec->AppendSlot(key);
      } else {
        same_shape = false;
        slot = rec->GetMutable(key);
        if (slot == nullptr) slot = &rec->AppendSlot(key);
      }
      ++i;
      if ((err = ConvertValue(v, im.nested, slot))) break;
    }
    im.last_fields = rec->size();
    if (!same_shape || rec->size() != im.shape.size()) {
      im.shape.clear();
      for (const auto& f : *rec) im.shape.push_back(f.first);
    }
  }
  if (!err) {
    // Anything after the object is an error; current_location() reports OUT_OF_BOUNDS
    // exactly when the document has been consumed.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) == simdjson::SUCCESS) err = simdjson::TRAILING_CONTENT;
  }
  if (err) {
    // simdjson says "does not have the requested type" for `[1,2]`, `42` or `not json`:
    // name what was expected instead.
    const size_t first = line.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && line[first] != '{') {
      *error = "invalid JSON: not a JSON object (each record must be one {...} object)";
    } else {
      *error = std::string("invalid JSON: ") + simdjson::error_message(err);
    }
    return false;
  }
  return true;
}

}  // namespace onceflow

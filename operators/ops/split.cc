// The `split` operator: one output record {INTO: token} per token of a string field,
// split on whitespace (default) or on any character of `pattern`, optionally lowercased
// (ASCII letters), optionally carrying `keep` fields of the input along.
//
// Hot path: the text is classified 64 bytes at a time into a bitmask of separators
// (SSE2 compares for the default whitespace, a branch-free table lookup per byte for a
// `pattern`), and tokens are read off the mask with count-trailing-zeros: a loop that
// branched on every byte mispredicted at most token ends. Lowercasing is done 8 bytes at
// a time (SWAR). Tokens up to 15 bytes (and an `into` name up to 15 bytes) live inline
// in the record, so short words cost no heap allocation.
//
// Threading: one instance per task thread; stateless.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/base/attributes.h"
#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "runtime/core/key.h"

namespace onceflow::ops {

namespace {

class SplitOperator : public Operator {
 public:
  explicit SplitOperator(const NodeSpec& spec)
      : field_(spec.options.GetString("field", "line")),
        into_(spec.options.GetString("into", "word")),
        lower_(spec.options.GetBool("lower", false)),
        keep_(Given(spec.options, "keep") ? spec.options.GetList("keep") : std::vector<std::string>{}) {
    sep_.fill(false);
    if (Given(spec.options, "pattern") && !spec.options.GetString("pattern").empty()) {
      for (unsigned char c : spec.options.GetString("pattern")) {
        sep_[c] = true;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) letter_separators_ = true;
      }
    } else {
      for (unsigned char c : {' ', '\t', '\n', '\v', '\f', '\r'}) sep_[c] = true;
      whitespace_ = true;
    }
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    HashedOutput* hashed = out.hashed();
    if (hashed != nullptr && hashed->field == into_) return ProcessHashed(in, *hashed);
    RecordBatch* batch = out.batch();
    for (const Record& rec : in) {
      ONCEFLOW_RETURN_IF_ERROR(ForEachToken(rec, [&](std::string_view tok, bool) {
        Record& o = batch->emplace_back();
        o.AppendString(into_, tok);
        CopyRest(rec, o);
      }));
    }
    return Status::Ok();
  }

 private:
  // The same records as Process, each placed straight into the partition its token hashes
  // to (Emitter::hashed): the downstream is keyed on the token, whose key hash is
  // memoised in its value for that consumer.
  Status ProcessHashed(RecordBatch& in, HashedOutput& hashed) {
    std::vector<RecordBatch>& parts = *hashed.parts;
    const int n = static_cast<int>(parts.size());
    size_t placed = 0;
    for (const Record& rec : in) {
      ONCEFLOW_RETURN_IF_ERROR(ForEachToken(rec, [&](std::string_view tok, bool text_has_nul) {
        bool plain = true;
        const uint64_t h =
            text_has_nul ? StringKeyHash(tok, &plain) : StableHashOfStringKeyPadded(tok);
        Record& o = parts[HashToPartition(h, n)].emplace_back();
        Value& token = o.AppendString(into_, tok);
        if (plain) token.MemoiseKeyHash(h);
        CopyRest(rec, o);
        ++placed;
      }));
    }
    hashed.placed += placed;
    return Status::Ok();
  }

  // Calls fn(token, text_has_nul) for each token of rec's field, lowercased when `lower`
  // is set: the whole text is lowercased into a scratch buffer first rather than token by
  // token. text_has_nul: the field holds a NUL byte somewhere (one memchr per record, so
  // that tokens need no scan of their own). A token lies in a scratch buffer with at
  // least kStringKeyHashPadding readable bytes after it (StableHashOfStringKeyPadded).
  // A missing or non-string field is reported.
  template <typename F>
  Status ForEachToken(const Record& rec, F&& fn) {
    const Value* v = rec.Get(field_);
    if (v == nullptr || !v->is_string()) {
      return ctx_->errors->OnRecordError(
          rec, v == nullptr ? "split: field '" + field_ + "' is missing"
                            : "split: field '" + field_ + "' is not a string");
    }
    const std::string& s = v->str();
    const bool has_nul = std::memchr(s.data(), 0, s.size()) != nullptr;
    // Lowercasing first would turn an upper-case letter into a separator (or not) when the
    // pattern holds letters: then each token is lowercased on its own.
    const bool each = lower_ && letter_separators_;
    if (lower_ && !each) {
      LowerInto(s, &lowered_);
    } else {
      CopyInto(s, &lowered_);
    }
    const char* text = lowered_.data();
    auto emit = [&](const char* from, const char* to) {
      std::string_view tok(from, static_cast<size_t>(to - from));
      if (each) {
        LowerInto(tok, &token_);
        tok = std::string_view(token_.data(), tok.size());
      }
      fn(tok, has_nul);
    };
    // Tokens are runs of non-separators; one may span blocks (`start` carries over).
    const size_t n = s.size();
    const char* start = nullptr;  // the current token's first byte; null between tokens
    for (size_t base = 0; base < n; base += 64) {
      const size_t len = std::min<size_t>(64, n - base);
      const char* block = text + base;
      const uint64_t sep = SeparatorMask(block, len);  // bits from `len` on are set
      // The next change between token and separator bytes.
      uint64_t look = start ? sep : ~sep;
      while (look != 0) {
        const int j = __builtin_ctzll(look);
        const uint64_t after = ~uint64_t{0} << j << 1;  // positions > j
        if (start) {
          emit(start, block + j);
          start = nullptr;
          look = ~sep & after;
        } else {
          start = block + j;
          look = sep & after;
        }
      }
    }
    if (start) emit(start, text + n);  // a text of a multiple of 64 bytes ends in a token
    return Status::Ok();
  }

  // Bit i set: block[i] is a separator, for i < len (len <= 64); bits len..63 are set.
  uint64_t SeparatorMask(const char* block, size_t len) const {
#if defined(__SSE2__)
    if (whitespace_) {
      if (len == 64) return WhitespaceMask64(block);
      char padded[64];
      std::memset(padded, ' ', sizeof(padded));
      std::memcpy(padded, block, len);
      return WhitespaceMask64(padded);
    }
#endif
    uint64_t m = len == 64 ? 0 : ~uint64_t{0} << len;
    for (size_t i = 0; i < len; ++i) {
      m |= static_cast<uint64_t>(sep_[static_cast<unsigned char>(block[i])]) << i;
    }
    return m;
  }
#if defined(__SSE2__)
  // Whitespace (space, \t \n \v \f \r) among 64 bytes, 16 at a time.
  static uint64_t WhitespaceMask64(const char* p) {
    uint64_t m = 0;
    for (int k = 0; k < 4; ++k) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
      const __m128i space = _mm_cmpeq_epi8(v, _mm_set1_epi8(' '));
      const __m128i t = _mm_sub_epi8(v, _mm_set1_epi8('\t'));  // \t..\r -> 0..4
      const __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(4)), t);
      const auto bits = static_cast<uint32_t>(_mm_movemask_epi8(_mm_or_si128(space, control)));
      m |= static_cast<uint64_t>(bits) << (16 * k);
    }
    return m;
  }
#endif

  // ASCII lowercase of `s` into the first s.size() bytes of *out, 8 bytes at a time: with
  // h = the low 7 bits of each byte, h + 0x3f carries into bit 7 iff h >= 'A' and h + 0x25
  // iff h > 'Z' (neither carries out of its byte); a byte with bit 7 set is not ASCII.
  // Upper-case bytes gain 0x20: their bit-7 mark shifted right twice.
  // Both leave kStringKeyHashPadding bytes of *out after the copy.
  static void LowerInto(std::string_view s, std::vector<char>* out) {
    char* o = PaddedRoom(s.size(), out);
    const char* p = s.data();
    const size_t n = s.size();
    constexpr uint64_t kLow7 = 0x7f7f7f7f7f7f7f7full, kHigh = 0x8080808080808080ull;
    constexpr uint64_t kGeA = 0x3f3f3f3f3f3f3f3full, kGtZ = 0x2525252525252525ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      const uint64_t h = w & kLow7;
      const uint64_t upper = (h + kGeA) & ~(h + kGtZ) & ~w & kHigh;
      w |= upper >> 2;
      std::memcpy(o + i, &w, 8);
    }
    for (; i < n; ++i) {
      const char c = p[i];
      o[i] = static_cast<char>(c + (static_cast<unsigned char>(c - 'A') < 26 ? 'a' - 'A' : 0));
    }
  }
  static void CopyInto(std::string_view s, std::vector<char>* out) {
    char* o = PaddedRoom(s.size(), out);
    if (!s.empty()) std::memcpy(o, s.data(), s.size());
  }
  // Room for n bytes and kStringKeyHashPadding more in *out.
  static char* PaddedRoom(size_t n, std::vector<char>* out) {
    if (n + kStringKeyHashPadding > out->size()) out->resize(n + kStringKeyHashPadding);
    return out->data();
  }
  // The rest of an output record: the `keep` fields and the input's origin.
  // Inline, with the loop out of line: without `keep` (the usual case) a token pays only
  // for copying the origin.
  ABSL_ATTRIBUTE_ALWAYS_INLINE void CopyRest(const Record& rec, Record& o) const {
    o.origin = rec.origin;
    if (!keep_.empty()) CopyKept(rec, o);
  }
  ABSL_ATTRIBUTE_NOINLINE void CopyKept(const Record& rec, Record& o) const {
    for (const auto& k : keep_) {
      if (const Value* kv = rec.Get(k)) o.Append(k, *kv);
    }
  }

  std::string field_, into_;
  bool lower_;
  std::vector<std::string> keep_;
  std::array<bool, 256> sep_;
  bool letter_separators_ = false;  // `pattern` holds an ASCII letter
  bool whitespace_ = false;         // no `pattern`: the separators are sep_'s whitespace
  std::vector<char> lowered_;       // the text, lowercased with `lower` (ForEachToken)
  std::vector<char> token_;         // a lowercased token, with letter separators
  NodeContext* ctx_ = nullptr;
};

}  // namespace

NodeTypeDef SplitDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "split";
  d.summary = "split a text field into one record per token (native speed)";
  d.options = {
      Option("field", OptionType::kString, "line", "string field to split"),
      Option("into", OptionType::kString, "word", "name of the output field holding a token"),
      Option("lower", OptionType::kBool, "false", "lowercase ASCII letters of each token"),
      Option("pattern", OptionType::kString, "",
             "separator characters: a token ends at any one of them (a set, not a regex), "
             "e.g. \",;\" ; default: whitespace (space, tab, newline, CR, VT, FF)"),
      Option("keep", OptionType::kFieldList, "",
             "input fields copied into every output record (default: none)"),
  };
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    if (Given(spec.options, "pattern")) {
      const YNode* raw = spec.options.Raw("pattern");
      std::string pat = spec.options.GetString("pattern");
      if (pat.empty()) {
        diags.Error(*raw, "node '" + spec.id + "': pattern must not be empty",
                    "omit it to split on whitespace");
      }
      for (unsigned char c : pat) {
        if (c >= 0x80) {
          diags.Error(*raw, "node '" + spec.id +
                                "': pattern must consist of ASCII characters (it is a set of "
                                "single-byte separators)");
          break;
        }
      }
    }
    if (Given(spec.options, "keep")) {
      std::string into = spec.options.GetString("into", "word");
      for (const auto& k : spec.options.GetList("keep")) {
        if (k == into) {
          diags.Error(*spec.options.Raw("keep"),
                      "node '" + spec.id + "': keep lists '" + k + "', the `into` field itself");
        }
      }
    }
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<SplitOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

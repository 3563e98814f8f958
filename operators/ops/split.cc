// The `split` operator: one output record {INTO: token} per token of a string field,
// split on whitespace (default) or on any character of `pattern`, optionally lowercased
// (ASCII letters), optionally carrying `keep` fields of the input along.
//
// Hot path: a 256-entry separator table and a hand loop; tokens up to 15 bytes (and an
// `into` name up to 15 bytes) live inline in the record, so short words cost no heap
// allocation.
//
// Threading: one instance per task thread; stateless.
#include <array>
#include <cstring>
#include <vector>

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
      ONCEFLOW_RETURN_IF_ERROR(ForEachToken(rec, [&](std::string_view tok) {
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
      ONCEFLOW_RETURN_IF_ERROR(ForEachToken(rec, [&](std::string_view tok) {
        bool plain;
        const uint64_t h = StringKeyHash(tok, &plain);
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

  // Calls fn(token) for each token of rec's field, lowercased when `lower` is set: the
  // whole text is lowercased into a scratch buffer first, in one loop the compiler
  // vectorises, rather than token by token. A missing or non-string field is reported.
  template <typename F>
  Status ForEachToken(const Record& rec, F&& fn) {
    const Value* v = rec.Get(field_);
    if (v == nullptr || !v->is_string()) {
      return ctx_->errors->OnRecordError(
          rec, v == nullptr ? "split: field '" + field_ + "' is missing"
                            : "split: field '" + field_ + "' is not a string");
    }
    const std::string& s = v->str();
    const char* p = s.data();
    const char* e = p + s.size();
    // Lowercasing first would turn an upper-case letter into a separator (or not) when the
    // pattern holds letters: then each token is lowercased on its own.
    const bool each = lower_ && letter_separators_;
    if (lower_ && !each) {
      LowerInto(s, &lowered_);
      p = lowered_.data();
      e = p + s.size();
    }
    while (p < e) {
      while (p < e && sep_[static_cast<unsigned char>(*p)]) ++p;
      if (p >= e) break;
      const char* start = p;
      while (p < e && !sep_[static_cast<unsigned char>(*p)]) ++p;
      std::string_view tok(start, p - start);
      if (each) {
        LowerInto(tok, &token_);
        tok = std::string_view(token_.data(), tok.size());
      }
      fn(tok);
    }
    return Status::Ok();
  }

  // ASCII lowercase of `s` into the first s.size() bytes of *out.
  static void LowerInto(std::string_view s, std::vector<char>* out) {
    if (s.size() > out->size()) out->resize(s.size());
    char* o = out->data();
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      o[i] = static_cast<char>(c + (static_cast<unsigned char>(c - 'A') < 26 ? 'a' - 'A' : 0));
    }
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
  std::vector<char> lowered_;       // the lowercased text (ForEachToken)
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

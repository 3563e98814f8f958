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

#include "operators/common/option_defs.h"
#include "operators/defs.h"

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
      for (unsigned char c : spec.options.GetString("pattern")) sep_[c] = true;
    } else {
      for (unsigned char c : {' ', '\t', '\n', '\v', '\f', '\r'}) sep_[c] = true;
    }
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    RecordBatch* batch = out.batch();
    for (const Record& rec : in) {
      const Value* v = rec.Get(field_);
      if (v == nullptr || !v->is_string()) {
        ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(
            rec, v == nullptr ? "split: field '" + field_ + "' is missing"
                              : "split: field '" + field_ + "' is not a string"));
        continue;
      }
      const std::string& s = v->str();
      const char* p = s.data();
      const char* e = p + s.size();
      while (p < e) {
        while (p < e && sep_[static_cast<unsigned char>(*p)]) ++p;
        if (p >= e) break;
        const char* start = p;
        while (p < e && !sep_[static_cast<unsigned char>(*p)]) ++p;
        Record& o = batch->emplace_back();
        Value& token = o.AppendSlot(into_);
        token.SetString(std::string_view(start, p - start));
        if (lower_) {
          for (char& c : token.mutable_str()) {
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
          }
        }
        for (const auto& k : keep_) {
          if (const Value* kv = rec.Get(k)) o.Append(k, *kv);
        }
        o.origin = rec.origin;
      }
    }
    return Status::Ok();
  }

 private:
  std::string field_, into_;
  bool lower_;
  std::vector<std::string> keep_;
  std::array<bool, 256> sep_;
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

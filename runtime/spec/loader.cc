// LoadPipeline: file -> YNode tree -> ${VAR} interpolation -> --set -> top-level keys and
// command-line overrides -> nodes and graph (validate.cc). Also ParseDuration.
//
// Nothing here creates, opens for writing or stats anything but the pipeline file itself:
// `validate` must leave the disk untouched (SPEC §2, exit 2 "nothing was touched").
//
// Threading: reentrant; reads the environment and the working directory only.
#include "runtime/spec/loader.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "runtime/spec/overrides.h"
#include "runtime/spec/validate.h"

namespace onceflow {
namespace {

const char kExactlyOnceNote[] =
    "'exactly-once' means effectively-once: each event's effect on managed state and "
    "transactional sinks is reflected once; user code may run more than once";

const std::vector<std::string>& SemanticsChoices() {
  static const std::vector<std::string> k = {"at-most-once", "at-least-once", "effectively-once",
                                             "exactly-once"};
  return k;
}
const std::vector<std::string>& ModeChoices() {
  static const std::vector<std::string> k = {"snapshot", "dedup"};
  return k;
}

bool ParseSemantics(const std::string& s, Semantics* out, bool* alias) {
  *alias = false;
  if (s == "at-most-once") {
    *out = Semantics::kAtMostOnce;
  } else if (s == "at-least-once") {
    *out = Semantics::kAtLeastOnce;
  } else if (s == "effectively-once") {
    *out = Semantics::kEffectivelyOnce;
  } else if (s == "exactly-once") {
    *out = Semantics::kEffectivelyOnce;
    *alias = true;
  } else {
    return false;
  }
  return true;
}

bool ParseMode(const std::string& s, Mode* out) {
  if (s == "snapshot") {
    *out = Mode::kSnapshot;
  } else if (s == "dedup") {
    *out = Mode::kDedup;
  } else {
    return false;
  }
  return true;
}

bool ReadFile(const std::string& path, std::string* text, std::string* error) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    *error = "is a directory";
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = std::strerror(errno);
    return false;
  }
  *text = ss.str();
  // A UTF-8 byte order mark is legal YAML but would shift every column of line 1.
  if (text->rfind("\xEF\xBB\xBF", 0) == 0) text->erase(0, 3);
  return true;
}

// Reads the top-level keys into `spec`, then applies the command-line overrides.
class TopLevel {
 public:
  TopLevel(const YNode& root, const LoadOptions& opts, PipelineSpec* spec, Diagnostics* diags)
      : root_(root), opts_(opts), spec_(spec), diags_(diags) {}

  void Run() {
    static const std::vector<std::string> kKeys = {"pipeline", "description", "semantics", "mode",
                                                   "state",    "checkpoint",  "recovery",  "nodes"};
    for (const auto& [k, v] : root_.entries) {
      if (k.is_scalar() && std::find(kKeys.begin(), kKeys.end(), k.scalar) == kKeys.end()) {
        diags_->Error(k, "unknown top-level key '" + k.scalar + "'",
                      DidYouMeanNote(k.scalar, kKeys));
      }
    }
    Name();
    if (const YNode* d = root_.Find("description")) {
      if (d->is_scalar()) {
        spec_->description = d->scalar;
      } else if (!d->is_null()) {
        diags_->Error(*d, "'description' must be a string, got " + DescribeValue(*d));
      }
    }
    SemanticsAndMode();
    State();
    Checkpoint();
    Recovery();
  }

 private:
  void Name() {
    const YNode* name = root_.Find("pipeline");
    if (name == nullptr) {
      diags_->Error(SourceLoc{}, 0, "missing 'pipeline: NAME' (the pipeline's name)");
      return;
    }
    static const std::regex kName("[a-z0-9_-]+");
    if (!name->is_scalar()) {
      diags_->Error(*name, "'pipeline' must be a name, got " + DescribeValue(*name));
    } else if (!std::regex_match(name->scalar, kName)) {
      diags_->Error(*name, "pipeline name '" + name->scalar +
                               "' must match [a-z0-9_-]+ (lowercase letters, digits, '_', '-')");
    } else {
      spec_->name = name->scalar;
    }
  }

  void SemanticsAndMode() {
    bool file_semantics_ok = true;
    if (const YNode* s = root_.Find("semantics")) {
      bool alias = false;
      if (!s->is_scalar() || !ParseSemantics(s->scalar, &spec_->semantics, &alias)) {
        file_semantics_ok = false;
        diags_->Error(*s,
                      "'semantics' must be at-most-once, at-least-once or effectively-once, got " +
                          DescribeValue(*s),
                      s->is_scalar() ? DidYouMeanNote(s->scalar, SemanticsChoices()) : "");
      } else if (alias && opts_.semantics.empty()) {
        spec_->exactly_once_alias = true;
        diags_->Note(*s, kExactlyOnceNote);
      }
    }
    const Semantics file_semantics = spec_->semantics;
    const YNode* mode = root_.Find("mode");
    if (mode != nullptr) {
      spec_->mode_given = true;
      if (!mode->is_scalar() || !ParseMode(mode->scalar, &spec_->mode)) {
        diags_->Error(*mode, "'mode' must be snapshot or dedup, got " + DescribeValue(*mode),
                      mode->is_scalar() ? DidYouMeanNote(mode->scalar, ModeChoices()) : "");
        mode = nullptr;
      } else if (file_semantics_ok && file_semantics != Semantics::kEffectivelyOnce) {
        diags_->Error(*mode, std::string("'mode' applies to effectively-once only, but "
                                         "semantics is '") +
                                 SemanticsName(file_semantics) + "'");
        mode = nullptr;
      }
    }

    bool cli_semantics = false;
    if (!opts_.semantics.empty()) {
      bool alias = false;
      if (!ParseSemantics(opts_.semantics, &spec_->semantics, &alias)) {
        diags_->Error(SourceLoc{}, 0,
                      "--semantics: unknown value '" + opts_.semantics +
                          "'; expected one of at-most-once, at-least-once, effectively-once",
                      DidYouMeanNote(opts_.semantics, SemanticsChoices()));
      } else {
        cli_semantics = true;
        spec_->exactly_once_alias = alias;
        if (alias) diags_->Note(SourceLoc{}, 0, kExactlyOnceNote);
      }
    }
    const bool effectively_once = spec_->semantics == Semantics::kEffectivelyOnce;
    if (!opts_.mode.empty()) {
      Mode m;
      if (!ParseMode(opts_.mode, &m)) {
        diags_->Error(SourceLoc{}, 0,
                      "--mode: unknown value '" + opts_.mode + "'; expected one of snapshot, dedup",
                      DidYouMeanNote(opts_.mode, ModeChoices()));
      } else if (!effectively_once) {
        diags_->Error(SourceLoc{}, 0,
                      std::string("--mode applies to effectively-once only, but the semantics "
                                  "is '") +
                          SemanticsName(spec_->semantics) + "'");
      } else {
        spec_->mode = m;
      }
    } else if (mode != nullptr && cli_semantics && !effectively_once) {
      diags_->Note(*mode, std::string("'mode: ") + mode->scalar + "' is ignored: --semantics " +
                              SemanticsName(spec_->semantics) + " is not effectively-once");
    }
    // A mode only means something under effectively-once; keep it canonical otherwise, so
    // that the recorded run configuration does not depend on an ignored value.
    if (!effectively_once) spec_->mode = Mode::kSnapshot;
  }

  void State() {
    if (!opts_.state_path.empty()) {
      spec_->state_path = opts_.state_path;  // command line: relative to the working dir
    } else if (const YNode* s = root_.Find("state")) {
      if (!s->is_scalar() || s->scalar.empty()) {
        diags_->Error(*s,
                      "'state' must be a path (the SQLite state file), got " + DescribeValue(*s));
      } else {
        spec_->state_path = ResolvePath(s->scalar, spec_->dir, s->from_command_line);
      }
    }
    if (spec_->state_path.empty() && !spec_->name.empty()) {
      spec_->state_path = "./" + spec_->name + ".state.db";
    }
  }

  // A map of known sub-keys: reports unknown ones; returns false when not a map.
  bool SubMap(const char* name, const YNode& v, const std::vector<std::string>& keys) {
    if (!v.is_map()) {
      diags_->Error(v, std::string("'") + name + "' must be a map (" + keys.front() +
                           ": ...), got " + DescribeValue(v));
      return false;
    }
    for (const auto& [k, val] : v.entries) {
      if (k.is_scalar() && std::find(keys.begin(), keys.end(), k.scalar) == keys.end()) {
        diags_->Error(k, std::string("unknown key '") + k.scalar + "' in '" + name + "'",
                      DidYouMeanNote(k.scalar, keys));
      }
    }
    return true;
  }

  void Checkpoint() {
    if (const YNode* c = root_.Find("checkpoint");
        c != nullptr && SubMap("checkpoint", *c, {"interval", "retain"})) {
      NodeOptions::Entry e;
      if (const YNode* iv = c->Find("interval")) {
        OptionDef def;
        def.type = OptionType::kDuration;
        def.min = 1;
        if (CheckOptionValue(def, *iv, "'checkpoint.interval'", spec_->dir, &e, diags_)) {
          spec_->checkpoint_interval_ms = e.duration_ms;
        }
      }
      if (const YNode* r = c->Find("retain")) {
        OptionDef def;
        def.type = OptionType::kInt;
        def.min = 1;
        def.max = 1000000;
        if (CheckOptionValue(def, *r, "'checkpoint.retain'", spec_->dir, &e, diags_)) {
          spec_->checkpoint_retain = static_cast<int>(std::stoll(r->scalar));
        }
      }
    }
    if (!opts_.checkpoint_interval.empty()) {
      int64_t ms = 0;
      if (!ParseDuration(opts_.checkpoint_interval, &ms) || ms < 1) {
        diags_->Error(SourceLoc{}, 0,
                      "--checkpoint-interval: '" + opts_.checkpoint_interval +
                          "' is not a duration such as 250ms, 1s, 5m or 1h");
      } else {
        spec_->checkpoint_interval_ms = ms;
      }
    }
  }

  void Recovery() {
    const YNode* r = root_.Find("recovery");
    if (r == nullptr || !SubMap("recovery", *r, {"max_recoveries"})) return;
    if (const YNode* m = r->Find("max_recoveries")) {
      OptionDef def;
      def.type = OptionType::kInt;
      def.min = 0;
      def.max = 1000000000;
      NodeOptions::Entry e;
      if (CheckOptionValue(def, *m, "'recovery.max_recoveries'", spec_->dir, &e, diags_)) {
        spec_->max_recoveries = static_cast<int>(std::stoll(m->scalar));
      }
    }
  }

  const YNode& root_;
  const LoadOptions& opts_;
  PipelineSpec* spec_;
  Diagnostics* diags_;
};

}  // namespace

bool ParseDuration(const std::string& text, int64_t* ms) {
  // One or more <number><unit> parts ("1m30s" is accepted too); units ms, s, m, h.
  if (text.empty()) return false;
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      ++i;
    }
    if (i == start) return false;
    std::string number = text.substr(start, i - start);
    if (std::count(number.begin(), number.end(), '.') > 1 || number.front() == '.' ||
        number.back() == '.') {
      return false;
    }
    double value = std::strtod(number.c_str(), nullptr);
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string unit = text.substr(unit_start, i - unit_start);
    double scale;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60'000;
    } else if (unit == "h") {
      scale = 3'600'000;
    } else {
      return false;
    }
    total += value * scale;
  }
  // Bounded far below int64 so that callers may add durations to clock readings.
  if (!std::isfinite(total) || total > 1e15) return false;
  *ms = std::llround(total);
  return true;
}

bool LoadPipeline(const std::string& path, const LoadOptions& opts, const Registry& registry,
                  PipelineSpec* spec, Diagnostics* diags) {
  *spec = PipelineSpec();
  spec->file = path;
  spec->dir = std::filesystem::path(path).parent_path().string();
  std::string error;
  if (!ReadFile(path, &spec->text, &error)) {
    diags->Reset(path, "");
    diags->Error(SourceLoc{}, 0, "cannot read the pipeline file: " + error);
    return false;
  }
  diags->Reset(path, spec->text);

  // ${VAR} is replaced in the text before parsing (so a variable may stand anywhere,
  // flow maps included); positions are then mapped back to the file as written.
  std::string text;
  PositionMap positions;
  InterpolateText(spec->text, ProcessEnvironment(), &text, &positions, diags);
  auto root = std::make_shared<YNode>();
  Diagnostics parse_diags(path, text);
  ParseYaml(text, root.get(), &parse_diags);
  std::vector<Diagnostic> parse_items = parse_diags.all();
  positions.Apply(&parse_items);
  for (const Diagnostic& d : parse_items) diags->Add(d);
  positions.Apply(root.get());
  if (root->is_null() && diags->has_errors()) return false;  // a syntax error: nothing to check
  for (const std::string& set : opts.sets) ApplySet(set, root.get(), diags);
  spec->root = root;

  if (!root->is_map()) {
    if (root->is_null()) {
      diags->Error(SourceLoc{}, 0,
                   "the pipeline file is empty: it needs at least 'pipeline:' and 'nodes:'");
    } else {
      diags->Error(*root, "a pipeline file must be a map (pipeline:, nodes:, ...), got " +
                              DescribeValue(*root));
    }
    return false;
  }
  TopLevel(*root, opts, spec, diags).Run();
  if (const YNode* nodes_key = root->FindKey("nodes")) {
    ValidateNodes(*nodes_key, *root->Find("nodes"), registry, spec, diags);
  } else {
    diags->Error(SourceLoc{}, 0, "missing 'nodes:' (the pipeline's sources, operators and sinks)");
  }
  return !diags->has_errors();
}

}  // namespace onceflow

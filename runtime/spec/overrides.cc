// ${VAR} interpolation and --set overrides on a parsed pipeline tree (see overrides.h).
//
// Threading: reentrant; reads the process environment through getenv() only.
#include "runtime/spec/overrides.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

namespace onceflow {
namespace {

bool IsVarStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

void MarkFromCommandLine(YNode* n) {
  n->from_command_line = true;
  n->loc = SourceLoc{};
  n->length = 0;
  for (YNode& item : n->items) MarkFromCommandLine(&item);
  for (auto& [k, v] : n->entries) {
    MarkFromCommandLine(&k);
    MarkFromCommandLine(&v);
  }
}

YNode CommandLineKey(const std::string& name) {
  YNode k;
  k.kind = YNode::Kind::kScalar;
  k.scalar = name;
  k.from_command_line = true;
  return k;
}

}  // namespace

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

bool Interpolate(std::string_view text, const EnvLookup& env, std::string* out,
                 std::string* error) {
  out->clear();
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '$') {
      out->push_back(text[i++]);
      continue;
    }
    if (text.substr(i, 3) == "$${") {
      out->append("${");
      i += 3;
      continue;
    }
    if (text.substr(i, 2) != "${") {
      out->push_back(text[i++]);
      continue;
    }
    size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      *error = "'${' without its closing '}' (write '$${' for a literal '${')";
      return false;
    }
    std::string_view inner = text.substr(i + 2, close - i - 2);
    std::string_view name = inner;
    std::optional<std::string_view> dflt;
    if (size_t sep = inner.find(":-"); sep != std::string_view::npos) {
      name = inner.substr(0, sep);
      dflt = inner.substr(sep + 2);
    }
    bool valid = !name.empty() && IsVarStart(name[0]);
    for (char c : name) valid = valid && IsVarChar(c);
    if (!valid) {
      *error = "bad variable name in '${" + std::string(inner) +
               "}' (expected ${NAME} or ${NAME:-default})";
      return false;
    }
    std::optional<std::string> value = env(std::string(name));
    if (value && (!value->empty() || !dflt)) {
      out->append(*value);
    } else if (dflt) {
      out->append(*dflt);
    } else {
      *error = "environment variable '" + std::string(name) + "' is not set (write ${" +
               std::string(name) + ":-default} to give a default)";
      return false;
    }
    i = close + 1;
  }
  return true;
}

void PositionMap::AddShift(int line, int new_col, int new_len, int orig_col, int orig_len) {
  shifts_[line].push_back(Shift{new_col, new_len, orig_col, orig_len});
}

int PositionMap::MapColumn(int line, int col0, bool end) const {
  auto it = shifts_.find(line);
  if (it == shifts_.end()) return col0;
  int delta = 0;
  for (const Shift& sh : it->second) {
    if (col0 < sh.new_col) break;
    if (col0 < sh.new_col + sh.new_len || (end && col0 == sh.new_col + sh.new_len)) {
      // Inside a substituted value: its start maps to `${`, its end to after the `}`.
      return end ? sh.orig_col + sh.orig_len : sh.orig_col;
    }
    delta = (sh.orig_col + sh.orig_len) - (sh.new_col + sh.new_len);
  }
  return col0 + delta;
}

SourceLoc PositionMap::ToOriginal(SourceLoc loc) const {
  if (loc.line <= 0 || loc.column <= 0) return loc;
  return SourceLoc{loc.line, MapColumn(loc.line, loc.column - 1, /*end=*/false) + 1};
}

void PositionMap::Apply(YNode* n) const {
  if (empty()) return;
  if (n->loc.line > 0 && n->loc.column > 0) {
    int start0 = n->loc.column - 1;
    int new_start = MapColumn(n->loc.line, start0, false);
    if (n->length > 0) {
      int new_end = MapColumn(n->loc.line, start0 + n->length, true);
      n->length = std::max(1, new_end - new_start);
    }
    n->loc.column = new_start + 1;
    auto [lo, hi] = failures_.equal_range(n->loc.line);
    for (auto it = lo; it != hi; ++it) {
      if (it->second >= new_start && it->second < new_start + std::max(1, n->length)) {
        n->reported = true;
      }
    }
  }
  for (YNode& item : n->items) Apply(&item);
  for (auto& [k, v] : n->entries) {
    Apply(&k);
    Apply(&v);
  }
}

void PositionMap::Apply(std::vector<Diagnostic>* diags) const {
  for (Diagnostic& d : *diags) d.loc = ToOriginal(d.loc);
}

void InterpolateText(std::string_view text, const EnvLookup& env, std::string* out,
                     PositionMap* map, Diagnostics* diags) {
  out->clear();
  out->reserve(text.size());
  int line = 1;
  size_t line_start_in = 0, line_start_out = 0;
  char quote = 0;          // the quote character of an open quoted scalar on this line
  bool comment = false;
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (c == '\n') {
      out->push_back(c);
      ++i;
      ++line;
      line_start_in = i;
      line_start_out = out->size();
      quote = 0;  // multi-line quoted scalars are rare in pipelines; recover per line
      comment = false;
      continue;
    }
    if (!comment) {
      if (quote == 0 && c == '#' && (i == line_start_in || text[i - 1] == ' ' || text[i - 1] == '\t')) {
        comment = true;
      } else if (quote == 0 && (c == '"' || c == '\'')) {
        quote = c;
      } else if (quote != 0 && c == quote) {
        quote = 0;
      }
    }
    if (comment || c != '$' || text.substr(i, 2) != "${" ) {
      if (!comment && text.substr(i, 3) == "$${") {
        // `$${` is a literal `${`: one byte shorter in the output.
        int col_in = static_cast<int>(i - line_start_in);
        int col_out = static_cast<int>(out->size() - line_start_out);
        out->append("${");
        map->AddShift(line, col_out, 2, col_in, 3);
        i += 3;
        continue;
      }
      out->push_back(c);
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 2);
    size_t eol = text.find('\n', i);
    int col_in = static_cast<int>(i - line_start_in);
    SourceLoc at{line, col_in + 1};
    if (close == std::string_view::npos || (eol != std::string_view::npos && close > eol)) {
      diags->Error(at, 2, "'${' without its closing '}' (write '$${' for a literal '${')");
      map->AddFailure(line, col_in);
      out->push_back(c);
      ++i;
      continue;
    }
    std::string_view token = text.substr(i, close + 1 - i);
    std::string value, error;
    if (!Interpolate(token, env, &value, &error)) {
      diags->Error(at, static_cast<int>(token.size()), error);
      map->AddFailure(line, col_in);
      value = std::string(token);
    } else if (value.find('\n') != std::string::npos || value.find('\r') != std::string::npos) {
      diags->Error(at, static_cast<int>(token.size()),
                   "the value of '" + std::string(token) +
                       "' contains a line break, which cannot be substituted into one line");
      map->AddFailure(line, col_in);
      value = std::string(token);
    }
    int col_out = static_cast<int>(out->size() - line_start_out);
    out->append(value);
    map->AddShift(line, col_out, static_cast<int>(value.size()), col_in,
                  static_cast<int>(token.size()));
    i = close + 1;
  }
}

void ApplySet(const std::string& assignment, YNode* root, Diagnostics* diags) {
  const std::string what = "--set '" + assignment + "'";
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    diags->Error(SourceLoc{}, 0, what + ": expected PATH=VALUE, e.g. nodes.out.path=out.jsonl");
    return;
  }
  const std::string path = assignment.substr(0, eq);
  const std::string value_text = assignment.substr(eq + 1);
  std::vector<std::string> keys;
  for (size_t start = 0;;) {
    size_t dot = path.find('.', start);
    keys.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const std::string& k : keys) {
    if (k.empty()) {
      diags->Error(SourceLoc{}, 0,
                   what + ": bad PATH '" + path + "' (dot-separated keys, e.g. nodes.out.path)");
      return;
    }
  }

  // Parse the value on its own: its syntax errors must not point into the pipeline file.
  Diagnostics value_diags("--set", value_text);
  YNode value;
  if (!ParseYaml(value_text, &value, &value_diags)) {
    std::string reason = value_diags.all().empty() ? "" : value_diags.all().front().message;
    diags->Error(SourceLoc{}, 0, what + ": the value is not valid YAML: " + reason);
    return;
  }
  MarkFromCommandLine(&value);

  if (root->is_null()) root->kind = YNode::Kind::kMap;  // an empty file: --set may fill it
  YNode* cur = root;
  std::string walked;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!cur->is_map()) {
      diags->Error(SourceLoc{}, 0,
                   what + ": '" + walked + "' is " + cur->KindName() + ", not a map");
      return;
    }
    const bool last = i + 1 == keys.size();
    YNode* next = cur->FindMutable(keys[i]);
    if (next == nullptr) {
      YNode fresh;
      fresh.kind = last ? YNode::Kind::kNull : YNode::Kind::kMap;
      fresh.from_command_line = true;
      cur->entries.emplace_back(CommandLineKey(keys[i]), std::move(fresh));
      next = &cur->entries.back().second;
    } else if (!last && next->is_null()) {
      // `checkpoint:` left empty in the file, then --set checkpoint.interval=1s.
      next->kind = YNode::Kind::kMap;
      next->from_command_line = true;
    }
    walked += (walked.empty() ? "" : ".") + keys[i];
    cur = next;
  }
  *cur = std::move(value);
}

}  // namespace onceflow

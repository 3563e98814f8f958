// The two ways a pipeline tree is changed before validation: ${VAR} interpolation from the
// environment, and --set PATH=VALUE from the command line. Internal to runtime/spec (used
// by loader.cc and the unit tests).
//
// Threading: pure functions of their arguments (plus the environment, read-only).
#pragma once

#include <functional>
#include <map>
#include <vector>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/spec/diagnostics.h"
#include "runtime/spec/yaml_tree.h"

namespace onceflow {

// Looks a variable up; nullopt when unset. The default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup ProcessEnvironment();

// Expands `${VAR}` and `${VAR:-default}` in `text`. As in the shell, `:-` also applies
// when VAR is set but empty. `$${` stands for a literal `${` (so `$${HOME}` stays
// `${HOME}`); any other `$` is kept as is. The default is literal text (no nesting).
// Returns false with *error set for an unset variable without default, a bad variable
// name, or a `${` without its `}`.
bool Interpolate(std::string_view text, const EnvLookup& env, std::string* out, std::string* error);

// Where interpolation moved text: maps a position in the interpolated text back to the
// file as written, so every diagnostic points at what the user sees in their editor.
// Substitutions never add or remove lines (a value with a line break is refused), so only
// columns move.
class PositionMap {
 public:
  // On 1-based `line`, the 0-based column range [new_col, new_col+new_len) of the
  // interpolated text replaced [orig_col, orig_col+orig_len) of the original.
  void AddShift(int line, int new_col, int new_len, int orig_col, int orig_len);
  // A position inside a substituted value maps to the start of its `${`.
  SourceLoc ToOriginal(SourceLoc loc) const;
  // Maps every position of the tree (and the caret widths).
  void Apply(YNode* root) const;
  // Maps the positions of diagnostics reported against the interpolated text.
  void Apply(std::vector<Diagnostic>* diags) const;
  bool empty() const { return shifts_.empty() && failures_.empty(); }
  // A `${...}` at this original position could not be substituted (already reported):
  // the value that contains it is marked `reported`, so it draws no second error.
  void AddFailure(int line, int orig_col) { failures_.emplace(line, orig_col); }

 private:
  struct Shift {
    int new_col, new_len, orig_col, orig_len;
  };
  int MapColumn(int line, int col0, bool end) const;
  std::map<int, std::vector<Shift>> shifts_;  // line -> shifts in column order
  std::multimap<int, int> failures_;           // line -> 0-based column of the `${`
};

// Expands ${VAR} / ${VAR:-default} in the whole file text before it is parsed (SPEC §3),
// so a variable may stand anywhere a value can, flow maps included. Comments are left
// alone: a `#` at the start of a line or after a blank, outside quotes, starts one. Each
// problem (unset variable, bad name, unclosed `${`, a value with a line break) is
// reported at its `${` in the original text; the token is then left as written.
void InterpolateText(std::string_view text, const EnvLookup& env, std::string* out,
                     PositionMap* map, Diagnostics* diags);

// Applies one "PATH=VALUE" assignment: PATH is dot-separated map keys from the root
// (`nodes.out.path`), created as needed; VALUE is parsed as YAML (`4` is a number, `true`
// a bool, `'4'` a string, `[a, b]` a list; empty is null). The new nodes are marked
// from_command_line with line 0. Problems are reported at line 0, naming the --set.
void ApplySet(const std::string& assignment, YNode* root, Diagnostics* diags);

}  // namespace onceflow

// LuaEnv: the sandboxed LuaJIT state behind `map`, `filter`, `flat_map` and `generate`'s
// `lua`, plus the conversions between records and Lua tables, and the validation-time
// syntax check that reports errors at the right line of the pipeline file.
//
// Sandbox: only the base library (without load, loadstring, loadfile, dofile,
// collectgarbage, gcinfo, newproxy, getfenv, setfenv; `print` logs through spdlog), string
// (without string.dump), table, math (without math.random / math.randomseed: unseeded
// randomness would break replay) and bit. No os, io, package/require, debug, ffi or jit
// module: inline Lua has no clock, no files, no processes — it stays deterministic, so a
// replay computes the same outputs. (A runaway loop is not interrupted: LuaJIT's
// compiled code ignores instruction hooks.)
//
// Values: strings ↔ strings; numbers → Lua numbers (doubles: integers beyond 2^53 lose
// precision), and back to kInt when integral and within int64, else kDouble; booleans;
// null → the sentinel `null` (a light userdata, so a null field still exists in `e` and
// `e.x == null` tests it); nested arrays/objects (kJson) → nested tables (arrays carry a
// marker metatable so an empty array stays `[]`). A table converts back to JSON as an
// array when its keys are exactly 1..n, else as an object with its keys sorted.
//
// Field order of output records: fields present in the input record keep the input's
// order; new fields follow in alphabetical order (Lua's `next` order is not insertion
// order and not stable across states, and output must be reproducible).
//
// Threading: one LuaEnv per operator instance, used from its task thread only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/record.h"
#include "runtime/core/status.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/pipeline_spec.h"

struct lua_State;

namespace onceflow::ops {

// How inline Lua is wrapped into a function.
enum class LuaCode {
  // A Lua expression: `function(PARAM) return (CODE) end` (filter's `where`).
  kExpression,
  // A function body, e.g. "return {word = e.word:lower()}"; an expression alone (e.g.
  // "{word = e.word}") is accepted too, as if prefixed by `return`.
  kBody,
};

struct LuaSyntaxError {
  int line = 0;         // 1-based line within the inline code (0 = unknown)
  std::string message;  // without the chunk/line prefix
};

// Compiles `code` in a throwaway state (nothing runs). False with *error on a syntax error.
bool CheckLuaSyntax(std::string_view code, LuaCode kind, const char* param, LuaSyntaxError* error);

// Where line `lua_line` (1-based) of the inline Lua held by `value` is in the pipeline
// file. A block scalar (`lua: |`, its text holds line breaks) starts on the line after
// its indicator, so Lua line N is value.loc.line + N; its column is taken as the option
// key's column + 2 (the usual indentation; `key` may be null). A one-line scalar maps to
// its own position. Line 0 (a value from the command line) stays unknown.
SourceLoc LuaLineInYaml(const YNode& value, const YNode* key, int lua_line);

// Validation hook helper: compiles option `option` of `spec` and reports a syntax error
// at its line in the pipeline file.
void CheckLuaOption(const NodeSpec& spec, const std::string& option, LuaCode kind,
                    const char* param, Diagnostics& diags);

// The message of a Lua run-time error on a record, for OnRecordError: "lua: MESSAGE (line
// L of the pipeline file)" — Lua's own "lua:N:" prefix translated through LuaLineInYaml
// (or kept as "line N of the code" when the code has no position in a file).
std::string DescribeLuaError(std::string_view message, const YNode* value, const YNode* key);

// When every use of the parameter `param` in `code` is a field access with a constant
// name — `param.NAME` or `param["NAME"]` / `param['NAME']` — fills *names with those
// names (deduplicated, in first-use order) and returns true. Any other use (passing it to
// a function, `#param`, `pairs(param)`, `..`, shadowing, `param:method()`), or code the
// scanner does not understand, returns false. Conservative: true proves the table itself
// never escapes and only those fields are ever read or written.
bool RecordFieldsUsed(std::string_view code, std::string_view param,
                      std::vector<std::string>* names);

class LuaEnv {
 public:
  LuaEnv();
  ~LuaEnv();
  LuaEnv(const LuaEnv&) = delete;
  LuaEnv& operator=(const LuaEnv&) = delete;

  // Creates the sandboxed state. `node_id` prefixes what `print` logs.
  Status Open(const std::string& node_id);

  // Compiles `code` into a function of one parameter `param` and keeps it; returns its
  // handle in *fn. Errors read "lua:LINE: message" relative to the inline code.
  Status Compile(std::string_view code, LuaCode kind, const char* param, int* fn);

  lua_State* state() { return L_; }

  // Pushes a new table holding `rec`'s fields.
  void PushRecord(const Record& rec);
  // Restricts PushRecordFields to `names` (see RecordFieldsUsed).
  void SetRecordFields(const std::vector<std::string>& names);
  // Pushes one table, reused for every record, holding only the fields named by
  // SetRecordFields (nil where `rec` lacks one). Only valid when RecordFieldsUsed proved
  // that the code touches nothing else of the table and cannot keep a reference to it.
  void PushRecordFields(const Record& rec);
  void PushInteger(int64_t v);

  // Calls function `fn` with the value on top of the stack (popped) as its argument and
  // leaves its single result on the stack. On a Lua error returns false with *error set
  // to the message (stack restored).
  bool Call(int fn, std::string* error);

  // Converts the table at stack index `idx` into *out (cleared first). Fields named in
  // `order` come first in that order, then the other keys sorted. False with *error when
  // the value is not a table or holds something without a JSON form (a function, a
  // non-string key at the top level, a cycle, nesting deeper than 100).
  bool ToRecord(int idx, const Record* order, Record* out, std::string* error);

  // The length of the array at `idx` (lua_objlen), or -1 when it is not a table.
  int ArrayLength(int idx);

  // Pops `n` values.
  void Pop(int n);

 private:
  bool ToValue(int idx, Value* out, std::string* error);
  bool AppendJson(int idx, int depth, std::string* out, std::string* error);
  void PushJson(std::string_view json);
  void PushValue(const Value& v);
  void PushFieldName(size_t i, const std::string& name);

  lua_State* L_ = nullptr;
  int names_ref_ = -1;     // registry ref of a table caching field-name strings by index
  int array_mt_ref_ = -1;  // registry ref of the array marker metatable
  std::vector<std::string> cached_names_;
  std::vector<std::string> subset_;  // the fields PushRecordFields sets, in slot order
  std::vector<std::pair<std::string, Value>> extra_;  // scratch for ToRecord
};

}  // namespace onceflow::ops

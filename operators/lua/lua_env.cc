// LuaEnv: sandboxed LuaJIT state, record <-> table conversion, syntax checks. See
// lua_env.h for the sandbox and conversion rules.
//
// Stack discipline: slot 1 of every state holds the field-name cache table, slot 2 the
// array marker metatable, slot 3 the reused record table of PushRecordFields and slot 4
// the interned names of its fields, for the life of the state; every other method leaves the stack
// as it found it (except where documented: PushRecord, Call).
#include "operators/lua/lua_env.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace onceflow::ops {

namespace {

constexpr int kNamesSlot = 1;
constexpr int kArrayMetaSlot = 2;
constexpr int kSubsetTableSlot = 3;
constexpr int kSubsetNamesSlot = 4;
constexpr int kMaxDepth = 100;
constexpr const char* kChunkName = "=lua";  // errors read "lua:LINE: message"

std::string WrapCode(std::string_view code, LuaCode kind, const char* param, bool as_expr) {
  std::string chunk = "return function(";
  chunk += param;
  chunk += ") ";
  if (kind == LuaCode::kExpression) {
    // The newline keeps a trailing `-- comment` from swallowing the closing parenthesis.
    chunk += "return (";
    chunk.append(code);
    chunk += "\n) end";
  } else {
    if (as_expr) chunk += "return ";
    chunk.append(code);
    chunk += "\nend";
  }
  return chunk;
}

// Number of lines of inline code (a trailing newline does not start a new line).
int CodeLines(std::string_view code) {
  int n = 1;
  for (size_t i = 0; i < code.size(); ++i) {
    if (code[i] == '\n' && i + 1 < code.size()) ++n;
  }
  return n;
}

// Splits "lua:12: message" into 12 and "message".
void ParseLuaMessage(std::string_view msg, int max_line, LuaSyntaxError* out) {
  out->line = 0;
  std::string_view prefix = "lua:";
  if (msg.substr(0, prefix.size()) == prefix) {
    size_t i = prefix.size();
    int line = 0;
    while (i < msg.size() && msg[i] >= '0' && msg[i] <= '9') {
      line = line * 10 + (msg[i] - '0');
      ++i;
    }
    if (i < msg.size() && msg[i] == ':') {
      ++i;
      if (i < msg.size() && msg[i] == ' ') ++i;
      out->line = std::min(std::max(line, 1), max_line);
      msg.remove_prefix(i);
    }
  }
  out->message = std::string(msg);
}

// Loads (compiles) `code` into L; on failure fills *error.
bool LoadCode(lua_State* L, std::string_view code, LuaCode kind, const char* param,
              LuaSyntaxError* error) {
  if (kind == LuaCode::kBody) {
    // Expression first, so "{word = e.word}" works without `return`.
    std::string as_expr = WrapCode(code, kind, param, true);
    if (luaL_loadbuffer(L, as_expr.data(), as_expr.size(), kChunkName) == 0) return true;
    lua_pop(L, 1);
  }
  std::string chunk = WrapCode(code, kind, param, false);
  int rc = luaL_loadbuffer(L, chunk.data(), chunk.size(), kChunkName);
  if (rc == 0) return true;
  size_t len = 0;
  const char* m = lua_tolstring(L, -1, &len);
  ParseLuaMessage(m ? std::string_view(m, len) : "out of memory", CodeLines(code), error);
  lua_pop(L, 1);
  return false;
}

// print(...): logs its arguments, tab-separated, as `print` would write them.
int LuaPrint(lua_State* L) {
  int n = lua_gettop(L);
  std::string text;
  lua_getglobal(L, "tostring");
  for (int i = 1; i <= n; ++i) {
    if (i > 1) text.push_back('\t');
    lua_pushvalue(L, -1);
    lua_pushvalue(L, i);
    lua_call(L, 1, 1);
    size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    if (s != nullptr) text.append(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  size_t idlen = 0;
  const char* id = lua_tolstring(L, lua_upvalueindex(1), &idlen);
  spdlog::info("node '{}': lua: {}", std::string_view(id, idlen), text);
  return 0;
}

bool IsNullSentinel(lua_State* L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == nullptr;
}

bool NumberToValue(double d, Value* out) {
  // Integral and within int64 (2^63 itself is not): an integer.
  if (std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 &&
      d < 9223372036854775808.0) {
    *out = Value::Int(static_cast<int64_t>(d));
  } else {
    *out = Value::Double(d);
  }
  return true;
}

const char* TypeName(lua_State* L, int idx) { return lua_typename(L, lua_type(L, idx)); }

}  // namespace

bool CheckLuaSyntax(std::string_view code, LuaCode kind, const char* param, LuaSyntaxError* error) {
  lua_State* L = luaL_newstate();
  if (L == nullptr) {
    error->line = 0;
    error->message = "cannot create a Lua state (out of memory)";
    return false;
  }
  bool ok = LoadCode(L, code, kind, param, error);
  lua_close(L);
  return ok;
}

SourceLoc LuaLineInYaml(const YNode& value, const YNode* key, int lua_line) {
  if (value.loc.line == 0) return SourceLoc{};
  if (value.scalar.find('\n') != std::string::npos) {
    // Block scalar: its position is the `|` indicator; the code starts on the next line.
    SourceLoc loc;
    loc.line = value.loc.line + std::max(lua_line, 1);
    loc.column = key != nullptr && key->loc.line > 0 ? key->loc.column + 2 : value.loc.column;
    return loc;
  }
  return value.loc;
}

void CheckLuaOption(const NodeSpec& spec, const std::string& option, LuaCode kind,
                    const char* param, Diagnostics& diags) {
  const YNode* raw = spec.options.Raw(option);
  if (raw == nullptr || !raw->is_scalar()) return;
  LuaSyntaxError err;
  if (CheckLuaSyntax(raw->scalar, kind, param, &err)) return;
  std::string msg = "node '" + spec.id + "': Lua syntax error in '" + option + "'";
  if (err.line > 0 && raw->scalar.find('\n') != std::string::npos) {
    msg += " (line " + std::to_string(err.line) + " of the code)";
  }
  msg += ": " + err.message;
  const YNode* key = spec.at != nullptr ? spec.at->FindKey(option) : nullptr;
  SourceLoc loc = LuaLineInYaml(*raw, key, err.line);
  if (loc.line == 0 || raw->scalar.find('\n') == std::string::npos) {
    diags.Error(*raw, std::move(msg));
  } else {
    diags.Error(loc, 1, std::move(msg));
  }
}

std::string DescribeLuaError(std::string_view message, const YNode* value, const YNode* key) {
  LuaSyntaxError parsed;
  int max_line = value != nullptr ? CodeLines(value->scalar) : 1 << 30;
  ParseLuaMessage(message, max_line, &parsed);
  std::string out = "lua: " + parsed.message;
  if (parsed.line > 0) {
    SourceLoc loc = value != nullptr ? LuaLineInYaml(*value, key, parsed.line) : SourceLoc{};
    if (loc.line > 0) {
      out += " (line " + std::to_string(loc.line) + " of the pipeline file)";
    } else {
      out += " (line " + std::to_string(parsed.line) + " of the code)";
    }
  }
  return out;
}

LuaEnv::LuaEnv() = default;

LuaEnv::~LuaEnv() {
  if (L_ != nullptr) lua_close(L_);
}

Status LuaEnv::Open(const std::string& node_id) {
  if (L_ != nullptr) lua_close(L_);
  L_ = luaL_newstate();
  if (L_ == nullptr) return Status::Runtime("cannot create a Lua state (out of memory)");
  lua_State* L = L_;
  // LuaJIT requires library openers to be called through Lua, not directly.
  const std::pair<const char*, lua_CFunction> libs[] = {
      {"", luaopen_base},
      {LUA_TABLIBNAME, luaopen_table},
      {LUA_STRLIBNAME, luaopen_string},
      {LUA_MATHLIBNAME, luaopen_math},
      {LUA_BITLIBNAME, luaopen_bit},
  };
  for (const auto& [name, fn] : libs) {
    lua_pushcfunction(L, fn);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
  }
  // Everything that reaches outside the sandbox or breaks determinism goes.
  for (const char* name : {"load", "loadstring", "loadfile", "dofile", "collectgarbage",
                           "gcinfo", "newproxy", "getfenv", "setfenv", "module", "require"}) {
    lua_pushnil(L);
    lua_setglobal(L, name);
  }
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lua_getglobal(L, LUA_MATHLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "random");
  lua_pushnil(L);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  lua_pushlstring(L, node_id.data(), node_id.size());
  lua_pushcclosure(L, LuaPrint, 1);
  lua_setglobal(L, "print");
  lua_pushlightuserdata(L, nullptr);
  lua_setglobal(L, "null");

  lua_settop(L, 0);
  lua_newtable(L);  // slot 1: field-name cache
  lua_newtable(L);  // slot 2: array marker metatable
  lua_pushstring(L, "array");
  lua_setfield(L, kArrayMetaSlot, "__name");
  lua_newtable(L);  // slot 3: reused record table (PushRecordFields)
  lua_newtable(L);  // slot 4: its field names
  cached_names_.clear();
  subset_.clear();
  return Status::Ok();
}

void LuaEnv::SetRecordFields(const std::vector<std::string>& names) {
  subset_ = names;
  lua_State* L = L_;
  for (size_t i = 0; i < subset_.size(); ++i) {
    lua_pushlstring(L, subset_[i].data(), subset_[i].size());
    lua_rawseti(L, kSubsetNamesSlot, static_cast<int>(i + 1));
  }
}

void LuaEnv::PushRecordFields(const Record& rec) {
  lua_State* L = L_;
  for (size_t i = 0; i < subset_.size(); ++i) {
    lua_rawgeti(L, kSubsetNamesSlot, static_cast<int>(i + 1));
    const Value* v = rec.Get(subset_[i]);
    if (v == nullptr) {
      lua_pushnil(L);
    } else {
      PushValue(*v);
    }
    lua_rawset(L, kSubsetTableSlot);
  }
  lua_pushvalue(L, kSubsetTableSlot);
}

void LuaEnv::PushValue(const Value& v) {
  lua_State* L = L_;
  switch (v.type()) {
    case ValueType::kNull: lua_pushlightuserdata(L, nullptr); break;
    case ValueType::kBool: lua_pushboolean(L, v.as_bool()); break;
    case ValueType::kInt: lua_pushnumber(L, static_cast<lua_Number>(v.as_int())); break;
    case ValueType::kDouble: lua_pushnumber(L, v.as_double()); break;
    case ValueType::kString: lua_pushlstring(L, v.str().data(), v.str().size()); break;
    case ValueType::kJson: PushJson(v.str()); break;
  }
}

namespace {

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// At code[i] == '[': the level of a long bracket `[==[` (its '=' count), or -1.
int LongBracketLevel(std::string_view code, size_t i) {
  size_t j = i + 1;
  while (j < code.size() && code[j] == '=') ++j;
  return j < code.size() && code[j] == '[' ? static_cast<int>(j - i - 1) : -1;
}

// Skips a long bracket starting at code[*i] of level `level`; false when unterminated.
bool SkipLongBracket(std::string_view code, size_t* i, int level) {
  std::string close = "]" + std::string(level, '=') + "]";
  size_t end = code.find(close, *i + level + 2);
  if (end == std::string_view::npos) return false;
  *i = end + close.size();
  return true;
}

// Skips a quoted string starting at code[*i]; false when unterminated. With `text`,
// stores its contents when it has no escapes (else clears `*plain`).
bool SkipQuoted(std::string_view code, size_t* i, std::string* text, bool* plain) {
  char q = code[*i];
  size_t j = *i + 1;
  if (text) text->clear();
  if (plain) *plain = true;
  while (j < code.size() && code[j] != q) {
    if (code[j] == '\n') return false;
    if (code[j] == '\\') {
      if (plain) *plain = false;
      ++j;
    } else if (text) {
      text->push_back(code[j]);
    }
    ++j;
  }
  if (j >= code.size()) return false;
  *i = j + 1;
  return true;
}

size_t SkipSpace(std::string_view code, size_t i) {
  while (i < code.size() && IsSpace(code[i])) ++i;
  return i;
}

}  // namespace

bool RecordFieldsUsed(std::string_view code, std::string_view param,
                      std::vector<std::string>* names) {
  names->clear();
  auto add = [&](std::string name) {
    if (std::find(names->begin(), names->end(), name) == names->end()) {
      names->push_back(std::move(name));
    }
  };
  size_t i = 0;
  char prev = 0;   // last significant character before the current token
  char prev2 = 0;  // the one before it
  while (i < code.size()) {
    char c = code[i];
    if (IsSpace(c)) {
      ++i;
      continue;
    }
    if (c == '-' && i + 1 < code.size() && code[i + 1] == '-') {  // comment
      i += 2;
      int level = i < code.size() && code[i] == '[' ? LongBracketLevel(code, i) : -1;
      if (level >= 0) {
        if (!SkipLongBracket(code, &i, level)) return false;
      } else {
        while (i < code.size() && code[i] != '\n') ++i;
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      if (!SkipQuoted(code, &i, nullptr, nullptr)) return false;
      prev2 = prev;
      prev = '"';
      continue;
    }
    if (c == '[') {
      int level = LongBracketLevel(code, i);
      if (level >= 0) {
        if (!SkipLongBracket(code, &i, level)) return false;
        prev2 = prev;
        prev = '"';
        continue;
      }
    }
    if (IsIdentStart(c) || (c >= '0' && c <= '9')) {
      size_t start = i;
      // A number (which may hold '.', e.g. 1.5e3) scans as one token, as Lua reads it.
      const bool number = !IsIdentStart(c);
      while (i < code.size() && (IsIdentChar(code[i]) || (number && code[i] == '.'))) ++i;
      std::string_view tok = code.substr(start, i - start);
      // A closure could capture the parameter and read it after the call returns, when
      // the reused table already holds another record: no closures at all.
      if (tok == "function") return false;
      bool field_name = prev == '.' && prev2 != '.';   // x.e (not x .. e)
      bool method_name = prev == ':' && prev2 != ':';  // x:e()
      if (tok == param && !field_name && !method_name) {
        // Must be followed by `.NAME` or `["NAME"]`.
        size_t j = SkipSpace(code, i);
        if (j < code.size() && code[j] == '.' && (j + 1 >= code.size() || code[j + 1] != '.')) {
          j = SkipSpace(code, j + 1);
          if (j >= code.size() || !IsIdentStart(code[j])) return false;
          size_t n0 = j;
          while (j < code.size() && IsIdentChar(code[j])) ++j;
          add(std::string(code.substr(n0, j - n0)));
        } else if (j < code.size() && code[j] == '[') {
          j = SkipSpace(code, j + 1);
          if (j >= code.size() || (code[j] != '"' && code[j] != '\'')) return false;
          std::string text;
          bool plain = false;
          if (!SkipQuoted(code, &j, &text, &plain) || !plain) return false;
          j = SkipSpace(code, j);
          if (j >= code.size() || code[j] != ']') return false;
          ++j;
          add(std::move(text));
        } else {
          return false;
        }
        i = j;
        prev2 = 0;
        prev = 'a';
        continue;
      }
      prev2 = prev;
      prev = 'a';
      continue;
    }
    prev2 = prev;
    prev = c;
    ++i;
  }
  return true;
}

Status LuaEnv::Compile(std::string_view code, LuaCode kind, const char* param, int* fn) {
  LuaSyntaxError err;
  if (!LoadCode(L_, code, kind, param, &err)) {
    std::string msg = "Lua syntax error";
    if (err.line > 0) msg += " at line " + std::to_string(err.line);
    return Status::Invalid(msg + ": " + err.message);
  }
  // Running the chunk returns the function; nothing else runs.
  if (lua_pcall(L_, 0, 1, 0) != 0) {
    std::string msg = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "unknown error";
    lua_pop(L_, 1);
    return Status::Runtime("lua: " + msg);
  }
  *fn = luaL_ref(L_, LUA_REGISTRYINDEX);
  return Status::Ok();
}

void LuaEnv::PushFieldName(size_t i, const std::string& name) {
  if (i < cached_names_.size() && cached_names_[i] == name) {
    lua_rawgeti(L_, kNamesSlot, static_cast<int>(i + 1));
    return;
  }
  lua_pushlstring(L_, name.data(), name.size());
  if (i < 256) {  // cache the first fields only: records are small
    if (cached_names_.size() <= i) cached_names_.resize(i + 1);
    cached_names_[i] = name;
    lua_pushvalue(L_, -1);
    lua_rawseti(L_, kNamesSlot, static_cast<int>(i + 1));
  }
}

void LuaEnv::PushRecord(const Record& rec) {
  lua_State* L = L_;
  lua_createtable(L, 0, static_cast<int>(rec.size()));
  size_t i = 0;
  for (const auto& [name, v] : rec) {
    PushFieldName(i++, name);
    PushValue(v);
    lua_rawset(L, -3);
  }
}

void LuaEnv::PushInteger(int64_t v) { lua_pushnumber(L_, static_cast<lua_Number>(v)); }

namespace {

void PushJsonValue(lua_State* L, const nlohmann::json& j, int depth) {
  if (depth > kMaxDepth * 10 || !lua_checkstack(L, 4)) {
    lua_pushlightuserdata(L, nullptr);
    return;
  }
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      lua_createtable(L, 0, static_cast<int>(j.size()));
      for (const auto& [k, v] : j.items()) {
        lua_pushlstring(L, k.data(), k.size());
        PushJsonValue(L, v, depth + 1);
        lua_rawset(L, -3);
      }
      break;
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(j.size()), 0);
      int i = 1;
      for (const auto& v : j) {
        PushJsonValue(L, v, depth + 1);
        lua_rawseti(L, -2, i++);
      }
      lua_pushvalue(L, kArrayMetaSlot);
      lua_setmetatable(L, -2);
      break;
    }
    case nlohmann::json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case nlohmann::json::value_t::boolean: lua_pushboolean(L, j.get<bool>()); break;
    case nlohmann::json::value_t::number_integer:
      lua_pushnumber(L, static_cast<lua_Number>(j.get<int64_t>()));
      break;
    case nlohmann::json::value_t::number_unsigned:
      lua_pushnumber(L, static_cast<lua_Number>(j.get<uint64_t>()));
      break;
    case nlohmann::json::value_t::number_float: lua_pushnumber(L, j.get<double>()); break;
    default: lua_pushlightuserdata(L, nullptr); break;  // null (and discarded)
  }
}

}  // namespace

void LuaEnv::PushJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    lua_pushlstring(L_, json.data(), json.size());  // cannot happen for valid kJson
    return;
  }
  PushJsonValue(L_, j, 0);
}

bool LuaEnv::Call(int fn, std::string* error) {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, fn);
  lua_insert(L_, -2);
  if (lua_pcall(L_, 1, 1, 0) == 0) return true;
  if (lua_type(L_, -1) == LUA_TSTRING) {
    size_t len = 0;
    const char* m = lua_tolstring(L_, -1, &len);
    *error = std::string(m, len);
  } else {
    *error = std::string("error object is a ") + TypeName(L_, -1) + " value";
  }
  lua_pop(L_, 1);
  return false;
}

int LuaEnv::ArrayLength(int idx) {
  if (!lua_istable(L_, idx)) return -1;
  return static_cast<int>(lua_objlen(L_, idx));
}

void LuaEnv::Pop(int n) { lua_pop(L_, n); }

bool LuaEnv::ToRecord(int idx, const Record* order, Record* out, std::string* error) {
  lua_State* L = L_;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  out->Clear();
  if (!lua_istable(L, idx)) {
    *error = std::string("expected a table, got ") + TypeName(L, idx);
    return false;
  }
  if (order != nullptr) {
    size_t i = 0;
    for (const auto& [name, unused] : *order) {
      PushFieldName(i++, name);
      lua_rawget(L, idx);
      if (!lua_isnil(L, -1)) {
        Value v;
        if (!ToValue(-1, &v, error)) {
          lua_pop(L, 1);
          *error = "field '" + name + "': " + *error;
          return false;
        }
        out->Append(name, std::move(v));
      }
      lua_pop(L, 1);
    }
  }
  extra_.clear();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      *error = std::string("a record's field names must be strings, got a ") +
               TypeName(L, -2) + " key (a list where a record was expected?)";
      lua_pop(L, 2);
      return false;
    }
    size_t len = 0;
    const char* k = lua_tolstring(L, -2, &len);
    std::string_view key(k, len);
    bool known = false;
    if (order != nullptr) {
      for (const auto& f : *order) {
        if (f.first == key) {
          known = true;
          break;
        }
      }
    }
    if (!known) {
      Value v;
      if (!ToValue(-1, &v, error)) {
        *error = "field '" + std::string(key) + "': " + *error;
        lua_pop(L, 2);
        return false;
      }
      extra_.emplace_back(std::string(key), std::move(v));
    }
    lua_pop(L, 1);
  }
  std::sort(extra_.begin(), extra_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [k, v] : extra_) out->Append(k, std::move(v));
  return true;
}

bool LuaEnv::ToValue(int idx, Value* out, std::string* error) {
  lua_State* L = L_;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: *out = Value::Null(); return true;
    case LUA_TBOOLEAN: *out = Value::Bool(lua_toboolean(L, idx) != 0); return true;
    case LUA_TNUMBER: return NumberToValue(lua_tonumber(L, idx), out);
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      *out = Value::String(std::string_view(s, len));
      return true;
    }
    case LUA_TLIGHTUSERDATA:
      if (IsNullSentinel(L, idx)) {
        *out = Value::Null();
        return true;
      }
      break;
    case LUA_TTABLE: {
      std::string json;
      if (!AppendJson(idx, 0, &json, error)) return false;
      *out = Value::Json(std::move(json));
      return true;
    }
    default: break;
  }
  *error = std::string("a ") + TypeName(L, idx) + " value cannot be stored in a record";
  return false;
}

bool LuaEnv::AppendJson(int idx, int depth, std::string* out, std::string* error) {
  lua_State* L = L_;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: out->append("null"); return true;
    case LUA_TBOOLEAN: out->append(lua_toboolean(L, idx) ? "true" : "false"); return true;
    case LUA_TNUMBER: {
      Value v;
      NumberToValue(lua_tonumber(L, idx), &v);
      v.AppendJson(out);
      return true;
    }
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      AppendJsonString(std::string_view(s, len), out);
      return true;
    }
    case LUA_TLIGHTUSERDATA:
      if (IsNullSentinel(L, idx)) {
        out->append("null");
        return true;
      }
      break;
    case LUA_TTABLE: break;
    default:
      *error = std::string("a ") + TypeName(L, idx) + " value cannot be stored in a record";
      return false;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    *error = std::string("a ") + TypeName(L, idx) + " value cannot be stored in a record";
    return false;
  }
  if (depth >= kMaxDepth || !lua_checkstack(L, 6)) {
    *error = "table nested too deeply (or a table that contains itself)";
    return false;
  }
  // Array when the keys are exactly 1..n.
  size_t count = 0;
  double max_index = 0;
  bool array = true;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    ++count;
    if (array) {
      if (lua_type(L, -2) == LUA_TNUMBER) {
        double k = lua_tonumber(L, -2);
        if (k >= 1 && k == std::trunc(k)) {
          max_index = std::max(max_index, k);
        } else {
          array = false;
        }
      } else {
        array = false;
      }
    }
    lua_pop(L, 1);
  }
  if (count == 0) {
    bool marked = false;
    if (lua_getmetatable(L, idx)) {
      marked = lua_rawequal(L, -1, kArrayMetaSlot) != 0;
      lua_pop(L, 1);
    }
    out->append(marked ? "[]" : "{}");
    return true;
  }
  if (array && max_index == static_cast<double>(count)) {
    out->push_back('[');
    for (size_t i = 1; i <= count; ++i) {
      if (i > 1) out->push_back(',');
      lua_rawgeti(L, idx, static_cast<int>(i));
      bool ok = AppendJson(-1, depth + 1, out, error);
      lua_pop(L, 1);
      if (!ok) return false;
    }
    out->push_back(']');
    return true;
  }
  // Object: keys sorted, so the output does not depend on table internals.
  std::vector<std::pair<std::string, int>> keys;  // key text, key type
  keys.reserve(count);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      size_t len = 0;
      const char* k = lua_tolstring(L, -2, &len);
      keys.emplace_back(std::string(k, len), kt);
    } else if (kt == LUA_TNUMBER) {
      Value v;
      NumberToValue(lua_tonumber(L, -2), &v);
      keys.emplace_back(v.ToJson(), kt);
    } else {
      *error = std::string("a ") + TypeName(L, -2) + " key cannot be stored in a record";
      lua_pop(L, 2);
      return false;
    }
    lua_pop(L, 1);
  }
  std::sort(keys.begin(), keys.end());
  out->push_back('{');
  bool first = true;
  for (const auto& [k, kt] : keys) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(k, out);
    out->push_back(':');
    if (kt == LUA_TSTRING) {
      lua_pushlstring(L, k.data(), k.size());
    } else {
      lua_pushnumber(L, std::strtod(k.c_str(), nullptr));
    }
    lua_rawget(L, idx);
    bool ok = AppendJson(-1, depth + 1, out, error);
    lua_pop(L, 1);
    if (!ok) return false;
  }
  out->push_back('}');
  return true;
}

}  // namespace onceflow::ops

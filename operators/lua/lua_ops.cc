// The embedded-Lua operators: `map` (one record in, one out), `filter` (keep records for
// which an expression is truthy) and `flat_map` (one record in, a list out). Each
// instance owns one sandboxed LuaEnv (see lua_env.h) and compiles its code once at Open.
//
// Errors: a Lua run-time error on a record, or a result of the wrong shape, is a
// deterministic data error: it goes to ctx.errors (the node's on_error) with the record,
// and Process fails only when that handler says so. flat_map is all-or-nothing per input
// record: an error in its third output emits none of them.
//
// Threading: one instance per task thread (the Lua state is not shared).
#include <memory>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/lua/lua_env.h"
#include "operators/lua/native_filter.h"

extern "C" {
#include <lua.h>
}

namespace onceflow::ops {

namespace {

enum class LuaOpKind { kMap, kFilter, kFlatMap };

class LuaOperator : public Operator {
 public:
  LuaOperator(const NodeSpec& spec, LuaOpKind kind)
      : spec_(spec), kind_(kind), option_(kind == LuaOpKind::kFilter ? "where" : "lua") {}

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    code_ = spec_.options.Raw(option_);
    code_key_ = spec_.at != nullptr ? spec_.at->FindKey(option_) : nullptr;
    ONCEFLOW_RETURN_IF_ERROR(env_.Open(spec_.id));
    std::string code = spec_.options.GetString(option_);
    LuaCode lk = kind_ == LuaOpKind::kFilter ? LuaCode::kExpression : LuaCode::kBody;
    ONCEFLOW_RETURN_IF_ERROR(
        env_.Compile(code, lk, "e", &fn_).WithContext("node '" + spec_.id + "'"));
    // Why: building a full table per record (every field name and string value) was
    // most of the Lua cost; code like `e.status == "paid" and e.amount > 10` reads two
    // fields, so when the code provably touches only named fields of `e`, set just those
    // in one reused table.
    std::vector<std::string> used;
    subset_ = RecordFieldsUsed(code, "e", &used);
    if (subset_) env_.SetRecordFields(used);
    // Comparisons with constants joined by and/or/not need no Lua at all (see
    // native_filter.h); records it cannot decide still go through the Lua code.
    native_ = kind_ == LuaOpKind::kFilter && native_filter_.Compile(code, "e");
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    lua_State* L = env_.state();
    std::string error;
    for (Record& rec : in) {
      if (native_) {
        const NativeFilter::Result r = native_filter_.Eval(rec);
        if (r == NativeFilter::Result::kTrue) {
          out.Emit(std::move(rec));
          continue;
        }
        if (r == NativeFilter::Result::kFalse) continue;
      }
      if (subset_) {
        env_.PushRecordFields(rec);
      } else {
        env_.PushRecord(rec);
      }
      if (!env_.Call(fn_, &error)) {
        ONCEFLOW_RETURN_IF_ERROR(
            ctx_->errors->OnRecordError(rec, DescribeLuaError(error, code_, code_key_)));
        continue;
      }
      switch (kind_) {
        case LuaOpKind::kFilter: {
          bool keep = lua_toboolean(L, -1) != 0;
          lua_pop(L, 1);
          if (keep) out.Emit(std::move(rec));
          break;
        }
        case LuaOpKind::kMap: {
          Record result;
          bool ok = env_.ToRecord(-1, &rec, &result, &error);
          lua_pop(L, 1);
          if (!ok) {
            ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(
                rec, "map: the Lua code must return a table (a record): " + error));
            continue;
          }
          result.origin = rec.origin;
          out.Emit(std::move(result));
          break;
        }
        case LuaOpKind::kFlatMap: {
          Status st = EmitList(rec, out, &error);
          lua_pop(L, 1);
          if (!st.ok()) ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(rec, st.message()));
          break;
        }
      }
    }
    return Status::Ok();
  }

 private:
  // Emits the list on top of the stack (left there). A non-OK status carries the
  // data-error message; nothing is emitted then.
  Status EmitList(const Record& rec, Emitter& out, std::string* error) {
    lua_State* L = env_.state();
    int n = env_.ArrayLength(-1);
    if (n < 0) {
      return Status::DataError(std::string("flat_map: the Lua code must return a list of "
                                           "tables, got ") +
                               lua_typename(L, lua_type(L, -1)));
    }
    if (n == 0) {
      lua_pushnil(L);
      if (lua_next(L, -2) != 0) {
        lua_pop(L, 2);
        return Status::DataError(
            "flat_map: the Lua code must return a list of tables, got a table with "
            "non-list keys (wrap a single record in braces: return {{...}})");
      }
      return Status::Ok();
    }
    RecordBatch* batch = out.batch();
    size_t before = batch->size();
    int list = lua_gettop(L);
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, list, i);
      Record& o = batch->emplace_back();
      bool ok = env_.ToRecord(-1, &rec, &o, error);
      lua_pop(L, 1);
      if (!ok) {
        batch->resize(before);
        return Status::DataError("flat_map: item " + std::to_string(i) +
                                 " of the returned list: " + *error);
      }
      o.origin = rec.origin;
    }
    return Status::Ok();
  }

  const NodeSpec& spec_;
  LuaOpKind kind_;
  std::string option_;
  NodeContext* ctx_ = nullptr;
  const YNode* code_ = nullptr;
  const YNode* code_key_ = nullptr;
  LuaEnv env_;
  int fn_ = 0;
  bool subset_ = false;  // PushRecordFields instead of PushRecord (see Open)
  bool native_ = false;  // filter: native_filter_ decides first (see Open)
  NativeFilter native_filter_;
};

NodeTypeDef LuaOpDef(LuaOpKind kind) {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  switch (kind) {
    case LuaOpKind::kMap:
      d.type = "map";
      d.summary = "transform each record with inline Lua: one record in, one out";
      d.options = {RequiredOption(
          "lua", OptionType::kLua,
          "Lua function body of `e` (the record) returning a table, e.g. \"return {word = "
          "e.word:lower()}\"; a bare expression works too. Sandboxed: no os, io, require, "
          "load or math.random. Input fields keep their order, new ones follow sorted")};
      d.check = [](const NodeSpec& spec, Diagnostics& diags) {
        CheckLuaOption(spec, "lua", LuaCode::kBody, "e", diags);
      };
      break;
    case LuaOpKind::kFilter:
      d.type = "filter";
      d.summary = "keep the records for which a Lua expression is true";
      d.options = {RequiredOption(
          "where", OptionType::kLua,
          "Lua expression of `e` (the record), e.g. \"e.amount > 10\"; records for which it "
          "is neither false nor nil pass unchanged. A JSON null field equals `null`")};
      d.check = [](const NodeSpec& spec, Diagnostics& diags) {
        CheckLuaOption(spec, "where", LuaCode::kExpression, "e", diags);
      };
      break;
    case LuaOpKind::kFlatMap:
      d.type = "flat_map";
      d.summary = "turn each record into zero or more records with inline Lua";
      d.options = {RequiredOption(
          "lua", OptionType::kLua,
          "Lua function body of `e` (the record) returning a list of tables, e.g. \"local "
          "out = {} for w in e.line:gmatch('%S+') do out[#out+1] = {word = w} end return "
          "out\"; {} emits nothing")};
      d.check = [](const NodeSpec& spec, Diagnostics& diags) {
        CheckLuaOption(spec, "lua", LuaCode::kBody, "e", diags);
      };
      break;
  }
  d.make_operator = [kind](const NodeSpec& spec) {
    return std::make_unique<LuaOperator>(spec, kind);
  };
  return d;
}

}  // namespace

NodeTypeDef MapDef() { return LuaOpDef(LuaOpKind::kMap); }
NodeTypeDef FilterDef() { return LuaOpDef(LuaOpKind::kFilter); }
NodeTypeDef FlatMapDef() { return LuaOpDef(LuaOpKind::kFlatMap); }

}  // namespace onceflow::ops

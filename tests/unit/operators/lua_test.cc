// Lua: sandbox, conversions, map / filter / flat_map, and syntax errors at the right
// line of the pipeline file.
#include <doctest/doctest.h>

#include <chrono>
#include <random>

#include "operators/lua/lua_env.h"
#include "operators/lua/native_filter.h"
#include "test_util.h"

extern "C" {
#include <lua.h>
}

namespace onceflow::testing {

using ops::LuaCode;
using ops::LuaEnv;

namespace {

// Runs `body` (a function body of e) on `rec` and returns the result converted back, or
// "error: ..." on a Lua error.
std::string RunBody(LuaEnv& env, const std::string& body, const Record& rec) {
  int fn = 0;
  Status st = env.Compile(body, LuaCode::kBody, "e", &fn);
  if (!st.ok()) return "compile: " + st.message();
  env.PushRecord(rec);
  std::string error;
  if (!env.Call(fn, &error)) return "error: " + error;
  Record out;
  bool ok = env.ToRecord(-1, &rec, &out, &error);
  env.Pop(1);
  if (!ok) return "convert: " + error;
  return out.ToJson();
}

std::string MapYaml(const std::string& op_block) {
  return "pipeline: t\n"
         "nodes:\n"
         "  src:\n"
         "    source: generate\n"
         "    count: 1\n"
         "  op:\n"
         "    input: src\n" +
         op_block +
         "  out:\n"
         "    sink: discard\n"
         "    input: op\n";
}

Record Rec(std::initializer_list<std::pair<const char*, Value>> fields) {
  Record r;
  for (const auto& [k, v] : fields) r.Append(k, v);
  return r;
}

}  // namespace

TEST_CASE("lua sandbox: dangerous and nondeterministic functions are absent") {
  LuaEnv env;
  REQUIRE(env.Open("t").ok());
  Record r = Rec({{"s", Value::String("Hello")}});
  for (const char* name : {"os", "io", "require", "load", "loadstring", "dofile", "loadfile",
                           "package", "debug", "ffi", "jit", "collectgarbage", "setfenv"}) {
    CAPTURE(name);
    CHECK(RunBody(env, std::string("return {t = type(") + name + ")}", r) == "{\"t\":\"nil\"}");
  }
  CHECK(RunBody(env, "return {t = type(math.random), u = type(math.randomseed), "
                     "d = type(string.dump)}", r) ==
        "{\"d\":\"nil\",\"t\":\"nil\",\"u\":\"nil\"}");
  CHECK(RunBody(env, "return {x = os.time()}", r).find("error: ") == 0);
  // What users need works.
  CHECK(RunBody(env, "return {s = e.s:lower() .. string.rep('!', 2), n = #e.s, "
                     "f = math.floor(2.7), b = bit.band(6, 3), "
                     "j = table.concat({'a', 'b'}, '-'), u = e.s:upper():sub(1, 2)}", r) ==
        "{\"s\":\"hello!!\",\"b\":2,\"f\":2,\"j\":\"a-b\",\"n\":5,\"u\":\"HE\"}");
  CHECK(RunBody(env, "print('hi', 1, nil) return e", r) == "{\"s\":\"Hello\"}");
}

TEST_CASE("lua conversions: numbers, null, nested values, field order") {
  LuaEnv env;
  REQUIRE(env.Open("t").ok());
  Record r = Rec({{"b", Value::Int(3)},
                  {"a", Value::Double(2.5)},
                  {"n", Value::Null()},
                  {"ok", Value::Bool(true)},
                  {"list", Value::Json("[1,\"x\",{\"k\":null}]")},
                  {"empty", Value::Json("[]")},
                  {"obj", Value::Json("{\"z\":1,\"a\":[2.5]}")}});
  // Round trip through e: same fields, same order, same types; nested objects come back
  // with their keys sorted.
  CHECK(RunBody(env, "return e", r) ==
        "{\"b\":3,\"a\":2.5,\"n\":null,\"ok\":true,\"list\":[1,\"x\",{\"k\":null}],"
        "\"empty\":[],\"obj\":{\"a\":[2.5],\"z\":1}}");
  // New fields follow the input's in alphabetical order; removed ones disappear.
  CHECK(RunBody(env, "e.zz = 1; e.aa = 'x'; e.b = nil; return e", r) ==
        "{\"a\":2.5,\"n\":null,\"ok\":true,\"list\":[1,\"x\",{\"k\":null}],\"empty\":[],"
        "\"obj\":{\"a\":[2.5],\"z\":1},\"aa\":\"x\",\"zz\":1}");
  CHECK(RunBody(env, "return {x = e.b * 2, y = e.b / 2, z = e.n == null, w = {}, v = {1, 2}}", r) ==
        "{\"v\":[1,2],\"w\":{},\"x\":6,\"y\":1.5,\"z\":true}");
  CHECK(RunBody(env, "return {[1] = 'a'}", r).find("convert: ") == 0);
  CHECK(RunBody(env, "return {f = print}", r).find("convert: ") == 0);
  CHECK(RunBody(env, "local t = {} t.self = t return {t = t}", r).find("convert: ") == 0);
  // An expression works without `return`.
  CHECK(RunBody(env, "{x = e.b + 1}", r) == "{\"x\":4}");
}

TEST_CASE("map / filter / flat_map") {
  TempDir dir;
  auto run = [&](const std::string& block, RecordBatch in, Harness** hout = nullptr) {
    static std::vector<std::unique_ptr<Pipeline>> keep;
    static std::vector<std::unique_ptr<Harness>> keep_h;
    keep.push_back(LoadYaml(dir.path(), MapYaml(block)));
    Pipeline& p = *keep.back();
    REQUIRE_MESSAGE(p.ok, p.Rendered());
    keep_h.push_back(std::make_unique<Harness>(p, "op"));
    Harness& h = *keep_h.back();
    if (hout) *hout = &h;
    auto op = Def(NodeKind::kOperator, p.Node("op").type).make_operator(p.Node("op"));
    REQUIRE(op->Open(h.ctx).ok());
    RecordBatch out;
    Emitter em(&out);
    Status st = op->Process(0, in, em);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return Json(out);
  };
  auto w = [](const char* s, int64_t amount) {
    return Rec({{"word", Value::String(s)}, {"amount", Value::Int(amount)}});
  };
  CHECK(run("    op: map\n    lua: \"return {word = e.word:lower(), amount = e.amount}\"\n",
            {w("HeLLo", 1)}) == "{\"word\":\"hello\",\"amount\":1}\n");
  CHECK(run("    op: filter\n    where: \"e.amount > 10\"\n", {w("a", 5), w("b", 11), w("c", 20)}) ==
        "{\"word\":\"b\",\"amount\":11}\n{\"word\":\"c\",\"amount\":20}\n");
  CHECK(run("    op: filter\n    where: \"e.word == 'a' -- trailing comment\"\n",
            {w("a", 5), w("b", 11)}) == "{\"word\":\"a\",\"amount\":5}\n");
  CHECK(run("    op: flat_map\n    lua: |\n      local out = {}\n"
            "      for c in e.word:gmatch('.') do out[#out + 1] = {ch = c} end\n"
            "      return out\n",
            {w("ab", 1), w("", 2), w("c", 3)}) ==
        "{\"ch\":\"a\"}\n{\"ch\":\"b\"}\n{\"ch\":\"c\"}\n");

  Harness* h = nullptr;
  CHECK(run("    op: map\n    lua: \"return {x = e.missing.field}\"\n", {w("a", 1), w("b", 2)}, &h) == "");
  REQUIRE(h->errors.errors.size() == 2);
  CHECK(h->errors.errors[0].find("lua: attempt to index field 'missing'") == 0);
  CHECK(h->errors.errors[0].find("(line 9 of the pipeline file)") != std::string::npos);
  CHECK(h->errors.records[1].ToJson() == "{\"word\":\"b\",\"amount\":2}");

  CHECK(run("    op: map\n    lua: \"return 5\"\n", {w("a", 1)}, &h) == "");
  REQUIRE(h->errors.errors.size() == 1);
  CHECK(h->errors.errors[0].find("map: the Lua code must return a table") == 0);

  CHECK(run("    op: flat_map\n    lua: \"return {x = 1}\"\n", {w("a", 1)}, &h) == "");
  REQUIRE(h->errors.errors.size() == 1);
  CHECK(h->errors.errors[0].find("list of tables") != std::string::npos);

  CHECK(run("    op: flat_map\n    lua: \"return {{x = 1}, 5}\"\n", {w("a", 1)}, &h) == "");
  REQUIRE(h->errors.errors.size() == 1);  // all or nothing: {x = 1} was not emitted
  CHECK(h->errors.errors[0].find("item 2") != std::string::npos);
}

TEST_CASE("lua syntax errors are reported at the pipeline file's line") {
  TempDir dir;
  SUBCASE("one-line quoted scalar") {
    auto p = LoadYaml(dir.path(), MapYaml("    op: map\n    lua: \"return {x = = 1}\"\n"));
    CHECK_FALSE(p->ok);
    std::string out = p->Rendered();
    CHECK_MESSAGE(out.find("p.yaml:9:10: error:") != std::string::npos, out);
    CHECK(out.find("unexpected symbol") != std::string::npos);
  }
  SUBCASE("block literal: Lua line N is YAML line loc.line + N") {
    auto p = LoadYaml(dir.path(), MapYaml("    op: map\n"
                                          "    lua: |\n"
                                          "      local x = 1\n"
                                          "      return {x = = 1}\n"));
    CHECK_FALSE(p->ok);
    std::string out = p->Rendered();
    CHECK_MESSAGE(out.find("p.yaml:11:") != std::string::npos, out);
    CHECK(out.find("line 2 of the code") != std::string::npos);
  }
  SUBCASE("an unclosed block is reported on the code's last line, not past it") {
    auto p = LoadYaml(dir.path(), MapYaml("    op: flat_map\n"
                                          "    lua: |\n"
                                          "      for i = 1, 2 do\n"
                                          "        local y = i\n"));
    CHECK_FALSE(p->ok);
    CHECK_MESSAGE(p->Rendered().find("p.yaml:11:") != std::string::npos, p->Rendered());
  }
  SUBCASE("filter expression") {
    auto p = LoadYaml(dir.path(), MapYaml("    op: filter\n    where: e.amount >\n"));
    CHECK_FALSE(p->ok);
    CHECK_MESSAGE(p->Rendered().find("p.yaml:9:") != std::string::npos, p->Rendered());
  }
  SUBCASE("generate lua") {
    auto p = LoadYaml(dir.path(),
                      "pipeline: t\nnodes:\n  g:\n    source: generate\n    lua: |\n"
                      "      return {n = n\n  out:\n    sink: discard\n    input: g\n");
    CHECK_FALSE(p->ok);
    CHECK_MESSAGE(p->Rendered().find("p.yaml:6:") != std::string::npos, p->Rendered());
  }
  SUBCASE("valid code passes") {
    auto p = LoadYaml(dir.path(), MapYaml("    op: map\n    lua: |\n      local x = e.a\n"
                                          "      return {x = x}\n"));
    CHECK_MESSAGE(p->ok, p->Rendered());
  }
}

TEST_CASE("LuaLineInYaml maps lines of one-line and block scalars") {
  YNode one;
  one.kind = YNode::Kind::kScalar;
  one.scalar = "return {x = 1}";
  one.loc = {9, 10};
  CHECK(ops::LuaLineInYaml(one, nullptr, 1).line == 9);
  CHECK(ops::LuaLineInYaml(one, nullptr, 1).column == 10);
  YNode block = one;
  block.scalar = "local x = 1\nreturn {x = x}\n";
  YNode key;
  key.loc = {9, 5};
  CHECK(ops::LuaLineInYaml(block, &key, 1).line == 10);
  CHECK(ops::LuaLineInYaml(block, &key, 2).line == 11);
  CHECK(ops::LuaLineInYaml(block, &key, 2).column == 7);
  YNode cli = one;
  cli.loc = {0, 0};
  CHECK(ops::LuaLineInYaml(cli, nullptr, 1).line == 0);
}

// Not a timing assertion: prints the filter rate so regressions are visible in the log.
TEST_CASE("filter throughput (informational)") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), MapYaml("    op: filter\n    where: \"e.amount > 10\"\n"));
  REQUIRE(p->ok);
  Harness h(*p, "op");
  auto op = Def(NodeKind::kOperator, "filter").make_operator(p->Node("op"));
  REQUIRE(op->Open(h.ctx).ok());
  const int kBatches = 200, kBatch = 1024;
  RecordBatch proto;
  for (int i = 0; i < kBatch; ++i) {
    proto.push_back(Rec({{"word", Value::String("w" + std::to_string(i % 50))},
                         {"amount", Value::Int(i % 20)}}));
  }
  std::vector<RecordBatch> batches(kBatches, proto);
  size_t kept = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int b = 0; b < kBatches; ++b) {
    RecordBatch out;
    out.reserve(kBatch);
    Emitter em(&out);
    REQUIRE(op->Process(0, batches[b], em).ok());
    kept += out.size();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("filter: " << static_cast<int>(kBatches * kBatch / s) << " records/s");
  size_t per_batch = 0;
  for (const auto& r : proto) per_batch += r.Get("amount")->as_int() > 10 ? 1 : 0;
  CHECK(kept == per_batch * kBatches);
}

TEST_CASE("RecordFieldsUsed: only constant field accesses of the parameter qualify") {
  std::vector<std::string> names;
  CHECK(ops::RecordFieldsUsed("e.status == \"paid\" and e.amount > 10", "e", &names));
  CHECK(names == std::vector<std::string>{"status", "amount"});
  CHECK(ops::RecordFieldsUsed("e [ 'a b' ] ~= e.x and e.x -- e\n", "e", &names));
  CHECK(names == std::vector<std::string>{"a b", "x"});
  CHECK(ops::RecordFieldsUsed("{word = e.word:lower(), n = x.e, s = [[e]] .. \"e\"}", "e", &names));
  CHECK(names == std::vector<std::string>{"word"});
  CHECK(ops::RecordFieldsUsed("1", "e", &names));
  CHECK(names.empty());
  // Anything else could see the whole table (or keep it): not eligible.
  for (const char* code : {"e", "#e > 0", "pairs(e)", "f(e)", "e[k]", "e:m()", "'x' .. e",
                           "e['a\\'b']", "(function() return e.x end)()", "local e = 1", "e .. 'x'",
                           "--[[ unterminated", "'unterminated", "e.", "e[\"a\""}) {
    CHECK_MESSAGE(!ops::RecordFieldsUsed(code, "e", &names), code);
  }
}

TEST_CASE("filter with a field subset behaves like with the whole record") {
  LuaEnv env;
  REQUIRE(env.Open("t").ok());
  int fn = 0;
  const std::string code = "e.s == 'a' and (e.n or 0) > 1 and e.z == null";
  REQUIRE(env.Compile(code, LuaCode::kExpression, "e", &fn).ok());
  std::vector<std::string> names;
  REQUIRE(ops::RecordFieldsUsed(code, "e", &names));
  env.SetRecordFields(names);
  std::string error;
  auto run = [&](const Record& r) {
    env.PushRecordFields(r);
    REQUIRE(env.Call(fn, &error));
    bool keep = lua_toboolean(env.state(), -1) != 0;
    env.Pop(1);
    return keep;
  };
  // The reused table must not leak a field of one record into the next.
  CHECK(run(Rec({{"s", Value::String("a")}, {"n", Value::Int(2)}, {"z", Value::Null()}})));
  CHECK(!run(Rec({{"s", Value::String("a")}})));
  CHECK(!run(Rec({{"s", Value::String("a")}, {"n", Value::Int(5)}, {"z", Value::Int(1)}})));
  CHECK(run(Rec({{"n", Value::Double(1.5)}, {"s", Value::String("a")}, {"z", Value::Null()}})));
  CHECK(!run(Rec({{"n", Value::Int(5)}, {"z", Value::Null()}})));
}

TEST_CASE("native filter answers exactly as Lua, or not at all") {
  // Differential: every expression the native filter compiles is evaluated on records
  // whose fields are missing, null, booleans, integers (also beyond 2^53), doubles,
  // strings, numeric strings and nested JSON; wherever it answers, Lua must succeed with
  // the same truth value. Where Lua errors (ordering a string), it must not answer.
  const std::vector<std::string> compiled = {
      "e.status == \"paid\" and e.amount > 10",
      "e.a == 1",
      "e.a ~= 1",
      "e.a == 'x' or e.b >= 2.5",
      "not (e.a == nil) and e.a < -3",
      "e.a == nil",
      "e.a ~= nil",
      "e.a == true or e.a == false",
      "10 < e.a",
      "-1e3 >= e.b or 'x' == e.a",
      "e['a'] <= 0 and not not (e.b > .5)",
      "(e.a == 1 or e.b == 2) and (e.a ~= 3)",
      "e.a == 9007199254740993",
      "e.a > 1 and e.b == 'y' or e.a < 0",
  };
  for (const std::string& code : compiled) {
    ops::NativeFilter nf;
    CHECK_MESSAGE(nf.Compile(code, "e"), code);
  }
  for (const char* code : {"e.a", "not e.a == 1", "e.a == e.b", "e.a + 1 > 2", "e.a > 'x'",
                           "e.a == 1 -- comment", "f(e.a)", "e.a == null", "e.a == 0x10",
                           "e.a == 1 == true", "e.a == \"a\\\"b\"", "E.a == 1", "e.a ..'' == 'x'",
                           "#e.a > 1", "e.a == [[x]]", "e.a >"}) {
    ops::NativeFilter nf;
    CHECK_MESSAGE(!nf.Compile(code, "e"), code);
  }

  const std::vector<Value> values = {
      Value::Null(),          Value::Bool(true),       Value::Bool(false),
      Value::Int(1),          Value::Int(-5),          Value::Int(11),
      Value::Int(0),          Value::Int(9007199254740993LL), Value::Double(2.5),
      Value::Double(0.5),     Value::Double(-1000.0),  Value::String("paid"),
      Value::String("x"),     Value::String("y"),      Value::String("1"),
      Value::Json("[1,2]"),   Value::Json("{\"k\":1}")};
  std::mt19937 rng(7);
  LuaEnv env;
  REQUIRE(env.Open("t").ok());
  int answered = 0, unknown = 0;
  for (const std::string& code : compiled) {
    ops::NativeFilter nf;
    REQUIRE(nf.Compile(code, "e"));
    int fn = 0;
    REQUIRE(env.Compile(code, LuaCode::kExpression, "e", &fn).ok());
    for (int n = 0; n < 400; ++n) {
      Record r;
      for (const char* name : {"a", "b", "status", "amount"}) {
        if (rng() % 4 != 0) r.Append(name, values[rng() % values.size()]);
      }
      const ops::NativeFilter::Result got = nf.Eval(r);
      env.PushRecord(r);
      std::string error;
      const bool ok = env.Call(fn, &error);
      bool keep = false;
      if (ok) {
        keep = lua_toboolean(env.state(), -1) != 0;
        env.Pop(1);
      }
      if (got == ops::NativeFilter::Result::kUnknown) {
        ++unknown;
        continue;
      }
      ++answered;
      REQUIRE_MESSAGE(ok, code << " on " << r.ToJson() << ": Lua failed: " << error);
      CHECK_MESSAGE(keep == (got == ops::NativeFilter::Result::kTrue), code << " on " << r.ToJson());
    }
  }
  CHECK(answered > 3000);  // the native path does decide most records
  CHECK(unknown > 0);      // and leaves the erroring ones to Lua
}

}  // namespace onceflow::testing

// Tests of ${VAR} interpolation and --set on trees.
#include "runtime/spec/overrides.h"

#include <map>

#include "doctest/doctest.h"

namespace onceflow {
namespace {

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string Expand(const std::string& text, const EnvLookup& env, bool* ok = nullptr) {
  std::string out, error;
  bool r = Interpolate(text, env, &out, &error);
  if (ok) *ok = r;
  return r ? out : error;
}

TEST_CASE("interpolation forms") {
  EnvLookup env = FakeEnv({{"A", "alpha"}, {"EMPTY", ""}, {"N", "4"}});
  CHECK(Expand("${A}", env) == "alpha");
  CHECK(Expand("x-${A}-y", env) == "x-alpha-y");
  CHECK(Expand("${A}${N}", env) == "alpha4");
  CHECK(Expand("${B:-dflt}", env) == "dflt");
  CHECK(Expand("${A:-dflt}", env) == "alpha");
  CHECK(Expand("${EMPTY:-dflt}", env) == "dflt");  // as in the shell
  CHECK(Expand("${EMPTY}", env) == "");
  CHECK(Expand("${B:-}", env) == "");
  CHECK(Expand("$${A}", env) == "${A}");  // escape
  CHECK(Expand("cost $5 and $A", env) == "cost $5 and $A");
  CHECK(Expand("${B:-a:-b}", env) == "a:-b");
}

TEST_CASE("interpolation errors") {
  EnvLookup env = FakeEnv({});
  bool ok = true;
  CHECK(Expand("${MISSING}", env, &ok) ==
        "environment variable 'MISSING' is not set (write ${MISSING:-default} to give a "
        "default)");
  CHECK_FALSE(ok);
  Expand("${1X}", env, &ok);
  CHECK_FALSE(ok);
  Expand("${}", env, &ok);
  CHECK_FALSE(ok);
  Expand("${A", env, &ok);
  CHECK_FALSE(ok);
}

TEST_CASE("InterpolateText: before parsing, in flow maps too; positions map back") {
  std::string text =
      "a: ${N}\nb: '${N}'\n${K}: x\nc: ${NONE:-}\nd: \"${NONE:-}\"\ne: {p: ${LONG}, q: '${MISSING}'}\n"
      "# ${IN_COMMENT} is left alone\nf: $${N} # ${ALSO_COMMENT}\n";
  Diagnostics d("t.yaml", text);
  std::string out;
  PositionMap map;
  InterpolateText(text, FakeEnv({{"N", "4"}, {"K", "key"}, {"LONG", "a-much-longer-value"}}), &out,
                  &map, &d);
  REQUIRE(d.error_count() == 1);  // ${MISSING}; comments are not interpolated
  CHECK(d.all()[0].loc.line == 6);
  CHECK(d.all()[0].loc.column == 21);
  CHECK(d.all()[0].length == 10);
  YNode root;
  Diagnostics pd("t.yaml", out);
  REQUIRE(ParseYaml(out, &root, &pd));
  map.Apply(&root);
  CHECK(root.Find("a")->scalar == "4");
  CHECK_FALSE(root.Find("a")->quoted);
  CHECK(root.Find("b")->scalar == "4");
  CHECK(root.Find("b")->quoted);
  CHECK(root.Find("key")->scalar == "x");
  CHECK(root.Find("c")->is_null());
  CHECK(root.Find("d")->is_scalar());
  CHECK(root.Find("d")->scalar == "");
  CHECK(root.Find("f")->scalar == "${N}");
  const YNode* e = root.Find("e");
  REQUIRE(e != nullptr);
  CHECK(e->Find("p")->scalar == "a-much-longer-value");
  CHECK(e->Find("p")->loc.column == 8);    // the `${` of ${LONG}
  CHECK(e->Find("p")->length == 7);        // underlines ${LONG} as written
  CHECK(e->FindKey("q")->loc.column == 17);  // after the longer value, back in file columns
  CHECK(root.FindKey("key")->loc.column == 1);
}

TEST_CASE("InterpolateText refuses values with line breaks") {
  std::string text = "a: ${NL}\n";
  Diagnostics d("t.yaml", text);
  std::string out;
  PositionMap map;
  InterpolateText(text, FakeEnv({{"NL", "x\ny"}}), &out, &map, &d);
  REQUIRE(d.error_count() == 1);
  CHECK(d.all()[0].message.find("line break") != std::string::npos);
  CHECK(out == text);
}

YNode Tree(const std::string& text) {
  Diagnostics d("t.yaml", text);
  YNode root;
  ParseYaml(text, &root, &d);
  return root;
}

TEST_CASE("--set replaces, adds keys and creates maps") {
  YNode root = Tree("nodes:\n  c:\n    parallelism: 1\ncheckpoint:\n");
  Diagnostics d("t.yaml", "");
  ApplySet("nodes.c.parallelism=4", &root, &d);
  ApplySet("nodes.c.key='4'", &root, &d);
  ApplySet("nodes.c.list=[a, b]", &root, &d);
  ApplySet("checkpoint.interval=2s", &root, &d);
  ApplySet("recovery.max_recoveries=3", &root, &d);
  ApplySet("nodes.c.empty=", &root, &d);
  CHECK_FALSE(d.has_errors());
  const YNode* c = root.Find("nodes")->Find("c");
  const YNode* p = c->Find("parallelism");
  CHECK(p->scalar == "4");
  CHECK_FALSE(p->quoted);
  CHECK(p->from_command_line);
  CHECK(p->loc.line == 0);
  CHECK(c->Find("key")->quoted);
  CHECK(c->Find("list")->items.size() == 2);
  CHECK(c->Find("list")->items[1].from_command_line);
  CHECK(c->Find("empty")->is_null());
  CHECK(root.Find("checkpoint")->Find("interval")->scalar == "2s");
  CHECK(root.Find("recovery")->Find("max_recoveries")->scalar == "3");
  CHECK(root.FindKey("recovery")->from_command_line);
}

TEST_CASE("bad --set") {
  YNode root = Tree("nodes:\n  c:\n    path: x\n");
  Diagnostics d("t.yaml", "");
  ApplySet("nodes.c.path", &root, &d);
  ApplySet("nodes.c.path.x=1", &root, &d);
  ApplySet("nodes..x=1", &root, &d);
  ApplySet("nodes.c.x=[a", &root, &d);
  REQUIRE(d.error_count() == 4);
  CHECK(d.all()[0].message ==
        "--set 'nodes.c.path': expected PATH=VALUE, e.g. nodes.out.path=out.jsonl");
  CHECK(d.all()[1].message == "--set 'nodes.c.path.x=1': 'nodes.c.path' is a string, not a map");
  CHECK(d.all()[2].message ==
        "--set 'nodes..x=1': bad PATH 'nodes..x' (dot-separated keys, e.g. nodes.out.path)");
  CHECK(d.all()[3].message.rfind("--set 'nodes.c.x=[a': the value is not valid YAML: ", 0) == 0);
  for (const Diagnostic& diag : d.all()) CHECK(diag.loc.line == 0);
}

}  // namespace
}  // namespace onceflow

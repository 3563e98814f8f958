// Tests of the YAML reader: positions, quoting, nulls, anchors, duplicate keys, syntax
// errors and multiple documents.
#include "runtime/spec/yaml_tree.h"

#include "doctest/doctest.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow {
namespace {

YNode Parse(const std::string& text, Diagnostics* diags) {
  diags->Reset("t.yaml", text);
  YNode root;
  ParseYaml(text, &root, diags);
  return root;
}

TEST_CASE("positions are 1-based and lengths cover the token") {
  Diagnostics d;
  YNode root = Parse("pipeline: wc\nnodes:\n  a:\n    path: \"x y\"\n    s: 'it''s'\n", &d);
  REQUIRE_FALSE(d.has_errors());
  REQUIRE(root.is_map());
  const YNode* name = root.Find("pipeline");
  REQUIRE(name);
  CHECK(name->loc.line == 1);
  CHECK(name->loc.column == 11);
  CHECK(name->length == 2);
  CHECK_FALSE(name->quoted);
  const YNode* key = root.FindKey("nodes");
  REQUIRE(key);
  CHECK(key->loc.line == 2);
  CHECK(key->loc.column == 1);
  CHECK(key->length == 5);
  const YNode* a = root.Find("nodes")->Find("a");
  const YNode* path = a->Find("path");
  CHECK(path->scalar == "x y");
  CHECK(path->quoted);
  CHECK(path->loc.line == 4);
  CHECK(path->loc.column == 11);
  CHECK(path->length == 5);  // "x y" with its quotes
  const YNode* s = a->Find("s");
  CHECK(s->scalar == "it's");
  CHECK(s->length == 7);
}

TEST_CASE("key order is kept") {
  Diagnostics d;
  YNode root = Parse("z: 1\na: 2\nm: 3\n", &d);
  REQUIRE(root.entries.size() == 3);
  CHECK(root.entries[0].first.scalar == "z");
  CHECK(root.entries[1].first.scalar == "a");
  CHECK(root.entries[2].first.scalar == "m");
}

TEST_CASE("nulls: empty, ~, null; quoted null is a string") {
  Diagnostics d;
  YNode root = Parse("a:\nb: ~\nc: null\nd: NULL\ne: 'null'\nf: [~, x]\n", &d);
  REQUIRE_FALSE(d.has_errors());
  CHECK(root.Find("a")->is_null());
  // An empty value points at its key (yaml-cpp reports it at the next token).
  CHECK(root.Find("a")->loc.line == 1);
  CHECK(root.Find("a")->loc.column == 1);
  CHECK(root.Find("b")->is_null());
  CHECK(root.Find("b")->loc.line == 2);
  CHECK(root.Find("c")->is_null());
  CHECK(root.Find("d")->is_null());
  CHECK(root.Find("e")->is_scalar());
  CHECK(root.Find("e")->scalar == "null");
  CHECK(root.Find("f")->items[0].is_null());
  CHECK(root.Find("f")->items[1].scalar == "x");
}

TEST_CASE("block scalars are quoted strings") {
  Diagnostics d;
  YNode root = Parse("lua: |\n  return 1\n", &d);
  const YNode* lua = root.Find("lua");
  CHECK(lua->quoted);
  CHECK(lua->scalar == "return 1\n");
  CHECK(lua->loc.line == 1);
  CHECK(lua->loc.column == 6);
}

TEST_CASE("anchors and aliases copy the subtree") {
  Diagnostics d;
  YNode root = Parse("base: &b\n  x: 1\n  y: [a, b]\ncopy: *b\nname: &n wc\nagain: *n\n", &d);
  REQUIRE_FALSE(d.has_errors());
  const YNode* copy = root.Find("copy");
  REQUIRE(copy->is_map());
  CHECK(copy->Find("x")->scalar == "1");
  CHECK(copy->Find("y")->items.size() == 2);
  // The copy keeps the positions of the original.
  CHECK(copy->Find("x")->loc.line == 2);
  CHECK(root.Find("again")->scalar == "wc");
  // The anchor's property is skipped: the position is that of the value.
  CHECK(root.Find("name")->loc.column == 10);
}

TEST_CASE("duplicate keys are reported at the second occurrence") {
  Diagnostics d;
  YNode root = Parse("a: 1\nb:\n  x: 1\n  x: 2\na: 3\n", &d);
  CHECK(d.error_count() == 2);
  CHECK(d.RenderToString() ==
        "t.yaml:4:3: error: duplicate key 'x' (first at line 3)\n"
        "    4 |   x: 2\n"
        "      |   ^\n"
        "t.yaml:5:1: error: duplicate key 'a' (first at line 1)\n"
        "    5 | a: 3\n"
        "      | ^\n");
  // Find returns the first.
  CHECK(root.Find("a")->scalar == "1");
}

TEST_CASE("syntax errors become diagnostics at the right place") {
  Diagnostics d;
  YNode root = Parse("a: 1\nb: c: d\n", &d);
  CHECK(root.is_null());
  REQUIRE(d.error_count() == 1);
  CHECK(d.all()[0].loc.line == 2);
  CHECK(d.all()[0].loc.column == 5);
  CHECK(d.all()[0].message == "invalid YAML: illegal map value");
}

TEST_CASE("bad indentation is a syntax error") {
  Diagnostics d;
  Parse("nodes:\n  a:\n    source: file\n   bad: x\n", &d);
  REQUIRE(d.error_count() == 1);
  CHECK(d.all()[0].loc.line == 4);
}

TEST_CASE("an unknown alias is a syntax error") {
  Diagnostics d;
  Parse("a: *nope\n", &d);
  REQUIRE(d.error_count() == 1);
  CHECK(d.all()[0].message == "invalid YAML: the referenced anchor is not defined");
}

TEST_CASE("a second document is an error") {
  Diagnostics d;
  YNode root = Parse("a: 1\n---\nb: 2\n", &d);
  REQUIRE(d.error_count() == 1);
  CHECK(d.all()[0].loc.line == 2);
  CHECK(root.Find("a"));
}

TEST_CASE("non-scalar keys are errors") {
  Diagnostics d;
  Parse("? [a, b]\n: 1\n", &d);
  CHECK(d.error_count() == 1);
}

TEST_CASE("an empty text is a null document") {
  Diagnostics d;
  YNode root = Parse("", &d);
  CHECK_FALSE(d.has_errors());
  CHECK(root.is_null());
  root = Parse("# only a comment\n", &d);
  CHECK(root.is_null());
}

TEST_CASE("KindName and lookups on non-maps") {
  YNode n;
  CHECK(n.KindName() == "null");
  n.kind = YNode::Kind::kSequence;
  CHECK(n.KindName() == "a list");
  CHECK(n.Find("x") == nullptr);
  CHECK(n.FindKey("x") == nullptr);
  n.kind = YNode::Kind::kMap;
  CHECK(n.KindName() == "a map");
  n.kind = YNode::Kind::kScalar;
  CHECK(n.KindName() == "a string");
}

}  // namespace
}  // namespace onceflow

// The validator against the real built-in node types (operators/builtins.h): the SPEC's
// example pipeline is valid, and the built-ins' option tables are consistent with the
// validator (every default type-checks, so it is filled in).
#include "operators/builtins.h"

#include <filesystem>

#include "doctest/doctest.h"
#include "runtime/spec/validate.h"
#include "tests/unit/spec/test_registry.h"

namespace onceflow {
namespace {

const Registry& Builtins() {
  static const Registry* registry = [] {
    auto* r = new Registry();
    RegisterBuiltins(r);
    return r;
  }();
  return *registry;
}

TEST_CASE("the SPEC §3 wordcount example validates against the built-ins") {
  const char* yaml =
      "pipeline: wordcount            # name: [a-z0-9_-]+\n"
      "description: Count the words of a text file.\n"
      "semantics: effectively-once\n"
      "mode: snapshot\n"
      "state: wordcount.state.db\n"
      "checkpoint:\n"
      "  interval: 1s\n"
      "  retain: 3\n"
      "nodes:\n"
      "  lines:\n"
      "    source: file\n"
      "    path: data/words.txt\n"
      "    format: lines\n"
      "  words:\n"
      "    op: split\n"
      "    input: lines\n"
      "    field: line\n"
      "    into: word\n"
      "  counts:\n"
      "    op: count\n"
      "    input: words\n"
      "    key: word\n"
      "    parallelism: 2\n"
      "    emit: final\n"
      "  out:\n"
      "    sink: file\n"
      "    input: counts\n"
      "    path: out/counts.jsonl\n"
      "    format: jsonl\n";
  std::string dir;
  testing::LoadResult r = testing::LoadString(yaml, {}, &dir, &Builtins());
  CHECK(r.rendered == "");
  CHECK(r.ok);
  REQUIRE(r.spec.nodes.size() == 4);
  CHECK(r.spec.nodes[2].key == std::vector<std::string>{"word"});
  CHECK(r.spec.nodes[2].emit == EmitMode::kFinal);
  CHECK(r.spec.state_path == dir + "/wordcount.state.db");
  CHECK(r.spec.nodes[3].options.GetPath("path") == dir + "/out/counts.jsonl");
  std::filesystem::remove_all(dir);
}

TEST_CASE("every built-in default passes its own option type") {
  for (const NodeTypeDef* def : Builtins().All()) {
    for (const OptionDef& o : def->options) {
      if (o.default_value.empty()) continue;
      Diagnostics diags("default", o.default_value);
      YNode value;
      CHECK_MESSAGE(ParseYaml(o.default_value, &value, &diags), def->type, ".", o.name);
      NodeOptions::Entry entry;
      CHECK_MESSAGE(CheckOptionValue(o, value, o.name, "", &entry, &diags), def->type, ".", o.name,
                    ": ", diags.RenderToString());
    }
  }
}

}  // namespace
}  // namespace onceflow

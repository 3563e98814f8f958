// Fake node types and the load-from-string helper for the spec tests.
#include "tests/unit/spec/test_registry.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace onceflow::testing {
namespace {

OptionDef Opt(std::string name, OptionType type, bool required = false,
              std::string default_value = "", std::vector<std::string> choices = {}) {
  OptionDef o;
  o.name = std::move(name);
  o.type = type;
  o.required = required;
  o.default_value = std::move(default_value);
  o.choices = std::move(choices);
  return o;
}

Registry MakeRegistry() {
  Registry r;
  NodeTypeDef d;

  d = NodeTypeDef();
  d.kind = NodeKind::kSource;
  d.type = "file";
  d.max_parallelism = 1;
  d.options = {Opt("path", OptionType::kPath, true),
               Opt("format", OptionType::kEnum, false, "lines", {"lines", "jsonl", "csv"}),
               Opt("follow", OptionType::kBool, false, "false")};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kSource;
  d.type = "generate";
  d.options = {Opt("count", OptionType::kInt), Opt("rate", OptionType::kNumber),
               Opt("lua", OptionType::kLua)};
  d.options[0].min = 0;
  d.options[1].min = 0;
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kOperator;
  d.type = "split";
  d.options = {Opt("field", OptionType::kString, true), Opt("into", OptionType::kString, true),
               Opt("lower", OptionType::kBool, false, "false")};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kOperator;
  d.type = "map";
  d.options = {Opt("lua", OptionType::kLua, true)};
  d.check = [](const NodeSpec& n, Diagnostics& diags) {
    const YNode* lua = n.options.Raw("lua");
    if (lua && lua->scalar.find("@@") != std::string::npos) {
      diags.Error(*lua, "node '" + n.id + "': Lua does not compile: unexpected symbol near '@'");
    }
  };
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kOperator;
  d.type = "count";
  d.keyed = true;
  d.stateful = true;
  d.options = {Opt("key", OptionType::kFieldList, true)};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kOperator;
  d.type = "join";
  d.keyed = true;
  d.stateful = true;
  d.min_inputs = 2;
  d.max_inputs = 2;
  d.options = {Opt("key", OptionType::kFieldList, true),
               Opt("within", OptionType::kDuration, false, "1s")};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kSink;
  d.type = "file";
  d.max_parallelism = 1;
  d.options = {Opt("path", OptionType::kPath, true),
               Opt("format", OptionType::kEnum, false, "jsonl", {"jsonl", "csv", "lines"})};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kSink;
  d.type = "stdout";
  d.options = {Opt("format", OptionType::kEnum, false, "jsonl", {"jsonl", "csv", "lines"})};
  r.Add(d);

  d = NodeTypeDef();
  d.kind = NodeKind::kSink;
  d.type = "discard";
  r.Add(d);
  return r;
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s->find(from, pos)) != std::string::npos; pos += to.size()) {
    s->replace(pos, from.size(), to);
  }
}

}  // namespace

const Registry& FakeRegistry() {
  static const Registry* registry = new Registry(MakeRegistry());
  return *registry;
}

LoadResult LoadString(const std::string& yaml, const LoadOptions& opts, std::string* dir_out,
                      const Registry* registry) {
  char tmpl[] = "/tmp/onceflow_spec_test_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string path = dir + "/p.yaml";
  std::ofstream(path) << yaml;
  LoadResult r;
  r.ok = LoadPipeline(path, opts, registry ? *registry : FakeRegistry(), &r.spec, &r.diags);
  r.rendered = r.diags.RenderToString();
  ReplaceAll(&r.rendered, path, "p.yaml");
  if (dir_out) {
    *dir_out = dir;
  } else {
    std::filesystem::remove_all(dir);
  }
  return r;
}

}  // namespace onceflow::testing

// Tests of the registry and the common option tables.
#include "runtime/core/registry.h"

#include "doctest/doctest.h"

namespace onceflow {
namespace {

NodeTypeDef Def(NodeKind kind, const std::string& type, const std::string& summary = "") {
  NodeTypeDef d;
  d.kind = kind;
  d.type = type;
  d.summary = summary;
  return d;
}

TEST_CASE("Add, Find, All, TypeNames") {
  Registry r;
  r.Add(Def(NodeKind::kSink, "file"));
  r.Add(Def(NodeKind::kSource, "generate"));
  r.Add(Def(NodeKind::kSource, "file"));
  r.Add(Def(NodeKind::kOperator, "count"));
  CHECK(r.Find(NodeKind::kSource, "file") != nullptr);
  CHECK(r.Find(NodeKind::kSource, "file") != r.Find(NodeKind::kSink, "file"));
  CHECK(r.Find(NodeKind::kOperator, "file") == nullptr);
  auto all = r.All();
  REQUIRE(all.size() == 4);
  CHECK(all[0]->type == "file");
  CHECK(all[0]->kind == NodeKind::kSource);
  CHECK(all[1]->type == "generate");
  CHECK(all[2]->type == "count");
  CHECK(all[3]->kind == NodeKind::kSink);
  CHECK(r.TypeNames(NodeKind::kSource) == std::vector<std::string>{"file", "generate"});
  // A later definition replaces the earlier one.
  r.Add(Def(NodeKind::kOperator, "count", "v2"));
  CHECK(r.All().size() == 4);
  CHECK(r.Find(NodeKind::kOperator, "count")->summary == "v2");
}

TEST_CASE("CommonOptions") {
  auto names = [](const std::vector<OptionDef>& v) {
    std::vector<std::string> n;
    for (const auto& o : v) n.push_back(o.name);
    return n;
  };
  CHECK(names(CommonOptions(NodeKind::kSource, false)) ==
        std::vector<std::string>{"parallelism", "on_error", "dead_letter"});
  CHECK(names(CommonOptions(NodeKind::kOperator, false)) ==
        std::vector<std::string>{"input", "parallelism", "on_error", "dead_letter"});
  CHECK(names(CommonOptions(NodeKind::kOperator, true)) ==
        std::vector<std::string>{"input", "parallelism", "on_error", "dead_letter", "emit"});
  const OptionDef& p = CommonOptions(NodeKind::kSink, false)[1];
  CHECK(p.type == OptionType::kInt);
  CHECK(p.min == 1);
  CHECK(p.max == 1024);
  CHECK(p.default_value == "1");
  CHECK(std::string(OptionTypeName(OptionType::kInt)) == "integer");
  CHECK(std::string(OptionTypeName(OptionType::kFieldList)) == "field list");
}

}  // namespace
}  // namespace onceflow

// What `onceflow test` reports for a sink (DiffExpected) and how it reads its test files
// (LoadTestFile, YamlToJson): cli/sink_diff.h, cli/test_file.h.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli/sink_diff.h"
#include "cli/test_file.h"
#include "test_util.h"

namespace onceflow::cli {

namespace {

using nlohmann::json;

using testing::R;

// A test file p.test.yaml in a temporary folder.
struct TempTestFile {
  explicit TempTestFile(const std::string& text)
      : dir(tmp.path), path(tmp.File("p.test.yaml", text)) {}
  testing::TempDir tmp;
  std::string dir, path;
};

}  // namespace

TEST_CASE("expect: equal multisets pass whatever the order, field order and number spelling") {
  const ExpectDiff d = DiffExpected(R({R"({"w":"a","n":2})", R"({"w":"b","n":1.0})"}),
                                    R({R"({"n":1,"w":"b"})", R"({"w":"a","n":2.0})"}), {}, false);
  CHECK(d.ok());
  CHECK(d.expected_count == 2);
  CHECK(d.written_count == 2);
}

TEST_CASE("expect: missing and unexpected records, with multiplicity") {
  const ExpectDiff d = DiffExpected(R({R"({"w":"a"})", R"({"w":"a"})", R"({"w":"b"})"}),
                                    R({R"({"w":"a"})", R"({"w":"c"})", R"({"w":"c"})"}), {}, false);
  CHECK_FALSE(d.ok());
  REQUIRE(d.missing.size() == 2);
  CHECK(d.missing[0] == json::parse(R"({"w":"a"})"));
  CHECK(d.missing[1] == json::parse(R"({"w":"b"})"));
  REQUIRE(d.unexpected.size() == 2);
  CHECK(d.unexpected[0] == json::parse(R"({"w":"c"})"));
  CHECK(d.changed.empty());
}

TEST_CASE("expect: with key fields, a missing and an unexpected record of one key are changed") {
  const Records want = R({R"({"w":"a","n":3})", R"({"w":"b","n":1})", R"({"w":"e","n":1})"});
  const Records got = R({R"({"w":"a","n":2})", R"({"w":"b","n":1})", R"({"w":"d","n":1})"});
  const ExpectDiff d = DiffExpected(want, got, {"w"}, false);
  REQUIRE(d.changed.size() == 1);
  CHECK(d.changed[0].first == json::parse(R"({"w":"a","n":3})"));
  CHECK(d.changed[0].second == json::parse(R"({"w":"a","n":2})"));
  REQUIRE(d.missing.size() == 1);
  CHECK(d.missing[0]["w"] == "e");
  REQUIRE(d.unexpected.size() == 1);
  CHECK(d.unexpected[0]["w"] == "d");

  // Without key fields nothing is paired.
  const ExpectDiff plain = DiffExpected(want, got, {}, false);
  CHECK(plain.changed.empty());
  CHECK(plain.missing.size() == 2);
  CHECK(plain.unexpected.size() == 2);
}

TEST_CASE("expect: composite keys pair only records equal on every key field") {
  const ExpectDiff d = DiffExpected(R({R"({"u":"x","k":"click","n":2})"}),
                                    R({R"({"u":"x","k":"seen","n":2})"}), {"u", "k"}, false);
  CHECK(d.changed.empty());
  CHECK(d.missing.size() == 1);
  CHECK(d.unexpected.size() == 1);
  // A record lacking a key field is never paired.
  const ExpectDiff lacking = DiffExpected(R({R"({"n":2})"}), R({R"({"n":3})"}), {"u"}, false);
  CHECK(lacking.changed.empty());
  CHECK(lacking.missing.size() == 1);
}

TEST_CASE("expect: ordered reports the first position out of order, unordered does not") {
  const Records want = R({R"({"i":1})", R"({"i":2})", R"({"i":3})"});
  const Records got = R({R"({"i":1})", R"({"i":3})", R"({"i":2})"});
  CHECK(DiffExpected(want, got, {}, false).ok());
  const ExpectDiff d = DiffExpected(want, got, {}, true);
  CHECK_FALSE(d.ok());
  CHECK(d.order_differs_at == 1);
  CHECK(d.missing.empty());
  CHECK(DiffExpected(want, want, {}, true).ok());
}

TEST_CASE("expect: doubles compare to 6 decimals, also next to an integer") {
  CHECK(DiffExpected(R({R"({"s":2939.0})"}), R({R"({"s":2939.000000000001})"}), {}, false).ok());
  CHECK(DiffExpected(R({R"({"s":2939})"}), R({R"({"s":2938.9999999999995})"}), {}, false).ok());
  CHECK(DiffExpected(R({R"({"s":0.1})"}), R({R"({"s":0.30000000000000004})"}), {}, false).ok() ==
        false);
  CHECK(DiffExpected(R({R"({"s":0})"}), R({R"({"s":-0.0000000001})"}), {}, false).ok());
  CHECK_FALSE(DiffExpected(R({R"({"s":1.5})"}), R({R"({"s":1.51})"}), {}, false).ok());
}

TEST_CASE("equivalent values: numbers to 6 decimals, objects whatever their field order") {
  CHECK(EquivalentValues(json(2), json(2.0)));
  CHECK(EquivalentValues(json(1.0000000001), json(1)));
  CHECK_FALSE(EquivalentValues(json(1), json("1")));
  CHECK(EquivalentValues(json::parse(R"({"a":1,"b":[2.0]})"), json::parse(R"({"b":[2],"a":1})")));
  CHECK_FALSE(EquivalentValues(json::parse(R"([1,2])"), json::parse(R"([2,1])")));
}

TEST_CASE("YAML values become JSON as YAML's core schema types them") {
  TempTestFile f(R"(pipeline: p.yaml
cases:
  - name: c
    inputs:
      src:
        - {i: 7, d: 2.5, e: 1e3, t: true, f: false, n: null, s: hello, q: '7', neg: -3,
           l: [1, x], m: {a: 1}}
    expect:
      out: []
)");
  TestFile file;
  Diagnostics diags;
  REQUIRE(LoadTestFile(f.path, &file, &diags));
  REQUIRE(file.cases.size() == 1);
  REQUIRE(file.cases[0].inputs.size() == 1);
  const json r = file.cases[0].inputs[0].records.at(0);
  CHECK(r["i"] == 7);
  CHECK(r["i"].is_number_integer());
  CHECK(r["d"] == 2.5);
  CHECK(r["e"] == 1000.0);
  CHECK(r["t"] == true);
  CHECK(r["f"] == false);
  CHECK(r["n"].is_null());
  CHECK(r["s"] == "hello");
  CHECK(r["q"] == "7");
  CHECK(r["neg"] == -3);
  CHECK(r["l"] == json::parse(R"([1,"x"])"));
  CHECK(r["m"] == json::parse(R"({"a":1})"));
  CHECK(file.pipeline == f.dir + "/p.yaml");
  REQUIRE(file.cases[0].expect.size() == 1);
  CHECK(file.cases[0].expect[0].records.empty());
}

TEST_CASE(
    "a test file: per-sink ordered and key, case ordered, set, expected records from a file") {
  TempTestFile f(R"(pipeline: p.yaml
cases:
  - name: c
    ordered: true
    set: {checkpoint.interval: 5ms, nodes.x.path: 'a b'}
    expect:
      out: {records: [{a: 1}], key: [a]}
      other: {file: exp.jsonl, ordered: false}
)");
  std::ofstream(f.dir + "/exp.jsonl") << "{\"b\":2}\n{\"b\":3}\n";
  TestFile file;
  Diagnostics diags;
  REQUIRE(LoadTestFile(f.path, &file, &diags));
  const TestCase& c = file.cases.at(0);
  CHECK(c.sets == std::vector<std::string>{"checkpoint.interval=5ms", "nodes.x.path=\"a b\""});
  REQUIRE(c.expect.size() == 2);
  CHECK(c.expect[0].ordered);  // from the case
  CHECK(c.expect[0].key == std::vector<std::string>{"a"});
  CHECK(c.expect[1].records.size() == 2);
  CHECK(c.expect[1].ordered);  // the case's `ordered: true` applies to every sink
}

TEST_CASE("a broken test file: every problem with its line and column") {
  TempTestFile f(R"(pipeline: p.yaml
cases:
  - name: c
    semantic: at-least-once
    expect:
      out: [{a: 1}, 3]
  - name: c
    expect_exit: 300
  - expect: {}
)");
  TestFile file;
  Diagnostics diags;
  CHECK_FALSE(LoadTestFile(f.path, &file, &diags));
  const std::string text = diags.RenderToString();
  CHECK(text.find("p.test.yaml:4:5: error: unknown key 'semantic' in a case") != std::string::npos);
  CHECK(text.find("did you mean 'semantics'?") != std::string::npos);
  CHECK(text.find("p.test.yaml:6:21: error: case 'c': 'expect' of 'out': a record must be a map") !=
        std::string::npos);
  CHECK(text.find("p.test.yaml:7:11: error: duplicate case name 'c'") != std::string::npos);
  CHECK(text.find("p.test.yaml:8:18: error: case 'c': 'expect_exit' must be an exit code") !=
        std::string::npos);
  CHECK(text.find("p.test.yaml:9:5: error: a case needs a 'name:'") != std::string::npos);
  CHECK(diags.error_count() == 5);
}

}  // namespace onceflow::cli

// Tests of LoadPipeline's top level: file errors, pipeline keys, semantics/mode rules,
// command-line overrides, state paths, durations, interpolation and --set end to end.
#include <cstdlib>
#include <filesystem>

#include "doctest/doctest.h"
#include "tests/unit/spec/test_registry.h"

namespace onceflow {
namespace {

using testing::LoadResult;
using testing::LoadString;

const char kNodes[] =
    "nodes:\n"
    "  lines:\n"
    "    source: file\n"
    "    path: in.txt\n"
    "  out:\n"
    "    sink: file\n"
    "    input: lines\n"
    "    path: out.jsonl\n";

std::string Pipeline(const std::string& head) { return head + kNodes; }

TEST_CASE("a valid pipeline loads with defaults") {
  std::string dir;
  LoadResult r = LoadString(Pipeline("pipeline: wc\n"), {}, &dir);
  CHECK(r.ok);
  CHECK(r.rendered == "");
  CHECK(r.spec.name == "wc");
  CHECK(r.spec.semantics == Semantics::kEffectivelyOnce);
  CHECK(r.spec.mode == Mode::kSnapshot);
  CHECK_FALSE(r.spec.mode_given);
  CHECK(r.spec.state_path == "./wc.state.db");
  CHECK(r.spec.checkpoint_interval_ms == 1000);
  CHECK(r.spec.checkpoint_retain == 3);
  CHECK(r.spec.max_recoveries == 100);
  CHECK(r.spec.dir == dir);
  REQUIRE(r.spec.nodes.size() == 2);
  CHECK(r.spec.nodes[0].options.GetPath("path") == dir + "/in.txt");
  std::filesystem::remove_all(dir);
}

TEST_CASE("every top-level key") {
  LoadResult r =
      LoadString(Pipeline("pipeline: wc-2_x\n"
                          "description: Count words.\n"
                          "semantics: effectively-once\n"
                          "mode: dedup\n"
                          "state: st/wc.db\n"
                          "checkpoint:\n"
                          "  interval: 250ms\n"
                          "  retain: 5\n"
                          "recovery:\n"
                          "  max_recoveries: 0\n"));
  CHECK(r.ok);
  CHECK(r.spec.description == "Count words.");
  CHECK(r.spec.mode == Mode::kDedup);
  CHECK(r.spec.mode_given);
  CHECK(r.spec.state_path.size() > std::string("/st/wc.db").size());
  CHECK(r.spec.state_path.find("/st/wc.db") != std::string::npos);
  CHECK(r.spec.checkpoint_interval_ms == 250);
  CHECK(r.spec.checkpoint_retain == 5);
  CHECK(r.spec.max_recoveries == 0);
}

TEST_CASE("a missing file is an error at line 0") {
  Diagnostics d;
  PipelineSpec spec;
  CHECK_FALSE(LoadPipeline("/nonexistent/p.yaml", {}, testing::FakeRegistry(), &spec, &d));
  CHECK(d.RenderToString() ==
        "/nonexistent/p.yaml: error: cannot read the pipeline file: No such file or directory\n");
  Diagnostics d2;
  CHECK_FALSE(LoadPipeline("/tmp", {}, testing::FakeRegistry(), &spec, &d2));
  CHECK(d2.RenderToString() == "/tmp: error: cannot read the pipeline file: is a directory\n");
}

TEST_CASE("empty file, non-map file, missing keys") {
  LoadResult r = LoadString("");
  CHECK(r.rendered ==
        "p.yaml: error: the pipeline file is empty: it needs at least 'pipeline:' and 'nodes:'\n");
  r = LoadString("- a\n- b\n");
  CHECK(r.rendered ==
        "p.yaml:1:1: error: a pipeline file must be a map (pipeline:, nodes:, ...), got a list\n"
        "    1 | - a\n"
        "      | ^\n");
  r = LoadString("description: x\n");
  CHECK(r.rendered ==
        "p.yaml: error: missing 'pipeline: NAME' (the pipeline's name)\n"
        "p.yaml: error: missing 'nodes:' (the pipeline's sources, operators and sinks)\n");
}

TEST_CASE("pipeline name and unknown top-level keys") {
  LoadResult r = LoadString(Pipeline("pipeline: Word Count\nsemantic: at-least-once\n"));
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml:1:11: error: pipeline name 'Word Count' must match [a-z0-9_-]+ (lowercase "
        "letters, digits, '_', '-')\n"
        "    1 | pipeline: Word Count\n"
        "      |           ^~~~~~~~~~\n"
        "p.yaml:2:1: error: unknown top-level key 'semantic'\n"
        "    2 | semantic: at-least-once\n"
        "      | ^~~~~~~~\n"
        "note: did you mean 'semantics'?\n");
}

TEST_CASE("semantics values and the exactly-once alias") {
  LoadResult r = LoadString(Pipeline("pipeline: wc\nsemantics: exactly-once\n"));
  CHECK(r.ok);
  CHECK(r.spec.exactly_once_alias);
  CHECK(r.spec.semantics == Semantics::kEffectivelyOnce);
  CHECK(r.rendered ==
        "p.yaml:2:12: note: 'exactly-once' means effectively-once: each event's effect on "
        "managed state and transactional sinks is reflected once; user code may run more "
        "than once\n"
        "    2 | semantics: exactly-once\n"
        "      |            ^~~~~~~~~~~~\n");
  r = LoadString(Pipeline("pipeline: wc\nsemantics: at-least-onse\n"));
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml:2:12: error: 'semantics' must be at-most-once, at-least-once or "
        "effectively-once, got 'at-least-onse'\n"
        "    2 | semantics: at-least-onse\n"
        "      |            ^~~~~~~~~~~~~\n"
        "note: did you mean 'at-least-once'?\n");
  r = LoadString(Pipeline("pipeline: wc\nsemantics: at-most-once\n"));
  CHECK(r.ok);
  CHECK(r.spec.semantics == Semantics::kAtMostOnce);
}

TEST_CASE("mode needs effectively-once") {
  LoadResult r = LoadString(Pipeline("pipeline: wc\nsemantics: at-least-once\nmode: dedup\n"));
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml:3:7: error: 'mode' applies to effectively-once only, but semantics is "
        "'at-least-once'\n"
        "    3 | mode: dedup\n"
        "      |       ^~~~~\n");
  r = LoadString(Pipeline("pipeline: wc\nmode: snapshop\n"));
  CHECK(r.rendered.find("note: did you mean 'snapshot'?") != std::string::npos);

  LoadOptions cli;
  cli.semantics = "at-most-once";
  r = LoadString(Pipeline("pipeline: wc\nmode: dedup\n"), cli);
  CHECK(r.ok);  // the file's mode is ignored, with a note
  CHECK(r.spec.semantics == Semantics::kAtMostOnce);
  CHECK(r.spec.mode == Mode::kSnapshot);
  CHECK(r.rendered ==
        "p.yaml:2:7: note: 'mode: dedup' is ignored: --semantics at-most-once is not "
        "effectively-once\n"
        "    2 | mode: dedup\n"
        "      |       ^~~~~\n");

  cli = LoadOptions();
  cli.mode = "dedup";
  cli.semantics = "at-least-once";
  r = LoadString(Pipeline("pipeline: wc\n"), cli);
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml: error: --mode applies to effectively-once only, but the semantics is "
        "'at-least-once'\n");

  cli = LoadOptions();
  cli.mode = "dedup";
  r = LoadString(Pipeline("pipeline: wc\nmode: snapshot\n"), cli);
  CHECK(r.ok);
  CHECK(r.spec.mode == Mode::kDedup);
}

TEST_CASE("command-line overrides are validated") {
  LoadOptions cli;
  cli.semantics = "exactly-onse";
  cli.mode = "snap";
  cli.checkpoint_interval = "5x";
  LoadResult r = LoadString(Pipeline("pipeline: wc\n"), cli);
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml: error: --semantics: unknown value 'exactly-onse'; expected one of "
        "at-most-once, at-least-once, effectively-once\n"
        "note: did you mean 'exactly-once'?\n"
        "p.yaml: error: --mode: unknown value 'snap'; expected one of snapshot, dedup\n"
        "p.yaml: error: --checkpoint-interval: '5x' is not a duration such as 250ms, 1s, 5m "
        "or 1h\n");

  cli = LoadOptions();
  cli.semantics = "exactly-once";
  cli.checkpoint_interval = "2m";
  cli.state_path = "rel/s.db";
  r = LoadString(Pipeline("pipeline: wc\nsemantics: at-least-once\nstate: x.db\n"), cli);
  CHECK(r.ok);
  CHECK(r.spec.semantics == Semantics::kEffectivelyOnce);
  CHECK(r.spec.exactly_once_alias);
  CHECK(r.spec.checkpoint_interval_ms == 120000);
  CHECK(r.spec.state_path == "rel/s.db");  // relative to the working directory
  CHECK(r.rendered.rfind("p.yaml: note: 'exactly-once' means effectively-once", 0) == 0);
}

TEST_CASE("checkpoint and recovery values") {
  LoadResult r =
      LoadString(Pipeline("pipeline: wc\ncheckpoint:\n  interval: 5\n  retain: 0\n  retian: 2\n"
                          "recovery:\n  max_recoveries: -1\n"));
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml:3:13: error: 'checkpoint.interval' must be a duration such as 250ms, 1s, 5m "
        "or 1h, got '5'\n"
        "    3 |   interval: 5\n"
        "      |             ^\n"
        "note: add a unit: ms, s, m or h\n"
        "p.yaml:4:11: error: 'checkpoint.retain' must be between 1 and 1000000, got '0'\n"
        "    4 |   retain: 0\n"
        "      |           ^\n"
        "p.yaml:5:3: error: unknown key 'retian' in 'checkpoint'\n"
        "    5 |   retian: 2\n"
        "      |   ^~~~~~\n"
        "note: did you mean 'retain'?\n"
        "p.yaml:7:19: error: 'recovery.max_recoveries' must be between 0 and 1000000000, got "
        "'-1'\n"
        "    7 |   max_recoveries: -1\n"
        "      |                   ^~\n");
  r = LoadString(Pipeline("pipeline: wc\ncheckpoint: 1s\n"));
  CHECK(r.rendered.find("error: 'checkpoint' must be a map (interval: ...), got '1s'") !=
        std::string::npos);
}

TEST_CASE("ParseDuration") {
  int64_t ms = -1;
  CHECK(ParseDuration("250ms", &ms));
  CHECK(ms == 250);
  CHECK(ParseDuration("1s", &ms));
  CHECK(ms == 1000);
  CHECK(ParseDuration("5m", &ms));
  CHECK(ms == 300000);
  CHECK(ParseDuration("1h", &ms));
  CHECK(ms == 3600000);
  CHECK(ParseDuration("1.5s", &ms));
  CHECK(ms == 1500);
  CHECK(ParseDuration("1m30s", &ms));
  CHECK(ms == 90000);
  CHECK(ParseDuration("0s", &ms));
  CHECK(ms == 0);
  CHECK_FALSE(ParseDuration("", &ms));
  CHECK_FALSE(ParseDuration("5", &ms));
  CHECK_FALSE(ParseDuration("-1s", &ms));
  CHECK_FALSE(ParseDuration("1d", &ms));
  CHECK_FALSE(ParseDuration("s", &ms));
  CHECK_FALSE(ParseDuration("1.s", &ms));
  CHECK_FALSE(ParseDuration("1..5s", &ms));
  CHECK_FALSE(ParseDuration("1 s", &ms));
  CHECK_FALSE(ParseDuration("99999999999h", &ms));
}

TEST_CASE("interpolation end to end, including an unset variable") {
  setenv("ONCEFLOW_TEST_NAME", "from-env", 1);
  unsetenv("ONCEFLOW_TEST_UNSET");
  LoadResult r = LoadString(Pipeline("pipeline: ${ONCEFLOW_TEST_NAME}\n"));
  CHECK(r.ok);
  CHECK(r.spec.name == "from-env");
  r = LoadString(Pipeline("pipeline: ${ONCEFLOW_TEST_UNSET:-dflt}\n"));
  CHECK(r.spec.name == "dflt");
  r = LoadString(Pipeline("pipeline: ${ONCEFLOW_TEST_UNSET}\n"));
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml:1:11: error: environment variable 'ONCEFLOW_TEST_UNSET' is not set (write "
        "${ONCEFLOW_TEST_UNSET:-default} to give a default)\n"
        "    1 | pipeline: ${ONCEFLOW_TEST_UNSET}\n"
        "      |           ^~~~~~~~~~~~~~~~~~~~~~\n");
}

TEST_CASE("--set end to end") {
  LoadOptions cli;
  cli.sets = {"nodes.out.path=/tmp/o.jsonl", "nodes.lines.path=rel/in.txt",
              "checkpoint.interval=3s", "nodes.out.pth=x"};
  LoadResult r = LoadString(Pipeline("pipeline: wc\n"), cli);
  CHECK_FALSE(r.ok);
  CHECK(r.rendered ==
        "p.yaml: error: node 'out': unknown option 'pth' (given with --set)\n"
        "note: did you mean 'path'?\n");
  cli.sets.pop_back();
  r = LoadString(Pipeline("pipeline: wc\n"), cli);
  REQUIRE(r.ok);
  CHECK(r.spec.nodes[1].options.GetPath("path") == "/tmp/o.jsonl");
  // A relative path given with --set resolves against the working directory.
  CHECK(r.spec.nodes[0].options.GetPath("path") == "rel/in.txt");
  CHECK(r.spec.checkpoint_interval_ms == 3000);

  cli.sets = {"nodes.lines.parallelism=2"};
  r = LoadString(Pipeline("pipeline: wc\n"), cli);
  CHECK(r.rendered ==
        "p.yaml: error: source 'lines' (file) supports parallelism 1 only (given "
        "with --set)\n");
}

TEST_CASE("loading touches nothing on disk") {
  std::string dir;
  LoadResult r = LoadString(Pipeline("pipeline: wc\nstate: sub/wc.db\n"), {}, &dir);
  CHECK(r.ok);
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);  // p.yaml only
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace onceflow

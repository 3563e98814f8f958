// Tests of node and graph validation against the fake registry (test_registry.h).
#include <filesystem>

#include "doctest/doctest.h"
#include "tests/unit/spec/test_registry.h"

namespace onceflow {
namespace {

using testing::LoadResult;
using testing::LoadString;

LoadResult Nodes(const std::string& nodes, const LoadOptions& opts = {}) {
  return LoadString("pipeline: t\nnodes:\n" + nodes, opts);
}

const char kSource[] = "  src:\n    source: file\n    path: in.txt\n";

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("the wordcount example is valid and fully typed") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  words:\n    op: split\n    input: src\n    field: line\n    into: word\n"
                       "  counts:\n    op: count\n    input: words\n    key: word\n"
                       "    parallelism: 2\n    emit: final\n"
                       "  out:\n    sink: file\n    input: counts\n    path: out/c.jsonl\n"
                       "    format: jsonl\n");
  CHECK(r.rendered == "");
  REQUIRE(r.ok);
  REQUIRE(r.spec.nodes.size() == 4);
  const NodeSpec& src = r.spec.nodes[0];
  CHECK(src.kind == NodeKind::kSource);
  CHECK(src.type == "file");
  CHECK(src.options.GetString("format") == "lines");  // default
  CHECK(src.options.Has("format"));
  CHECK_FALSE(src.options.Given("format"));
  CHECK(src.options.Raw("format")->loc.line == 0);
  CHECK(src.options.Given("path"));
  CHECK(src.options.GetBool("follow", true) == false);  // default
  CHECK(src.options.GetInt("parallelism") == 1);
  const NodeSpec& counts = r.spec.nodes[2];
  CHECK(counts.parallelism == 2);
  CHECK(counts.emit == EmitMode::kFinal);
  CHECK(counts.key == std::vector<std::string>{"word"});
  REQUIRE(counts.inputs.size() == 1);
  CHECK(counts.inputs[0].from == "words");
  CHECK(counts.inputs[0].partition == PartitionKind::kDefault);
  CHECK(counts.inputs[0].at->loc.line == 13);
  CHECK(r.spec.nodes[1].emit == EmitMode::kUpdates);
  CHECK(r.spec.nodes[3].on_error == OnError::kFail);
  CHECK(r.spec.FindNode("counts") == &r.spec.nodes[2]);
  CHECK(r.spec.NodeIndex("out") == 3);
  CHECK(r.spec.NodeIndex("nope") == -1);
}

TEST_CASE("unknown option with did-you-mean, at the key") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  counts:\n    op: count\n    input: src\n    keyy: word\n"
                       "  out:\n    sink: discard\n    input: counts\n");
  CHECK(r.rendered ==
        "p.yaml:6:3: error: node 'counts' (count): missing required option 'key'\n"
        "    6 |   counts:\n"
        "      |   ^~~~~~\n"
        "p.yaml:9:5: error: node 'counts': unknown option 'keyy'\n"
        "    9 |     keyy: word\n"
        "      |     ^~~~\n"
        "note: did you mean 'key'?\n");
}

TEST_CASE("option types") {
  LoadResult r = Nodes(
      "  src:\n    source: file\n    path: [a, b]\n    follow: yes\n    parallelism: two\n"
      "  gen:\n    source: generate\n    count: '5'\n    rate: fast\n    lua: {a: 1}\n"
      "  out:\n    sink: file\n    input: [src, gen]\n    path: o\n    format: jsnol\n"
      "    on_error: maybe\n");
  CHECK_FALSE(r.ok);
  const std::string& o = r.rendered;
  CHECK(Contains(o, "p.yaml:5:11: error: node 'src': option 'path' must be a path, got a list\n"));
  CHECK(Contains(
      o, "p.yaml:6:13: error: node 'src': option 'follow' must be true or false, got 'yes'\n"));
  CHECK(Contains(
      o, "p.yaml:7:18: error: node 'src': option 'parallelism' must be an integer, got 'two'\n"));
  CHECK(Contains(o,
                 "p.yaml:10:12: error: node 'gen': option 'count' must be an integer, got the "
                 "quoted string '5'\n"));
  CHECK(
      Contains(o, "p.yaml:11:11: error: node 'gen': option 'rate' must be a number, got 'fast'\n"));
  CHECK(Contains(o,
                 "p.yaml:12:10: error: node 'gen': option 'lua' must be Lua source text (a "
                 "string), got a map\n"));
  CHECK(Contains(o,
                 "p.yaml:17:13: error: node 'out': option 'format' must be jsonl, csv or lines, "
                 "got 'jsnol'\n"));
  CHECK(Contains(o, "note: did you mean 'jsonl'?\n"));
  CHECK(Contains(o,
                 "p.yaml:18:15: error: node 'out': option 'on_error' must be fail, skip or "
                 "dead_letter, got 'maybe'\n"));
  CHECK(r.diags.error_count() == 8);
}

TEST_CASE("parallelism range and max_parallelism") {
  LoadResult r = Nodes(
      "  gen:\n    source: generate\n    parallelism: 0\n"
      "  gen2:\n    source: generate\n    parallelism: 5000\n"
      "  out:\n    sink: file\n    input: [gen, gen2]\n    path: o\n    parallelism: 2\n");
  CHECK(r.rendered ==
        "p.yaml:5:18: error: node 'gen': option 'parallelism' must be between 1 and 1024, got '0'\n"
        "    5 |     parallelism: 0\n"
        "      |                  ^\n"
        "p.yaml:8:18: error: node 'gen2': option 'parallelism' must be between 1 and 1024, got "
        "'5000'\n"
        "    8 |     parallelism: 5000\n"
        "      |                  ^~~~\n"
        "p.yaml:13:18: error: sink 'out' (file) supports parallelism 1 only\n"
        "   13 |     parallelism: 2\n"
        "      |                  ^\n");
}

TEST_CASE("node kinds: two, none, unknown type, type of another kind, null type") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    source: file\n    op: map\n    path: x\n"
                       "  b:\n    sorce: file\n"
                       "  c:\n    op: cuont\n    input: src\n"
                       "  d:\n    op: file\n    input: src\n"
                       "  e:\n    sink:\n    input: src\n"
                       "  f:\n    op: frobnicate\n    input: src\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o,
                 "p.yaml:8:5: error: node 'a' has both 'source:' and 'op:'; a node is exactly "
                 "one of source:, op:, sink:\n"));
  CHECK(Contains(o,
                 "p.yaml:10:3: error: node 'b' needs one of source:, op: or sink:\n"
                 "   10 |   b:\n"
                 "      |   ^\n"
                 "note: did you mean 'source:' instead of 'sorce:'?\n"));
  CHECK(Contains(o,
                 "p.yaml:13:9: error: node 'c': unknown operator type 'cuont'\n"
                 "   13 |     op: cuont\n"
                 "      |         ^~~~~\n"
                 "note: did you mean 'count'?\n"));
  CHECK(Contains(o, "note: 'file' is a source type: write 'source: file'\n"));
  CHECK(Contains(o, "p.yaml:19:5: error: node 'e': 'sink:' needs a type name, got null\n"));
  CHECK(Contains(o, "note: sink types: discard, file, stdout\n"));
  CHECK(Contains(o, "note: operator types: count, join, map, split\n"));
  CHECK(r.diags.error_count() == 6);
}

TEST_CASE("node ids and non-map nodes") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  9lives:\n    sink: discard\n    input: src\n"
                       "  flat: file\n"
                       "  empty:\n");
  CHECK(Contains(r.rendered,
                 "p.yaml:6:3: error: node id '9lives' must start with a letter or '_' and hold "
                 "only letters, digits, '_' and '-'\n"));
  CHECK(Contains(r.rendered,
                 "p.yaml:9:9: error: node 'flat' must be a map with one of source:, "
                 "op: or sink:, got 'file'\n"));
  CHECK(Contains(r.rendered,
                 "p.yaml:10:3: error: node 'empty' must be a map with one of "
                 "source:, op: or sink:, got null\n"));
}

TEST_CASE("duplicate node ids are reported by the reader, once") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  src:\n    source: generate\n"
                       "  out:\n    sink: discard\n    input: src\n");
  CHECK(r.rendered ==
        "p.yaml:6:3: error: duplicate key 'src' (first at line 3)\n"
        "    6 |   src:\n"
        "      |   ^~~\n");
}

TEST_CASE("inputs: unknown, self, twice, sink as input, source with input, missing") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  m:\n    op: map\n    lua: x\n    input: [scr, m, src, src]\n"
                       "  out:\n    sink: discard\n    input: src\n"
                       "  out2:\n    sink: discard\n    input: out\n"
                       "  s2:\n    source: generate\n    input: src\n"
                       "  noin:\n    op: split\n    field: a\n    into: b\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o,
                 "p.yaml:9:13: error: node 'm': input 'scr' is not a node of this pipeline\n"
                 "    9 |     input: [scr, m, src, src]\n"
                 "      |             ^~~\n"
                 "note: did you mean 'src'?\n"));
  CHECK(Contains(o, "p.yaml:9:18: error: node 'm': input 'm' is the node itself\n"));
  CHECK(Contains(o, "p.yaml:9:26: error: node 'm': input 'src' is listed twice\n"));
  CHECK(Contains(o, "p.yaml:15:12: error: sink 'out' cannot feed other nodes\n"));
  CHECK(Contains(o, "p.yaml:18:5: error: source 's2' (generate) takes no input\n"));
  CHECK(Contains(o, "p.yaml:19:3: error: node 'noin' (split): missing required option 'input'\n"));
  CHECK(r.diags.error_count() == 6);
}

TEST_CASE("input maps and partitions") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    op: split\n    field: line\n    into: w\n"
                       "    input: {from: src, partition: round-robin}\n"
                       "  b:\n    op: split\n    field: line\n    into: w\n"
                       "    input: {from: src, partion: forward}\n"
                       "  c:\n    op: split\n    field: line\n    into: w\n"
                       "    input: {from: src, partition: 'hash(a,,b)'}\n"
                       "  d:\n    op: split\n    field: line\n    into: w\n"
                       "    input: {partition: forward}\n"
                       "  e:\n    op: split\n    field: line\n    into: w\n"
                       "    input: {from: src, partition: hash}\n"
                       "  out:\n    sink: discard\n    input: [a, b, c, d, e]\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o,
                 "p.yaml:10:35: error: node 'a': unknown partition 'round-robin'; expected "
                 "forward, round_robin, hash(FIELD[,FIELD...]) or broadcast\n"));
  CHECK(Contains(o, "note: did you mean 'round_robin'?\n"));
  CHECK(Contains(o,
                 "p.yaml:15:24: error: node 'b': unknown key 'partion' in an input (expected "
                 "from and partition)\n"));
  CHECK(Contains(o,
                 "p.yaml:20:35: error: node 'c': bad partition 'hash(a,,b)': expected "
                 "hash(FIELD[,FIELD...]) with non-empty field names\n"));
  CHECK(
      Contains(o, "p.yaml:25:12: error: node 'd': an input map needs 'from: ID', got no 'from'\n"));
  CHECK(Contains(o,
                 "p.yaml:30:35: error: node 'e': 'hash' needs its fields here: "
                 "hash(FIELD[,FIELD...])\n"));
  CHECK(r.diags.error_count() == 5);
}

TEST_CASE("valid partitions are parsed") {
  LoadResult r =
      Nodes(std::string(kSource) +
            "  a:\n    op: split\n    field: line\n    into: w\n    parallelism: 3\n"
            "    input: {from: src, partition: 'hash( line , x )'}\n"
            "  c:\n    op: count\n    key: [w, x]\n    parallelism: 2\n"
            "    input:\n      - {from: a, partition: hash(w)}\n"
            "  j:\n    op: join\n    key: w\n    input: [c, {from: a, partition: broadcast}]\n"
            "  out:\n    sink: discard\n    input: [j]\n");
  CHECK(r.rendered == "");
  REQUIRE(r.ok);
  CHECK(r.spec.nodes[1].inputs[0].partition == PartitionKind::kHash);
  CHECK(r.spec.nodes[1].inputs[0].hash_fields == std::vector<std::string>{"line", "x"});
  CHECK(r.spec.nodes[2].inputs[0].hash_fields == std::vector<std::string>{"w"});
  CHECK(r.spec.nodes[2].key == std::vector<std::string>{"w", "x"});
  CHECK(r.spec.nodes[3].inputs.size() == 2);
  CHECK(r.spec.nodes[3].inputs[1].partition == PartitionKind::kBroadcast);
  CHECK(r.spec.nodes[3].options.GetDurationMs("within") == 1000);
}

TEST_CASE("forward needs equal parallelism; keyed operators need key partitioning") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    op: split\n    field: line\n    into: w\n    parallelism: 2\n"
                       "    input: {from: src, partition: forward}\n"
                       "  c:\n    op: count\n    key: w\n    parallelism: 2\n"
                       "    input: {from: a, partition: round_robin}\n"
                       "  c2:\n    op: count\n    key: w\n    parallelism: 2\n"
                       "    input: {from: a, partition: hash(line)}\n"
                       "  c3:\n    op: count\n    key: [w]\n    parallelism: 2\n"
                       "    input: {from: c, partition: forward}\n"
                       "  out:\n    sink: discard\n    input: [c2, c3]\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o,
                 "p.yaml:11:35: error: node 'a': partition forward from 'src' needs equal "
                 "parallelism ('src' has 1, 'a' has 2)\n"));
  CHECK(Contains(o,
                 "p.yaml:16:33: error: node 'c' (count) is keyed on [w] with parallelism 2: "
                 "partition round_robin would send records of one key to several instances\n"));
  CHECK(Contains(o,
                 "p.yaml:21:33: error: node 'c2' (count) is keyed on [w]: hash(line) would "
                 "send records of one key to several instances\n"));
  CHECK(r.diags.error_count() == 3);  // c3: forward from a count keyed on w is fine
}

TEST_CASE("input counts") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  j:\n    op: join\n    key: w\n    input: src\n"
                       "  s:\n    op: split\n    field: a\n    into: b\n    input: [src, j]\n"
                       "  out:\n    sink: discard\n    input: s\n");
  CHECK(Contains(r.rendered, "p.yaml:9:5: error: node 'j' (join) takes exactly 2 inputs, got 1\n"));
}

TEST_CASE("cycles are reported once, at the first node") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  b:\n    op: split\n    field: a\n    into: b\n    input: [src, c]\n"
                       "  a:\n    op: split\n    field: a\n    into: b\n    input: b\n"
                       "  c:\n    op: split\n    field: a\n    into: b\n    input: a\n"
                       "  out:\n    sink: discard\n    input: c\n");
  CHECK(r.rendered ==
        "p.yaml:6:3: error: cycle: b -> a -> c -> b\n"
        "    6 |   b:\n"
        "      |   ^\n");
}

TEST_CASE("common options: on_error, dead_letter, emit") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    op: split\n    field: a\n    into: b\n    input: src\n"
                       "    on_error: dead_letter\n    emit: final\n"
                       "  b:\n    op: count\n    key: b\n    input: a\n    emit: finl\n"
                       "  out:\n    sink: discard\n    input: b\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o,
                 "p.yaml:11:15: error: node 'a': on_error: dead_letter needs 'dead_letter: "
                 "PATH' (the JSONL file that failed records go to)\n"));
  CHECK(Contains(o,
                 "p.yaml:12:5: error: node 'a' (split): 'emit' applies only to stateful "
                 "operators (count, join)\n"));
  CHECK(Contains(o,
                 "p.yaml:17:11: error: node 'b': option 'emit' must be updates or final, got "
                 "'finl'\n"));
  CHECK(r.diags.error_count() == 3);

  std::string dir;
  r = LoadString("pipeline: t\nnodes:\n" + std::string(kSource) +
                     "  a:\n    op: split\n    field: a\n    into: b\n    input: src\n"
                     "    on_error: dead_letter\n    dead_letter: dl/a.jsonl\n"
                     "  out:\n    sink: discard\n    input: a\n    on_error: skip\n"
                     "    dead_letter: x.jsonl\n",
                 {}, &dir);
  CHECK(r.ok);
  CHECK(r.spec.nodes[1].on_error == OnError::kDeadLetter);
  CHECK(r.spec.nodes[1].dead_letter_path == dir + "/dl/a.jsonl");
  CHECK(r.spec.nodes[2].on_error == OnError::kSkip);
  CHECK(Contains(r.rendered,
                 "warning: node 'out': 'dead_letter' is ignored: on_error is "
                 "'skip', not dead_letter\n"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("type checks run only for nodes whose options type-checked") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  m:\n    op: map\n    input: src\n    lua: \"return @@\"\n"
                       "  m2:\n    op: map\n    input: src\n    lua: \"@@\"\n    parallelism: x\n"
                       "  out:\n    sink: discard\n    input: [m, m2]\n");
  CHECK(Contains(r.rendered,
                 "p.yaml:9:10: error: node 'm': Lua does not compile: unexpected "
                 "symbol near '@'\n"
                 "    9 |     lua: \"return @@\"\n"
                 "      |          ^~~~~~~~~~~\n"));
  CHECK(r.diags.error_count() == 2);  // m's Lua, m2's parallelism (m2's Lua is not checked)
}

TEST_CASE("warnings: stdout under effectively-once, dead ends, no sink") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    op: split\n    field: a\n    into: b\n    input: src\n"
                       "  out:\n    sink: stdout\n    input: src\n");
  CHECK(r.ok);
  CHECK(r.rendered ==
        "p.yaml:6:3: warning: operator 'a': nothing takes its output (no node has it as input)\n"
        "    6 |   a:\n"
        "      |   ^\n"
        "p.yaml:12:11: warning: sink 'out' (stdout): stdout cannot take output back: "
        "at-least-once at best\n"
        "   12 |     sink: stdout\n"
        "      |           ^~~~~~\n");
  LoadOptions cli;
  cli.semantics = "at-least-once";
  r = Nodes(std::string(kSource) + "  out:\n    sink: stdout\n    input: src\n", cli);
  CHECK(r.rendered == "");
  r = Nodes(kSource);
  CHECK(r.ok);
  CHECK(r.rendered ==
        "p.yaml:2:1: warning: the pipeline has no sink: its results go nowhere\n"
        "    2 | nodes:\n"
        "      | ^~~~~\n");
}

TEST_CASE("no source, empty nodes, nodes not a map") {
  LoadResult r = Nodes(
      "  out:\n    sink: discard\n    input: out2\n"
      "  out2:\n    sink: discard\n    input: out\n");
  CHECK(Contains(r.rendered, "p.yaml:2:1: error: the pipeline has no source: nothing would run\n"));
  r = LoadString("pipeline: t\nnodes: {}\n");
  CHECK(r.rendered ==
        "p.yaml:2:1: error: 'nodes' is empty: a pipeline needs at least a source\n"
        "    2 | nodes: {}\n"
        "      | ^~~~~\n");
  r = LoadString("pipeline: t\nnodes: [a]\n");
  CHECK(Contains(r.rendered, "error: 'nodes' must be a map of node ids to nodes, got a list\n"));
}

TEST_CASE("field lists and durations as options") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  c:\n    op: count\n    key: [w, w]\n    input: src\n"
                       "  c2:\n    op: count\n    key: []\n    input: src\n"
                       "  j:\n    op: join\n    key: [a, [b]]\n    within: 10\n    input: [c, c2]\n"
                       "  out:\n    sink: discard\n    input: j\n");
  const std::string& o = r.rendered;
  CHECK(Contains(o, "p.yaml:8:14: error: node 'c': option 'key': field 'w' is listed twice\n"));
  CHECK(Contains(o,
                 "p.yaml:12:10: error: node 'c2': option 'key' must be a field name or a list "
                 "of field names, got an empty list\n"));
  CHECK(Contains(o,
                 "p.yaml:16:14: error: node 'j': option 'key': a field name must be a string, "
                 "got a list\n"));
  CHECK(Contains(o,
                 "p.yaml:17:13: error: node 'j': option 'within' must be a duration such as "
                 "250ms, 1s, 5m or 1h, got '10'\n"
                 "   17 |     within: 10\n"
                 "      |             ^~\n"
                 "note: add a unit: ms, s, m or h\n"));
}

TEST_CASE("anchors let nodes share options") {
  LoadResult r = Nodes(std::string(kSource) +
                       "  a:\n    op: split\n    input: src\n    field: &f line\n    into: w\n"
                       "  b:\n    op: split\n    input: src\n    field: *f\n    into: w\n"
                       "  out:\n    sink: discard\n    input: [a, b]\n");
  CHECK(r.ok);
  CHECK(r.spec.nodes[2].options.GetString("field") == "line");
}

}  // namespace
}  // namespace onceflow

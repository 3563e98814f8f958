// Event-time operators: window (tumbling, sliding, session) and join — assignment,
// merging, watermarks per channel, late records, state after a restore, eviction.
#include <doctest/doctest.h>

#include "operators/ops/event_time.h"
#include "test_util.h"

namespace onceflow::testing {

namespace {

// A pipeline with two sources and the node `op` reading `inputs`.
std::string EtYaml(const std::string& block, const std::string& inputs = "a") {
  return "pipeline: t\n"
         "nodes:\n"
         "  a:\n"
         "    source: generate\n"
         "    count: 1\n"
         "  b:\n"
         "    source: generate\n"
         "    count: 1\n"
         "  op:\n"
         "    input: " +
         inputs + "\n" + block +
         "  out:\n"
         "    sink: discard\n"
         "    input: op\n";
}

Record Ev(const char* k, int64_t ts, int64_t x = 1) {
  Record r;
  r.Append("k", Value::String(k));
  r.Append("ts", Value::Int(ts));
  r.Append("x", Value::Int(x));
  return r;
}

// One operator instance driven by hand: Process on a channel, OnWatermark, Finish.
struct EtRun {
  std::unique_ptr<Pipeline> p;
  std::unique_ptr<Harness> h;
  std::unique_ptr<Operator> op;

  EtRun(const TempDir& dir, const std::string& block, const std::string& inputs = "a",
        int channels = 1) {
    p = LoadYaml(dir.path(), EtYaml(block, inputs));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    h = std::make_unique<Harness>(*p, "op");
    h->ctx.input_channels = channels;
    Reopen();
  }
  // A new operator object on the same state, as after a restore.
  void Reopen() {
    const NodeSpec& spec = p->Node("op");
    op = Def(NodeKind::kOperator, spec.type).make_operator(spec);
    Status st = op->Open(h->ctx);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  std::string Process(RecordBatch in, int channel = 0, int port = 0) {
    RecordBatch out;
    Emitter em(&out);
    h->ctx.channel = channel;
    Status st = op->Process(port, in, em);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return Json(out);
  }
  std::string Watermark(int channel, int64_t ts) {
    RecordBatch out;
    Emitter em(&out);
    REQUIRE(op->OnWatermark(channel, ts, em).ok());
    return Json(out);
  }
  std::string Finish() {
    RecordBatch out;
    Emitter em(&out);
    REQUIRE(op->Finish(em).ok());
    return Json(out);
  }
};

std::string Win(const char* k, int64_t s, int64_t e, int64_t sum, int64_t count) {
  return std::string("{\"k\":\"") + k + "\",\"window_start\":" + std::to_string(s) +
         ",\"window_end\":" + std::to_string(e) + ",\"sum_x\":" + std::to_string(sum) +
         ",\"count\":" + std::to_string(count) + "}\n";
}

const char* kAggs = "    key: k\n    time: ts\n    sum: x\n    count: true\n";

}  // namespace

TEST_CASE("window: tumbling windows fire when the watermark passes their end") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n");
  // Nothing fires before the watermark reaches an end.
  CHECK(r.Process({Ev("a", 1), Ev("b", 3, 5), Ev("a", 9, 2)}) == "");
  // ts 10 moves the watermark to 10: [0, 10) fires, in (end, key) order.
  CHECK(r.Process({Ev("b", 10), Ev("a", 12)}) == Win("a", 0, 10, 3, 2) + Win("b", 0, 10, 5, 1));
  CHECK(r.Finish() == Win("a", 10, 20, 1, 1) + Win("b", 10, 20, 1, 1));
  CHECK(r.h->state.size() == 1);  // only the watermark entry is left
}

TEST_CASE("window: sliding windows take each record into size/slide windows") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n    slide: 5ms\n");
  // Negative event times floor to their windows: -3 is in [-10, 0) and [-5, 5).
  // Watermark 7 after the batch: the windows ending at 0 and 5 fire.
  CHECK(r.Process({Ev("a", -3), Ev("a", 7, 10)}) == Win("a", -10, 0, 1, 1) + Win("a", -5, 5, 1, 1));
  // ts 12: [0, 10) fires.
  CHECK(r.Process({Ev("a", 12, 100)}) == Win("a", 0, 10, 10, 1));
  CHECK(r.Finish() == Win("a", 5, 15, 110, 2) + Win("a", 10, 20, 100, 1));
}

TEST_CASE("window: with slide > size, records between windows count nowhere and are not late") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 5ms\n    slide: 10ms\n");
  CHECK(r.Process({Ev("a", 2), Ev("a", 7), Ev("a", 13)}) == Win("a", 0, 5, 1, 1));
  CHECK(r.h->metrics.skipped.load() == 0);
  CHECK(r.Finish() == Win("a", 10, 15, 1, 1));
}

TEST_CASE("window: sessions grow, merge across a bridging record, and end at last + gap") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    gap: 10ms\n    lateness: 100ms\n");
  // Two sessions of key a (0..5 and 30), kept open by the lateness.
  CHECK(r.Process({Ev("a", 0), Ev("a", 5), Ev("a", 30), Ev("b", 31)}) == "");
  // 21 is within 10 of 30 but not of 5: extends the second session backwards; 12 is
  // within 10 of 5 and of 21: bridges them into one.
  CHECK(r.Process({Ev("a", 21, 7)}) == "");
  CHECK(r.Process({Ev("a", 12, 100)}) == "");
  CHECK(r.Finish() == Win("a", 0, 40, 110, 5) + Win("b", 31, 41, 1, 1));
}

TEST_CASE("window: late records are counted, dead-lettered only under on_error: dead_letter") {
  TempDir dir;
  SUBCASE("dropped and counted") {
    EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n    lateness: 5ms\n");
    CHECK(r.Process({Ev("a", 3), Ev("a", 14)}) == "");         // watermark 9: [0,10) still open
    CHECK(r.Process({Ev("a", 8)}) == "");                      // not late: [0,10) ends after 9
    CHECK(r.Process({Ev("a", 16)}) == Win("a", 0, 10, 2, 2));  // watermark 11
    CHECK(r.Process({Ev("a", 9)}) == "");                      // late: its only window fired
    CHECK(r.h->metrics.skipped.load() == 1);
    CHECK(r.h->errors.errors.empty());
    CHECK(r.Finish() == Win("a", 10, 20, 2, 2));
  }
  SUBCASE("dead letter") {
    EtRun r(dir, std::string("    op: window\n") + kAggs +
                     "    size: 10ms\n    on_error: dead_letter\n    dead_letter: dl.jsonl\n");
    r.Process({Ev("a", 25)});
    CHECK(r.Process({Ev("a", 19), Ev("a", 20)}) == "");  // 19 is late, 20 is not
    REQUIRE(r.h->errors.errors.size() == 1);
    CHECK(r.h->errors.errors[0] == "late record");
    CHECK(r.h->errors.records[0].Get("ts")->as_int() == 19);
  }
  SUBCASE("a bad time field is a data error") {
    EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n");
    Record bad;
    bad.Append("k", Value::String("a"));
    bad.Append("ts", Value::String("yesterday"));
    CHECK(r.Process({bad}) == "");
    REQUIRE(r.h->errors.errors.size() == 1);
    CHECK(r.h->errors.errors[0].find("time field 'ts' is not a number") != std::string::npos);
  }
}

TEST_CASE("window: the watermark is the minimum over channels; ends count as +inf") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n", "a", 2);
  CHECK(r.Process({Ev("a", 1), Ev("a", 50)}, 0) == "");         // channel 1 saw nothing yet
  CHECK(r.Process({Ev("a", 12)}, 1) == Win("a", 0, 10, 1, 1));  // min(50, 12)
  // An in-band watermark of channel 1 moves it without records.
  CHECK(r.Watermark(1, 40) == Win("a", 10, 20, 1, 1));
  CHECK(r.Watermark(1, Operator::kChannelEnded) == "");  // min is channel 0's 50: [50,60) stays
  CHECK(r.Watermark(0, Operator::kChannelEnded) == Win("a", 50, 60, 1, 1));
}

TEST_CASE("window: open windows and watermarks survive a restore through the state") {
  TempDir dir;
  EtRun r(dir, std::string("    op: window\n") + kAggs + "    size: 10ms\n", "a", 2);
  r.Process({Ev("a", 1), Ev("b", 2), Ev("a", 15)}, 0);
  r.Process({Ev("a", 3)}, 1);
  // What a checkpoint holds: every entry; a new instance restores them before Open.
  KeyedState copy;
  r.h->state.ForEach([&](std::string_view k, const StateValue& v) { copy.Restore(k, v); });
  r.h->state.Clear();
  copy.ForEach([&](std::string_view k, const StateValue& v) { r.h->state.Restore(k, v); });
  r.Reopen();
  // Channel 1's max (3) was restored: its 11 moves the watermark to min(15, 11).
  CHECK(r.Process({Ev("b", 11)}, 1) == Win("a", 0, 10, 2, 2) + Win("b", 0, 10, 1, 1));
  CHECK(r.Finish() == Win("a", 10, 20, 1, 1) + Win("b", 10, 20, 1, 1));
}

TEST_CASE("window: the watermark entry hashes to its own instance") {
  TempDir dir;
  for (int inst = 0; inst < 3; ++inst) {
    auto p =
        LoadYaml(dir.path(), EtYaml(std::string("    op: window\n") + kAggs + "    size: 1s\n"));
    REQUIRE(p->ok);
    Harness h(*p, "op", inst, 3);
    auto op = Def(NodeKind::kOperator, "window").make_operator(p->Node("op"));
    REQUIRE(op->Open(h.ctx).ok());
    RecordBatch in{Ev("a", 1)}, out;
    Emitter em(&out);
    REQUIRE(op->Process(0, in, em).ok());
    int reserved = 0;
    h.state.ForEach([&](std::string_view k, const StateValue&) {
      Value v;
      std::string_view rest = k;
      REQUIRE(DecodeValue(&rest, &v));
      if (v.is_string() && v.str() == "#watermarks") {
        ++reserved;
        CHECK(HashDestination(k, 3) == inst);
      }
    });
    CHECK(reserved == 1);
  }
}

TEST_CASE("window: validation") {
  TempDir dir;
  auto bad = [&](const std::string& block, const std::string& want) {
    auto p = LoadYaml(dir.path(), EtYaml(block));
    CHECK_FALSE(p->ok);
    CHECK_MESSAGE(p->Rendered().find(want) != std::string::npos, p->Rendered());
  };
  bad(std::string("    op: window\n") + kAggs + "    slide: 5s\n", "`slide` needs `size`");
  bad(std::string("    op: window\n") + kAggs + "    size: 5s\n    gap: 1s\n",
      "cannot be combined with `size`");
  bad(std::string("    op: window\n") + kAggs, "window needs `size` or `gap`");
  bad(std::string("    op: window\n") + kAggs + "    size: 5s\n    emit: final\n",
      "'emit' applies only to stateful operators");
  bad("    op: window\n    key: k\n    time: ts\n    size: 1s\n", "at least one aggregate");
  bad("    op: window\n    key: k\n    time: ts\n    size: 1s\n    fields: {window_end: "
      "\"count()\"}\n",
      "clashes with the output field 'window_end'");
}

TEST_CASE("join: pairs within the interval, either order, evicted behind the watermark") {
  TempDir dir;
  EtRun r(dir, "    op: join\n    key: k\n    time: ts\n    within: 5ms\n", "[a, b]", 2);
  CHECK(r.Process({Ev("a", 10, 1), Ev("b", 11, 2)}, 0, 0) == "");  // left side only
  // Right 14 pairs with left 10 (|4| <= 5) but not with a's other key.
  CHECK(r.Process({Ev("a", 14, 3)}, 1, 1) ==
        "{\"k\":\"a\",\"left\":{\"k\":\"a\",\"ts\":10,\"x\":1},\"right\":{\"k\":\"a\",\"ts\":14,"
        "\"x\":3}}\n");
  // Left 19 pairs with right 14 (|5|), not left 10.
  CHECK(r.Process({Ev("a", 19, 4)}, 0, 0) ==
        "{\"k\":\"a\",\"left\":{\"k\":\"a\",\"ts\":19,\"x\":4},\"right\":{\"k\":\"a\",\"ts\":14,"
        "\"x\":3}}\n");
  // Right 30: watermark min(19, 30) = 19 evicts everything with t + 5 < 19 (10, 11, 14? no:
  // 14 + 5 = 19 is kept).
  CHECK(r.Process({Ev("a", 30, 5)}, 1, 1) == "");
  size_t buffered = 0;
  r.h->state.ForEach([&](std::string_view k, const StateValue& v) {
    if (v.size() % 3 == 0 && !v.empty() && v[0].type() == ValueType::kInt && v.size() != 4) {
      buffered += v.size() / 3;
    }
  });
  CHECK(buffered == 3);  // a: 14, 19, 30 (10 and b's 11 evicted)
  // A left record of time 2 is late (2 + 5 < 19): counted, never paired.
  CHECK(r.Process({Ev("a", 2)}, 0, 0) == "");
  CHECK(r.h->metrics.skipped.load() == 1);
  // Restore: the buffers come back from the state.
  r.Reopen();
  CHECK(r.Process({Ev("a", 33, 6)}, 0, 0) ==
        "{\"k\":\"a\",\"left\":{\"k\":\"a\",\"ts\":33,\"x\":6},\"right\":{\"k\":\"a\",\"ts\":30,"
        "\"x\":5}}\n");
}

TEST_CASE("join: validation") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), EtYaml("    op: join\n    key: k\n    time: ts\n    within: 1s\n"));
  CHECK_FALSE(p->ok);
  CHECK_MESSAGE(p->Rendered().find("input") != std::string::npos, p->Rendered());
  auto p2 = LoadYaml(dir.path(), EtYaml("    op: join\n    key: k\n    time: ts\n", "[a, b]"));
  CHECK_FALSE(p2->ok);
  CHECK_MESSAGE(p2->Rendered().find("within") != std::string::npos, p2->Rendered());
  auto p3 =
      LoadYaml(dir.path(),
               EtYaml("    op: join\n    key: k\n    time: ts\n    within: 1s\n    emit: final\n",
                      "[a, b]"));
  CHECK_FALSE(p3->ok);
}

}  // namespace onceflow::testing

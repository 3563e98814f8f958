// Executor end to end with fake node types in a local Registry: every record arrives,
// fan-out / fan-in, hash partitioning at parallelism 2, Finish only on a completed input,
// stop requests (max_events, signal, duration), failures naming the node without a hang,
// and the on_error policies.
#include "runtime/exec/executor.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "runtime/core/key.h"
#include "runtime/state/keyed_state.h"
#include "tests/unit/exec/test_util.h"

namespace onceflow {
namespace {

using testing::In;
using testing::MakePipeline;
using testing::Op;
using testing::Snk;
using testing::Src;

// What the fake nodes observed; reset by each test.
struct World {
  std::mutex mu;
  std::map<std::string, std::vector<Record>> sunk;  // sink id -> records
  std::atomic<int> finish_calls{0};
  std::atomic<int> durable_flushes{0};
  std::atomic<int> plain_flushes{0};        // Flush(false) calls
  std::atomic<int> writes{0};               // Write calls
  std::atomic<bool> flushed_since_write{false};  // a Flush(false) after the last Write
  std::atomic<int> opens{0};
  std::atomic<int> closes{0};
  std::atomic<int> placed_calls{0};  // PlaceOp calls offered a hashed output
};
World* g_world = nullptr;

World& ResetWorld() {
  static World* w = nullptr;
  delete w;
  w = new World();
  g_world = w;
  return *w;
}

// Generates {n, k} records; instance i of p emits n = i, i+p, i+2p, ... below `count`
// (count < 0: forever). Origin is (node, n + 1).
class GenSource : public Source {
 public:
  // idle_at_end: after `count` records, read nothing but never end (a quiet stream).
  GenSource(int64_t count, int keys, bool idle_at_end = false)
      : count_(count), keys_(keys), idle_at_end_(idle_at_end) {}
  Status Open(NodeContext& ctx) override {
    g_world->opens++;
    node_ = ctx.node_index;
    next_ = ctx.instance;
    step_ = ctx.parallelism;
    return Status::Ok();
  }
  Status Read(size_t max, Emitter& out, bool* end) override {
    for (size_t i = 0; i < max; ++i) {
      if (count_ >= 0 && next_ >= count_) break;
      Record r;
      r.Append("n", Value::Int(next_));
      r.Append("k", Value::String("key" + std::to_string(next_ % keys_)));
      r.origin.source = node_;
      r.origin.position = static_cast<uint64_t>(next_ + 1);
      out.Emit(std::move(r));
      next_ += step_;
    }
    *end = count_ >= 0 && next_ >= count_ && !idle_at_end_;
    return Status::Ok();
  }
  SourcePosition Position() const override { return {"", static_cast<uint64_t>(next_), 0}; }
  Status Seek(const SourcePosition&) override { return Status::Ok(); }
  Status Close() override {
    g_world->closes++;
    return Status::Ok();
  }

 private:
  int64_t count_;
  int keys_;
  bool idle_at_end_;
  int node_ = 0;
  int64_t next_ = 0;
  int step_ = 1;
};

// Passes records through, tagging the input port; counts Finish calls.
class PassOp : public Operator {
 public:
  Status Open(NodeContext&) override {
    g_world->opens++;
    return Status::Ok();
  }
  Status Process(int port, RecordBatch& in, Emitter& out) override {
    for (Record& r : in) {
      r.Set("port", Value::Int(port));
      out.Emit(std::move(r));
    }
    return Status::Ok();
  }
  Status Finish(Emitter&) override {
    g_world->finish_calls++;
    return Status::Ok();
  }
  Status Close() override {
    g_world->closes++;
    return Status::Ok();
  }
};

// Passes records through like PassOp, but places them in the partitions of a hashed
// out-edge on `k` itself when the executor offers one (Emitter::hashed), as split does.
class PlaceOp : public Operator {
 public:
  Status Open(NodeContext&) override { return Status::Ok(); }
  Status Process(int, RecordBatch& in, Emitter& out) override {
    HashedOutput* hashed = out.hashed();
    if (hashed == nullptr || hashed->field != "k") {
      for (Record& r : in) out.Emit(std::move(r));
      return Status::Ok();
    }
    g_world->placed_calls++;
    const int n = static_cast<int>(hashed->parts->size());
    for (Record& r : in) {
      (*hashed->parts)[StringKeyPartition(r.Get("k")->str(), n)].push_back(std::move(r));
      ++hashed->placed;
    }
    return Status::Ok();
  }
};

// Fails on the record with n == fail_at: with a plain error, through the error handler
// (a data error), or by throwing.
class FailOp : public Operator {
 public:
  enum class How { kStatus, kDataError, kThrow };
  FailOp(int64_t fail_at, How how) : fail_at_(fail_at), how_(how) {}
  Status Open(NodeContext& ctx) override {
    errors_ = ctx.errors;
    return Status::Ok();
  }
  Status Process(int, RecordBatch& in, Emitter& out) override {
    for (Record& r : in) {
      if (r.Get("n")->as_int() == fail_at_) {
        switch (how_) {
          case How::kStatus:
            return Status::Runtime("boom");
          case How::kThrow:
            throw std::runtime_error("kaboom");
          case How::kDataError: {
            Status st = errors_->OnRecordError(r, "bad value");
            if (!st.ok()) return st;
            continue;
          }
        }
      }
      out.Emit(std::move(r));
    }
    return Status::Ok();
  }

 private:
  int64_t fail_at_;
  How how_;
  ErrorHandler* errors_ = nullptr;
};

// Counts per key in host-owned state; emits {key fields, count, instance} at Finish.
class CountOp : public Operator {
 public:
  Status Open(NodeContext& ctx) override {
    state_ = ctx.state;
    key_ = ctx.spec->key;
    instance_ = ctx.instance;
    return Status::Ok();
  }
  Status Process(int, RecordBatch& in, Emitter&) override {
    for (const Record& r : in) {
      buf_.clear();
      if (!EncodeKey(r, key_, &buf_)) return Status::DataError("no key");
      StateValue& v = state_->Upsert(buf_);
      if (v.empty()) v.push_back(Value::Int(0));
      v[0] = Value::Int(v[0].as_int() + 1);
    }
    return Status::Ok();
  }
  Status Finish(Emitter& out) override {
    g_world->finish_calls++;
    state_->ForEach([&](std::string_view k, const StateValue& v) {
      Record r;
      REQUIRE(DecodeKey(k, key_, &r));
      r.Append("count", v[0]);
      r.Append("instance", Value::Int(instance_));
      out.Emit(std::move(r));
    });
    return Status::Ok();
  }

 private:
  KeyedState* state_ = nullptr;
  std::vector<std::string> key_;
  int instance_ = 0;
  std::string buf_;
};

class CollectSink : public Sink {
 public:
  explicit CollectSink(bool fail_open) : fail_open_(fail_open) {}
  Status Open(NodeContext& ctx) override {
    g_world->opens++;
    id_ = ctx.spec->id;
    if (fail_open_) return Status::IOError("cannot open 'nowhere'");
    return Status::Ok();
  }
  Status Write(RecordBatch& in) override {
    std::lock_guard<std::mutex> lock(g_world->mu);
    auto& v = g_world->sunk[id_];
    v.insert(v.end(), in.begin(), in.end());
    g_world->writes++;
    g_world->flushed_since_write = false;
    return Status::Ok();
  }
  Status Flush(bool durable) override {
    if (durable) {
      g_world->durable_flushes++;
    } else {
      g_world->plain_flushes++;
      g_world->flushed_since_write = true;
    }
    return Status::Ok();
  }
  Status Close() override {
    g_world->closes++;
    return Status::Ok();
  }

 private:
  bool fail_open_;
  std::string id_;
};

// A sink whose flush is a transaction (as sqlite's): not flushed whenever its task idles.
class TransactionSink : public CollectSink {
 public:
  TransactionSink() : CollectSink(false) {}
  bool FlushWhenIdle() const override { return false; }
};

void AddSource(Registry& reg, const std::string& type, int64_t count, int keys = 10,
               bool idle_at_end = false) {
  NodeTypeDef d;
  d.kind = NodeKind::kSource;
  d.type = type;
  d.make_source = [count, keys, idle_at_end](const NodeSpec&) {
    return std::make_unique<GenSource>(count, keys, idle_at_end);
  };
  reg.Add(std::move(d));
}

void AddOperator(Registry& reg, const std::string& type,
                 std::function<std::unique_ptr<Operator>()> make) {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = type;
  d.make_operator = [make](const NodeSpec&) { return make(); };
  reg.Add(std::move(d));
}

Registry MakeRegistry(int64_t gen_count) {
  Registry reg;
  AddSource(reg, "gen", gen_count);
  AddSource(reg, "forever", -1);
  AddSource(reg, "quiet", 100, 10, /*idle_at_end=*/true);
  AddOperator(reg, "pass", [] { return std::make_unique<PassOp>(); });
  AddOperator(reg, "count", [] { return std::make_unique<CountOp>(); });
  AddOperator(reg, "place", [] { return std::make_unique<PlaceOp>(); });
  for (bool fail_open : {false, true}) {
    NodeTypeDef d;
    d.kind = NodeKind::kSink;
    d.type = fail_open ? "broken" : "collect";
    d.make_sink = [fail_open](const NodeSpec&) { return std::make_unique<CollectSink>(fail_open); };
    reg.Add(std::move(d));
  }
  NodeTypeDef tx;
  tx.kind = NodeKind::kSink;
  tx.type = "tx";
  tx.make_sink = [](const NodeSpec&) { return std::make_unique<TransactionSink>(); };
  reg.Add(std::move(tx));
  return reg;
}

Status RunPipeline(const PipelineSpec& spec, const Registry& reg, RunStats* stats,
                   RunOptions opt = RunOptions()) {
  Plan plan = BuildPlan(spec);
  Executor ex(spec, plan, reg, opt);
  return ex.Run(stats);
}

const NodeStats& StatsOf(const RunStats& s, const std::string& id) {
  for (const NodeStats& n : s.nodes) {
    if (n.id == id) return n;
  }
  FAIL("no stats for " << id);
  return s.nodes.front();
}

TEST_CASE("a chained pipeline delivers every record in order and finishes once") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(5000);
  PipelineSpec s = MakePipeline({Src("src"), Op("p", {{"src"}}), Snk("out", {{"p"}})});
  RunStats stats;
  RunOptions opt;
  opt.batch_size = 128;
  Status st = RunPipeline(s, reg, &stats, opt);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(stats.exit_reason == "completed");
  CHECK(stats.source_events == 5000);
  const auto& out = w.sunk["out"];
  REQUIRE(out.size() == 5000);
  for (int i = 0; i < 5000; ++i) CHECK(out[i].Get("n")->as_int() == i);
  CHECK(w.finish_calls == 1);
  CHECK(w.durable_flushes == 1);
  CHECK(w.opens == 3);
  CHECK(w.closes == 3);
  CHECK(StatsOf(stats, "src").processed == 5000);
  CHECK(StatsOf(stats, "p").processed == 5000);
  CHECK(StatsOf(stats, "p").emitted == 5000);
  CHECK(StatsOf(stats, "out").emitted == 5000);
}

TEST_CASE("a sink that does not flush when idle is flushed at most every 200 ms") {
  // The sink is its own task (round_robin edge), fed 1,000 small batches: its task runs
  // dry between most of them. A sink flushed whenever idle would be flushed about once
  // per batch; this one only when 200 ms passed since its last flush.
  World& w = ResetWorld();
  Registry reg = MakeRegistry(16000);
  PipelineSpec s = MakePipeline(
      {Src("src"), Snk("out", {{"src", PartitionKind::kRoundRobin}}, 1, "tx")});
  RunStats stats;
  RunOptions opt;
  opt.batch_size = 16;
  opt.channel_capacity = 2;
  const auto t0 = std::chrono::steady_clock::now();
  Status st = RunPipeline(s, reg, &stats, opt);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(w.sunk["out"].size() == 16000);
  CHECK(w.writes >= 100);
  CHECK(w.plain_flushes <= static_cast<int>(ms / 200) + 1);
  CHECK(w.durable_flushes == 1);
}

TEST_CASE("a quiet stream still reaches a sink that does not flush when idle") {
  // 100 records, then the source reads nothing and never ends: the consumer sleeps, and
  // must wake to flush once 200 ms have passed instead of holding the rows until more
  // input comes. The run stops after 1.5 s (duration), long before its end flush.
  World& w = ResetWorld();
  Registry reg = MakeRegistry(0);
  PipelineSpec s = MakePipeline(
      {Src("src", "quiet"), Snk("out", {{"src", PartitionKind::kRoundRobin}}, 1, "tx")});
  RunStats stats;
  RunOptions opt;
  opt.duration_ms = 1500;
  std::atomic<bool> flushed_while_running{false};
  std::thread watch([&] {
    for (int i = 0; i < 140 && !flushed_while_running; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (w.writes > 0 && w.flushed_since_write) flushed_while_running = true;
    }
  });
  Status st = RunPipeline(s, reg, &stats, opt);
  watch.join();
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(stats.exit_reason == "duration");
  CHECK(w.sunk["out"].size() == 100);
  CHECK(flushed_while_running);
}

TEST_CASE("fan-out copies to every consumer; fan-in merges every input") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(3000);
  PipelineSpec s =
      MakePipeline({Src("src"), Op("a", {{"src"}}), Op("b", {{"src"}}), Op("j", {{"a"}, {"b"}}),
                    Snk("out", {{"j"}}), Snk("side", {{"src"}})});
  RunStats stats;
  RunOptions opt;
  opt.batch_size = 100;
  opt.channel_capacity = 2;
  Status st = RunPipeline(s, reg, &stats, opt);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(stats.exit_reason == "completed");
  CHECK(w.sunk["side"].size() == 3000);
  const auto& out = w.sunk["out"];
  REQUIRE(out.size() == 6000);
  std::map<int64_t, std::set<int64_t>> ports;  // n -> ports it arrived on
  for (const Record& r : out) ports[r.Get("n")->as_int()].insert(r.Get("port")->as_int());
  CHECK(ports.size() == 3000);
  for (const auto& [n, p] : ports) CHECK(p == std::set<int64_t>{0, 1});
  CHECK(w.finish_calls == 3);  // a, b, j
}

TEST_CASE("parallelism 2: hash keeps each key on one instance; counts are complete") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(10000);
  PipelineSpec s = MakePipeline(
      {Src("src"), Op("counts", {{"src"}}, 2, "count", {"k"}), Snk("out", {{"counts"}})});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(stats.exit_reason == "completed");
  const auto& out = w.sunk["out"];
  REQUIRE(out.size() == 10);  // one final record per key: no key split across instances
  std::set<std::string> keys;
  std::set<int64_t> instances;
  for (const Record& r : out) {
    keys.insert(r.Get("k")->str());
    CHECK(r.Get("count")->as_int() == 1000);
    instances.insert(r.Get("instance")->as_int());
  }
  CHECK(keys.size() == 10);
  CHECK(instances.size() == 2);  // 10 keys over 2 instances: both used
  CHECK(w.finish_calls == 2);
  CHECK(StatsOf(stats, "counts").processed == 10000);
  CHECK(StatsOf(stats, "counts").emitted == 10);
}

TEST_CASE("a tail that places its output in hashed partitions feeds the right instances") {
  // Emitter::hashed: the executor offers the edge's partitions to the chain's last
  // operator and skips routing what it placed. Counts are complete, each key on one
  // instance, and the placed records count as emitted.
  for (int p : {2, 3}) {
    World& w = ResetWorld();
    Registry reg = MakeRegistry(10000);
    PipelineSpec s = MakePipeline({Src("src"), Op("place", {{"src"}}, 1, "place"),
                                   Op("counts", {{"place"}}, p, "count", {"k"}),
                                   Snk("out", {{"counts"}})});
    RunStats stats;
    Status st = RunPipeline(s, reg, &stats);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(w.placed_calls > 0);
    const auto& out = w.sunk["out"];
    REQUIRE(out.size() == 10);
    std::set<int64_t> instances;
    for (const Record& r : out) {
      CHECK(r.Get("count")->as_int() == 1000);
      const int want = StringKeyPartition(r.Get("k")->str(), p);
      CHECK(r.Get("instance")->as_int() == want);
      instances.insert(r.Get("instance")->as_int());
    }
    CHECK(instances.size() > 1);
    CHECK(StatsOf(stats, "place").emitted == 10000);
    CHECK(StatsOf(stats, "counts").processed == 10000);
  }
  // Not offered when the tail feeds two edges.
  World& w = ResetWorld();
  Registry reg = MakeRegistry(1000);
  PipelineSpec s = MakePipeline({Src("src"), Op("place", {{"src"}}, 1, "place"),
                                 Op("counts", {{"place"}}, 2, "count", {"k"}),
                                 Snk("out", {{"counts"}}), Snk("side", {{"place"}})});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(w.placed_calls == 0);
  CHECK(w.sunk["side"].size() == 1000);
  CHECK(w.sunk["out"].size() == 10);
}

TEST_CASE("Finish output flows down the rest of the chain before the next Finish") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(1000);
  // All parallelism 1: one chain src -> counts -> p -> out.
  PipelineSpec s = MakePipeline({Src("src"), Op("counts", {{"src"}}, 1, "count", {"k"}),
                                 Op("p", {{"counts"}}), Snk("out", {{"p"}})});
  REQUIRE(BuildPlan(s).chains.size() == 1);
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  REQUIRE_MESSAGE(st.ok(), st.message());
  const auto& out = w.sunk["out"];
  REQUIRE(out.size() == 10);
  for (const Record& r : out) {
    CHECK(r.Get("count")->as_int() == 100);
    CHECK(r.Get("port") != nullptr);  // went through p's Process
  }
  CHECK(w.finish_calls == 2);
  CHECK(StatsOf(stats, "p").processed == 10);
}

TEST_CASE("broadcast delivers every record to every instance") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(500);
  PipelineSpec s = MakePipeline(
      {Src("src"), Op("p", {{"src", PartitionKind::kBroadcast}}, 3), Snk("out", {{"p"}})});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  REQUIRE_MESSAGE(st.ok(), st.message());
  std::map<int64_t, int> times;
  for (const Record& r : w.sunk["out"]) times[r.Get("n")->as_int()]++;
  CHECK(times.size() == 500);
  for (const auto& [n, c] : times) CHECK(c == 3);
}

TEST_CASE("parallel sources spread round robin to a wider operator") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(7001);
  PipelineSpec s = MakePipeline({Src("src", "gen", 2), Op("p", {{"src"}}, 3), Snk("out", {{"p"}})});
  RunStats stats;
  RunOptions opt;
  opt.batch_size = 64;
  Status st = RunPipeline(s, reg, &stats, opt);
  REQUIRE_MESSAGE(st.ok(), st.message());
  std::set<int64_t> seen;
  for (const Record& r : w.sunk["out"]) seen.insert(r.Get("n")->as_int());
  CHECK(w.sunk["out"].size() == 7001);
  CHECK(seen.size() == 7001);
  CHECK(stats.source_events == 7001);
}

TEST_CASE("max_events stops the sources at exactly N events and skips Finish") {
  for (int sources : {1, 2}) {
    CAPTURE(sources);
    World& w = ResetWorld();
    Registry reg = MakeRegistry(0);
    PipelineSpec s =
        MakePipeline({Src("src", "forever", sources), Op("p", {{"src"}}, 2), Snk("out", {{"p"}})});
    RunStats stats;
    RunOptions opt;
    opt.max_events = 2500;
    Status st = RunPipeline(s, reg, &stats, opt);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(stats.exit_reason == "max-events");
    CHECK(stats.source_events == 2500);
    CHECK(w.sunk["out"].size() == 2500);  // what was read still reaches the sink
    CHECK(w.finish_calls == 0);           // emit: final must not fire on a stopped run
    CHECK(w.durable_flushes == 1);
    CHECK(w.closes == sources + 2 + 1);
  }
}

TEST_CASE("a stop signal and --duration stop an unbounded run cleanly") {
  SUBCASE("signal") {
    World& w = ResetWorld();
    Registry reg = MakeRegistry(0);
    PipelineSpec s =
        MakePipeline({Src("src", "forever"), Op("p", {{"src"}}, 2), Snk("out", {{"p"}})});
    std::atomic<int> sig{15};
    RunStats stats;
    RunOptions opt;
    opt.stop_signal = &sig;
    Status st = RunPipeline(s, reg, &stats, opt);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(stats.exit_reason == "stopped");
    CHECK(stats.signal == 15);
    CHECK(w.finish_calls == 0);
    CHECK(w.sunk["out"].size() == stats.source_events);
  }
  SUBCASE("duration, with Progress polled from another thread") {
    World& w = ResetWorld();
    Registry reg = MakeRegistry(0);
    PipelineSpec s =
        MakePipeline({Src("src", "forever"), Op("p", {{"src"}}, 2), Snk("out", {{"p"}})});
    Plan plan = BuildPlan(s);
    RunOptions opt;
    opt.duration_ms = 100;
    Executor ex(s, plan, reg, opt);
    std::atomic<bool> done{false};
    std::thread poller([&] {
      while (!done.load()) {
        Progress p = ex.GetProgress();
        (void)p;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    RunStats stats;
    Status st = ex.Run(&stats);
    done = true;
    poller.join();
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(stats.exit_reason == "duration");
    CHECK(w.finish_calls == 0);
    CHECK(w.sunk["out"].size() == stats.source_events);
    Progress p = ex.GetProgress();
    CHECK(p.source_events == stats.source_events);
    REQUIRE(p.backlog.size() == 2);  // p and out read channels
    CHECK(p.backlog[0].first == "p");
    CHECK(p.backlog[0].second == 0);  // drained
  }
}

TEST_CASE("an operator error fails the run, names the node, and leaves no thread") {
  for (auto how : {FailOp::How::kStatus, FailOp::How::kThrow}) {
    World& w = ResetWorld();
    Registry reg = MakeRegistry(0);
    AddOperator(reg, "bad", [how] { return std::make_unique<FailOp>(3000, how); });
    // An unbounded source, a parallel failing operator behind channels, and a sink: the
    // failure must cancel the source blocked on (or feeding) full channels.
    PipelineSpec s = MakePipeline(
        {Src("src", "forever"), Op("bad", {{"src"}}, 2, "bad"), Snk("out", {{"bad"}})});
    RunStats stats;
    RunOptions opt;
    opt.channel_capacity = 1;
    opt.batch_size = 100;
    Status st = RunPipeline(s, reg, &stats, opt);
    REQUIRE_FALSE(st.ok());
    CHECK(stats.exit_reason == "failed");
    if (how == FailOp::How::kStatus) {
      CHECK(st.message() == "node 'bad': boom");
      CHECK(st.code() == Status::Code::kRuntime);
    } else {
      CHECK(st.message() == "node 'bad': unexpected exception: kaboom");
    }
    CHECK(w.finish_calls == 0);
    CHECK(w.closes == 2);  // gen and the sink (FailOp does not count); all closed
  }
}

TEST_CASE("on_error: fail, skip and dead_letter") {
  Registry reg = MakeRegistry(100);
  AddOperator(reg, "bad", [] { return std::make_unique<FailOp>(41, FailOp::How::kDataError); });
  auto spec_with = [](OnError policy, std::string dl) {
    PipelineSpec s =
        MakePipeline({Src("src"), Op("bad", {{"src"}}, 1, "bad"), Snk("out", {{"bad"}})});
    s.nodes[1].on_error = policy;
    s.nodes[1].dead_letter_path = std::move(dl);
    return s;
  };
  SUBCASE("fail names node, source position and record") {
    ResetWorld();
    PipelineSpec s = spec_with(OnError::kFail, "");
    RunStats stats;
    Status st = RunPipeline(s, reg, &stats);
    CHECK(st.code() == Status::Code::kDataError);
    CHECK(st.message() == "node 'bad': bad value at src:42: {\"n\":41,\"k\":\"key1\"}");
  }
  SUBCASE("skip counts") {
    World& w = ResetWorld();
    PipelineSpec s = spec_with(OnError::kSkip, "");
    RunStats stats;
    Status st = RunPipeline(s, reg, &stats);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(w.sunk["out"].size() == 99);
    CHECK(StatsOf(stats, "bad").skipped == 1);
  }
  SUBCASE("dead_letter appends a JSONL line") {
    World& w = ResetWorld();
    std::string path = "unit_exec_dead_letter.jsonl";
    std::remove(path.c_str());
    PipelineSpec s = spec_with(OnError::kDeadLetter, path);
    RunStats stats;
    Status st = RunPipeline(s, reg, &stats);
    REQUIRE_MESSAGE(st.ok(), st.message());
    CHECK(w.sunk["out"].size() == 99);
    CHECK(StatsOf(stats, "bad").skipped == 1);
    std::ifstream f(path);
    std::string line, rest;
    REQUIRE(std::getline(f, line));
    CHECK(line ==
          "{\"node\":\"bad\",\"error\":\"bad value\",\"source\":\"src\",\"position\":42,"
          "\"record\":{\"n\":41,\"k\":\"key1\"}}");
    CHECK_FALSE(std::getline(f, rest));
    std::remove(path.c_str());
  }
}

TEST_CASE("a record missing its hash field is a data error of the upstream node") {
  ResetWorld();
  Registry reg = MakeRegistry(10);
  PipelineSpec s = MakePipeline({Src("src"), Op("p", {{"src"}}),
                                 Op("c", {{"p"}}, 2, "count", {"user"}), Snk("out", {{"c"}})});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  CHECK(st.code() == Status::Code::kDataError);
  CHECK(st.message().rfind("node 'p': record has no field 'user' to hash-partition on at src:1:",
                           0) == 0);
}

TEST_CASE("a node that cannot open fails the run before any source reads") {
  World& w = ResetWorld();
  Registry reg = MakeRegistry(0);
  PipelineSpec s = MakePipeline(
      {Src("src", "forever"), Op("p", {{"src"}}, 2), Snk("out", {{"p"}}, 1, "broken")});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(st.message() == "node 'out': cannot open 'nowhere'");
  CHECK(stats.exit_reason == "failed");
  CHECK(stats.source_events == 0);
  CHECK(w.closes == 3);  // the source and both operator instances were opened, then closed
}

TEST_CASE("an unknown node type is reported with the node's name") {
  ResetWorld();
  Registry reg = MakeRegistry(10);
  PipelineSpec s = MakePipeline({Src("src"), Op("p", {{"src"}}, 1, "nope"), Snk("out", {{"p"}})});
  RunStats stats;
  Status st = RunPipeline(s, reg, &stats);
  CHECK_FALSE(st.ok());
  CHECK(st.message() == "node 'p': unknown op type 'nope'");
}

}  // namespace
}  // namespace onceflow

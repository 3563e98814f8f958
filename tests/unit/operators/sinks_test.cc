// Sinks: file (formats, truncation, resume), sqlite (upsert merging, identifiers, hostile
// values), stdout, discard.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <functional>

#include "operators/defs.h"
#include "runtime/core/key.h"
#include "test_util.h"

namespace onceflow::testing {

namespace {

std::string SinkYaml(const std::string& sink_block) {
  return "pipeline: t\n"
         "nodes:\n"
         "  src:\n"
         "    source: generate\n"
         "    count: 1\n"
         "  out:\n"
         "    input: src\n" +
         sink_block;
}

Record Rec(std::initializer_list<std::pair<const char*, Value>> fields) {
  Record r;
  for (const auto& [k, v] : fields) r.Append(k, v);
  return r;
}

struct SinkRun {
  std::unique_ptr<Pipeline> p;
  std::unique_ptr<Harness> h;
  std::unique_ptr<Sink> sink;

  SinkRun(const TempDir& dir, const std::string& block, bool fresh = true,
          const std::function<void(NodeContext&)>& setup = nullptr) {
    p = LoadYaml(dir.path(), SinkYaml(block));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    h = std::make_unique<Harness>(*p, "out");
    h->ctx.fresh_start = fresh;
    if (setup) setup(h->ctx);
    sink = Def(NodeKind::kSink, p->Node("out").type).make_sink(p->Node("out"));
    Status st = sink->Open(h->ctx);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  void Write(RecordBatch batch) {
    Status st = sink->Write(batch);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
  void Flush(bool durable = true) {
    Status st = sink->Flush(durable);
    REQUIRE_MESSAGE(st.ok(), st.message());
  }
};

// Rows of `sql` as "a|b\n" lines.
std::string Query(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK,
                  sqlite3_errmsg(db));
  std::string out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      if (i > 0) out += "|";
      const unsigned char* t = sqlite3_column_text(st, i);
      out += t ? reinterpret_cast<const char*>(t) : "NULL";
    }
    out += "\n";
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("file sink: jsonl, creates folders, fresh start truncates, resume appends") {
  TempDir dir;
  std::string path = dir / "out/sub/o.jsonl";
  {
    SinkRun r(dir, "    sink: file\n    path: out/sub/o.jsonl\n");
    r.Write({Rec({{"a", Value::Int(1)}}), Rec({{"a", Value::String("x\ny")}})});
    r.Flush();
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(path) == "{\"a\":1}\n{\"a\":\"x\\ny\"}\n");
  }
  {
    // Resume: appends, after cutting a torn last line.
    AppendFile(path, "{\"a\":");
    SinkRun r(dir, "    sink: file\n    path: out/sub/o.jsonl\n", /*fresh=*/false);
    r.Write({Rec({{"a", Value::Int(2)}})});
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(path) == "{\"a\":1}\n{\"a\":\"x\\ny\"}\n{\"a\":2}\n");
  }
  {
    SinkRun r(dir, "    sink: file\n    path: out/sub/o.jsonl\n");
    CHECK(ReadFile(path) == "");
    REQUIRE(r.sink->Close().ok());
  }
}

TEST_CASE("file sink: csv and lines formats; data errors go to on_error") {
  TempDir dir;
  {
    SinkRun r(dir, "    sink: file\n    path: o.csv\n    format: csv\n");
    r.Write({Rec({{"word", Value::String("a,b")}, {"count", Value::Int(2)}}),
             Rec({{"count", Value::Int(1)}, {"word", Value::String("say \"hi\"")}}),
             Rec({{"word", Value::String("x")}, {"extra", Value::Int(1)}})});
    r.Flush();
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(dir / "o.csv") == "word,count\r\n\"a,b\",2\r\n\"say \"\"hi\"\"\",1\r\n");
    REQUIRE(r.h->errors.errors.size() == 1);
    CHECK(r.h->errors.errors[0].find("'extra'") != std::string::npos);
  }
  {
    // Resuming a csv file keeps its header and column order.
    SinkRun r(dir, "    sink: file\n    path: o.csv\n    format: csv\n", /*fresh=*/false);
    r.Write({Rec({{"count", Value::Int(7)}, {"word", Value::String("z")}})});
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(dir / "o.csv") ==
          "word,count\r\n\"a,b\",2\r\n\"say \"\"hi\"\"\",1\r\nz,7\r\n");
  }
  {
    SinkRun r(dir, "    sink: file\n    path: o.txt\n    format: lines\n    field: word\n");
    r.Write({Rec({{"word", Value::String("hello")}}), Rec({{"word", Value::Int(3)}}),
             Rec({{"other", Value::Int(3)}})});
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(dir / "o.txt") == "hello\n3\n");
    CHECK(r.h->errors.errors.size() == 1);
  }
}

TEST_CASE("file sink: guarantees stated per semantics") {
  const auto& def = Def(NodeKind::kSink, "file");
  CHECK(def.sink_guarantee(Semantics::kEffectivelyOnce).find("effectively-once") == 0);
  CHECK(def.sink_guarantee(Semantics::kAtMostOnce).find("at-most-once") == 0);
  CHECK(Def(NodeKind::kSink, "stdout").sink_guarantee(Semantics::kEffectivelyOnce) ==
        "at-least-once at best — stdout cannot take output back");
  CHECK(def.max_parallelism == 1);
}

TEST_CASE("sqlite sink: upsert merges per key, appends without key") {
  TempDir dir;
  std::string db = dir / "db/out.db";
  {
    SinkRun r(dir, "    sink: sqlite\n    path: db/out.db\n    table: counts\n    key: word\n");
    r.Write({Rec({{"word", Value::String("b")}, {"count", Value::Int(1)}}),
             Rec({{"word", Value::String("a")}, {"count", Value::Int(1)}}),
             Rec({{"word", Value::String("b")}, {"count", Value::Int(2)}})});
    r.Flush(false);
    CHECK(Query(db, "SELECT word, count FROM counts ORDER BY word") == "a|1\nb|2\n");
    // A new field adds a column; the row becomes the last record (missing fields NULL).
    r.Write({Rec({{"word", Value::String("a")}, {"count", Value::Int(5)}, {"ratio", Value::Double(0.5)}}),
             Rec({{"word", Value::String("b")}, {"ratio", Value::Double(1.5)}})});
    r.Flush(true);
    CHECK(Query(db, "SELECT word, count, ratio FROM counts ORDER BY word") ==
          "a|5|0.5\nb|NULL|1.5\n");
    CHECK(Query(db, "SELECT type FROM pragma_table_info('counts') ORDER BY cid") ==
          "TEXT\nINTEGER\nREAL\n");
    // Missing key: data error.
    r.Write({Rec({{"count", Value::Int(1)}})});
    CHECK(r.h->errors.errors.size() == 1);
    REQUIRE(r.sink->Close().ok());
  }
  {
    // Resume keeps rows; a fresh start empties the table.
    SinkRun r(dir, "    sink: sqlite\n    path: db/out.db\n    table: counts\n    key: word\n", false);
    r.Write({Rec({{"word", Value::String("c")}, {"count", Value::Int(1)}})});
    r.Flush();
    CHECK(Query(db, "SELECT count(*) FROM counts") == "3\n");
    REQUIRE(r.sink->Close().ok());
    SinkRun fresh(dir, "    sink: sqlite\n    path: db/out.db\n    table: counts\n    key: word\n");
    CHECK(Query(db, "SELECT count(*) FROM counts") == "0\n");
    REQUIRE(fresh.sink->Close().ok());
  }
  {
    SinkRun r(dir, "    sink: sqlite\n    path: db/out.db\n    table: log\n");
    r.Write({Rec({{"n", Value::Int(1)}}), Rec({{"n", Value::Int(1)}}), Rec({{"n", Value::Int(2)}})});
    r.Flush();
    CHECK(Query(db, "SELECT n FROM log ORDER BY rowid") == "1\n1\n2\n");
    REQUIRE(r.sink->Close().ok());
  }
}

TEST_CASE("file sink: pre-commit reports the synced length; a resume cuts back to it") {
  TempDir dir;
  const std::string block = "    sink: file\n    path: o.jsonl\n";
  const std::string path = dir / "o.jsonl";
  SinkPreCommit pc;
  {
    SinkRun r(dir, block);
    r.Write({Rec({{"a", Value::Int(1)}})});
    REQUIRE(r.sink->PreCommit(&pc).ok());
    CHECK(pc.path == path);
    CHECK(pc.length == 8);
    CHECK(ReadFile(path) == "{\"a\":1}\n");
    r.Write({Rec({{"a", Value::Int(2)}})});  // written after the checkpoint
    REQUIRE(r.sink->Close().ok());
  }
  auto resume = [&](NodeContext& ctx) {
    ctx.resume_path = pc.path;
    ctx.resume_length = pc.length;
  };
  {
    SinkRun r(dir, block, /*fresh=*/false, resume);
    CHECK(ReadFile(path) == "{\"a\":1}\n");  // cut back to the checkpoint
    r.Write({Rec({{"a", Value::Int(3)}})});
    REQUIRE(r.sink->Close().ok());
    CHECK(ReadFile(path) == "{\"a\":1}\n{\"a\":3}\n");
  }
  {
    // A file shorter than its checkpoint lost committed output: a state error.
    WriteFile(path, "{}");
    auto p = LoadYaml(dir.path(), SinkYaml(block));
    Harness h(*p, "out");
    h.ctx.fresh_start = false;
    resume(h.ctx);
    auto sink = Def(NodeKind::kSink, "file").make_sink(p->Node("out"));
    Status st = sink->Open(h.ctx);
    CHECK(st.code() == Status::Code::kState);
    CHECK(ReadFile(path) == "{}");
  }
  {
    // The checkpoint recorded another path: this file starts empty.
    WriteFile(path, "old\n");
    SinkRun r(dir, block, false, [](NodeContext& ctx) {
      ctx.resume_path = "/elsewhere/o.jsonl";
      ctx.resume_length = 100;
    });
    CHECK(ReadFile(path) == "");
    REQUIRE(r.sink->Close().ok());
  }
}

TEST_CASE("sqlite sink: two-phase holds rows until ApplyEpoch, which applies an epoch once") {
  TempDir dir;
  const std::string block = "    sink: sqlite\n    path: o.db\n    table: t\n    key: k\n";
  const std::string db = dir / "o.db";
  SinkPreCommit pc;
  {
    SinkRun r(dir, block, true, [](NodeContext& ctx) { ctx.two_phase = true; });
    r.Write({Rec({{"k", Value::String("b")}, {"v", Value::Int(1)}}),
             Rec({{"k", Value::String("a")}, {"v", Value::Int(2)}}),
             Rec({{"k", Value::String("b")}, {"v", Value::Int(3)}})});
    r.Flush(true);  // writes nothing in two-phase mode
    REQUIRE(r.sink->PreCommit(&pc).ok());
    CHECK(pc.rows.size() == 2);  // merged per key
    SinkPreCommit again;
    REQUIRE(r.sink->PreCommit(&again).ok());
    CHECK(again.rows.empty());  // handed over once
    REQUIRE(r.sink->Close().ok());
  }
  SinkRun applier(dir, block, false);
  REQUIRE(applier.sink->ApplyEpoch("lineage1", 7, pc.rows).ok());
  CHECK(Query(db, "SELECT k, v FROM t ORDER BY k") == "a|2\nb|3\n");
  // The same epoch again (a roll-forward after a crash) is a no-op, even with other rows.
  std::vector<std::string> other = {pc.rows[0]};
  Record changed;
  changed.Append("k", Value::String("a"));
  changed.Append("v", Value::Int(99));
  other[0].clear();
  EncodeRecord(changed, &other[0]);
  REQUIRE(applier.sink->ApplyEpoch("lineage1", 7, other).ok());
  CHECK(Query(db, "SELECT k, v FROM t ORDER BY k") == "a|2\nb|3\n");
  // Another epoch, or the same number in another lineage (after --fresh), applies.
  REQUIRE(applier.sink->ApplyEpoch("lineage2", 7, other).ok());
  CHECK(Query(db, "SELECT k, v FROM t ORDER BY k") == "a|99\nb|3\n");
  CHECK(Query(db, "SELECT lineage, node, epoch FROM onceflow_applied_epochs ORDER BY lineage") ==
        "lineage1|out|7\nlineage2|out|7\n");
  // Corrupt staged bytes are refused and nothing of the epoch is applied.
  CHECK(applier.sink->ApplyEpoch("lineage1", 8, {std::string("\x07garbage")}).code() ==
        Status::Code::kState);
  CHECK(Query(db, "SELECT count(*) FROM onceflow_applied_epochs WHERE epoch = 8") == "0\n");
  REQUIRE(applier.sink->Close().ok());
}

TEST_CASE("sqlite sink: hostile values and field names are stored verbatim") {
  TempDir dir;
  std::string db = dir / "out.db";
  SinkRun r(dir, "    sink: sqlite\n    path: out.db\n    table: x\n    key: id\n");
  std::string evil = "'); DROP TABLE x;--";
  r.Write({Rec({{"id", Value::String(evil)},
                {"we\"ird name", Value::String("\"); DROP TABLE x; --")},
                {"nested", Value::Json("{\"a\":[1,2]}")},
                {"flag", Value::Bool(true)}})});
  r.Flush();
  REQUIRE(r.sink->Close().ok());
  CHECK(Query(db, "SELECT id, \"we\"\"ird name\", nested, flag FROM x") ==
        evil + "|\"); DROP TABLE x; --|{\"a\":[1,2]}|1\n");
}

TEST_CASE("sqlite sink: table names are validated") {
  TempDir dir;
  for (const char* bad : {"\"x; DROP\"", "1abc", "\"a-b\"", "\"\""}) {
    CAPTURE(bad);
    auto p = LoadYaml(dir.path(), SinkYaml(std::string("    sink: sqlite\n    path: o.db\n    table: ") +
                                           bad + "\n"));
    CHECK_FALSE(p->ok);
  }
  auto ok = LoadYaml(dir.path(), SinkYaml("    sink: sqlite\n    path: o.db\n    table: _ok_1\n"));
  CHECK_MESSAGE(ok->ok, ok->Rendered());
}

TEST_CASE("stdout sink writes buffered output; discard drops everything") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), SinkYaml("    sink: stdout\n    format: lines\n    field: n\n"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  Harness h(*p, "out");
  auto sink = ops::MakeStdoutSinkForFd(p->Node("out"), fds[1]);
  REQUIRE(sink->Open(h.ctx).ok());
  RecordBatch batch = {Rec({{"n", Value::Int(1)}}), Rec({{"n", Value::String("two")}})};
  REQUIRE(sink->Write(batch).ok());
  REQUIRE(sink->Flush(true).ok());
  char buf[64] = {};
  ssize_t n = ::read(fds[0], buf, sizeof buf);
  CHECK(std::string(buf, n > 0 ? n : 0) == "1\ntwo\n");
  ::close(fds[0]);
  ::close(fds[1]);

  auto pd = LoadYaml(dir.path(), SinkYaml("    sink: discard\n"));
  REQUIRE_MESSAGE(pd->ok, pd->Rendered());
  Harness hd(*pd, "out");
  auto d = Def(NodeKind::kSink, "discard").make_sink(pd->Node("out"));
  REQUIRE(d->Open(hd.ctx).ok());
  RecordBatch one = {Rec({{"n", Value::Int(1)}})};
  CHECK(d->Write(one).ok());
  CHECK(d->Flush(true).ok());
  CHECK(d->Close().ok());
}

TEST_CASE("registry: every built-in type is registered with documented options") {
  for (const NodeTypeDef* def : Builtins().All()) {
    CAPTURE(def->type);
    CHECK_FALSE(def->summary.empty());
    for (const auto& o : def->options) {
      CAPTURE(o.name);
      CHECK_FALSE(o.help.empty());
      if (o.type == OptionType::kEnum) CHECK_FALSE(o.choices.empty());
    }
    switch (def->kind) {
      case NodeKind::kSource: CHECK(def->make_source != nullptr); break;
      case NodeKind::kOperator: CHECK(def->make_operator != nullptr); break;
      case NodeKind::kSink:
        CHECK(def->make_sink != nullptr);
        CHECK(def->sink_guarantee != nullptr);
        break;
    }
  }
  for (const char* t : {"file", "files", "generate", "stdin"}) CHECK(Builtins().Find(NodeKind::kSource, t));
  for (const char* t : {"map", "filter", "flat_map", "split", "count", "aggregate", "distinct"}) {
    CHECK(Builtins().Find(NodeKind::kOperator, t));
  }
  for (const char* t : {"file", "sqlite", "stdout", "discard"}) CHECK(Builtins().Find(NodeKind::kSink, t));
}

}  // namespace onceflow::testing

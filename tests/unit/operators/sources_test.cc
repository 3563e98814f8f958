// Sources: file (lines / jsonl / csv, follow), files, generate, stdin.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "operators/defs.h"
#include "test_util.h"

namespace onceflow::testing {

namespace {

std::string FileSourceYaml(const std::string& extra) {
  return "pipeline: t\n"
         "nodes:\n"
         "  src:\n"
         "    source: file\n"
         "    path: in.txt\n" +
         extra +
         "  out:\n"
         "    sink: discard\n"
         "    input: src\n";
}

std::unique_ptr<Source> Open(const Pipeline& p, Harness& h, const std::string& id = "src") {
  const NodeSpec& spec = p.Node(id);
  auto src = Def(NodeKind::kSource, spec.type).make_source(spec);
  REQUIRE(src->Open(h.ctx).ok());
  return src;
}

}  // namespace

TEST_CASE("file source: lines strips \\n and \\r and emits a last line without newline") {
  TempDir dir;
  WriteFile(dir / "in.txt", "alpha beta\r\n\ngamma\nlast");
  auto p = LoadYaml(dir.path(), FileSourceYaml(""));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  Harness h(*p, "src");
  auto src = Open(*p, h);
  RecordBatch out;
  REQUIRE(ReadAll(*src, &out).ok());
  CHECK(Json(out) ==
        "{\"line\":\"alpha beta\"}\n{\"line\":\"\"}\n{\"line\":\"gamma\"}\n{\"line\":\"last\"}\n");
  CHECK(out[2].origin.position == 3);
  CHECK(out[2].origin.source == p->spec.NodeIndex("src"));
  CHECK(src->Position().count == 4);
  CHECK(src->Position().offset == 23);
}

TEST_CASE("file source: jsonl skips blank lines and reports malformed ones") {
  TempDir dir;
  WriteFile(dir / "in.txt", "{\"a\":1}\n\n{broken\n  \n{\"a\":2,\"b\":[1,2]}\r\n");
  auto p = LoadYaml(dir.path(), FileSourceYaml("    format: jsonl\n"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  Harness h(*p, "src");
  auto src = Open(*p, h);
  RecordBatch out;
  REQUIRE(ReadAll(*src, &out).ok());
  CHECK(Json(out) == "{\"a\":1}\n{\"a\":2,\"b\":[1,2]}\n");
  CHECK(out[1].origin.position == 5);
  REQUIRE(h.errors.raws.size() == 1);
  CHECK(h.errors.raws[0] == "{broken");
  CHECK(h.errors.origins[0].position == 3);

  SUBCASE("on_error: fail stops the read") {
    Harness h2(*p, "src");
    h2.errors.fail = true;
    auto src2 = Open(*p, h2);
    RecordBatch out2;
    Status st = ReadAll(*src2, &out2);
    CHECK(st.code() == Status::Code::kDataError);
  }
}

TEST_CASE("file source: csv with header, quoting, CRLF and typed cells") {
  TempDir dir;
  WriteFile(dir / "in.txt",
            "name,amount,note\r\n"
            "alice,12,\"hello, world\"\r\n"
            "bob,2.5,\"multi\nline\"\r\n"
            "\r\n"
            "carol,007,\r\n"
            "dave,1\r\n"
            "erin,-3,\"\"\"q\"\"\"");
  auto p = LoadYaml(dir.path(), FileSourceYaml("    format: csv\n"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  Harness h(*p, "src");
  auto src = Open(*p, h);
  RecordBatch out;
  REQUIRE(ReadAll(*src, &out).ok());
  CHECK(Json(out) ==
        "{\"name\":\"alice\",\"amount\":12,\"note\":\"hello, world\"}\n"
        "{\"name\":\"bob\",\"amount\":2.5,\"note\":\"multi\\nline\"}\n"
        "{\"name\":\"carol\",\"amount\":\"007\",\"note\":\"\"}\n"
        "{\"name\":\"erin\",\"amount\":-3,\"note\":\"\\\"q\\\"\"}\n");
  REQUIRE(h.errors.errors.size() == 1);
  CHECK(h.errors.errors[0].find("row has 2 cells, the header has 3") != std::string::npos);
  CHECK(h.errors.raws[0] == "dave,1");
  CHECK(h.errors.origins[0].position == 4);
  CHECK(out[3].origin.position == 5);
}

TEST_CASE("file source: a csv header must name every column once, in valid UTF-8") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), FileSourceYaml("    format: csv\n"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  // The last two differ only in invalid bytes, which the jsonl writer turns into the same
  // U+FFFD: they must not become two fields of one name (found by fuzz_records).
  const std::pair<std::string, std::string> headers[] = {
      {"a,b,a\n1,2,3\n", "duplicate column 'a'"},
      {"a,,b\n1,2,3\n", "column 2 has no name"},
      {"\x9b,ly,\xfd\n1,2,3\n", "column 1 is not valid UTF-8"},
  };
  for (const auto& header : headers) {
    const std::string& want = header.second;  // CAPTURE takes no structured binding (clang 14)
    CAPTURE(want);
    WriteFile(dir / "in.txt", header.first);
    Harness h(*p, "src");
    auto src = Open(*p, h);
    RecordBatch out;
    Status st = ReadAll(*src, &out);
    REQUIRE_FALSE(st.ok());
    CHECK(st.message().find(want) != std::string::npos);
    CHECK(out.empty());
  }
}

TEST_CASE("file source: Position/Seek round trip, for every format") {
  TempDir dir;
  struct Case {
    const char* format;
    std::string text;
  } cases[] = {
      {"lines", "l1\nl2\nl3\nl4\nl5\n"},
      {"jsonl", "{\"n\":1}\n\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n"},
      {"csv", "n,s\n1,a\n2,b\n3,c\n4,d\n5,e\n"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.format);
    WriteFile(dir / "in.txt", c.text);
    auto p = LoadYaml(dir.path(), FileSourceYaml(std::string("    format: ") + c.format + "\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "src");
    auto src = Open(*p, h);
    RecordBatch first;
    Emitter em(&first);
    bool end = false;
    REQUIRE(src->Read(2, em, &end).ok());
    REQUIRE(first.size() == 2);
    SourcePosition pos = src->Position();
    CHECK(pos.count == 2);
    RecordBatch rest;
    REQUIRE(ReadAll(*src, &rest).ok());
    REQUIRE(rest.size() == 3);

    // A new instance seeks to the checkpointed position and reads the same tail.
    Harness h2(*p, "src");
    auto again = Open(*p, h2);
    REQUIRE(again->Seek(pos).ok());
    RecordBatch replay;
    REQUIRE(ReadAll(*again, &replay).ok());
    CHECK(Json(replay) == Json(rest));
    CHECK(replay[0].origin.position == rest[0].origin.position);
    CHECK(again->Position().count == 5);
    // And back to the start.
    REQUIRE(again->Seek(SourcePosition{}).ok());
    RecordBatch all;
    REQUIRE(ReadAll(*again, &all).ok());
    CHECK(all.size() == 5);
  }
}

TEST_CASE("file source: follow sees appended data and holds back a partial line") {
  TempDir dir;
  WriteFile(dir / "in.txt", "one\ntw");
  auto p = LoadYaml(dir.path(), FileSourceYaml("    follow: true\n"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  Harness h(*p, "src");
  auto src = Open(*p, h);
  RecordBatch out;
  Emitter em(&out);
  bool end = false;
  REQUIRE(src->Read(100, em, &end).ok());
  CHECK_FALSE(end);
  CHECK(Json(out) == "{\"line\":\"one\"}\n");
  REQUIRE(src->Read(100, em, &end).ok());  // nothing new: returns after a short poll
  CHECK(out.size() == 1);
  CHECK_FALSE(end);
  AppendFile(dir / "in.txt", "o\nthree\n");
  REQUIRE(src->Read(100, em, &end).ok());
  CHECK(Json(out) == "{\"line\":\"one\"}\n{\"line\":\"two\"}\n{\"line\":\"three\"}\n");
  CHECK(src->Position().offset == 14);
  CHECK_FALSE(end);
}

TEST_CASE("file source: a missing file is a clear error") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), FileSourceYaml(""));
  // The validator may or may not check the path; the source must fail clearly either way.
  if (!p->ok) return;
  Harness h(*p, "src");
  auto src = Def(NodeKind::kSource, "file").make_source(p->Node("src"));
  Status st = src->Open(h.ctx);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("No such file") != std::string::npos);
}

TEST_CASE("files source: name order, parallel shares, seek across files") {
  TempDir dir;
  std::filesystem::create_directory(dir / "data");
  WriteFile(dir / "data/b.txt", "b1\nb2\n");
  WriteFile(dir / "data/a.txt", "a1\n");
  WriteFile(dir / "data/c.txt", "c1\nc2");
  WriteFile(dir / "data/skip.csv", "x\n");
  std::string yaml =
      "pipeline: t\n"
      "nodes:\n"
      "  src:\n"
      "    source: files\n"
      "    glob: data/*.txt\n"
      "  out:\n"
      "    sink: discard\n"
      "    input: src\n";
  auto p = LoadYaml(dir.path(), yaml);
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  {
    Harness h(*p, "src");
    auto src = Open(*p, h);
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out, 2).ok());
    CHECK(Json(out) ==
          "{\"line\":\"a1\"}\n{\"line\":\"b1\"}\n{\"line\":\"b2\"}\n{\"line\":\"c1\"}\n"
          "{\"line\":\"c2\"}\n");
    CHECK(src->Position().count == 5);
  }
  {
    // Stop after 2 records (inside b.txt), resume elsewhere.
    Harness h(*p, "src");
    auto src = Open(*p, h);
    RecordBatch out;
    Emitter em(&out);
    bool end = false;
    REQUIRE(src->Read(2, em, &end).ok());
    SourcePosition pos = src->Position();
    CHECK(pos.name.find("b.txt") != std::string::npos);
    Harness h2(*p, "src");
    auto again = Open(*p, h2);
    REQUIRE(again->Seek(pos).ok());
    RecordBatch rest;
    REQUIRE(ReadAll(*again, &rest).ok());
    CHECK(Json(rest) == "{\"line\":\"b2\"}\n{\"line\":\"c1\"}\n{\"line\":\"c2\"}\n");
    CHECK(again->Position().count == 5);
  }
  {
    // Two instances split the files by index: 0 → a, c; 1 → b.
    Harness h0(*p, "src", 0, 2), h1(*p, "src", 1, 2);
    auto s0 = Open(*p, h0);
    auto s1 = Open(*p, h1);
    RecordBatch o0, o1;
    REQUIRE(ReadAll(*s0, &o0).ok());
    REQUIRE(ReadAll(*s1, &o1).ok());
    CHECK(Json(o0) == "{\"line\":\"a1\"}\n{\"line\":\"c1\"}\n{\"line\":\"c2\"}\n");
    CHECK(Json(o1) == "{\"line\":\"b1\"}\n{\"line\":\"b2\"}\n");
  }
}

TEST_CASE("generate source: count, parallel residues, seek, lua, rate") {
  TempDir dir;
  auto yaml = [](const std::string& opts) {
    return "pipeline: t\nnodes:\n  g:\n    source: generate\n" + opts +
           "  out:\n    sink: discard\n    input: g\n";
  };
  {
    auto p = LoadYaml(dir.path(), yaml("    count: 5\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "g");
    auto src = Open(*p, h, "g");
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out, 2).ok());
    CHECK(Json(out) == "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n");
    CHECK(out[0].fields()[0].second.type() == ValueType::kInt);
    CHECK(src->Position().offset == 5);
    REQUIRE(src->Seek(SourcePosition{"", 3, 3}).ok());
    RecordBatch tail;
    REQUIRE(ReadAll(*src, &tail).ok());
    CHECK(Json(tail) == "{\"n\":3}\n{\"n\":4}\n");

    Harness h0(*p, "g", 0, 2), h1(*p, "g", 1, 2);
    auto s0 = Open(*p, h0, "g");
    auto s1 = Open(*p, h1, "g");
    RecordBatch o0, o1;
    REQUIRE(ReadAll(*s0, &o0).ok());
    REQUIRE(ReadAll(*s1, &o1).ok());
    CHECK(Json(o0) == "{\"n\":0}\n{\"n\":2}\n{\"n\":4}\n");
    CHECK(Json(o1) == "{\"n\":1}\n{\"n\":3}\n");
  }
  {
    auto p = LoadYaml(dir.path(), yaml("    count: 0\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "g");
    auto src = Open(*p, h, "g");
    RecordBatch out;
    Emitter em(&out);
    bool end = false;
    REQUIRE(src->Read(10, em, &end).ok());
    CHECK(end);
    CHECK(out.empty());
  }
  {
    auto p = LoadYaml(dir.path(), yaml("    count: 3\n    lua: \"return {n = n, sq = n * n, "
                                       "tag = 'x' .. n}\"\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "g");
    auto src = Open(*p, h, "g");
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(Json(out) ==
          "{\"n\":0,\"sq\":0,\"tag\":\"x0\"}\n{\"n\":1,\"sq\":1,\"tag\":\"x1\"}\n"
          "{\"n\":2,\"sq\":4,\"tag\":\"x2\"}\n");
  }
  {
    // A Lua error on one n is a data error for that record only.
    auto p = LoadYaml(dir.path(), yaml("    count: 3\n    lua: \"if n == 1 then error('boom') "
                                       "end return {n = n}\"\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "g");
    auto src = Open(*p, h, "g");
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(out.size() == 2);
    REQUIRE(h.errors.errors.size() == 1);
    CHECK(h.errors.errors[0].find("boom") != std::string::npos);
    CHECK(h.errors.records[0].ToJson() == "{\"n\":1}");
  }
  {
    // Rate-limited: the count is exact, no timing is asserted.
    auto p = LoadYaml(dir.path(), yaml("    count: 20\n    rate: 2000\n"));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    Harness h(*p, "g");
    auto src = Open(*p, h, "g");
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(out.size() == 20);
  }
  {
    auto p = LoadYaml(dir.path(), yaml("    rate: 0\n"));
    CHECK_FALSE(p->ok);
  }
}

TEST_CASE("stdin source: reads a pipe to its end, refuses to rewind") {
  TempDir dir;
  auto p = LoadYaml(dir.path(),
                    "pipeline: t\nnodes:\n  in:\n    source: stdin\n    format: jsonl\n"
                    "  out:\n    sink: discard\n    input: in\n");
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string data = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}";
  REQUIRE(::write(fds[1], data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  Harness h(*p, "in");
  auto src = ops::MakeStdinSourceForFd(p->Node("in"), fds[0]);
  REQUIRE(src->Open(h.ctx).ok());
  RecordBatch out;
  Emitter em(&out);
  bool end = false;
  REQUIRE(src->Read(100, em, &end).ok());
  CHECK(out.size() == 2);  // the last line waits for its newline or EOF
  CHECK_FALSE(end);
  ::close(fds[1]);
  for (int i = 0; i < 10 && !end; ++i) REQUIRE(src->Read(100, em, &end).ok());
  CHECK(end);
  CHECK(Json(out) == "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
  CHECK(src->Seek(src->Position()).ok());
  CHECK_FALSE(src->Seek(SourcePosition{}).ok());
  ::close(fds[0]);
}

}  // namespace onceflow::testing

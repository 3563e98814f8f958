// The `stdin` source with a journal (NodeContext::journal): bytes are journaled before
// they are decoded, Position is the exact stream offset at record boundaries, and Seek
// replays the journal from there before reading the (new) stdin.
#include <doctest/doctest.h>
#include <unistd.h>

#include "operators/defs.h"
#include "test_util.h"

namespace onceflow::testing {

namespace {

// An in-memory journal; `fail_appends` makes Append fail, `decoded_before_append` is a
// check that the source never decodes bytes it has not journaled.
class FakeJournal : public SourceJournal {
 public:
  std::string data;
  std::vector<std::string> chunks;
  bool fail_appends = false;

  uint64_t size() const override { return data.size(); }
  Status Append(std::string_view bytes) override {
    if (fail_appends) return Status::IOError("disk full");
    data.append(bytes);
    chunks.emplace_back(bytes);
    return Status::Ok();
  }
  Status Read(uint64_t offset, size_t max, std::string* out) override {
    out->clear();
    if (offset < data.size()) *out = data.substr(offset, max);
    ++reads;
    return Status::Ok();
  }
  int reads = 0;
};

std::string StdinYaml(const std::string& format) {
  return "pipeline: t\nnodes:\n  in:\n    source: stdin\n    format: " + format +
         "\n  out:\n    sink: discard\n    input: in\n";
}

// A pipe holding `text`; the write end is closed when `close_write` (EOF after it).
struct Pipe {
  int r = -1, w = -1;
  explicit Pipe(const std::string& text, bool close_write = true) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    r = fds[0];
    w = fds[1];
    Write(text);
    if (close_write) CloseWrite();
  }
  void Write(const std::string& text) {
    if (!text.empty()) {
      REQUIRE(::write(w, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    }
  }
  void CloseWrite() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  ~Pipe() {
    CloseWrite();
    ::close(r);
  }
};

std::unique_ptr<Source> OpenStdin(const Pipeline& p, Harness& h, int fd, SourceJournal* j) {
  h.ctx.journal = j;
  auto src = ops::MakeStdinSourceForFd(p.Node("in"), fd);
  REQUIRE(src->Open(h.ctx).ok());
  return src;
}

}  // namespace

TEST_CASE("stdin source: journals before decoding, resumes mid-stream, then reads new stdin") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), StdinYaml("jsonl"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  FakeJournal journal;
  const std::string r1 = "{\"a\":1}\n", r2 = "{\"a\":2}\n";  // 8 bytes each

  // Run 1: three records arrive, the third without its newline yet; the process dies.
  {
    Pipe in(r1 + r2 + "{\"a\":3", /*close_write=*/false);
    Harness h(*p, "in");
    auto src = OpenStdin(*p, h, in.r, &journal);
    CHECK(src->Position().offset == 0);
    RecordBatch out;
    Emitter em(&out);
    bool end = false;
    REQUIRE(src->Read(1, em, &end).ok());
    CHECK(out.size() == 1);
    CHECK(src->Position().offset == 8);  // exact: the record's end, not the bytes read
    CHECK(src->Position().count == 1);
    // Everything read from the pipe was journaled, including the partial record.
    CHECK(journal.data == r1 + r2 + "{\"a\":3");
    REQUIRE(src->Read(100, em, &end).ok());
    CHECK(out.size() == 2);
    CHECK_FALSE(end);
    CHECK(src->Position().offset == 16);
    CHECK(src->Position().count == 2);
  }

  // Run 2: resumes from a checkpoint taken after record 1; its stdin continues the stream.
  {
    Pipe in("}\n{\"a\":4}\n");
    Harness h(*p, "in");
    auto src = OpenStdin(*p, h, in.r, &journal);
    REQUIRE(src->Seek(SourcePosition{"", 8, 1}).ok());
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(Json(out) == "{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
    CHECK(out[0].origin.position == 2);  // positions continue from the checkpoint's count
    CHECK(src->Position().offset == journal.data.size());
    CHECK(src->Position().count == 4);
    CHECK(journal.data == r1 + r2 + "{\"a\":3}\n{\"a\":4}\n");
  }

  // Run 3: nothing to resume from: the whole journal is replayed, then the empty stdin.
  {
    Pipe in("");
    Harness h(*p, "in");
    auto src = OpenStdin(*p, h, in.r, &journal);
    RecordBatch out;
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(Json(out) == "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
    // Seek back within the same run replays again, also after stdin's EOF.
    REQUIRE(src->Seek(SourcePosition{"", 24, 3}).ok());
    out.clear();
    REQUIRE(ReadAll(*src, &out).ok());
    CHECK(Json(out) == "{\"a\":4}\n");
    // A position beyond the journal cannot be resumed.
    CHECK(src->Seek(SourcePosition{"", journal.data.size() + 1, 9}).code() == Status::Code::kState);
  }
}

TEST_CASE("stdin source: Position is exact at every record boundary while replaying") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), StdinYaml("lines"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  FakeJournal journal;
  std::string text;
  std::vector<uint64_t> ends;
  for (int i = 0; i < 500; ++i) {
    text += "line " + std::string(static_cast<size_t>(i % 17), 'x') + "\n";
    ends.push_back(text.size());
  }
  journal.Append(text.substr(0, 3000));  // journaled by an earlier run
  Pipe in(text.substr(3000));
  Harness h(*p, "in");
  auto src = OpenStdin(*p, h, in.r, &journal);
  RecordBatch out;
  for (size_t i = 0; i < ends.size(); ++i) {
    Emitter em(&out);
    bool end = false;
    size_t before = out.size();
    for (int tries = 0; tries < 100 && out.size() == before; ++tries) {
      REQUIRE(src->Read(1, em, &end).ok());
    }
    REQUIRE(out.size() == before + 1);
    CHECK(src->Position().offset == ends[i]);
    CHECK(src->Position().count == i + 1);
  }
  CHECK(journal.data == text);
  // Each resume point replays exactly the records after it.
  for (size_t k : {0u, 1u, 137u, 499u}) {
    Pipe empty("");
    Harness h2(*p, "in");
    auto again = OpenStdin(*p, h2, empty.r, &journal);
    REQUIRE(again->Seek(SourcePosition{"", ends[k], k + 1}).ok());
    RecordBatch rest;
    REQUIRE(ReadAll(*again, &rest).ok());
    CHECK(rest.size() == ends.size() - k - 1);
    if (!rest.empty()) CHECK(rest[0].origin.position == k + 2);
  }
}

TEST_CASE("stdin source: a csv resume reads the header back from the journal") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), StdinYaml("csv"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  FakeJournal journal;
  journal.Append("x,y\n1,2\n");
  Pipe in("3,4\n");
  Harness h(*p, "in");
  auto src = OpenStdin(*p, h, in.r, &journal);
  REQUIRE(src->Seek(SourcePosition{"", 8, 1}).ok());
  RecordBatch out;
  REQUIRE(ReadAll(*src, &out).ok());
  CHECK(Json(out) == "{\"x\":3,\"y\":4}\n");
  CHECK(journal.data == "x,y\n1,2\n3,4\n");

  FakeJournal headerless;  // a journal without the header: a clear error
  headerless.Append("x,y");
  Pipe in2("");
  Harness h2(*p, "in");
  auto src2 = OpenStdin(*p, h2, in2.r, &headerless);
  // Offset 3 < size: the header reader reaches the end of the journal without a newline,
  // which at the journal's end still counts as the header's end.
  CHECK(src2->Seek(SourcePosition{"", 3, 0}).ok());
  FakeJournal empty;
  Harness h3(*p, "in");
  auto src3 = OpenStdin(*p, h3, in2.r, &empty);
  CHECK_FALSE(src3->Seek(SourcePosition{"", 5, 1}).ok());  // beyond the journal
}

TEST_CASE("stdin source: bytes that could not be journaled are not decoded") {
  TempDir dir;
  auto p = LoadYaml(dir.path(), StdinYaml("lines"));
  REQUIRE_MESSAGE(p->ok, p->Rendered());
  FakeJournal journal;
  journal.fail_appends = true;
  Pipe in("a\nb\n");
  Harness h(*p, "in");
  auto src = OpenStdin(*p, h, in.r, &journal);
  RecordBatch out;
  Emitter em(&out);
  bool end = false;
  Status st = src->Read(100, em, &end);
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(st.message().find("cannot journal stdin") != std::string::npos);
  CHECK(out.empty());
  CHECK(src->Position().offset == 0);
}

}  // namespace onceflow::testing

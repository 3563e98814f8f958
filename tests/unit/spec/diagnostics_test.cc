// Tests of diagnostic rendering (GNU style with source line and caret) and did-you-mean.
#include "runtime/spec/diagnostics.h"

#include <sstream>

#include "doctest/doctest.h"

namespace onceflow {
namespace {

TEST_CASE("renders the SPEC example exactly") {
  std::string text;
  for (int i = 1; i < 12; ++i) text += "# line " + std::to_string(i) + "\n";
  text += "    keyy: word\n";
  Diagnostics d("pipelines/x.yaml", text);
  d.Error(SourceLoc{12, 5}, 4, "node 'counts': unknown option 'keyy'", "did you mean 'key'?");
  CHECK(d.RenderToString() ==
        "pipelines/x.yaml:12:5: error: node 'counts': unknown option 'keyy'\n"
        "   12 |     keyy: word\n"
        "      |     ^~~~\n"
        "note: did you mean 'key'?\n");
}

TEST_CASE("warnings, notes, line 0 and sorting") {
  Diagnostics d("f.yaml", "a: 1\nb: 2\n");
  d.Warning(SourceLoc{2, 1}, 1, "second");
  d.Error(SourceLoc{1, 4}, 1, "first");
  d.Error(SourceLoc{}, 0, "no position", "a hint");
  d.Note(SourceLoc{2, 4}, 1, "a remark");
  CHECK(d.error_count() == 2);
  CHECK(d.warning_count() == 1);
  CHECK(d.RenderToString() ==
        "f.yaml: error: no position\n"
        "note: a hint\n"
        "f.yaml:1:4: error: first\n"
        "    1 | a: 1\n"
        "      |    ^\n"
        "f.yaml:2:1: warning: second\n"
        "    2 | b: 2\n"
        "      | ^\n"
        "f.yaml:2:4: note: a remark\n"
        "    2 | b: 2\n"
        "      |    ^\n");
}

TEST_CASE("equal positions keep the order reported") {
  Diagnostics d("f.yaml", "a: 1\n");
  d.Error(SourceLoc{1, 1}, 1, "one");
  d.Error(SourceLoc{1, 1}, 1, "two");
  std::string out = d.RenderToString();
  CHECK(out.find("one") < out.find("two"));
}

TEST_CASE("tabs are kept in the caret line; the underline is clipped to the line") {
  Diagnostics d("f.yaml", "\tx: abc\n");
  d.Error(SourceLoc{1, 5}, 10, "m");
  CHECK(d.RenderToString() ==
        "f.yaml:1:5: error: m\n"
        "    1 | \tx: abc\n"
        "      | \t   ^~~\n");
}

TEST_CASE("wide line numbers widen the gutter") {
  std::string text;
  for (int i = 1; i <= 12345; ++i) text += "x\n";
  Diagnostics d("f.yaml", text);
  d.Error(SourceLoc{12345, 1}, 1, "m");
  CHECK(d.RenderToString() ==
        "f.yaml:12345:1: error: m\n"
        " 12345 | x\n"
        "       | ^\n");
}

TEST_CASE("UTF-8 before the column takes one cell per character") {
  Diagnostics d("f.yaml", "a: \xC3\xA9t\xC3\xA9 x\n");  // "a: été x"
  d.Error(SourceLoc{1, 10}, 1, "m");                    // byte column of 'x'
  std::string out = d.RenderToString();
  CHECK(out.find("      |        ^\n") != std::string::npos);
}

TEST_CASE("a line beyond the text renders without source") {
  Diagnostics d("f.yaml", "a: 1\n");
  d.Error(SourceLoc{7, 1}, 1, "m");
  CHECK(d.RenderToString() == "f.yaml:7:1: error: m\n");
}

TEST_CASE("positions given on the command line are marked") {
  Diagnostics d("f.yaml", "");
  YNode n;
  n.from_command_line = true;
  d.Error(n, "node 'out': unknown option 'pth'");
  CHECK(d.RenderToString() ==
        "f.yaml: error: node 'out': unknown option 'pth' (given with --set)\n");
}

TEST_CASE("did you mean") {
  std::vector<std::string> c = {"key", "emit", "parallelism", "on_error"};
  CHECK(DidYouMean("keyy", c) == "key");
  CHECK(DidYouMean("kye", c) == "key");  // transposition
  CHECK(DidYouMean("paralellism", c) == "parallelism");
  CHECK(DidYouMean("Key", c) == "key");  // case
  CHECK(DidYouMean("onerror", c) == "on_error");
  CHECK(DidYouMean("zzzz", c) == "");
  CHECK(DidYouMean("key", c) == "");  // never the word itself
  CHECK(DidYouMean("", c) == "");
  CHECK(DidYouMeanNote("emitt", c) == "did you mean 'emit'?");
  CHECK(DidYouMeanNote("xyz", c) == "");
}

}  // namespace
}  // namespace onceflow

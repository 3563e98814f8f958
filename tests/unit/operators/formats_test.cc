// CSV codec and record encoder.
#include <doctest/doctest.h>

#include "operators/formats/csv.h"
#include "operators/formats/record_encoder.h"

namespace onceflow::ops {

TEST_CASE("csv: parses quoted cells with commas, quotes and line breaks") {
  std::vector<CsvCell> cells;
  size_t n = 0, consumed = 0;
  std::string data = "a,\"b,1\",\"say \"\"hi\"\"\",\"two\nlines\"\r\nnext";
  REQUIRE(ParseCsvRecord(data, false, &cells, &n, &consumed) == CsvParse::kRecord);
  REQUIRE(n == 4);
  CHECK(cells[0].text == "a");
  CHECK(cells[1].text == "b,1");
  CHECK(cells[1].quoted);
  CHECK(cells[2].text == "say \"hi\"");
  CHECK(cells[3].text == "two\nlines");
  CHECK(data.substr(consumed) == "next");
  // The last record needs more input until the caller says the input ended.
  std::string rest = data.substr(consumed);
  CHECK(ParseCsvRecord(rest, false, &cells, &n, &consumed) == CsvParse::kNeedMore);
  REQUIRE(ParseCsvRecord(rest, true, &cells, &n, &consumed) == CsvParse::kRecord);
  CHECK(n == 1);
  CHECK(cells[0].text == "next");
  CHECK(ParseCsvRecord("\"open", true, &cells, &n, &consumed) == CsvParse::kError);
  CHECK(ParseCsvRecord("\"open", false, &cells, &n, &consumed) == CsvParse::kNeedMore);
  // A \r at the end of a chunk may be half of \r\n.
  CHECK(ParseCsvRecord("a,b\r", false, &cells, &n, &consumed) == CsvParse::kNeedMore);
}

TEST_CASE("csv: cell typing") {
  auto v = [](std::string text, bool quoted = false) { return CsvCellValue(CsvCell{text, quoted}); };
  CHECK(v("42") == Value::Int(42));
  CHECK(v("-7") == Value::Int(-7));
  CHECK(v("2.5").type() == ValueType::kDouble);
  CHECK(v("1e3").type() == ValueType::kDouble);
  CHECK(v("99999999999999999999").type() == ValueType::kDouble);
  CHECK(v("007") == Value::String("007"));
  CHECK(v("42", true) == Value::String("42"));
  CHECK(v("") == Value::String(""));
  CHECK(v("nan") == Value::String("nan"));
  CHECK(v("1.") == Value::String("1."));
  CHECK(v(" 1") == Value::String(" 1"));
}

TEST_CASE("csv: quoting") {
  std::string out;
  AppendCsvCell("plain", &out);
  out += "|";
  AppendCsvCell("a,b", &out);
  out += "|";
  AppendCsvCell("say \"x\"", &out);
  out += "|";
  AppendCsvCell(" padded", &out);
  CHECK(out == "plain|\"a,b\"|\"say \"\"x\"\"\"|\" padded\"");
}

TEST_CASE("record encoder: jsonl, lines, csv") {
  Record r;
  r.Append("word", Value::String("a,b"));
  r.Append("count", Value::Int(2));
  std::string out, err;

  RecordEncoder jsonl(Format::kJsonl, "line");
  REQUIRE(jsonl.Append(r, &out, &err));
  CHECK(out == "{\"word\":\"a,b\",\"count\":2}\n");

  out.clear();
  RecordEncoder lines(Format::kLines, "word");
  REQUIRE(lines.Append(r, &out, &err));
  CHECK(out == "a,b\n");
  RecordEncoder lines_missing(Format::kLines, "line");
  CHECK_FALSE(lines_missing.Append(r, &out, &err));
  CHECK(err.find("no field 'line'") != std::string::npos);

  out.clear();
  RecordEncoder csv(Format::kCsv, "line");
  REQUIRE(csv.Append(r, &out, &err));
  Record r2;
  r2.Append("count", Value::Int(3));
  r2.Append("word", Value::String("42"));  // a string that looks like a number
  REQUIRE(csv.Append(r2, &out, &err));
  Record r3;
  r3.Append("count", Value::Null());
  REQUIRE(csv.Append(r3, &out, &err));
  CHECK(out == "word,count\r\n\"a,b\",2\r\n\"42\",3\r\n,\r\n");
  Record bad;
  bad.Append("other", Value::Int(1));
  CHECK_FALSE(csv.Append(bad, &out, &err));
  CHECK(err.find("'other'") != std::string::npos);
}

}  // namespace onceflow::ops

// The lost / duplicated rules of SPEC §1 as `compare` applies them, and reading sinks back.
#include "cli/sink_diff.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace onceflow::cli {

namespace {

using nlohmann::json;

using testing::R;
using testing::TempDir;

}  // namespace

TEST_CASE("keyed: identical outputs differ in nothing, whatever the order and updates") {
  const Records ref =
      R({R"({"word":"a","count":1})", R"({"word":"b","count":1})", R"({"word":"a","count":2})"});
  const Records run = R({R"({"word":"b","count":1})", R"({"word":"a","count":2})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"word"});
  CHECK(d.lost == 0);
  CHECK(d.duplicated == 0);
  CHECK(d.changed == 0);
  CHECK(d.compared == 2);
  CHECK_FALSE(d.differs());
  CHECK(d.samples.empty());
}

TEST_CASE("keyed: lost and duplicated are the sums of the per-key shortfalls and excesses") {
  const Records ref = R({R"({"word":"a","count":5,"sum":1.5})", R"({"word":"b","count":3})",
                         R"({"word":"c","count":2})"});
  // a: 2 lost from count, 0.5 duplicated on sum; b: 4 duplicated; c missing: 2 lost;
  // d extra: 7 duplicated.
  const Records run = R({R"({"word":"a","count":3,"sum":2.0})", R"({"word":"b","count":7})",
                         R"({"word":"d","count":7})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"word"});
  CHECK(d.lost == doctest::Approx(4));
  CHECK(d.duplicated == doctest::Approx(11.5));
  CHECK(d.compared == 3);
  CHECK(d.samples.size() == 4);
  CHECK(d.samples[0].find("reference") != std::string::npos);
}

TEST_CASE("keyed: the last record of a key counts, earlier updates do not") {
  // An at-least-once replay re-emits updates; only the last value of each key matters.
  const Records ref = R({R"({"k":1,"n":1})", R"({"k":1,"n":2})"});
  const Records run = R({R"({"k":1,"n":1})", R"({"k":1,"n":2})", R"({"k":1,"n":1})",
                         R"({"k":1,"n":2})", R"({"k":1,"n":3})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"k"});
  CHECK(d.lost == 0);
  CHECK(d.duplicated == 1);
}

TEST_CASE("keyed: composite keys, floating-point noise and key fields that are numbers") {
  const Records ref = R({R"({"user":1,"kind":"x","total":0.30000000000000004})",
                         R"({"user":1,"kind":"y","total":10})"});
  const Records run =
      R({R"({"user":1,"kind":"y","total":10.0})", R"({"user":1,"kind":"x","total":0.3})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"user", "kind"});
  CHECK_FALSE(d.differs());  // `user` is a key field, not a figure to sum
}

TEST_CASE("keyed: non-numeric differences are `changed`; keys without numbers count 1") {
  const Records ref = R({R"({"k":"a","n":1,"tag":"x"})", R"({"k":"b"})", R"({"k":"c"})"});
  const Records run =
      R({R"({"k":"a","n":1,"tag":"y"})", R"({"k":"c"})", R"({"k":"e"})", R"({"k":"f"})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"k"});
  CHECK(d.changed == 1);
  CHECK(d.lost == 1);        // b is gone (a distinct-like record: no numeric field)
  CHECK(d.duplicated == 2);  // e and f appeared
  CHECK(d.differs());
}

TEST_CASE("keyed: booleans are not numbers") {
  const Records ref = R({R"({"k":"a","ok":true})"});
  const Records run = R({R"({"k":"a","ok":false})"});
  const SinkDiff d = DiffLastByKey(ref, run, {"k"});
  CHECK(d.lost == 0);
  CHECK(d.duplicated == 0);
  CHECK(d.changed == 1);
}

TEST_CASE("multiset: records missing and extra, counted with multiplicity") {
  const Records ref = R({R"({"a":1,"b":"x"})", R"({"b":"x","a":1})", R"({"a":2})", R"({"a":3})"});
  // One {a:1,b:x} missing, {a:2} three times instead of once, {a:3} gone, {a:4} new.
  const Records run =
      R({R"({"a":1,"b":"x"})", R"({"a":2})", R"({"a":2})", R"({"a":2})", R"({"a":4})"});
  const SinkDiff d = DiffMultiset(ref, run);
  CHECK(d.compared == 4);
  CHECK(d.lost == 2);
  CHECK(d.duplicated == 3);
  CHECK(d.samples.size() == 4);
}

TEST_CASE("multiset: field order and integral doubles do not matter, order of records neither") {
  const Records ref = R({R"({"a":1,"b":2.0})", R"({"c":[1,{"y":2,"x":1}]})"});
  const Records run = R({R"({"c":[1,{"x":1,"y":2}]})", R"({"b":2,"a":1})"});
  CHECK_FALSE(DiffMultiset(ref, run).differs());
  CHECK(DiffMultiset(ref, R({R"({"c":[{"x":1,"y":2},1]})", R"({"b":2,"a":1})"})).lost == 1);
}

TEST_CASE("read back: jsonl, csv and lines files") {
  TempDir tmp;
  Records got;
  SinkOutput out;
  out.path = tmp.File("o.jsonl", "{\"w\":\"a\",\"n\":1}\n\n{\"w\":\"b\",\"n\":2.5}\n");
  REQUIRE(ReadSinkRecords(out, &got).ok());
  REQUIRE(got.size() == 2);
  CHECK(got[1]["n"] == 2.5);

  out.format = "csv";
  out.path = tmp.File("o.csv", "w,n,zip\r\na,1,007\r\n\"b,c\",2,\"42\"\r\n");
  REQUIRE(ReadSinkRecords(out, &got).ok());
  REQUIRE(got.size() == 2);
  CHECK(got[0] == json::parse(R"({"w":"a","n":1,"zip":"007"})"));
  CHECK(got[1] == json::parse(R"({"w":"b,c","n":2,"zip":"42"})"));

  out.format = "lines";
  out.field = "text";
  out.path = tmp.File("o.txt", "one\n\ntwo\n");
  REQUIRE(ReadSinkRecords(out, &got).ok());
  REQUIRE(got.size() == 3);
  CHECK(got[2] == json::parse(R"({"text":"two"})"));

  out.path = tmp.path + "/missing.txt";
  got = R({"{}"});
  REQUIRE(ReadSinkRecords(out, &got).ok());
  CHECK(got.empty());
}

TEST_CASE("read back: a torn last line or a line that is no object is an error") {
  TempDir tmp;
  Records got;
  SinkOutput out;
  out.path = tmp.File("torn.jsonl", "{\"a\":1}\n{\"a\":");
  Status st = ReadSinkRecords(out, &got);
  CHECK(st.code() == Status::Code::kIOError);
  CHECK(st.message().find("torn") != std::string::npos);
  out.path = tmp.File("bad.jsonl", "{\"a\":1}\n[1,2]\n");
  st = ReadSinkRecords(out, &got);
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("line 2") != std::string::npos);
}

TEST_CASE("read back: an sqlite table, typed; a missing database or table is empty") {
  TempDir tmp;
  const std::string path = tmp.path + "/o.db";
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "CREATE TABLE revenue (customer TEXT PRIMARY KEY, total REAL, n INTEGER, "
                       "note);"
                       "INSERT INTO revenue VALUES ('c1', 2.5, 3, NULL), ('c2', 1.0, 1, 'x');",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  Records got;
  SinkOutput out;
  out.kind = SinkOutput::Kind::kSqlite;
  out.path = path;
  out.table = "revenue";
  REQUIRE(ReadSinkRecords(out, &got).ok());
  REQUIRE(got.size() == 2);
  CHECK(got[0] == json::parse(R"({"customer":"c1","total":2.5,"n":3,"note":null})"));
  CHECK(got[1]["n"].is_number_integer());
  out.table = "other";
  REQUIRE(ReadSinkRecords(out, &got).ok());
  CHECK(got.empty());
  out.path = tmp.path + "/none.db";
  REQUIRE(ReadSinkRecords(out, &got).ok());
  CHECK(got.empty());
  CHECK_FALSE(std::filesystem::exists(out.path));  // reading creates nothing
}

}  // namespace onceflow::cli

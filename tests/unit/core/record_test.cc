// Records: JSON encoding (escaping, invalid UTF-8, numbers) and JsonParser decoding.
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "doctest/doctest.h"
#include "runtime/core/record.h"

namespace onceflow {
namespace {

TEST_CASE("record encodes fields in order as compact JSON") {
  Record r;
  r.Set("word", Value::String("héllo \"q\"\n"));
  r.Set("count", Value::Int(-3));
  r.Set("avg", Value::Double(2.0));
  r.Set("ok", Value::Bool(true));
  r.Set("none", Value::Null());
  r.Set("tags", Value::Json("[1,2]"));
  CHECK(r.ToJson() ==
        "{\"word\":\"héllo \\\"q\\\"\\n\",\"count\":-3,\"avg\":2.0,\"ok\":true,\"none\":null,"
        "\"tags\":[1,2]}");
}

TEST_CASE("Set replaces an existing field in place; Erase removes it") {
  Record r;
  r.Set("a", Value::Int(1));
  r.Set("b", Value::Int(2));
  r.Set("a", Value::Int(3));
  CHECK(r.ToJson() == "{\"a\":3,\"b\":2}");
  CHECK(r.Erase("a"));
  CHECK_FALSE(r.Erase("a"));
  CHECK(r.ToJson() == "{\"b\":2}");
}

TEST_CASE("strings: control bytes escaped, invalid UTF-8 replaced so output stays JSON") {
  std::string out;
  AppendJsonString(std::string("a\x01\xff" "b\xc3\xa9", 6), &out);
  CHECK(out == "\"a\\u0001\xEF\xBF\xBD" "b\xc3\xa9\"");
  out.clear();
  AppendJsonString("\xed\xa0\x80", &out);  // a UTF-16 surrogate encoded in UTF-8 is invalid
  CHECK(out == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

TEST_CASE("non-finite doubles become null; integral doubles keep a decimal point") {
  CHECK(Value::Double(1.0 / 0.0).ToJson() == "null");
  CHECK(Value::Double(10).ToJson() == "10.0");
  CHECK(Value::Double(0.1).ToJson() == "0.1");
  CHECK(Value::Double(1e300).ToJson() == "1e+300");
}

TEST_CASE("2 and 2.0 are equal values; types otherwise matter") {
  CHECK(Value::Int(2) == Value::Double(2.0));
  CHECK(Value::String("2") != Value::Int(2));
  CHECK(Value::Null() == Value::Null());
}

TEST_CASE("JsonParser reads objects with every value type") {
  JsonParser p;
  Record r;
  std::string err;
  REQUIRE(p.ParseObject(R"({"a": 1, "b": -2.5, "c": "x\"y", "d": null, "e": true,
                            "f": [1, {"g": 2}], "h": {"i": "j"}, "big": 18446744073709551615})",
                        &r, &err));
  CHECK(r.Get("a")->type() == ValueType::kInt);
  CHECK(r.Get("a")->as_int() == 1);
  CHECK(r.Get("b")->as_double() == -2.5);
  CHECK(r.Get("c")->str() == "x\"y");
  CHECK(r.Get("d")->is_null());
  CHECK(r.Get("e")->as_bool());
  CHECK(r.Get("f")->type() == ValueType::kJson);
  CHECK(r.Get("f")->str() == "[1,{\"g\":2}]");
  CHECK(r.Get("h")->str() == "{\"i\":\"j\"}");
  CHECK(r.Get("big")->type() == ValueType::kDouble);  // beyond int64: kept as a number
  // Round trip.
  Record r2;
  REQUIRE(p.ParseObject(r.ToJson(), &r2, &err));
  CHECK(r2 == r);
}

TEST_CASE("JsonParser numbers: int64, beyond int64, long and extreme floats") {
  JsonParser p;
  Record r;
  std::string error;
  REQUIRE(p.ParseObject(
      "{\"a\":-9223372036854775808,\"b\":9223372036854775808,\"c\":"
      "123456789012345678901234567890,\"d\":3.141592653589793238462643383279,\"e\":4.9e-324,"
      "\"f\":1.5E-3 , \"g\":329.86,\"h\":-0.0,\"i\":1e5}",
      &r, &error));
  CHECK(r.ToJson() ==
        "{\"a\":-9223372036854775808,\"b\":9.223372036854776e+18,\"c\":1.2345678901234568e+29,"
        "\"d\":3.141592653589793,\"e\":5e-324,\"f\":0.0015,\"g\":329.86,\"h\":-0.0,"
        "\"i\":100000.0}");
}

TEST_CASE("JsonParser parses in place: what follows the line never leaks in") {
  // In a decoder's buffer the bytes after a line are the next lines (or stale data);
  // parsed in place, they are read as padding and must not change any result.
  JsonParser p;
  Record r;
  std::string err;
  const std::string tail = "345}\"x\":\"y\"}\n{\"b\":2}" + std::string(100, '7');
  for (const std::string& line : {std::string("{\"a\":12,\"s\":\"t\"}"),
                                  std::string("{\"a\":12"), std::string("{\"a\":\"12"),
                                  std::string("{\"a\":[1,2"), std::string("{\"a\":1}x")}) {
    const std::string buf = line + tail;
    Record copied, in_place;
    std::string e1, e2;
    const bool ok1 = p.ParseObject(line, &copied, &e1);
    const bool ok2 = p.ParseObject(std::string_view(buf.data(), line.size()), buf.size(),
                                   &in_place, &e2);
    CHECK_MESSAGE(ok1 == ok2, line);
    CHECK_MESSAGE(copied == in_place, line);
    CHECK_MESSAGE(e1 == e2, line);
  }
  REQUIRE(p.ParseObject("{\"a\":12,\"s\":\"t\"}", &r, &err));
  CHECK(r.Get("a")->as_int() == 12);
}

TEST_CASE("JsonParser: a reused parser merges duplicate keys as a fresh one does") {
  // The reused parser skips the duplicate-key scan while keys follow the previous
  // object's; random objects over three keys (with duplicates, reorderings and shape
  // changes) must parse exactly as with a parser that has seen nothing.
  std::mt19937 rng(42);
  JsonParser reused;
  for (int n = 0; n < 3000; ++n) {
    std::string line = "{";
    const int fields = static_cast<int>(rng() % 5);
    for (int f = 0; f < fields; ++f) {
      if (f > 0) line += ",";
      line += "\"";
      line += static_cast<char>('a' + rng() % 3);
      line += "\":" + std::to_string(rng() % 10);
    }
    line += "}";
    JsonParser fresh;
    Record a, b;
    std::string ea, eb;
    REQUIRE(reused.ParseObject(line, &a, &ea));
    REQUIRE(fresh.ParseObject(line, &b, &eb));
    CHECK_MESSAGE(a == b, line);
  }
}

TEST_CASE("JsonParser rejects malformed lines, non-objects and trailing content") {
  JsonParser p;
  Record r;
  std::string err;
  CHECK_FALSE(p.ParseObject("not json", &r, &err));
  CHECK(err.find("invalid JSON") == 0);
  CHECK_FALSE(p.ParseObject("[1,2]", &r, &err));
  CHECK_FALSE(p.ParseObject("{\"a\":1} x", &r, &err));
  CHECK_FALSE(p.ParseObject("{\"a\":", &r, &err));
  // The parser stays usable after errors, and handles lines longer than before.
  std::string long_line = "{\"s\":\"" + std::string(100000, 'x') + "\"}";
  REQUIRE(p.ParseObject(long_line, &r, &err));
  CHECK(r.Get("s")->str().size() == 100000);
}

// Field blocks are recycled through a per-thread cache (FieldBlockCache): reused blocks
// must hold exactly the new record's fields, blocks may be freed on another thread, and
// sizes past the cached classes go to the heap directly.
Record ManyFields(int n, int tag) {
  Record r;
  for (int i = 0; i < n; ++i) {
    r.Append("field_number_" + std::to_string(i),
             i % 2 == 0 ? Value::Int(tag * 100 + i)
                        : Value::String("a string longer than fifteen bytes " +
                                        std::to_string(tag)));
  }
  return r;
}

void CheckManyFields(const Record& r, int n, int tag) {
  REQUIRE(r.size() == static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const Value* v = r.Get("field_number_" + std::to_string(i));
    REQUIRE(v != nullptr);
    if (i % 2 == 0) {
      CHECK(v->as_int() == tag * 100 + i);
    } else {
      CHECK(v->str() == "a string longer than fifteen bytes " + std::to_string(tag));
    }
  }
}

TEST_CASE("records with spilled fields recycle their storage correctly") {
  for (int round = 0; round < 3; ++round) {
    RecordBatch batch;
    for (int k = 0; k < 600; ++k) batch.push_back(ManyFields(1 + k % 20, round * 1000 + k));
    for (int k = 0; k < 600; ++k) CheckManyFields(batch[k], 1 + k % 20, round * 1000 + k);
    // Copies and moves allocate from and free to the cache too.
    RecordBatch copy = batch;
    RecordBatch moved = std::move(batch);
    for (int k = 0; k < 600; ++k) {
      CHECK(copy[k] == moved[k]);
      copy[k].Set("extra", Value::Int(k));  // grows (reallocates) some of them
      CHECK(copy[k].Get("extra")->as_int() == k);
    }
  }
  internal::FieldBlockCache::Release();
  Record r = ManyFields(6, 7);
  CheckManyFields(r, 6, 7);
}

TEST_CASE("blocks freed on one thread are handed over and reused by another") {
  if (!internal::kFieldCacheEnabled) return;  // sanitizer builds bypass the cache
  // A consumer frees many blocks of one size, as a sink task frees a producer's records;
  // a fresh thread then allocates that size and must get those blocks back through the
  // depot instead of from malloc (all but the consumer's last two lists, freed at its
  // exit).
  constexpr size_t kBytes = 6 * sizeof(Record::Field);
  constexpr int kBlocks = 64 * 12;
  std::vector<void*> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(::operator new(kBytes));
  std::set<void*> freed(blocks.begin(), blocks.end());
  std::thread consumer([&] {
    for (void* b : blocks) internal::FieldBlockCache::Deallocate(b, kBytes);
  });
  consumer.join();
  std::vector<void*> got;
  std::thread producer([&] {
    for (int i = 0; i < kBlocks; ++i) got.push_back(internal::FieldBlockCache::Allocate(kBytes));
    for (void* b : got) internal::FieldBlockCache::Deallocate(b, kBytes);
    internal::FieldBlockCache::Release();
  });
  producer.join();
  int reused = 0;
  for (void* b : got) reused += freed.count(b) ? 1 : 0;
  CHECK(reused >= 64 * 10);
}

TEST_CASE("records allocated on one thread can be freed and reused on another") {
  RecordBatch batch;
  for (int k = 0; k < 1000; ++k) batch.push_back(ManyFields(2 + k % 7, k));
  std::thread consumer([moved = std::move(batch)]() mutable {
    moved.clear();  // frees into the consumer thread's cache
    RecordBatch again;
    for (int k = 0; k < 1000; ++k) again.push_back(ManyFields(2 + k % 7, -k));
    for (int k = 0; k < 1000; ++k) CheckManyFields(again[k], 2 + k % 7, -k);
  });  // the thread's cache is drained when it exits
  consumer.join();
}

}  // namespace
}  // namespace onceflow

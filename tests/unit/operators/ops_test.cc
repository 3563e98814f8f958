// Native operators: split, count, aggregate, distinct.
#include <doctest/doctest.h>

#include <chrono>
#include <random>

#include "operators/ops/keyed.h"
#include "runtime/core/key.h"
#include "runtime/plan/partitioner.h"
#include "test_util.h"

namespace onceflow::testing {

namespace {

std::string OpYaml(const std::string& op_block) {
  return "pipeline: t\n"
         "nodes:\n"
         "  src:\n"
         "    source: generate\n"
         "    count: 1\n"
         "  op:\n"
         "    input: src\n" +
         op_block +
         "  out:\n"
         "    sink: discard\n"
         "    input: op\n";
}

Record Rec(std::initializer_list<std::pair<const char*, Value>> fields) {
  Record r;
  for (const auto& [k, v] : fields) r.Append(k, v);
  return r;
}

struct OpRun {
  std::unique_ptr<Pipeline> p;
  std::unique_ptr<Harness> h;
  std::unique_ptr<Operator> op;

  OpRun(const TempDir& dir, const std::string& block) {
    p = LoadYaml(dir.path(), OpYaml(block));
    REQUIRE_MESSAGE(p->ok, p->Rendered());
    h = std::make_unique<Harness>(*p, "op");
    const NodeSpec& spec = p->Node("op");
    op = Def(NodeKind::kOperator, spec.type).make_operator(spec);
    REQUIRE(op->Open(h->ctx).ok());
  }

  std::string Process(RecordBatch in) {
    RecordBatch out;
    Emitter em(&out);
    Status st = op->Process(0, in, em);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return Json(out);
  }
  std::string Finish() {
    RecordBatch out;
    Emitter em(&out);
    REQUIRE(op->Finish(em).ok());
    return Json(out);
  }
};

}  // namespace

TEST_CASE("split: whitespace, lower, pattern, keep, errors") {
  TempDir dir;
  {
    OpRun r(dir, "    op: split\n");
    CHECK(r.Process({Rec({{"line", Value::String("  The quick\tbrown\r\n fox ")}})}) ==
          "{\"word\":\"The\"}\n{\"word\":\"quick\"}\n{\"word\":\"brown\"}\n{\"word\":\"fox\"}\n");
    CHECK(r.Process({Rec({{"line", Value::String("   ")}})}) == "");
    CHECK(r.Process({Rec({{"other", Value::Int(1)}}), Rec({{"line", Value::Int(5)}})}) == "");
    REQUIRE(r.h->errors.errors.size() == 2);
    CHECK(r.h->errors.errors[0] == "split: field 'line' is missing");
    CHECK(r.h->errors.errors[1] == "split: field 'line' is not a string");
  }
  {
    OpRun r(dir, "    op: split\n    field: text\n    into: tok\n    lower: true\n"
                 "    pattern: \",;\"\n    keep: [id]\n");
    CHECK(r.Process({Rec({{"id", Value::Int(7)}, {"text", Value::String("A,b;;C D")}})}) ==
          "{\"tok\":\"a\",\"id\":7}\n{\"tok\":\"b\",\"id\":7}\n{\"tok\":\"c d\",\"id\":7}\n");
  }
  {
    // Letters as separators: a token ends at the letter as written, then is lowercased
    // ("A" is not the separator "a").
    OpRun r(dir, "    op: split\n    lower: true\n    pattern: \"a \"\n");
    CHECK(r.Process({Rec({{"line", Value::String("bAcXaY QaR")}})}) ==
          "{\"word\":\"bacx\"}\n{\"word\":\"y\"}\n{\"word\":\"q\"}\n{\"word\":\"r\"}\n");
  }
  {
    auto p = LoadYaml(dir.path(), OpYaml("    op: split\n    pattern: \"\"\n"));
    CHECK_FALSE(p->ok);
  }
}

// Tokens of `text` split on the bytes of `seps`, one byte at a time, each lowercased
// (ASCII) afterwards when `lower`: what split is defined to produce.
std::vector<std::string> ReferenceSplit(const std::string& text, const std::string& seps,
                                        bool lower) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) out.push_back(cur);
    cur.clear();
  };
  for (char c : text) {
    if (seps.find(c) != std::string::npos) {
      flush();
    } else {
      cur += (lower && c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  flush();
  return out;
}

TEST_CASE("split: tokens equal a byte-at-a-time reference on random text of every length") {
  // split classifies 64 bytes at a time: texts of every length from 0 to 199 (so ending
  // inside, at and across block boundaries) and longer ones, tokens shorter and longer
  // than a block, every whitespace byte, NUL and non-ASCII bytes, letters as separators.
  TempDir dir;
  std::mt19937 rng(3);
  const std::string ws = " \t\n\r\v\f";
  const std::string separators = ws + ",;aZ";
  const std::string others = std::string("bqAY.\xc3\xa9", 7) + std::string(1, '\0');
  struct Config {
    const char* yaml;
    std::string seps;
    bool lower;
  };
  const std::vector<Config> configs = {
      {"    op: split\n", ws, false},
      {"    op: split\n    lower: true\n", ws, true},
      {"    op: split\n    pattern: \",; \"\n", ",; ", false},
      {"    op: split\n    pattern: \",; \"\n    lower: true\n", ",; ", true},
      {"    op: split\n    pattern: \"aZ,\"\n    lower: true\n", "aZ,", true},
  };
  size_t tokens = 0, long_tokens = 0;
  for (const auto& c : configs) {
    OpRun r(dir, c.yaml);
    for (int t = 0; t < 400; ++t) {
      const size_t len = t < 200 ? static_cast<size_t>(t) : rng() % 600;
      const unsigned sep_percent = t % 3 == 0 ? 1 : 30;  // some texts have block-long tokens
      std::string text;
      for (size_t i = 0; i < len; ++i) {
        text += rng() % 100 < sep_percent ? separators[rng() % separators.size()]
                                          : others[rng() % others.size()];
      }
      RecordBatch in = {Rec({{"line", Value::String(text)}})};
      RecordBatch out;
      Emitter em(&out);
      REQUIRE(r.op->Process(0, in, em).ok());
      std::vector<std::string> got;
      for (const Record& rec : out) got.push_back(rec.Get("word")->str());
      const std::vector<std::string> want = ReferenceSplit(text, c.seps, c.lower);
      CHECK_MESSAGE(got == want, c.yaml << " length " << len);
      tokens += want.size();
      for (const auto& w : want) long_tokens += w.size() > 64;
    }
  }
  CHECK(tokens > 10000);
  CHECK(long_tokens > 50);
}

TEST_CASE("split: output placed in hashed partitions goes where the partitioner sends it") {
  // Emitter::hashed: split places each token in its partition itself. Every record must
  // land in the batch the hash partitioner would have routed it to, in the same order,
  // and a memoised key hash must be the token's. Tokens: upper case (lowered first), long
  // (heap) strings, NUL bytes (not separators with a pattern), high bytes.
  TempDir dir;
  const std::string nul_word("nu\0ll", 5);
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text += "Word" + std::to_string(i % 37) + ",";
    if (i % 7 == 0) text += std::string(20 + i % 5, 'L') + ",";
    if (i % 11 == 0) text += nul_word + ",";
    if (i % 13 == 0) text += "\xc3\xa9t\xc3\xa9,";
  }
  for (const char* lower : {"false", "true"}) {
    for (int n : {1, 2, 3, 4}) {
      OpRun r(dir, std::string("    op: split\n    pattern: \",\"\n    lower: ") + lower + "\n");
      RecordBatch in = {Rec({{"line", Value::String(text)}}), Rec({{"other", Value::Int(1)}})};
      RecordBatch copy = in;
      // The reference: split's plain output, routed by the partitioner.
      RecordBatch plain;
      Emitter em(&plain);
      REQUIRE(r.op->Process(0, copy, em).ok());
      std::vector<RecordBatch> want(n);
      PlanEdge edge;
      edge.partition = PartitionKind::kHash;
      edge.hash_fields = {"word"};
      REQUIRE(MakePartitioner(edge, 0, n)->Route(plain, false, want, nullptr).ok());
      // Placed by split itself.
      std::vector<RecordBatch> parts(n);
      HashedOutput hashed{"word", &parts, 0};
      RecordBatch left;
      Emitter placed_em(&left, &hashed);
      REQUIRE(r.op->Process(0, in, placed_em).ok());
      CHECK(left.empty());
      CHECK(hashed.placed == plain.size());
      size_t memoised = 0, nul = 0;
      for (int d = 0; d < n; ++d) {
        CHECK_MESSAGE(Json(parts[d]) == Json(want[d]), "lower " << lower << ", n " << n << ", d " << d);
        for (const Record& rec : parts[d]) {
          const Value* v = rec.Get("word");
          REQUIRE(v != nullptr);
          uint64_t h = 0;
          if (v->KnownKeyHash(&h)) {
            CHECK(h == StableHashOfStringKey(v->str()));
            ++memoised;
          } else {
            CHECK(HasNul(v->str()));
            ++nul;
          }
        }
      }
      CHECK(memoised > 0);
      CHECK(nul > 0);
      // The missing field was reported, in both passes.
      CHECK(r.h->errors.errors.size() == 2);
    }
  }
  // An edge hashing another field than `into` gets split's plain output.
  OpRun r(dir, "    op: split\n");
  std::vector<RecordBatch> parts(2);
  HashedOutput hashed{"line", &parts, 0};
  RecordBatch left;
  Emitter em(&left, &hashed);
  RecordBatch in = {Rec({{"line", Value::String("a b")}})};
  REQUIRE(r.op->Process(0, in, em).ok());
  CHECK(left.size() == 2);
  CHECK(hashed.placed == 0);
  CHECK(parts[0].empty());
  CHECK(parts[1].empty());
}

TEST_CASE("count: updates coalesce per batch, final emits sorted at the end") {
  TempDir dir;
  auto w = [](const char* s) { return Rec({{"word", Value::String(s)}}); };
  {
    OpRun r(dir, "    op: count\n    key: word\n");
    CHECK(r.Process({w("b"), w("a"), w("b")}) ==
          "{\"word\":\"a\",\"count\":1}\n{\"word\":\"b\",\"count\":2}\n");
    CHECK(r.Process({w("b")}) == "{\"word\":\"b\",\"count\":3}\n");
    CHECK(r.Finish() == "");
    CHECK(r.h->state.size() == 2);
    // A record without the key is a data error.
    CHECK(r.Process({Rec({{"x", Value::Int(1)}})}) == "");
    REQUIRE(r.h->errors.errors.size() == 1);
    CHECK(r.h->errors.errors[0] == "count: key field 'word' is missing");
    r.h->errors.fail = true;
    RecordBatch bad = {Rec({{"x", Value::Int(1)}})};
    RecordBatch out;
    Emitter em(&out);
    CHECK_FALSE(r.op->Process(0, bad, em).ok());
  }
  {
    OpRun r(dir, "    op: count\n    key: [a, b]\n    emit: final\n");
    auto ab = [](int a, const char* b) { return Rec({{"b", Value::String(b)}, {"a", Value::Int(a)}}); };
    CHECK(r.Process({ab(2, "x"), ab(1, "y"), ab(2, "x"), ab(-1, "z")}) == "");
    CHECK(r.Finish() ==
          "{\"a\":-1,\"b\":\"z\",\"count\":1}\n{\"a\":1,\"b\":\"y\",\"count\":1}\n"
          "{\"a\":2,\"b\":\"x\",\"count\":2}\n");
  }
  {
    // State survives through the host: a new instance restored from it continues.
    OpRun r(dir, "    op: count\n    key: word\n");
    r.Process({w("a"), w("a")});
    OpRun r2(dir, "    op: count\n    key: word\n");
    r.h->state.ForEach([&](std::string_view k, const StateValue& v) { r2.h->state.Restore(k, v); });
    CHECK(r2.Process({w("a")}) == "{\"word\":\"a\",\"count\":3}\n");
  }
}

TEST_CASE("aggregate: shorthands, named fields, int overflow, errors") {
  TempDir dir;
  auto sale = [](const char* shop, Value amount) {
    return Rec({{"shop", Value::String(shop)}, {"amount", amount}});
  };
  {
    OpRun r(dir, "    op: aggregate\n    key: shop\n    sum: amount\n    min: amount\n"
                 "    max: amount\n    avg: amount\n    count: true\n");
    CHECK(r.Process({sale("s", Value::Int(4)), sale("s", Value::Int(2)), sale("t", Value::Double(1.5))}) ==
          "{\"shop\":\"s\",\"sum_amount\":6,\"min_amount\":2,\"max_amount\":4,\"avg_amount\":3.0,\"count\":2}\n"
          "{\"shop\":\"t\",\"sum_amount\":1.5,\"min_amount\":1.5,\"max_amount\":1.5,\"avg_amount\":1.5,\"count\":1}\n");
    // null is ignored (counted by count()), a string in a summed field is a data error
    // that changes nothing.
    CHECK(r.Process({sale("s", Value::Null())}) ==
          "{\"shop\":\"s\",\"sum_amount\":6,\"min_amount\":2,\"max_amount\":4,\"avg_amount\":3.0,\"count\":3}\n");
    CHECK(r.Process({sale("s", Value::String("x"))}) == "");
    REQUIRE(r.h->errors.errors.size() == 1);
    CHECK(r.h->errors.errors[0].find("sum(amount)") != std::string::npos);
  }
  {
    OpRun r(dir, "    op: aggregate\n    key: shop\n    emit: final\n    count: amount\n"
                 "    fields: {total: \"sum(amount)\", n: \"count()\", seen: \"count(amount)\"}\n");
    r.Process({sale("s", Value::Int(INT64_MAX)), sale("s", Value::Int(1)), sale("s", Value::Null())});
    CHECK(r.Finish() ==
          "{\"shop\":\"s\",\"count_amount\":2,\"total\":9.223372036854776e+18,\"n\":3,\"seen\":2}\n");
  }
  SUBCASE("check hook") {
    auto p = LoadYaml(dir.path(), OpYaml("    op: aggregate\n    key: shop\n"));
    CHECK_FALSE(p->ok);
    CHECK(p->Rendered().find("at least one aggregate") != std::string::npos);
    auto p2 = LoadYaml(dir.path(), OpYaml("    op: aggregate\n    key: shop\n"
                                          "    fields: {t: \"total(amount)\"}\n"));
    CHECK_FALSE(p2->ok);
    CHECK(p2->Rendered().find("unknown aggregate function 'total'") != std::string::npos);
    CHECK_MESSAGE(p2->Rendered().find("p.yaml:10:") != std::string::npos, p2->Rendered());
    auto p3 = LoadYaml(dir.path(), OpYaml("    op: aggregate\n    key: sum_a\n    sum: a\n"));
    CHECK_FALSE(p3->ok);
  }
}

TEST_CASE("distinct: first of each key, ttl in event time, expiry erases state") {
  TempDir dir;
  auto ev = [](const char* id, int64_t t) {
    return Rec({{"id", Value::String(id)}, {"t", Value::Int(t)}});
  };
  {
    OpRun r(dir, "    op: distinct\n    key: id\n");
    CHECK(r.Process({ev("a", 1), ev("b", 2), ev("a", 3)}) ==
          "{\"id\":\"a\",\"t\":1}\n{\"id\":\"b\",\"t\":2}\n");
    CHECK(r.Process({ev("a", 100000)}) == "");
  }
  {
    OpRun r(dir, "    op: distinct\n    key: id\n    ttl: 1s\n    time: t\n");
    CHECK(r.Process({ev("a", 0), ev("a", 999), ev("b", 500)}) ==
          "{\"id\":\"a\",\"t\":0}\n{\"id\":\"b\",\"t\":500}\n");
    CHECK(r.Process({ev("a", 1000)}) == "{\"id\":\"a\",\"t\":1000}\n");
    CHECK(r.Process({ev("a", 1500)}) == "");
    // Event time moves far ahead: expired keys are erased (with tombstones).
    CHECK(r.Process({ev("c", 10000), ev("d", 10001)}) ==
          "{\"id\":\"c\",\"t\":10000}\n{\"id\":\"d\",\"t\":10001}\n");
    CHECK(r.h->state.Find(std::string("s") + "a" + std::string(1, '\0')) == nullptr);
    CHECK(r.h->state.size() == 2);
    int tombstones = 0;
    r.h->state.CollectChanges(UINT64_MAX, [&](std::string_view, const StateValue* v) {
      if (v == nullptr) ++tombstones;
    });
    CHECK(tombstones == 2);
    CHECK(r.Process({Rec({{"id", Value::String("z")}})}) == "");
    CHECK(r.h->errors.errors.back() == "distinct: time field 't' is missing");
  }
  {
    OpRun r(dir, "    op: distinct\n    key: id\n    emit: final\n");
    CHECK(r.Process({ev("b", 1), ev("a", 2), ev("b", 3)}) == "");
    CHECK(r.Finish() == "{\"id\":\"a\",\"t\":2}\n{\"id\":\"b\",\"t\":1}\n");
  }
  {
    auto p = LoadYaml(dir.path(), OpYaml("    op: distinct\n    key: id\n    ttl: 1s\n"));
    CHECK_FALSE(p->ok);
    CHECK(p->Rendered().find("needs `time`") != std::string::npos);
  }
}

}  // namespace onceflow::testing

namespace onceflow::testing {

// Not a timing assertion: prints split and count rates so regressions show in the log.
TEST_CASE("split + count throughput (informational)") {
  TempDir dir;
  OpRun split(dir, "    op: split\n");
  OpRun count(dir, "    op: count\n    key: word\n");
  const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"};
  const int kBatches = 100, kLines = 1024;
  std::vector<RecordBatch> batches(kBatches);
  uint64_t seed = 1;
  for (auto& b : batches) {
    for (int i = 0; i < kLines; ++i) {
      std::string line;
      for (int w = 0; w < 8; ++w) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        line += words[(seed >> 33) % 8];
        line += std::to_string((seed >> 40) % 1000);
        line += ' ';
      }
      b.push_back(Rec({{"line", Value::String(line)}}));
    }
  }
  size_t total_words = 0;
  double split_s = 0, count_s = 0;
  for (auto& b : batches) {
    RecordBatch toks, counted;
    Emitter e1(&toks), e2(&counted);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(split.op->Process(0, b, e1).ok());
    auto t1 = std::chrono::steady_clock::now();
    REQUIRE(count.op->Process(0, toks, e2).ok());
    auto t2 = std::chrono::steady_clock::now();
    split_s += std::chrono::duration<double>(t1 - t0).count();
    count_s += std::chrono::duration<double>(t2 - t1).count();
    total_words += toks.size();
  }
  CHECK(total_words == static_cast<size_t>(kBatches) * kLines * 8);
  MESSAGE("split: " << static_cast<int64_t>(total_words / split_s) << " words/s; count (updates): "
                    << static_cast<int64_t>(total_words / count_s) << " words/s");
}

TEST_CASE("BatchKeys encodes every key as EncodeKey does and hashes it as KeyMap does") {
  // The one-string-field fast path must give EncodeKey's bytes: the keys are the identity
  // of state stored by other code paths (checkpoints, `state get`).
  RecordBatch batch;
  const std::string nul("a\0b", 3);
  const std::string long_nul = std::string(40, 'x') + nul;
  for (const Value& v : {Value::String("word"), Value::String(""), Value::String(nul),
                         Value::String(std::string(40, 'y')), Value::String(long_nul),
                         Value::Int(7), Value::Double(2.5), Value::Null()}) {
    batch.push_back(Rec({{"k", v}, {"other", Value::Int(1)}}));
  }
  batch.push_back(Rec({{"other", Value::Int(1)}}));  // no key field
  ops::BatchKeys keys;
  keys.Encode(batch, {"k"});
  REQUIRE(keys.size() == batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    std::string want;
    const bool has = EncodeKey(batch[i], {"k"}, &want);
    CHECK(keys.has(i) == has);
    if (!has) continue;
    CHECK(keys.key(i) == want);
    CHECK(keys.hashed(i).hash == HashedKey(want).hash);
  }
  // Values carrying a memoised key hash (split's hashed output) give the same keys and
  // hashes as plain ones; a wrong memo would show here.
  RecordBatch memo;
  for (const std::string& w : {std::string("word"), std::string(""), std::string(40, 'y')}) {
    Record r;
    r.AppendString("k", w).MemoiseKeyHash(StableHashOfStringKey(w));
    memo.push_back(std::move(r));
  }
  ops::BatchKeys memo_keys;
  memo_keys.Encode(memo, {"k"});
  for (size_t i = 0; i < memo.size(); ++i) {
    std::string want;
    REQUIRE(EncodeKey(memo[i], {"k"}, &want));
    CHECK(memo_keys.key(i) == want);
    CHECK(memo_keys.hashed(i).hash == HashedKey(want).hash);
  }
  // Two key fields take the general path.
  ops::BatchKeys two;
  two.Encode(batch, {"k", "other"});
  for (size_t i = 0; i < batch.size(); ++i) {
    std::string want;
    const bool has = EncodeKey(batch[i], {"k", "other"}, &want);
    CHECK(two.has(i) == has);
    if (has) CHECK(two.key(i) == want);
  }
}

}  // namespace onceflow::testing

// Key encoding: round trips, order preservation, and hash stability.
#include <algorithm>
#include <cstring>

#include "doctest/doctest.h"
#include "runtime/core/key.h"

namespace onceflow {
namespace {

std::string Enc(const Value& v) {
  std::string s;
  EncodeValue(v, &s);
  return s;
}

TEST_CASE("keys round-trip through encode/decode, including NUL bytes") {
  Record r;
  r.Set("user", Value::String(std::string("a\0b", 3)));
  r.Set("n", Value::Int(-42));
  r.Set("x", Value::Double(3.25));
  r.Set("j", Value::Json("[1]"));
  r.Set("z", Value::Null());
  std::vector<std::string> fields = {"user", "n", "x", "j", "z"};
  std::string key;
  REQUIRE(EncodeKey(r, fields, &key));
  Record back;
  REQUIRE(DecodeKey(key, fields, &back));
  CHECK(back == r);
  Record missing;
  missing.Set("user", Value::String("a"));
  std::string k2;
  CHECK_FALSE(EncodeKey(missing, fields, &k2));
  Record junk;
  CHECK_FALSE(DecodeKey(key + "q", fields, &junk));  // trailing bytes
}

TEST_CASE("encoded values sort like the values") {
  std::vector<int64_t> ints = {-1000000, -1, 0, 1, 7, 1 << 30, INT64_MAX, INT64_MIN};
  std::vector<std::string> enc;
  for (auto i : ints) enc.push_back(Enc(Value::Int(i)));
  std::sort(ints.begin(), ints.end());
  std::sort(enc.begin(), enc.end());
  for (size_t i = 0; i < ints.size(); ++i) CHECK(enc[i] == Enc(Value::Int(ints[i])));
  CHECK(Enc(Value::Double(-2.5)) < Enc(Value::Double(-1)));
  CHECK(Enc(Value::Double(-1)) < Enc(Value::Double(0.5)));
  CHECK(Enc(Value::String("ab")) < Enc(Value::String("b")));
  CHECK(Enc(Value::String("a")) < Enc(Value::String("ab")));
}

TEST_CASE("StableHash is fixed across builds and spreads keys") {
  // Fixed expectations: changing the function would move state between instances.
  CHECK(StableHash("the quick brown fox") == 7178255733969752651ull);
  CHECK(StableHash("") == 5922249289176297556ull);
  CHECK(StableHash("word") != StableHash("words"));
  uint64_t h = StableHash("the quick brown fox");
  CHECK(h == StableHash(std::string("the quick brown fox")));
  int buckets[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4000; ++i) buckets[StableHash("k" + std::to_string(i)) % 4]++;
  for (int b : buckets) CHECK(b > 800);
}

// The definition of StableHash, written the plain way (memcpy of the zero-filled tail), to
// check the optimised one against for every tail length.
uint64_t ReferenceStableHash(std::string_view bytes) {
  constexpr uint64_t kP0 = 0xa0761d6478bd642full, kP1 = 0xe7037ed1a0b428dbull;
  auto mix = [](uint64_t a, uint64_t b) {
    __uint128_t r = static_cast<__uint128_t>(a) * b;
    return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
  };
  uint64_t h = 0x9e3779b97f4a7c15ull ^ bytes.size();
  const char* p = bytes.data();
  size_t n = bytes.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = mix(h ^ w ^ kP0, kP1);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  h = mix(h ^ tail ^ kP1, kP0 ^ n);
  return mix(h, kP0);
}

TEST_CASE("StableHash equals its plain definition for every length") {
  std::string s;
  for (int len = 0; len <= 40; ++len) {
    CHECK_MESSAGE(StableHash(s) == ReferenceStableHash(s), "length " << len);
    // Bytes of every kind, high bit and NUL included, so that a mis-assembled tail shows.
    s.push_back(static_cast<char>((len * 37 + 11) & 0xFF));
  }
}

TEST_CASE("StableHashOfStringKey equals StableHash of the key's encoding") {
  std::string s;
  for (int len = 0; len <= 40; ++len) {
    Record r;
    r.Append("k", Value::String(s));
    std::string key;
    REQUIRE(EncodeKey(r, {"k"}, &key));
    CHECK_MESSAGE(StableHashOfStringKey(s) == StableHash(key), "length " << len);
    s.push_back(static_cast<char>('a' + len % 26 + (len % 3 == 0 ? 0x80 - 'a' : 0)));
  }
}

TEST_CASE("StableHashOfStringKeyPadded equals StableHashOfStringKey whatever follows the key") {
  // The key is read with loads past its end: the bytes there (a buffer of random bytes,
  // all 0xff, all zero) must not change the hash.
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&] { return x = x * 6364136223846793005ull + 1442695040888963407ull; };
  for (int fill : {-1, 0, 0xff}) {
    for (size_t len = 0; len <= 24; ++len) {
      for (int round = 0; round < 20; ++round) {
        std::string buf(len + kStringKeyHashPadding, '\0');
        for (char& c : buf) c = static_cast<char>(fill < 0 ? next() >> 56 : fill);
        for (size_t i = 0; i < len; ++i) {  // key bytes: anything but NUL
          buf[i] = static_cast<char>(1 + (next() >> 56) % 255);
        }
        const std::string_view key(buf.data(), len);
        CHECK_MESSAGE(StableHashOfStringKeyPadded(key) == StableHashOfStringKey(key),
                      "length " << len << ", fill " << fill);
      }
    }
  }
}

TEST_CASE("HashToPartition is the hash modulo the partition count") {
  uint64_t h = 0x243f6a8885a308d3ull;
  for (int i = 0; i < 1000; ++i) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    for (int n = 1; n <= 17; ++n) {
      REQUIRE(HashToPartition(h, n) == static_cast<int>(h % static_cast<uint64_t>(n)));
    }
  }
  // StringKeyPartition hashes the key's encoding, NUL bytes (escaped) included.
  for (const std::string& s : {std::string("word"), std::string("a\0b", 3), std::string(30, 'z')}) {
    Record r;
    r.Append("k", Value::String(s));
    std::string key;
    REQUIRE(EncodeKey(r, {"k"}, &key));
    for (int n = 1; n <= 5; ++n) CHECK(StringKeyPartition(s, n) == HashToPartition(StableHash(key), n));
  }
}

TEST_CASE("a memoised key hash lasts only as long as its string") {
  Value v;
  v.SetString("word");
  v.MemoiseKeyHash(42);
  uint64_t h = 0;
  REQUIRE(v.KnownKeyHash(&h));
  CHECK(h == 42);
  Value copy = v;  // the same string: the memo goes along
  CHECK(copy.KnownKeyHash(&h));
  CHECK(copy == Value::String("word"));  // equality ignores it
  Value moved = std::move(copy);
  CHECK(moved.KnownKeyHash(&h));
  v.SetString("other");
  CHECK_FALSE(v.KnownKeyHash(&h));
  moved.mutable_str() += "s";
  CHECK_FALSE(moved.KnownKeyHash(&h));
  Value n;
  n.SetString("x");
  n.MemoiseKeyHash(1);
  n.SetInt(5);
  CHECK_FALSE(n.KnownKeyHash(&h));
  CHECK(n.as_int() == 5);
  n.SetString("x");
  n.MemoiseKeyHash(1);
  n.SetDouble(0.5);
  CHECK_FALSE(n.KnownKeyHash(&h));
  CHECK_FALSE(Value::String("plain").KnownKeyHash(&h));
}

}  // namespace
}  // namespace onceflow

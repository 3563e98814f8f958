// KeyedState: upsert/find/erase, change collection by epoch, tombstones, restore.
#include "runtime/state/keyed_state.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "runtime/core/status.h"
#include "runtime/state/key_index.h"

namespace onceflow {
namespace {

using Changes = std::map<std::string, std::optional<int64_t>>;

Changes Collect(KeyedState& s, uint64_t since) {
  Changes c;
  s.CollectChanges(since, [&](std::string_view k, const StateValue* v) {
    CHECK(c.count(std::string(k)) == 0);  // each key once
    if (v == nullptr) {
      c[std::string(k)] = std::nullopt;
    } else {
      c[std::string(k)] = (*v)[0].as_int();
    }
  });
  return c;
}

TEST_CASE("upsert inserts once, find does not mark, erase removes") {
  KeyedState s;
  CHECK(s.empty());
  bool inserted = false;
  StateValue& v = s.Upsert("a", &inserted);
  CHECK(inserted);
  v.push_back(Value::Int(1));
  StateValue& again = s.Upsert("a", &inserted);
  CHECK_FALSE(inserted);
  again[0] = Value::Int(2);
  REQUIRE(s.Find("a") != nullptr);
  CHECK((*s.Find("a"))[0].as_int() == 2);
  CHECK(s.Find("b") == nullptr);
  CHECK(s.size() == 1);
  CHECK(s.Erase("a"));
  CHECK_FALSE(s.Erase("a"));
  CHECK(s.Find("a") == nullptr);
  CHECK(s.empty());
}

TEST_CASE("changes are collected per epoch, tombstones once") {
  KeyedState s;
  s.SetEpoch(1);
  s.Upsert("a").push_back(Value::Int(1));
  s.Upsert("b").push_back(Value::Int(1));
  s.Upsert("c").push_back(Value::Int(1));
  Changes first = Collect(s, 1);
  CHECK(first == Changes{{"a", 1}, {"b", 1}, {"c", 1}});

  s.SetEpoch(2);
  s.Upsert("b")[0] = Value::Int(5);
  s.Erase("c");
  s.Upsert("d").push_back(Value::Int(7));
  s.Erase("d");
  s.Upsert("d").push_back(Value::Int(8));  // re-inserted: a change, not a tombstone
  s.Upsert("e").push_back(Value::Int(1));
  s.Erase("e");
  s.Upsert("e").push_back(Value::Int(1));
  s.Erase("e");  // erased twice: reported once
  Changes second = Collect(s, 2);
  CHECK(second == Changes{{"b", 5}, {"c", std::nullopt}, {"d", 8}, {"e", std::nullopt}});
  CHECK(s.PendingTombstones() == 0);

  s.SetEpoch(3);
  CHECK(Collect(s, 3).empty());
}

TEST_CASE("restored entries are not changes; ApproximateBytes grows with content") {
  KeyedState s;
  size_t empty_bytes = s.ApproximateBytes();
  StateValue v;
  v.push_back(Value::Int(3));
  s.Restore("k", v);
  s.SetEpoch(5);
  CHECK(Collect(s, 5).empty());
  CHECK((*s.Find("k"))[0].as_int() == 3);
  for (int i = 0; i < 1000; ++i) {
    s.Upsert("a long key that does not fit inline " + std::to_string(i))
        .push_back(Value::String(std::string(40, 'x')));
  }
  CHECK(s.ApproximateBytes() > empty_bytes + 1000 * 80);
  s.Clear();
  CHECK(s.empty());
}

TEST_CASE("KeyIndex agrees with a std::map under heavy collisions, growth and erases") {
  // Hashes with few distinct values force long probe runs that wrap around the end of
  // the slot array, tag matches that the key test must reject, and backward shifts
  // across the wrap on erase.
  for (uint64_t distinct : {1u, 7u, 1000u}) {
    KeyIndex index;
    std::vector<int> keys;             // entry -> key (-1: free)
    std::map<int, uint32_t> expected;  // key -> entry
    auto hash_of = [&](int k) { return static_cast<size_t>(k % distinct) * 0x9e3779b9u + 15; };
    std::mt19937 rng(static_cast<uint32_t>(distinct));
    for (int op = 0; op < 6000; ++op) {
      const int k = static_cast<int>(rng() % 400);
      auto is_key = [&](uint32_t e) { return keys[e] == k; };
      const bool erase = rng() % 3 == 0;
      auto it = expected.find(k);
      if (erase) {
        if (it == expected.end()) continue;
        index.Erase(hash_of(k), it->second);
        keys[it->second] = -1;
        expected.erase(it);
      } else {
        bool inserted = false;
        const uint32_t e = index.FindOrInsert(
            hash_of(k), is_key,
            [&] {
              keys.push_back(k);
              return static_cast<uint32_t>(keys.size() - 1);
            },
            &inserted);
        CHECK(inserted == (it == expected.end()));
        if (it != expected.end()) CHECK(e == it->second);
        expected[k] = e;
      }
      if (op % 500 == 0 || op == 5999) {
        REQUIRE(index.size() == expected.size());
        for (int q = 0; q < 400; ++q) {
          const uint32_t e = index.Find(hash_of(q), [&](uint32_t x) { return keys[x] == q; });
          auto want = expected.find(q);
          CHECK(e == (want == expected.end() ? KeyIndex::kNone : want->second));
          if (want == expected.end()) continue;
          // ForTagMatches offers the key's entry (among the other entries sharing its tag).
          std::set<uint32_t> offered;
          index.ForTagMatches(hash_of(q), [&](uint32_t x) { offered.insert(x); });
          CHECK(offered.count(want->second) == 1);
        }
      }
    }
  }
}

TEST_CASE("KeyedState erases and reuses entries, keeping every other key") {
  KeyedState s;
  for (int i = 0; i < 5000; ++i) s.Upsert("k" + std::to_string(i)).push_back(Value::Int(i));
  for (int i = 0; i < 5000; i += 2) CHECK(s.Erase("k" + std::to_string(i)));
  CHECK(s.size() == 2500);
  for (int i = 0; i < 5000; ++i) {
    const StateValue* v = s.Find("k" + std::to_string(i));
    if (i % 2 == 0) {
      CHECK(v == nullptr);
    } else {
      REQUIRE(v != nullptr);
      CHECK((*v)[0].as_int() == i);
    }
  }
  // Re-inserted keys start empty and take the freed entries.
  for (int i = 0; i < 5000; i += 2) CHECK(s.Upsert("k" + std::to_string(i)).empty());
  size_t visited = 0;
  s.ForEach([&](std::string_view, const StateValue&) { ++visited; });
  CHECK(visited == 5000);
}

TEST_CASE("IndexedMap keeps the last value per key and visits keys in byte order") {
  IndexedMap<int> m;
  // Keys sharing 8-byte prefixes, high bytes and a NUL, so that the prefix shortcut and
  // the byte comparison both decide some orders.
  std::vector<std::string> keys = {"abcdefgh2", "abcdefgh1", "abcdefgh", "b", "",
                                   std::string("a\0z", 3), "\xff", "a"};
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < keys.size(); ++i) {
      bool inserted = false;
      m.FindOrInsert(HashedKey(keys[i]), &inserted) = static_cast<int>(i) + round * 100;
      CHECK(inserted == (round == 0));
    }
  }
  CHECK(m.size() == keys.size());
  std::vector<std::string> seen;
  m.ForEachSorted([&](const IndexedMap<int>::Entry& e) {
    seen.push_back(e.key);
    CHECK(e.value >= 100);  // the second round's value won
    CHECK(e.hash == HashedKey(e.key).hash);
  });
  std::vector<std::string> want = keys;
  std::sort(want.begin(), want.end());
  CHECK(seen == want);
  // A Status-returning visitor stops at the first error.
  int visits = 0;
  Status st = m.ForEachSorted([&](const IndexedMap<int>::Entry&) -> Status {
    return ++visits == 3 ? Status::Runtime("stop") : Status::Ok();
  });
  CHECK(!st.ok());
  CHECK(visits == 3);
  m.Clear();
  CHECK(m.empty());
  bool inserted = false;
  CHECK(m.FindOrInsert(HashedKey(keys[0]), &inserted) == 0);
  CHECK(inserted);
}

}  // namespace
}  // namespace onceflow

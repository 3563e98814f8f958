// KeyedState: upsert/find/erase, change collection by epoch, tombstones, restore.
#include "runtime/state/keyed_state.h"

#include <doctest/doctest.h>

#include <map>
#include <optional>

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

}  // namespace
}  // namespace onceflow

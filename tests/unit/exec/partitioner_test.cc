// Partitioners: forward, round_robin (even, rotating across batches), hash (stable, same
// key -> same instance, missing field -> upstream error handler), broadcast.
#include "runtime/plan/partitioner.h"

#include <doctest/doctest.h>

#include <map>
#include <set>

#include "runtime/core/key.h"

namespace onceflow {
namespace {

RecordBatch Numbers(int from, int n, int keys = 10) {
  RecordBatch b;
  for (int i = from; i < from + n; ++i) {
    Record r;
    r.Append("n", Value::Int(i));
    r.Append("k", Value::String("key" + std::to_string(i % keys)));
    b.push_back(std::move(r));
  }
  return b;
}

PlanEdge Edge(PartitionKind kind, std::vector<std::string> fields = {}) {
  PlanEdge e;
  e.partition = kind;
  e.hash_fields = std::move(fields);
  return e;
}

// Records the errors it is given; `fail` makes it act like on_error: fail.
class RecordingErrors : public ErrorHandler {
 public:
  explicit RecordingErrors(bool fail) : fail_(fail) {}
  Status OnRecordError(const Record& rec, std::string_view error) override {
    errors.emplace_back(error);
    return fail_ ? Status::DataError(std::string(error)) : Status::Ok();
  }
  Status OnRawError(const Origin&, std::string_view, std::string_view error) override {
    errors.emplace_back(error);
    return Status::Ok();
  }
  std::vector<std::string> errors;

 private:
  bool fail_;
};

TEST_CASE("forward moves the whole batch to its one destination") {
  auto p = MakePartitioner(Edge(PartitionKind::kForward), 0, 1);
  CHECK(p->destinations() == 1);
  std::vector<RecordBatch> out(1);
  RecordBatch in = Numbers(0, 5);
  REQUIRE(p->Route(in, true, out, nullptr).ok());
  CHECK(out[0].size() == 5);
  CHECK(in.empty());
  // Without consume it copies.
  RecordBatch in2 = Numbers(5, 3);
  REQUIRE(p->Route(in2, false, out, nullptr).ok());
  CHECK(out[0].size() == 8);
  CHECK(in2.size() == 3);
  CHECK(out[0][7].Get("n")->as_int() == 7);
}

TEST_CASE("round_robin spreads per record and keeps rotating across batches") {
  auto p = MakePartitioner(Edge(PartitionKind::kRoundRobin), 0, 3);
  std::vector<RecordBatch> out(3);
  RecordBatch in = Numbers(0, 10);
  REQUIRE(p->Route(in, true, out, nullptr).ok());
  CHECK(out[0].size() == 4);
  CHECK(out[1].size() == 3);
  CHECK(out[2].size() == 3);
  // Batches of one record must not all land on the same instance.
  for (auto& b : out) b.clear();
  for (int i = 0; i < 6; ++i) {
    RecordBatch one = Numbers(i, 1);
    REQUIRE(p->Route(one, true, out, nullptr).ok());
  }
  CHECK(out[0].size() == 2);
  CHECK(out[1].size() == 2);
  CHECK(out[2].size() == 2);
  // Different upstream instances start at different destinations.
  auto q = MakePartitioner(Edge(PartitionKind::kRoundRobin), 1, 3);
  std::vector<RecordBatch> out2(3);
  RecordBatch one = Numbers(0, 1);
  REQUIRE(q->Route(one, true, out2, nullptr).ok());
  CHECK(out2[1].size() == 1);
}

TEST_CASE("hash sends equal keys to the same instance, stably") {
  auto p = MakePartitioner(Edge(PartitionKind::kHash, {"k"}), 0, 4);
  CHECK(p->destinations() == 4);
  std::vector<RecordBatch> out(4);
  RecordBatch in = Numbers(0, 1000, 50);
  REQUIRE(p->Route(in, true, out, nullptr).ok());
  std::map<std::string, int> where;
  size_t total = 0;
  int used = 0;
  for (int d = 0; d < 4; ++d) {
    total += out[d].size();
    if (!out[d].empty()) ++used;
    for (const Record& r : out[d]) {
      const std::string& k = r.Get("k")->str();
      auto [it, inserted] = where.emplace(k, d);
      CHECK(it->second == d);  // never split across instances
      // The destination is a pure function of the key's encoding.
      std::string enc;
      REQUIRE(EncodeKey(r, {"k"}, &enc));
      CHECK(HashDestination(enc, 4) == d);
      CHECK(static_cast<int>(StableHash(enc) % 4) == d);
    }
  }
  CHECK(total == 1000);
  CHECK(where.size() == 50);
  CHECK(used >= 3);  // 50 keys over 4 instances: a sane spread
  // A second partitioner (another instance, another run) agrees.
  auto p2 = MakePartitioner(Edge(PartitionKind::kHash, {"k"}), 1, 4);
  std::vector<RecordBatch> out2(4);
  RecordBatch again = Numbers(0, 100, 50);
  REQUIRE(p2->Route(again, false, out2, nullptr).ok());
  for (int d = 0; d < 4; ++d) {
    for (const Record& r : out2[d]) CHECK(where[r.Get("k")->str()] == d);
  }
}

TEST_CASE("a record without its hash field goes to the upstream error handler") {
  auto p = MakePartitioner(Edge(PartitionKind::kHash, {"user"}), 0, 2);
  RecordBatch in = Numbers(0, 3);
  in[1].Append("user", Value::String("u1"));  // only one record has the field
  std::vector<RecordBatch> out(2);
  RecordingErrors skip(false);
  REQUIRE(p->Route(in, true, out, &skip).ok());
  CHECK(out[0].size() + out[1].size() == 1);
  REQUIRE(skip.errors.size() == 2);
  CHECK(skip.errors[0].find("'user'") != std::string::npos);

  RecordBatch in2 = Numbers(0, 3);
  RecordingErrors fail(true);
  std::vector<RecordBatch> out2(2);
  Status st = p->Route(in2, true, out2, &fail);
  CHECK(st.code() == Status::Code::kDataError);
  CHECK(fail.errors.size() == 1);  // stops at the first
}

TEST_CASE("broadcast copies every record to every instance") {
  auto p = MakePartitioner(Edge(PartitionKind::kBroadcast), 0, 3);
  std::vector<RecordBatch> out(3);
  RecordBatch in = Numbers(0, 7);
  REQUIRE(p->Route(in, false, out, nullptr).ok());
  for (auto& b : out) {
    REQUIRE(b.size() == 7);
    CHECK(b[6].Get("n")->as_int() == 6);
  }
  CHECK(in.size() == 7);
  CHECK(in[0].Get("n")->as_int() == 0);  // not consumed
  for (auto& b : out) b.clear();
  REQUIRE(p->Route(in, true, out, nullptr).ok());
  for (auto& b : out) {
    REQUIRE(b.size() == 7);
    CHECK(b[3].Get("k")->str() == "key3");
  }
}

}  // namespace
}  // namespace onceflow

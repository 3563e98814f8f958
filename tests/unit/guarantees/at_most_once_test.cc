// Unit tests of at-most-once's read-ahead leases as pure logic: the meta encoding, lease
// sizing, Extend (persist before processing, only beyond the lease, a failed persist
// keeps the old lease) and Skip (seek to the lease, read past it, stop at the end) with a
// counting fake source and an injected persist callback — no state file, no threads.
#include "runtime/guarantees/at_most_once.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace onceflow {
namespace {

// Records n = 0..size-1; position offset = next n, count = records read.
class CountingSource final : public Source {
 public:
  explicit CountingSource(uint64_t size) : size_(size) {}
  Status Open(NodeContext&) override { return Status::Ok(); }
  Status Read(size_t max, Emitter& out, bool* end) override {
    for (size_t i = 0; i < max && next_ < size_; ++i, ++next_, ++count_) out.Emit(Record());
    *end = next_ >= size_;
    ++reads;
    return Status::Ok();
  }
  SourcePosition Position() const override { return {"gen", next_, count_}; }
  Status Seek(const SourcePosition& pos) override {
    next_ = pos.offset;
    count_ = pos.count;
    ++seeks;
    return Status::Ok();
  }
  int reads = 0, seeks = 0;

 private:
  uint64_t size_, next_ = 0, count_ = 0;
};

SourcePosition At(uint64_t n) { return {"gen", n, n}; }

TEST_CASE("leases encode and decode, names with spaces included") {
  std::vector<ReadAheadLease> in = {{"lines", 0, {"/tmp/a b.txt", 120, 7}, 1031},
                                    {"gen", 3, {"", 5, 5}, 2000}};
  std::vector<ReadAheadLease> out;
  REQUIRE(DecodeLeases(EncodeLeases(in), &out));
  CHECK(out == in);
  CHECK(DecodeLeases("", &out));
  CHECK(out.empty());
  CHECK_FALSE(DecodeLeases("gen x 1 2 3 \n", &out));
  CHECK_FALSE(DecodeLeases("gen 0 1 9 3 \n", &out));  // a lease behind its own position
}

TEST_CASE("lease sizes follow the rate within bounds and at most double") {
  CHECK(LeaseSize(0, 0) == kMinLease);
  CHECK(LeaseSize(100, 1.0) == kMinLease);  // slow: the minimum
  CHECK(LeaseSize(400000, 1.0) == static_cast<uint64_t>(400000 * kLeaseSeconds));
  CHECK(LeaseSize(uint64_t{1} << 40, 0.001) == kMaxLease);
  CHECK(NextLeaseSize(1024, uint64_t{1} << 40, 0.001) == 2048);
  CHECK(NextLeaseSize(1024, 10, 1.0) == kMinLease);
}

TEST_CASE("a lease is persisted before the batch that needs it, and only then") {
  ReadAhead ra;
  std::vector<std::string> persisted;
  auto persist = [&](const std::string& v) {
    persisted.push_back(v);
    return Status::Ok();
  };
  bool extended = false;
  REQUIRE(ra.Extend("g", 0, At(256), persist, &extended).ok());
  CHECK(extended);
  REQUIRE(persisted.size() == 1);
  std::vector<ReadAheadLease> leases;
  REQUIRE(DecodeLeases(persisted[0], &leases));
  REQUIRE(leases.size() == 1);
  CHECK(leases[0].at.count == 256);
  CHECK(leases[0].until == 256 + kMinLease);
  // Inside the lease: nothing to commit.
  REQUIRE(ra.Extend("g", 0, At(256 + kMinLease), persist, &extended).ok());
  CHECK_FALSE(extended);
  CHECK(persisted.size() == 1);
  // Another instance: its own lease, stored with the first one.
  REQUIRE(ra.Extend("g", 1, At(10), persist, &extended).ok());
  REQUIRE(DecodeLeases(persisted.back(), &leases));
  CHECK(leases.size() == 2);
  // Beyond it: a new one, at least as far as the batch, before the batch is processed.
  REQUIRE(ra.Extend("g", 0, At(256 + kMinLease + 1), persist, &extended).ok());
  CHECK(extended);
  REQUIRE(DecodeLeases(persisted.back(), &leases));
  CHECK(leases[0].until > 256 + kMinLease + 1);
  CHECK(leases[1].until == 10 + kMinLease);
}

TEST_CASE("a failed persist keeps the old lease and is reported") {
  ReadAhead ra;
  auto fail = [](const std::string&) { return Status::IOError("disk full"); };
  CHECK_FALSE(ra.Extend("g", 0, At(1), fail).ok());
  int calls = 0;
  auto ok = [&](const std::string&) {
    ++calls;
    return Status::Ok();
  };
  REQUIRE(ra.Extend("g", 0, At(1), ok).ok());
  CHECK(calls == 1);  // still needed: the failed one granted nothing
}

TEST_CASE("a resume skips past the lease, from the checkpoint or the lease's position") {
  ReadAhead ra;
  std::string stored;
  auto persist = [&](const std::string& v) {
    stored = v;
    return Status::Ok();
  };
  REQUIRE(ra.Extend("g", 0, At(3000), persist).ok());  // lease: 3000 .. 3000 + kMinLease
  // (A new process would Load this lease from the state file; Skip reads the same map.)
  SUBCASE("from a checkpoint before the lease: seek to its position, read to its end") {
    CountingSource src(100000);
    REQUIRE(src.Seek(At(1000)).ok());  // the restored checkpoint
    uint64_t skipped = 0;
    REQUIRE(ra.Skip("g", 0, &src, &skipped).ok());
    CHECK(src.Position().count == 3000 + kMinLease);
    CHECK(skipped == 3000 + kMinLease - 1000);
    CHECK(src.seeks == 2);
  }
  SUBCASE("an input that ends inside the lease") {
    CountingSource src(3500);
    uint64_t skipped = 0;
    REQUIRE(ra.Skip("g", 0, &src, &skipped).ok());
    CHECK(src.Position().count == 3500);
    CHECK(skipped == 3500);
  }
  SUBCASE("a checkpoint already past the lease (a clean stop): nothing to skip") {
    CountingSource src(100000);
    REQUIRE(src.Seek(At(5000)).ok());
    uint64_t skipped = 0;
    REQUIRE(ra.Skip("g", 0, &src, &skipped).ok());
    CHECK(skipped == 0);
    CHECK(src.reads == 0);
  }
  SUBCASE("an instance without a lease starts where it was put") {
    CountingSource src(100000);
    uint64_t skipped = 0;
    REQUIRE(ra.Skip("g", 1, &src, &skipped).ok());
    CHECK(skipped == 0);
    CHECK(src.Position().count == 0);
  }
}

}  // namespace
}  // namespace onceflow

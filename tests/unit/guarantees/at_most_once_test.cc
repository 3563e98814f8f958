// Unit tests of at-most-once's read-ahead leases as pure logic: the meta encoding, lease
// sizing, Extend (durable before processing beyond the lease, the next lease requested in
// the background at half, a failed commit stops the source) and Skip (seek to the lease,
// read past it, stop at the end) with a counting fake source and an injected persist
// callback that a test can hold like a checkpoint holds the state file — no state file.
#include "runtime/guarantees/at_most_once.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
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

TEST_CASE("lease sizes follow the rate and the commit latency, within bounds, growing 8x at most") {
  CHECK(LeaseSize(0, 0) == kMinLease);
  CHECK(LeaseSize(100, 1.0) == kMinLease);  // slow: the minimum
  CHECK(LeaseSize(400000, 1.0) == static_cast<uint64_t>(400000 * kLeaseSeconds));
  CHECK(LeaseSize(400000, 1.0, 2.0) == 800000);
  CHECK(LeaseSize(uint64_t{1} << 40, 0.001) == kMaxLease);
  CHECK(NextLeaseSize(1024, uint64_t{1} << 40, 0.001, 0) == 1024 * kLeaseGrowth);
  CHECK(NextLeaseSize(1024, 20, 0.001, 0) == 5000);  // 20,000/s: a quarter second
  CHECK(NextLeaseSize(1024, 10, 1.0, 0) == kMinLease);
  // A slow commit (1 s) makes the next lease cover 2 s of input.
  CHECK(NextLeaseSize(1 << 20, 100000, 1.0, 1.0) == 200000);
}

// A persist callback that records every committed value; `gate` (when set) holds commits
// until released, like a checkpoint holding the state file.
struct FakeStore {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> values;
  bool gate = false;
  Status fail;
  ReadAhead::Persist Persist() {
    return [this](const std::string& v) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !gate; });
      if (!fail.ok()) return fail;
      values.push_back(v);
      return Status::Ok();
    };
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu);
    gate = true;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu);
      gate = false;
    }
    cv.notify_all();
  }
  std::vector<ReadAheadLease> Last() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<ReadAheadLease> l;
    REQUIRE(!values.empty());
    REQUIRE(DecodeLeases(values.back(), &l));
    return l;
  }
  size_t Count() {
    std::lock_guard<std::mutex> lock(mu);
    return values.size();
  }
};

TEST_CASE("a lease is durable before the batch that needs it; the next one comes early") {
  FakeStore store;
  ReadAhead ra(store.Persist());
  // The first batch waits for the first lease.
  REQUIRE(ra.Extend("g", 0, At(256)).ok());
  REQUIRE(store.Count() == 1);
  std::vector<ReadAheadLease> l = store.Last();
  REQUIRE(l.size() == 1);
  CHECK(l[0].at.count == 256);
  CHECK(l[0].until == 256 + kMinLease);
  // Inside the first half: nothing to commit.
  REQUIRE(ra.Extend("g", 0, At(256 + kMinLease / 2 - 1)).ok());
  ra.WaitIdle();
  CHECK(store.Count() == 1);
  // Half used: the next lease is requested without waiting for it.
  store.Close();
  REQUIRE(ra.Extend("g", 0, At(256 + kMinLease / 2)).ok());
  REQUIRE(ra.Extend("g", 0, At(256 + kMinLease)).ok());  // still inside the committed lease
  CHECK(store.Count() == 1);
  store.Open();
  ra.WaitIdle();
  REQUIRE(store.Count() == 2);
  CHECK(store.Last()[0].until > 256 + kMinLease);
  // Another instance: its own lease, stored with the first one.
  REQUIRE(ra.Extend("g", 1, At(10)).ok());
  l = store.Last();
  REQUIRE(l.size() == 2);
  CHECK(l[1].until == 10 + kMinLease);
}

TEST_CASE("beyond its lease a source waits for the commit") {
  FakeStore store;
  ReadAhead ra(store.Persist());
  REQUIRE(ra.Extend("g", 0, At(1)).ok());
  store.Close();
  std::atomic<bool> done{false};
  std::thread source([&] {
    CHECK(ra.Extend("g", 0, At(1 + 10 * kMinLease)).ok());  // far beyond: must wait
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(done.load());
  store.Open();
  source.join();
  CHECK(store.Last()[0].until >= 1 + 10 * kMinLease);
}

TEST_CASE("a failed commit is reported and nothing beyond the lease passes") {
  FakeStore store;
  store.fail = Status::IOError("disk full");
  ReadAhead ra(store.Persist());
  Status st = ra.Extend("g", 0, At(1));
  CHECK_FALSE(st.ok());
  CHECK(st.message().find("disk full") != std::string::npos);
  CHECK_FALSE(ra.Extend("g", 0, At(2)).ok());
}

TEST_CASE("a resume skips past the lease, from the checkpoint or the lease's position") {
  FakeStore store;
  ReadAhead ra(store.Persist());
  REQUIRE(ra.Extend("g", 0, At(3000)).ok());  // lease: 3000 .. 3000 + kMinLease
  ra.Stop();
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

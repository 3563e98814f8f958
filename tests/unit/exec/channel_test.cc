// Channel and Notifier: FIFO order, bounded capacity (backpressure), recycling, and
// cancellation waking blocked producers and consumers. Waits are bounded (no test can
// hang) and nothing asserts on speed.
#include "runtime/exec/channel.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace onceflow {
namespace {

using namespace std::chrono_literals;

Envelope BatchOf(int64_t first, int n) {
  Envelope e;
  for (int i = 0; i < n; ++i) {
    Record r;
    r.Append("n", Value::Int(first + i));
    e.batch.push_back(std::move(r));
  }
  return e;
}

// Polls `cond` for up to 5 s.
template <typename F>
bool Eventually(F cond) {
  for (int i = 0; i < 500; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

TEST_CASE("channel is FIFO and carries control items") {
  Channel ch(4);
  for (int i = 0; i < 3; ++i) {
    Envelope e = BatchOf(i * 10, 2);
    REQUIRE(ch.Push(&e));
    CHECK(e.batch.empty());
  }
  REQUIRE(ch.PushEnd(true));
  CHECK(ch.size() == 4);
  Envelope out;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(ch.TryPop(&out));
    CHECK(out.kind == Envelope::Kind::kBatch);
    REQUIRE(out.batch.size() == 2);
    CHECK(out.batch[0].Get("n")->as_int() == i * 10);
    CHECK(out.batch[1].Get("n")->as_int() == i * 10 + 1);
  }
  REQUIRE(ch.TryPop(&out));
  CHECK(out.kind == Envelope::Kind::kEnd);
  CHECK(out.exhausted);
  CHECK_FALSE(ch.TryPop(&out));
  CHECK(ch.size() == 0);
}

TEST_CASE("batch vectors are recycled from consumer to producer") {
  Channel ch(1);
  Envelope a = BatchOf(0, 100);
  REQUIRE(ch.Push(&a));
  Envelope got;
  REQUIRE(ch.TryPop(&got));  // got holds the 100-record vector
  Envelope b = BatchOf(100, 1);
  REQUIRE(ch.Push(&b));
  REQUIRE(ch.TryPop(&got));  // the 100-record vector goes back into the ring, cleared
  CHECK(got.batch.size() == 1);
  Envelope c = BatchOf(200, 1);
  REQUIRE(ch.Push(&c));
  CHECK(c.batch.empty());
  CHECK(c.batch.capacity() >= 100);  // the producer got the recycled vector
}

TEST_CASE("a full channel blocks its producer until the consumer pops") {
  const int kCap = 3;
  Notifier notifier;
  Channel ch(kCap, &notifier);
  std::atomic<int> pushed{0};
  std::thread producer([&] {
    for (int i = 0; i < kCap + 2; ++i) {
      Envelope e = BatchOf(i, 1);
      if (!ch.Push(&e)) return;
      pushed.fetch_add(1);
    }
  });
  REQUIRE(Eventually([&] { return pushed.load() == kCap; }));
  std::this_thread::sleep_for(50ms);
  CHECK(pushed.load() == kCap);  // blocked, not dropped, not grown
  CHECK(ch.size() == static_cast<size_t>(kCap));

  Envelope out;
  REQUIRE(ch.TryPop(&out));
  CHECK(out.batch[0].Get("n")->as_int() == 0);
  CHECK(Eventually([&] { return pushed.load() == kCap + 1; }));
  REQUIRE(ch.TryPop(&out));
  CHECK(Eventually([&] { return pushed.load() == kCap + 2; }));
  producer.join();
  // Order preserved across the blocking.
  for (int i = 2; i < kCap + 2; ++i) {
    REQUIRE(ch.TryPop(&out));
    CHECK(out.batch[0].Get("n")->as_int() == i);
  }
}

TEST_CASE("a push signals the consumer's notifier; a waiting consumer wakes") {
  Notifier notifier;
  Channel a(2, &notifier);
  Channel b(2, &notifier);
  std::atomic<int> received{0};
  std::thread consumer([&] {
    Envelope env;
    while (received.load() < 2) {
      uint64_t epoch = notifier.Epoch();
      bool got = a.TryPop(&env) || b.TryPop(&env);
      if (got) {
        received.fetch_add(1);
        continue;
      }
      if (!notifier.Wait(epoch)) return;
    }
  });
  std::this_thread::sleep_for(20ms);
  Envelope e1 = BatchOf(1, 1);
  REQUIRE(b.Push(&e1));
  Envelope e2 = BatchOf(2, 1);
  REQUIRE(a.Push(&e2));
  CHECK(Eventually([&] { return received.load() == 2; }));
  notifier.Cancel();  // in case the check failed, do not hang the join
  consumer.join();
}

TEST_CASE("cancel wakes a blocked producer and makes Push fail") {
  Channel ch(1);
  Envelope first = BatchOf(0, 1);
  REQUIRE(ch.Push(&first));
  std::atomic<int> result{-1};
  std::thread producer([&] {
    Envelope e = BatchOf(1, 1);
    result.store(ch.Push(&e) ? 1 : 0);
  });
  std::this_thread::sleep_for(20ms);
  CHECK(result.load() == -1);  // blocked
  ch.Cancel();
  REQUIRE(Eventually([&] { return result.load() != -1; }));
  producer.join();
  CHECK(result.load() == 0);
  CHECK(ch.cancelled());
  Envelope out;
  CHECK_FALSE(ch.TryPop(&out));
  CHECK_FALSE(ch.PushEnd(false));
}

TEST_CASE("cancel wakes a consumer waiting on its notifier") {
  Notifier notifier;
  Channel ch(1, &notifier);
  std::atomic<int> result{-1};
  std::thread consumer([&] {
    uint64_t epoch = notifier.Epoch();
    Envelope env;
    if (ch.TryPop(&env)) {
      result.store(2);
      return;
    }
    result.store(notifier.Wait(epoch) ? 1 : 0);
  });
  std::this_thread::sleep_for(20ms);
  ch.Cancel();  // cancels the consumer's notifier too
  REQUIRE(Eventually([&] { return result.load() != -1; }));
  consumer.join();
  CHECK(result.load() == 0);
  CHECK(notifier.cancelled());
}

TEST_CASE("WaitFor gives up after its timeout") {
  Notifier n;
  CHECK(n.WaitFor(n.Epoch(), 1));
  uint64_t e = n.Epoch();
  n.Signal();
  CHECK(n.Wait(e));  // epoch already moved: returns at once
}

}  // namespace
}  // namespace onceflow

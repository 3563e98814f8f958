// bench_gen_orders: writes the orders benchmark input (JSON Lines).
//
// Usage: bench_gen_orders OUTPUT [N_EVENTS]   (default N_EVENTS = 5000000)
//
// Each line is one order event, keys always in this order:
//   {"order_id":1,"customer":"c0042","amount":37.5,"qty":2,
//    "ts":1700000000123,"status":"paid"}
// - order_id: 1..N_EVENTS, increasing.
// - customer: one of 10,000 ids "c0000".."c9999", mildly skewed (a quarter of
//   the orders come from the first 500 customers).
// - amount: always written with a fractional part (a JSON double, never an
//   integer), at most 2 decimals: ~20% in [0.50, 10.00] (exactly 10.0 occurs,
//   so `amount > 10` is exercised at its boundary), the rest in
//   [10.01, 500.00].
// - qty: 1..5; ts: epoch milliseconds, non-decreasing from 1700000000000.
// - status: ~80% "paid", ~12% "cancelled", ~5% "refunded", ~3% "pending".
// A fixed seed makes the output byte-identical for a given N_EVENTS.
#include <cstdint>
#include <cstdio>
#include <string>

#include "bench_util.h"

namespace {

namespace bench = onceflow::bench;

constexpr uint64_t kDefaultEvents = 5'000'000;
constexpr uint32_t kCustomers = 10'000;
constexpr uint32_t kHotCustomers = 500;
constexpr uint64_t kSeed = 0x6f72646572733031ULL;  // "orders01"
constexpr uint64_t kStartTsMs = 1'700'000'000'000ULL;

// Appends a cents value as a JSON double with 1 or 2 decimals: 3750 -> 37.5,
// 1000 -> 10.0, 1234 -> 12.34.
void AppendAmount(bench::BufferedWriter& out, uint32_t cents) {
  out.AppendUint(cents / 100);
  out.Append('.');
  const uint32_t frac = cents % 100;
  out.Append(static_cast<char>('0' + frac / 10));
  if (frac % 10 != 0) out.Append(static_cast<char>('0' + frac % 10));
}

void AppendCustomer(bench::BufferedWriter& out, uint32_t id) {
  char buf[6] = {'c',
                 static_cast<char>('0' + id / 1000 % 10),
                 static_cast<char>('0' + id / 100 % 10),
                 static_cast<char>('0' + id / 10 % 10),
                 static_cast<char>('0' + id % 10),
                 '\0'};
  out.Append(std::string_view(buf, 5));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUTPUT [N_EVENTS]  (default %llu)\n", argv[0],
                 static_cast<unsigned long long>(kDefaultEvents));
    return 2;
  }
  uint64_t n_events = kDefaultEvents;
  if (argc == 3 && !bench::ParseCount(argv[2], &n_events)) {
    std::fprintf(stderr, "bad N_EVENTS: %s\n", argv[2]);
    return 2;
  }

  bench::Rng rng(kSeed);
  bench::BufferedWriter out(argv[1]);
  uint64_t ts = kStartTsMs;
  for (uint64_t order_id = 1; order_id <= n_events; ++order_id) {
    const uint32_t customer = rng.Below(4) == 0 ? rng.Below(kHotCustomers) : rng.Below(kCustomers);
    const uint32_t cents = rng.Below(5) == 0 ? 50 + rng.Below(951)  // ..10.00
                                             : 1001 + rng.Below(48'999);
    const uint32_t qty = 1 + rng.Below(5);
    ts += rng.Below(40);
    const uint32_t roll = rng.Below(100);
    const char* status = roll < 80   ? "paid"
                         : roll < 92 ? "cancelled"
                         : roll < 97 ? "refunded"
                                     : "pending";

    out.Append("{\"order_id\":");
    out.AppendUint(order_id);
    out.Append(",\"customer\":\"");
    AppendCustomer(out, customer);
    out.Append("\",\"amount\":");
    AppendAmount(out, cents);
    out.Append(",\"qty\":");
    out.AppendUint(qty);
    out.Append(",\"ts\":");
    out.AppendUint(ts);
    out.Append(",\"status\":\"");
    out.Append(status);
    out.Append("\"}\n");
  }
  out.Close();
  return 0;
}

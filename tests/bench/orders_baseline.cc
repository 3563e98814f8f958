// orders_baseline: the hand-written, single-threaded C++ equivalent of
// pipelines/orders.yaml, which onceflow's orders run is measured against.
//
// Usage: orders_baseline INPUT DB_PATH [TABLE]   (TABLE defaults to
//        "per_customer")
//
// Pipeline reproduced:
//   orders (JSONL file) -> paid: filter where e.status == "paid" and
//   e.amount > 10 -> per_customer: aggregate by customer, sum(amount), count
//   -> db: SQLite upsert keyed by customer.
//
// INPUT is streamed with large read(2) calls and each line is parsed with
// simdjson's On-Demand API straight from the read buffer (which carries
// SIMDJSON_PADDING spare bytes, so no per-line copy). Aggregates live in an
// absl::flat_hash_map; at the end they are written with one prepared
//   INSERT ... ON CONFLICT(customer) DO UPDATE
// statement inside a single transaction into
//   TABLE(customer TEXT PRIMARY KEY, sum REAL, count INTEGER).
// A record whose status or amount is missing or mistyped does not pass the
// filter; a line that is not valid JSON is a fatal error.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "simdjson.h"

namespace {

constexpr size_t kReadChunk = 4 << 20;  // 4 MiB per read(2)

struct CustomerTotals {
  double sum = 0;
  uint64_t count = 0;
};
// Keys are looked up with absl::string_view (heterogeneous; no allocation
// for a known customer). Debian's absl::string_view is not std::string_view.
using TotalsMap = absl::flat_hash_map<std::string, CustomerTotals>;

[[noreturn]] void DieErrno(const char* what, const char* path) {
  std::fprintf(stderr, "orders_baseline: %s %s: %s\n", what, path, std::strerror(errno));
  std::exit(1);
}

// Applies the filter and the aggregation to one JSON line.
void ProcessLine(simdjson::ondemand::parser& parser, const char* line, size_t len, size_t capacity,
                 uint64_t line_no, TotalsMap& totals) {
  simdjson::ondemand::document doc;
  if (auto err = parser.iterate(line, len, capacity).get(doc); err != simdjson::SUCCESS) {
    std::fprintf(stderr, "orders_baseline: line %llu: %s\n",
                 static_cast<unsigned long long>(line_no), simdjson::error_message(err));
    std::exit(1);
  }
  // Fields are read in the order the generator writes them (customer,
  // amount, status); operator[] also finds them in any other order.
  std::string_view customer;
  double amount = 0;
  std::string_view status;
  if (doc["customer"].get_string().get(customer) != simdjson::SUCCESS) return;
  if (doc["amount"].get_double().get(amount) != simdjson::SUCCESS) return;
  if (doc["status"].get_string().get(status) != simdjson::SUCCESS) return;
  if (!(status == "paid" && amount > 10)) return;

  const absl::string_view key(customer.data(), customer.size());
  auto it = totals.find(key);
  if (it == totals.end()) it = totals.emplace(std::string(key), CustomerTotals{}).first;
  it->second.sum += amount;
  ++it->second.count;
}

// Streams `path` line by line through ProcessLine.
void ProcessFile(const char* path, TotalsMap& totals) {
  const int fd = ::open(path, O_RDONLY);
  if (fd < 0) DieErrno("open", path);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  simdjson::ondemand::parser parser;
  // buf = [carry (partial last line) | fresh data | SIMDJSON_PADDING].
  size_t cap = 2 * kReadChunk;
  std::unique_ptr<char[]> buf(new char[cap + simdjson::SIMDJSON_PADDING]);
  size_t carry = 0;
  uint64_t line_no = 0;
  bool eof = false;
  while (!eof) {
    if (cap - carry < kReadChunk) {  // One line longer than a chunk: grow.
      const size_t new_cap = 2 * cap;
      std::unique_ptr<char[]> bigger(new char[new_cap + simdjson::SIMDJSON_PADDING]);
      std::memcpy(bigger.get(), buf.get(), carry);
      buf = std::move(bigger);
      cap = new_cap;
    }
    const ssize_t n = ::read(fd, buf.get() + carry, cap - carry);
    if (n < 0) {
      if (errno == EINTR) continue;
      DieErrno("read", path);
    }
    eof = n == 0;
    char* const begin = buf.get();
    char* const end = begin + carry + static_cast<size_t>(n);
    std::memset(end, ' ', simdjson::SIMDJSON_PADDING);  // Defined padding bytes.
    const size_t buf_end = cap + simdjson::SIMDJSON_PADDING;
    char* p = begin;
    for (;;) {
      char* nl = static_cast<char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
      if (nl == nullptr) {
        if (!eof) break;  // Partial line: keep it for the next read.
        if (p == end) break;
        nl = end;  // Last line without a trailing newline.
      }
      ++line_no;
      size_t len = static_cast<size_t>(nl - p);
      if (len > 0 && p[len - 1] == '\r') --len;
      if (len > 0) {
        ProcessLine(parser, p, len, buf_end - static_cast<size_t>(p - begin), line_no, totals);
      }
      if (nl == end) break;
      p = nl + 1;
    }
    carry = eof ? 0 : static_cast<size_t>(end - p);
    if (carry > 0) std::memmove(begin, p, carry);
  }
  ::close(fd);
}

void CheckSqlite(int rc, sqlite3* db, const char* what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
  std::fprintf(stderr, "orders_baseline: sqlite %s: %s\n", what, sqlite3_errmsg(db));
  std::exit(1);
}

bool IsIdentifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok =
        c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void StoreTotals(const TotalsMap& totals, const char* db_path, const std::string& table) {
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path, &db) != SQLITE_OK) {
    std::fprintf(stderr, "orders_baseline: open %s: %s\n", db_path, sqlite3_errmsg(db));
    std::exit(1);
  }
  const std::string create = "CREATE TABLE IF NOT EXISTS " + table +
                             " (customer TEXT PRIMARY KEY, \"sum\" REAL, \"count\" INTEGER)";
  CheckSqlite(sqlite3_exec(db, create.c_str(), nullptr, nullptr, nullptr), db, "create");
  const std::string upsert = "INSERT INTO " + table +
                             " (customer, \"sum\", \"count\") VALUES (?1, ?2, ?3)"
                             " ON CONFLICT(customer) DO UPDATE SET"
                             " \"sum\" = excluded.\"sum\", \"count\" = excluded.\"count\"";
  sqlite3_stmt* stmt = nullptr;
  CheckSqlite(sqlite3_prepare_v2(db, upsert.c_str(), -1, &stmt, nullptr), db, "prepare");
  CheckSqlite(sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), db, "begin");
  for (const auto& [customer, t] : totals) {
    sqlite3_bind_text(stmt, 1, customer.data(), static_cast<int>(customer.size()), SQLITE_STATIC);
    sqlite3_bind_double(stmt, 2, t.sum);
    sqlite3_bind_int64(stmt, 3, static_cast<sqlite3_int64>(t.count));
    CheckSqlite(sqlite3_step(stmt), db, "upsert");
    sqlite3_reset(stmt);
  }
  CheckSqlite(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), db, "commit");
  sqlite3_finalize(stmt);
  CheckSqlite(sqlite3_close(db), db, "close");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s INPUT DB_PATH [TABLE]\n", argv[0]);
    return 2;
  }
  const std::string table = argc == 4 ? argv[3] : "per_customer";
  if (!IsIdentifier(table)) {
    std::fprintf(stderr, "orders_baseline: bad table name: %s\n", table.c_str());
    return 2;
  }
  TotalsMap totals;
  totals.reserve(1 << 14);
  ProcessFile(argv[1], totals);
  StoreTotals(totals, argv[2], table);
  return 0;
}

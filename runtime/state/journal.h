// StoreJournal: a SourceJournal (runtime/core/node.h) kept in the state file's `journal`
// table, one per source instance (node, instance). The guarantee that replays a source
// which cannot rewind (`stdin`) makes one, hands it to the source through
// NodeContext::journal, and keeps it alive while the source runs.
//
// Durability: each Append is one SQLite transaction committed with synchronous=NORMAL.
// Once it returned, a crash of the process (kill -9, --chaos crash) cannot lose it: the
// committed WAL frames are already in the OS. A power cut can lose only appends made after
// the last FULL commit, and every checkpoint commits with FULL, so it never loses bytes
// a checkpoint refers to (see the WRITES AND CRASHES notes at the top of store.cc).
//
// Threading: the StateStore is single-threaded and shared with the checkpoint writer, so
// every store access takes *store_mu (the mutex the guarantee's checkpoint thread holds
// around its own store calls). Append and Read are called by one thread, the source's task
// thread; size() may be read from any thread (the run summary reports it).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "runtime/core/node.h"
#include "runtime/core/status.h"
#include "runtime/state/store.h"

namespace onceflow {

class StoreJournal : public SourceJournal {
 public:
  // Reads the journal's current size from the store (under *store_mu). A failure to read
  // it is kept in status() and returned by every later Append and Read. `store` and
  // `store_mu` must outlive the journal; the store must be writable for Append.
  StoreJournal(StateStore* store, std::mutex* store_mu, std::string node, int instance);

  // Ok, or why the size could not be read.
  const Status& status() const { return status_; }

  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  Status Append(std::string_view bytes) override;
  Status Read(uint64_t offset, size_t max, std::string* out) override;

 private:
  StateStore* store_;
  std::mutex* mu_;
  std::string node_;
  int instance_;
  std::atomic<uint64_t> size_{0};
  Status status_;
};

}  // namespace onceflow

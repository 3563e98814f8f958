// StoreJournal: a SourceJournal over the state file. See journal.h.
#include "runtime/state/journal.h"

#include <utility>

namespace onceflow {

StoreJournal::StoreJournal(StateStore* store, std::mutex* store_mu, std::string node, int instance)
    : store_(store), mu_(store_mu), node_(std::move(node)), instance_(instance) {
  uint64_t size = 0;
  std::lock_guard<std::mutex> lock(*mu_);
  status_ = store_->JournalSize(node_, instance_, &size);
  size_.store(size, std::memory_order_release);
}

Status StoreJournal::Append(std::string_view bytes) {
  if (!status_.ok()) return status_;
  if (bytes.empty()) return Status::Ok();
  uint64_t at = size();
  Status st;
  {
    std::lock_guard<std::mutex> lock(*mu_);
    st = store_->JournalAppend(node_, instance_, at, bytes);
  }
  if (st.ok()) size_.store(at + bytes.size(), std::memory_order_release);
  return st;
}

Status StoreJournal::Read(uint64_t offset, size_t max, std::string* out) {
  out->clear();
  if (!status_.ok()) return status_;
  if (offset >= size()) return Status::Ok();
  std::lock_guard<std::mutex> lock(*mu_);
  return store_->JournalRead(node_, instance_, offset, max, out);
}

}  // namespace onceflow

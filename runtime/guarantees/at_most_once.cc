// At-most-once read-ahead leases; see at_most_once.h for the design.
#include "runtime/guarantees/at_most_once.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "runtime/state/store.h"

namespace onceflow {

std::string EncodeLeases(const std::vector<ReadAheadLease>& leases) {
  std::string out;
  for (const ReadAheadLease& l : leases) {
    char buf[128];
    std::snprintf(buf, sizeof buf, " %d %" PRIu64 " %" PRIu64 " %" PRIu64 " ", l.instance,
                  l.at.offset, l.at.count, l.until);
    out += l.node;
    out += buf;
    out += l.at.name;
    out += '\n';
  }
  return out;
}

bool DecodeLeases(const std::string& text, std::vector<ReadAheadLease>* leases) {
  leases->clear();
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::istringstream f(line);
    ReadAheadLease l;
    if (!(f >> l.node >> l.instance >> l.at.offset >> l.at.count >> l.until)) return false;
    if (l.instance < 0 || l.until < l.at.count) return false;
    // The name is the rest of the line after one space (it may be empty or hold spaces).
    std::string rest;
    std::getline(f, rest);
    if (!rest.empty()) {
      if (rest[0] != ' ') return false;
      l.at.name = rest.substr(1);
    }
    leases->push_back(std::move(l));
  }
  return true;
}

uint64_t LeaseSize(uint64_t records, double seconds) {
  if (seconds <= 0 || records == 0) return kMinLease;
  const double want = static_cast<double>(records) / seconds * kLeaseSeconds;
  if (want >= static_cast<double>(kMaxLease)) return kMaxLease;
  return std::clamp<uint64_t>(static_cast<uint64_t>(want), kMinLease, kMaxLease);
}

uint64_t NextLeaseSize(uint64_t previous, uint64_t records, double seconds) {
  return std::max(kMinLease, std::min(LeaseSize(records, seconds), 2 * previous));
}

Status ReadAhead::Load(StateStore* store) {
  std::string text;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(store->GetMeta(kMetaKey, &text, &found));
  std::vector<ReadAheadLease> leases;
  if (!DecodeLeases(text, &leases)) {
    return Status::State("state file " + store->path() + ": meta " + kMetaKey + " is corrupt");
  }
  std::lock_guard<std::mutex> lock(mu_);
  leases_.clear();
  for (ReadAheadLease& l : leases) {
    auto key = std::make_pair(l.node, l.instance);
    leases_[key].lease = std::move(l);
  }
  return Status::Ok();
}

Status ReadAhead::Clear(StateStore* store) {
  std::lock_guard<std::mutex> lock(mu_);
  leases_.clear();
  return store->PutMeta(kMetaKey, "", /*full_sync=*/true);
}

Status ReadAhead::Extend(const std::string& node, int instance, const SourcePosition& after,
                         const std::function<Status(const std::string&)>& persist,
                         bool* extended) {
  if (extended != nullptr) *extended = false;
  std::lock_guard<std::mutex> lock(mu_);
  Slot& slot = leases_[{node, instance}];
  if (slot.lease.node.empty()) {
    slot.lease.node = node;
    slot.lease.instance = instance;
  }
  if (after.count <= slot.lease.until) return Status::Ok();  // the hot path
  const Clock::time_point now = Clock::now();
  uint64_t size = kMinLease;
  if (slot.granted != Clock::time_point{} && after.count > slot.lease.at.count) {
    size = NextLeaseSize(slot.lease.until - slot.lease.at.count, after.count - slot.lease.at.count,
                         std::chrono::duration<double>(now - slot.granted).count());
  }
  Slot next = slot;
  next.lease.at = after;
  next.lease.until = after.count + size;
  next.granted = now;
  std::vector<ReadAheadLease> all;
  all.reserve(leases_.size());
  for (const auto& [key, s] : leases_) all.push_back(&s == &slot ? next.lease : s.lease);
  // Committed before any record of the batch is processed: a crash from here on resumes
  // past `until`, so nothing up to it can be processed twice.
  ONCEFLOW_RETURN_IF_ERROR(persist(EncodeLeases(all)));
  slot = std::move(next);
  if (extended != nullptr) *extended = true;
  return Status::Ok();
}

Status ReadAhead::Skip(const std::string& node, int instance, Source* source, uint64_t* skipped) {
  *skipped = 0;
  ReadAheadLease lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find({node, instance});
    if (it == leases_.end()) return Status::Ok();
    lease = it->second.lease;
  }
  SourcePosition pos = source->Position();
  if (pos.count >= lease.until) return Status::Ok();
  if (lease.at.count > pos.count) ONCEFLOW_RETURN_IF_ERROR(source->Seek(lease.at));
  // Read and discard up to the lease: those records may have been processed before.
  RecordBatch scratch;
  for (;;) {
    const uint64_t count = source->Position().count;
    if (count >= lease.until) break;
    scratch.clear();
    Emitter em(&scratch);
    bool end = false;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(lease.until - count, 1024));
    ONCEFLOW_RETURN_IF_ERROR(source->Read(want, em, &end));
    // Nothing more for now (end of input, a followed file, a rate limit): what was never
    // read before the crash was never processed either.
    if (scratch.empty() || end) break;
  }
  const uint64_t now = source->Position().count;
  *skipped = now > pos.count ? now - pos.count : 0;
  return Status::Ok();
}

}  // namespace onceflow

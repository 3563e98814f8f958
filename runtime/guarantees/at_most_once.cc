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

uint64_t LeaseSize(uint64_t records, double seconds, double horizon) {
  if (seconds <= 0 || records == 0) return kMinLease;
  const double want = static_cast<double>(records) / seconds * horizon;
  if (want >= static_cast<double>(kMaxLease)) return kMaxLease;
  return std::clamp<uint64_t>(static_cast<uint64_t>(want), kMinLease, kMaxLease);
}

uint64_t NextLeaseSize(uint64_t previous, uint64_t records, double seconds, double latency_s) {
  const double horizon = std::max(kLeaseSeconds, 2 * latency_s);
  return std::max(kMinLease, std::min(LeaseSize(records, seconds, horizon), kLeaseGrowth * previous));
}

ReadAhead::ReadAhead(Persist persist) : persist_(std::move(persist)) {
  writer_ = std::thread([this] { WriterLoop(); });
}

ReadAhead::~ReadAhead() { Stop(); }

void ReadAhead::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
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
    Slot& slot = leases_[{l.node, l.instance}];
    slot.lease = std::move(l);
    slot.wanted = slot.lease;
  }
  return Status::Ok();
}

Status ReadAhead::Clear(StateStore* store) {
  Stop();
  std::lock_guard<std::mutex> lock(mu_);
  leases_.clear();
  return store->PutMeta(kMetaKey, "", /*full_sync=*/true);
}

void ReadAhead::Request(Slot& slot, const SourcePosition& after) {
  const Clock::time_point now = Clock::now();
  uint64_t size = kMinLease;
  if (slot.asked != Clock::time_point{} && after.count > slot.asked_count) {
    size = NextLeaseSize(slot.lease.until - slot.lease.at.count, after.count - slot.asked_count,
                         std::chrono::duration<double>(now - slot.asked).count(), latency_s_);
  }
  slot.asked = now;
  slot.asked_count = after.count;
  slot.wanted = slot.lease;
  slot.wanted.at = after;
  slot.wanted.until = after.count + size;
  cv_.notify_all();
}

bool ReadAhead::Pending() const {
  for (const auto& [key, slot] : leases_) {
    if (slot.wanted.until > slot.lease.until) return true;
  }
  return false;
}

Status ReadAhead::Extend(const std::string& node, int instance, const SourcePosition& after) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  Slot& slot = leases_[{node, instance}];
  if (slot.lease.node.empty()) {
    slot.lease.node = slot.wanted.node = node;
    slot.lease.instance = slot.wanted.instance = instance;
  }
  const uint64_t until = slot.lease.until;
  const uint64_t half = (until - slot.lease.at.count) / 2;
  const bool pending = slot.wanted.until > until;
  if (after.count <= until) {
    // The hot path. Half of the lease used: the next one is committed in the background.
    if (!pending && after.count >= until - half) Request(slot, after);
    return Status::Ok();
  }
  // Beyond the lease: nothing of this batch may be processed before a lease covering it is
  // durable — a crash from then on resumes past it.
  if (!pending || slot.wanted.until < after.count) {
    if (!slot.in_flight) Request(slot, after);
  }
  cv_.wait(lock, [&] {
    return slot.lease.until >= after.count || !error_.ok() || stopping_ ||
           (!slot.in_flight && slot.wanted.until < after.count);
  });
  if (!error_.ok()) return error_;
  if (stopping_ && slot.lease.until < after.count) return Status::Cancelled("cancelled");
  if (slot.lease.until >= after.count) return Status::Ok();
  // The commit in flight when we came covered less than this batch: ask again.
  lock.unlock();
  return Extend(node, instance, after);
}

void ReadAhead::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !Pending() || !error_.ok() || stopping_; });
}

void ReadAhead::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || (error_.ok() && Pending()); });
    if (stopping_) return;
    // One commit for every pending request; the value holds every instance's newest
    // lease, committed or wanted, so no commit ever goes back on an earlier one.
    std::vector<ReadAheadLease> all;
    all.reserve(leases_.size());
    std::vector<std::pair<Slot*, ReadAheadLease>> committing;
    for (auto& [key, slot] : leases_) {
      if (slot.wanted.until > slot.lease.until) {
        slot.in_flight = true;
        committing.emplace_back(&slot, slot.wanted);
        all.push_back(slot.wanted);
      } else {
        all.push_back(slot.lease);
      }
    }
    lock.unlock();
    const Clock::time_point t0 = Clock::now();
    Status st = persist_(EncodeLeases(all));
    const double latency = std::chrono::duration<double>(Clock::now() - t0).count();
    lock.lock();
    latency_s_ = latency;
    for (auto& [slot, lease] : committing) {
      slot->in_flight = false;
      if (st.ok()) slot->lease = lease;
    }
    if (!st.ok()) error_ = st.WithContext("cannot commit the read-ahead of at-most-once");
    cv_.notify_all();
  }
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

// Dedup strategy; see dedup.h.
#include "runtime/guarantees/dedup.h"

#include <chrono>
#include <set>
#include <sstream>

#include "runtime/guarantees/snapshot.h"
#include "runtime/plan/partitioner.h"
#include "spdlog/spdlog.h"

namespace onceflow {
namespace {

// How often the background thread folds the state changelog into the keyed table.
constexpr auto kCompactInterval = std::chrono::milliseconds(2000);

}  // namespace

std::string SequencedChannelName(const std::string& from, int up, const std::string& to,
                                 int down) {
  return from + "#" + std::to_string(up) + ">" + to + "#" + std::to_string(down);
}

DedupGuarantee::DedupGuarantee(DedupOptions options) : options_(options) {}

DedupGuarantee::~DedupGuarantee() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (compactor_.joinable()) compactor_.join();
}

Status DedupGuarantee::Start(const GuaranteeContext& ctx) {
  spec_ = ctx.spec;
  plan_ = ctx.plan;
  StateStore* store = options_.store;
  if (options_.restore_from >= 0) ONCEFLOW_RETURN_IF_ERROR(RestoreFrom(options_.restore_from));
  if (options_.savepoint_requests != nullptr) savepoints_seen_ = options_.savepoint_requests->load();
  std::vector<DedupChannel> channels;
  ONCEFLOW_RETURN_IF_ERROR(store->DedupChannels(&channels));
  // The channel names this plan uses; a committed channel that is not among them means
  // the parallelism (or the topology) changed, and per-channel positions cannot be
  // redistributed.
  std::set<std::string> names;
  for (const PlanEdge& e : plan_->edges) {
    if (e.chained) continue;
    const std::string& from = spec_->nodes[e.from].id;
    const std::string& to = spec_->nodes[e.to].id;
    const int up = plan_->nodes[e.from].parallelism, down = plan_->nodes[e.to].parallelism;
    for (int i = 0; i < up; ++i) {
      if (e.partition == PartitionKind::kForward) {
        names.insert(SequencedChannelName(from, i, to, i));
        continue;
      }
      for (int j = 0; j < down; ++j) names.insert(SequencedChannelName(from, i, to, j));
    }
  }
  // Per-channel positions are only meaningful with the same instances on both ends: the
  // parallelism of every node is recorded with the first commit and must not change.
  std::string parallelism;
  for (const NodeSpec& ns : spec_->nodes) {
    parallelism += ns.id + "=" + std::to_string(plan_->nodes[spec_->NodeIndex(ns.id)].parallelism) + "\n";
  }
  std::string stored;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(store->GetMeta("dedup_parallelism", &stored, &found));
  if (!channels.empty() && found && stored != parallelism) {
    std::map<std::string, std::string> was;
    std::istringstream in(stored);
    std::string line;
    while (std::getline(in, line)) {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) was[line.substr(0, eq)] = line.substr(eq + 1);
    }
    std::string diff;
    for (const NodeSpec& ns : spec_->nodes) {
      auto it = was.find(ns.id);
      const std::string now = std::to_string(plan_->nodes[spec_->NodeIndex(ns.id)].parallelism);
      if (it != was.end() && it->second != now) {
        diff += (diff.empty() ? "" : ", ") + std::string("node '") + ns.id +
                "' ran with parallelism " + it->second + " and has " + now + " now";
      }
    }
    return Status::State("state file '" + store->path() + "': " +
                         (diff.empty() ? std::string("the parallelism changed") : diff) +
                         ": in dedup mode each task resumes from its own commit, so a resume "
                         "needs the same parallelism (restore it, or start over with --fresh)");
  }
  if (!found || channels.empty()) {
    ONCEFLOW_RETURN_IF_ERROR(store->PutMeta("dedup_parallelism", parallelism));
  }
  for (DedupChannel& c : channels) {
    if (!names.count(c.channel)) {
      return Status::State(
          "state file '" + store->path() + "' holds dedup positions of channel '" + c.channel +
          "', which this pipeline does not have: in dedup mode a resume needs the same nodes "
          "and parallelism (restore them, or start over with --fresh)");
    }
    std::string key = c.channel;
    committed_.emplace(std::move(key), std::move(c));
  }
  std::vector<SinkCommit> sinks;
  ONCEFLOW_RETURN_IF_ERROR(store->DedupSinks(&sinks));
  for (SinkCommit& c : sinks) sinks_[{c.node, c.instance}] = std::move(c);
  compactor_ = std::thread([this] { CompactLoop(); });
  return Status::Ok();
}

// A savepoint holds, like a checkpoint, the full keyed state, each source instance's
// position and each file sink's length, taken while everything was drained: restoring it
// means every channel out of a source starts at the source's position, and every other
// channel starts empty at sequence 0.
Status DedupGuarantee::RestoreFrom(int64_t id) {
  StateStore* store = options_.store;
  StateStore::DedupResetData data;
  if (id != 0) {
    for (const NodeSpec& ns : spec_->nodes) {
      if (ns.kind != NodeKind::kOperator) continue;
      ONCEFLOW_RETURN_IF_ERROR(
          store->RestoreState(id, ns.id, [&](std::string_view key, std::string_view value) {
            data.state.emplace_back(ns.id, std::string(key), std::string(value));
            return Status::Ok();
          }));
    }
    std::vector<SourceOffset> offsets;
    ONCEFLOW_RETURN_IF_ERROR(store->SourceOffsets(id, &offsets));
    for (const SourceOffset& o : offsets) {
      const int node = spec_->NodeIndex(o.node);
      if (node < 0 || spec_->nodes[node].kind != NodeKind::kSource) continue;
      const int tail = plan_->chains[plan_->nodes[node].chain].nodes.back();
      for (int ei : plan_->nodes[tail].out_edges) {
        const PlanEdge& e = plan_->edges[ei];
        const int down = plan_->nodes[e.to].parallelism;
        for (int j = 0; j < down; ++j) {
          if (e.partition == PartitionKind::kForward && j != o.instance) continue;
          DedupChannel c;
          c.channel = SequencedChannelName(spec_->nodes[tail].id, o.instance,
                                           spec_->nodes[e.to].id, j);
          c.consumed = o.count;
          c.pos_name = o.name;
          c.pos_offset = o.offset;
          data.channels.push_back(std::move(c));
        }
      }
    }
    std::vector<SinkCommit> sinks;
    ONCEFLOW_RETURN_IF_ERROR(store->SinkCommits(id, &sinks));
    for (SinkCommit& c : sinks) {
      if (spec_->NodeIndex(c.node) >= 0) data.sinks.push_back(std::move(c));
    }
  }
  spdlog::info("{}: dedup mode restarts from {}", spec_->name,
               id != 0 ? "savepoint " + std::to_string(id) : std::string("the beginning"));
  return store->DedupReset(data);
}

// Journaled sources (stdin): the stream before the lowest position any consumer of the
// source committed is never read again (store_mu_ held).
Status DedupGuarantee::PruneJournals() {
  std::vector<DedupChannel> channels;
  ONCEFLOW_RETURN_IF_ERROR(options_.store->DedupChannels(&channels));
  std::map<std::string, const DedupChannel*> by_name;
  for (const DedupChannel& c : channels) by_name[c.channel] = &c;
  std::map<std::pair<std::string, int>, int64_t> needs;
  std::vector<std::pair<int, int>> sources;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, j] : journals_) sources.push_back(key);
  }
  for (const auto& [node, instance] : sources) {
    const int tail = plan_->chains[plan_->nodes[node].chain].nodes.back();
    int64_t lowest = -1;
    bool all = true;
    for (int ei : plan_->nodes[tail].out_edges) {
      const PlanEdge& e = plan_->edges[ei];
      for (int j = 0; j < plan_->nodes[e.to].parallelism; ++j) {
        if (e.partition == PartitionKind::kForward && j != instance) continue;
        auto it = by_name.find(
            SequencedChannelName(spec_->nodes[tail].id, instance, spec_->nodes[e.to].id, j));
        if (it == by_name.end()) {
          all = false;
          continue;
        }
        if (lowest < 0 || it->second->pos_offset < lowest) lowest = it->second->pos_offset;
      }
    }
    if (all && lowest >= 0) needs[{spec_->nodes[node].id, instance}] = lowest;
  }
  if (needs.empty()) return Status::Ok();
  return options_.store->DedupPruneJournals(needs);
}

bool DedupGuarantee::SavepointDue() {
  if (options_.savepoint_requests == nullptr) return false;
  const int n = options_.savepoint_requests->load(std::memory_order_relaxed);
  if (n <= savepoints_seen_) return false;
  savepoints_seen_ = n;
  return true;
}

Status DedupGuarantee::Savepoint(const std::vector<TaskSnapshot::SourceSnap>& sources) {
  const auto t0 = std::chrono::steady_clock::now();
  StateStore* store = options_.store;
  std::lock_guard<std::mutex> lock(store_mu_);
  // The savepoint holds the whole state, not changes since another checkpoint: it starts
  // a line of its own (no parent), so restoring it never reads older rows.
  ONCEFLOW_RETURN_IF_ERROR(store->StartLine(0));
  int64_t id = 0;
  ONCEFLOW_RETURN_IF_ERROR(store->BeginCheckpoint(CheckpointKind::kSavepoint, &id));
  std::unique_ptr<CheckpointWriter> w;
  ONCEFLOW_RETURN_IF_ERROR(store->NewWriter(id, &w));
  for (const NodeSpec& ns : spec_->nodes) {
    if (ns.kind != NodeKind::kOperator) continue;
    ONCEFLOW_RETURN_IF_ERROR(
        store->DedupLiveState(ns.id, [&](const std::string& key, const std::string& value) {
          w->PutState(ns.id, key, &value);
          return Status::Ok();
        }));
  }
  int64_t events = 0;
  for (const auto& s : sources) {
    w->AddSourceOffset({spec_->nodes[s.node].id, s.instance, s.position.name,
                        static_cast<int64_t>(s.position.offset),
                        static_cast<int64_t>(s.position.count)});
    events += static_cast<int64_t>(s.position.count);
  }
  for (const auto& [key, c] : sinks_) w->AddSinkCommit(c);
  w->SetStats(events);
  ONCEFLOW_RETURN_IF_ERROR(w->Commit(CheckpointStatus::kCompleted));
  {
    std::lock_guard<std::mutex> stats(mu_);
    ++totals_.savepoints;
  }
  spdlog::info("savepoint {} taken ({:.0f} ms, {} bytes)", id,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                   .count(),
               w->bytes_written());
  return Status::Ok();
}

void DedupGuarantee::CompactLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, kCompactInterval, [&] { return stop_; });
    const bool last = stop_;
    const bool journals = !journals_.empty();  // guarded by mu_: BeforeOpen adds to it
    lock.unlock();
    int64_t rows = 0, log_rows = 0, log_bytes = 0;
    Status st;
    {
      std::lock_guard<std::mutex> store_lock(store_mu_);
      st = options_.store->DedupCompact(&rows);
      if (st.ok() && journals) st = PruneJournals();
      if (st.ok()) st = options_.store->DedupLogSize(&log_rows, &log_bytes);
    }
    lock.lock();
    if (!st.ok()) {
      if (error_.ok()) error_ = st;
      spdlog::error("{}", st.message());
      return;
    }
    if (rows > 0) ++totals_.compactions;
    totals_.log_rows_max = std::max(totals_.log_rows_max, log_rows);
    totals_.log_bytes_max = std::max(totals_.log_bytes_max, log_bytes);
    totals_.log_rows_end = log_rows;
    totals_.log_bytes_end = log_bytes;
    if (last) return;
  }
}

FailureAction DedupGuarantee::OnTaskFailure(int, int, const Status&) {
  // Transient failures are recovered inside the failing task (OnLocalRecovery); what
  // reaches here fails the run.
  return FailureAction::kFailRun;
}

Status DedupGuarantee::End(const RunEnd&) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (compactor_.joinable()) compactor_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

Status DedupGuarantee::RestoreKeyedState(int node, int instance, KeyedState* state) {
  const NodeSpec& ns = spec_->nodes[node];
  const int p = plan_->nodes[node].parallelism;
  StateStore* store = options_.store;
  state->Clear();
  std::lock_guard<std::mutex> lock(store_mu_);
  return store->DedupState(ns.id, [&](std::string_view key, const std::string_view* bytes) {
    if (p > 1 && HashDestination(key, p) != instance) return Status::Ok();
    if (bytes == nullptr) {
      state->Erase(key);
      return Status::Ok();
    }
    StateValue value;
    if (!DecodeStateValue(*bytes, &value)) {
      return Status::State("state file " + store->path() + ": a value of node '" + ns.id +
                           "' is corrupt");
    }
    state->Restore(key, std::move(value));
    return Status::Ok();
  });
}

Status DedupGuarantee::BeforeOpen(int node, int instance, NodeContext* ctx, KeyedState* state) {
  const NodeSpec& ns = spec_->nodes[node];
  switch (ns.kind) {
    case NodeKind::kSource: {
      const NodeTypeDef* def = options_.registry->Find(ns.kind, ns.type);
      if (def == nullptr || !def->journaled) return Status::Ok();
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = journals_.find({node, instance});
        if (it != journals_.end()) {  // a local recovery opens the source again
          ctx->journal = it->second.journal.get();
          return Status::Ok();
        }
      }
      // Lock order is store_mu_ before mu_ (Commit, Savepoint, CompactLoop): the journal
      // reads its size under store_mu_, so it is made before mu_ is taken, not under it.
      auto journal = std::make_unique<StoreJournal>(options_.store, &store_mu_, ns.id, instance);
      if (!journal->status().ok()) return journal->status();
      std::lock_guard<std::mutex> lock(mu_);
      Journal& slot = journals_[{node, instance}];
      if (!slot.journal) {
        slot.initial_size = journal->size();
        slot.journal = std::move(journal);
      }
      ctx->journal = slot.journal.get();
      return Status::Ok();
    }
    case NodeKind::kOperator:
      if (!resuming() && ctx->fresh_start) return Status::Ok();
      return RestoreKeyedState(node, instance, state);
    case NodeKind::kSink: {
      if (ctx->fresh_start) return Status::Ok();
      std::lock_guard<std::mutex> lock(store_mu_);
      auto it = sinks_.find({ns.id, instance});
      // Nothing committed for it: everything it holds was written after the last commit.
      ctx->resume_path = it != sinks_.end() ? it->second.path : ns.options.GetPath("path");
      ctx->resume_length = it != sinks_.end() ? it->second.length : 0;
      return Status::Ok();
    }
  }
  return Status::Ok();
}

Status DedupGuarantee::AfterOpen(int, int, Source*) {
  // Sources are positioned by the executor: from the lowest position any of their
  // consumers committed (CommittedChannel).
  return Status::Ok();
}

void DedupGuarantee::PersistBeforeCrash() {
  if (options_.chaos == nullptr) return;
  // Called by a thread about to crash outside any commit (a source event, a sink write):
  // it waits for a commit or compaction in progress, so the fired set is always saved and
  // a restarted process does not inject the same faults again. (A crash inside a commit,
  // in-dedup-commit, saved the set before that commit began, in CommitTask.)
  std::lock_guard<std::mutex> lock(store_mu_);
  SaveFiredFaults(options_.store, *options_.chaos);
}

DedupChannel DedupGuarantee::CommittedChannel(const std::string& name) const {
  auto it = committed_.find(name);
  if (it != committed_.end()) return it->second;
  DedupChannel c;
  c.channel = name;
  return c;
}

Status DedupGuarantee::Outbox(const std::string& name,
                              const std::function<Status(int64_t, std::string_view)>& fn) {
  std::lock_guard<std::mutex> lock(store_mu_);
  return options_.store->DedupOutbox(name, fn);
}

Status DedupGuarantee::CommitTask(const DedupCommitData& data, int64_t* epoch) {
  std::lock_guard<std::mutex> lock(store_mu_);
  if (data.in_txn_hook && options_.chaos != nullptr) {
    // A crash inside this transaction must find the fired set already saved.
    ONCEFLOW_RETURN_IF_ERROR(SaveFiredFaults(options_.store, *options_.chaos));
  }
  ONCEFLOW_RETURN_IF_ERROR(options_.store->DedupCommit(data, epoch));
  for (const SinkCommit& c : data.sinks) sinks_[{c.node, c.instance}] = c;
  int64_t bytes = 0;
  for (const auto& o : data.outbox) bytes += static_cast<int64_t>(o.data.size());
  for (const auto& c : data.changes) bytes += static_cast<int64_t>(c.second.size());
  std::lock_guard<std::mutex> stats(mu_);
  ++totals_.commits;
  totals_.commit_bytes += bytes;
  return Status::Ok();
}

Status DedupGuarantee::AfterApply(int64_t epoch, const std::string& node) {
  std::lock_guard<std::mutex> lock(store_mu_);
  return options_.store->DeleteStagedRows(epoch, node);
}

bool DedupGuarantee::OnLocalRecovery(int node, const Status& error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (totals_.recoveries >= options_.max_recoveries) return false;
  ++totals_.recoveries;
  spdlog::warn("{}; restarting node '{}' alone from its last commit (recovery {})",
               error.message(), spec_->nodes[node].id, totals_.recoveries);
  return true;
}

void DedupGuarantee::RecoveredLocally(double ms) {
  std::lock_guard<std::mutex> lock(mu_);
  totals_.recovery_ms.push_back(ms);
}

uint64_t DedupGuarantee::journaled_bytes() const {
  uint64_t n = 0;
  for (const auto& [key, j] : journals_) n += j.journal->size() - j.initial_size;
  return n;
}

}  // namespace onceflow

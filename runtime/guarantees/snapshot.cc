// SnapshotGuarantee: see snapshot.h for the protocol.
#include "runtime/guarantees/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>

#include "runtime/plan/partitioner.h"
#include "runtime/state/journal.h"
#include "spdlog/spdlog.h"

namespace onceflow {
namespace {

using Clock = std::chrono::steady_clock;

// The pseudo node under which checkpoints record dead-letter file lengths ('~' cannot
// start a node id).
constexpr char kDeadLetterNode[] = "~dead-letter";

Status FileError(const char* what, const std::string& path) {
  return Status::IOError(std::string("cannot ") + what + " dead-letter file '" + path +
                         "': " + std::strerror(errno));
}

// Appends each line + '\n' to `path` (created if absent), syncs if anything was written,
// and returns the file's length after (0 for a file that does not exist and got nothing).
Status AppendLines(const std::string& path, const std::vector<const std::string*>& lines,
                   int64_t* length) {
  *length = 0;
  struct stat st;
  if (lines.empty()) {
    if (::stat(path.c_str(), &st) == 0) *length = st.st_size;
    return Status::Ok();
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) return FileError("open", path);
  std::string buf;
  for (const std::string* l : lines) {
    buf += *l;
    buf += '\n';
  }
  const char* p = buf.data();
  size_t left = buf.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status e = FileError("write", path);
      ::close(fd);
      return e;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  Status result;
  if (::fdatasync(fd) != 0) result = FileError("sync", path);
  if (result.ok() && ::fstat(fd, &st) != 0) result = FileError("stat", path);
  if (result.ok()) *length = st.st_size;
  ::close(fd);
  return result;
}

// Cuts `path` back to `length` (no-op when it is not longer; a missing file is fine).
Status CutFile(const std::string& path, int64_t length) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || st.st_size <= length) return Status::Ok();
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return FileError("open", path);
  Status result;
  if (::ftruncate(fd, length) != 0 || ::fdatasync(fd) != 0) result = FileError("truncate", path);
  ::close(fd);
  return result;
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// A sink instance that applies staged epochs: opened like a resumed sink (never empties
// its output), outside any task. Its Write never meets a data error (rows were checked
// when they were first written), so an error here is a real failure.
class ApplierErrors final : public ErrorHandler {
 public:
  explicit ApplierErrors(std::string node) : node_(std::move(node)) {}
  Status OnRecordError(const Record&, std::string_view error) override {
    return Status::Runtime("node '" + node_ +
                           "': cannot apply a staged row: " + std::string(error));
  }
  Status OnRawError(const Origin&, std::string_view, std::string_view error) override {
    return Status::Runtime("node '" + node_ + "': " + std::string(error));
  }

 private:
  std::string node_;
};

}  // namespace

// The sink instance (and what its NodeContext points at) that applies staged epochs.
struct Applier {
  explicit Applier(const NodeSpec& ns) : errors(ns.id) {}
  NodeContext ctx;
  NodeMetrics metrics;
  KeyedState state;
  ApplierErrors errors;
  std::unique_ptr<Sink> sink;
};

static Status OpenApplier(const PipelineSpec& spec, int node, const Registry& registry,
                          std::unique_ptr<Applier>* out) {
  const NodeSpec& ns = spec.nodes[node];
  const NodeTypeDef* def = registry.Find(ns.kind, ns.type);
  if (def == nullptr || !def->make_sink || !def->two_phase) {
    return Status::State("node '" + ns.id + "' has staged rows but its type '" + ns.type +
                         "' does not commit in two phases (did the pipeline change?)");
  }
  auto a = std::make_unique<Applier>(ns);
  a->ctx.pipeline = &spec;
  a->ctx.spec = &ns;
  a->ctx.node_index = node;
  a->ctx.state = &a->state;
  a->ctx.errors = &a->errors;
  a->ctx.metrics = &a->metrics;
  a->ctx.fresh_start = false;
  a->ctx.two_phase = false;
  a->sink = def->make_sink(ns);
  ONCEFLOW_RETURN_IF_ERROR(a->sink->Open(a->ctx).WithContext("node '" + ns.id + "'"));
  *out = std::move(a);
  return Status::Ok();
}

namespace {
constexpr char kFiredMetaKey[] = "chaos_fired";
}  // namespace

// Hex, because meta values are text and ExportFired is binary.
Status SaveFiredFaults(StateStore* store, const Chaos& chaos) {
  static const char* kDigits = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : chaos.ExportFired()) {
    hex.push_back(kDigits[c >> 4]);
    hex.push_back(kDigits[c & 15]);
  }
  return store->PutMeta(kFiredMetaKey, hex);
}

Status LoadFiredFaults(StateStore* store, Chaos* chaos) {
  std::string hex;
  bool found = false;
  ONCEFLOW_RETURN_IF_ERROR(store->GetMeta(kFiredMetaKey, &hex, &found));
  std::string bytes;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    if (!std::isxdigit(static_cast<unsigned char>(hex[i])) ||
        !std::isxdigit(static_cast<unsigned char>(hex[i + 1]))) {
      return Status::State("state file " + store->path() + ": meta chaos_fired is corrupt");
    }
    bytes.push_back(static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  }
  return bytes.empty() ? Status::Ok() : chaos->ImportFired(bytes);
}

Status RollForward(StateStore* store, const PipelineSpec& spec, const Registry& registry,
                   bool every_epoch) {
  std::vector<std::pair<int64_t, std::string>> staged;
  ONCEFLOW_RETURN_IF_ERROR(store->StagedEpochs(&staged));
  if (staged.empty()) return Status::Ok();
  int64_t head = 0;
  ONCEFLOW_RETURN_IF_ERROR(store->LatestCompleted(&head));
  std::vector<int64_t> line;
  if (head != 0) ONCEFLOW_RETURN_IF_ERROR(store->Line(head, &line));
  std::map<int, std::unique_ptr<Applier>> appliers;
  for (const auto& [epoch, node] : staged) {
    const int idx = spec.NodeIndex(node);
    // Dedup mode stages rows only inside committed transactions: every epoch counts.
    const bool on_line = every_epoch || std::binary_search(line.begin(), line.end(), epoch);
    if (on_line && idx >= 0) {
      auto& a = appliers[idx];
      if (!a) ONCEFLOW_RETURN_IF_ERROR(OpenApplier(spec, idx, registry, &a));
      std::vector<std::string> rows;
      ONCEFLOW_RETURN_IF_ERROR(store->StagedRows(epoch, node, [&](int64_t, std::string_view row) {
        rows.emplace_back(row);
        return Status::Ok();
      }));
      ONCEFLOW_RETURN_IF_ERROR(
          a->sink->ApplyEpoch(store->lineage_id(), epoch, rows).WithContext("node '" + node + "'"));
      spdlog::info("node '{}': rolled checkpoint {} forward ({} rows; a no-op if it was applied)",
                   node, epoch, rows.size());
    } else if (on_line) {
      spdlog::warn("dropping rows staged for node '{}' (checkpoint {}): no such node now", node,
                   epoch);
    }
    ONCEFLOW_RETURN_IF_ERROR(store->DeleteStagedRows(epoch, node));
  }
  for (auto& [idx, a] : appliers) a->sink->Close();
  return Status::Ok();
}

SnapshotGuarantee::SnapshotGuarantee(SnapshotOptions options) : options_(options) {}

SnapshotGuarantee::~SnapshotGuarantee() {
  read_ahead_.reset();  // its writer thread uses store_mu_, a later member
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    failed_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& [idx, a] : appliers_) a->sink->Close();
}

Status SnapshotGuarantee::Start(const GuaranteeContext& ctx) {
  spec_ = ctx.spec;
  plan_ = ctx.plan;
  tasks_ = ctx.tasks;
  reports_.assign(tasks_, std::nullopt);
  finals_.assign(tasks_, std::nullopt);
  final_included_.assign(tasks_, false);
  for (const Chain& c : plan_->chains) {
    if (spec_->nodes[c.nodes[0]].kind == NodeKind::kSource) source_tasks_ += c.parallelism;
  }
  std::set<std::string> paths;
  for (const NodeSpec& ns : spec_->nodes) {
    if (ns.on_error == OnError::kDeadLetter && !ns.dead_letter_path.empty()) {
      paths.insert(ns.dead_letter_path);
    }
  }
  dead_letter_paths_.assign(paths.begin(), paths.end());
  if (options_.resume_from == 0) {
    // A fresh start empties the dead-letter files, as it empties file sinks.
    for (const std::string& p : dead_letter_paths_) ONCEFLOW_RETURN_IF_ERROR(CutFile(p, 0));
  }
  if (options_.resume_from != 0) ONCEFLOW_RETURN_IF_ERROR(LoadRestore());
  if (options_.read_ahead) {
    read_ahead_ = std::make_unique<ReadAhead>([this](const std::string& value) {
      std::lock_guard<std::mutex> sl(store_mu_);
      return options_.store->PutMeta(ReadAhead::kMetaKey, value, /*full_sync=*/true);
    });
    std::lock_guard<std::mutex> sl(store_mu_);
    ONCEFLOW_RETURN_IF_ERROR(read_ahead_->Load(options_.store));
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

Status SnapshotGuarantee::LoadRestore() {
  StateStore* store = options_.store;
  const int64_t id = options_.resume_from;
  const int n = static_cast<int>(spec_->nodes.size());
  restore_state_.assign(n, {});
  for (int i = 0; i < n; ++i) {
    const NodeSpec& ns = spec_->nodes[i];
    if (ns.kind != NodeKind::kOperator) continue;
    const int p = plan_->nodes[i].parallelism;
    restore_state_[i].resize(p);
    if (options_.skip_restore.count(ns.id)) continue;
    // State is stored per key, not per instance: each key goes to the instance the hash
    // partitioner sends that key to, whatever the parallelism was when it was written.
    ONCEFLOW_RETURN_IF_ERROR(
        store->RestoreState(id, ns.id, [&](std::string_view key, std::string_view bytes) {
          StateValue value;
          if (!DecodeStateValue(bytes, &value)) {
            return Status::State("state file " + store->path() + ": a value of node '" + ns.id +
                                 "' at checkpoint " + std::to_string(id) + " is corrupt");
          }
          const int inst = p == 1 ? 0 : HashDestination(key, p);
          restore_state_[i][inst].emplace_back(std::string(key), std::move(value));
          return Status::Ok();
        }));
  }
  std::vector<SourceOffset> offsets;
  ONCEFLOW_RETURN_IF_ERROR(store->SourceOffsets(id, &offsets));
  std::map<int, int> per_source;
  for (const SourceOffset& o : offsets) {
    const int idx = spec_->NodeIndex(o.node);
    if (idx < 0 || spec_->nodes[idx].kind != NodeKind::kSource) continue;
    if (options_.skip_restore.count(o.node)) continue;
    ++per_source[idx];
    SourcePosition pos;
    pos.name = o.name;
    pos.offset = static_cast<uint64_t>(o.offset);
    pos.count = static_cast<uint64_t>(o.count);
    restore_offsets_[{idx, o.instance}] = pos;
  }
  for (const auto& [idx, count] : per_source) {
    const int p = plan_->nodes[idx].parallelism;
    if (count != p) {
      return Status::State("source '" + spec_->nodes[idx].id + "' ran with parallelism " +
                           std::to_string(count) + " at checkpoint " + std::to_string(id) +
                           " and has " + std::to_string(p) +
                           " now: a source's positions cannot be redistributed (restore its "
                           "parallelism, or use --fresh)");
    }
  }
  std::vector<SinkCommit> commits;
  ONCEFLOW_RETURN_IF_ERROR(store->SinkCommits(id, &commits));
  for (const SinkCommit& c : commits) {
    if (c.node == kDeadLetterNode) {
      // What was dead-lettered after the checkpoint is dead-lettered again by the replay.
      ONCEFLOW_RETURN_IF_ERROR(CutFile(c.path, c.length));
      continue;
    }
    const int idx = spec_->NodeIndex(c.node);
    if (idx < 0 || spec_->nodes[idx].kind != NodeKind::kSink) continue;
    if (options_.skip_restore.count(c.node)) continue;
    restore_sinks_[{idx, c.instance}] = c;
  }
  return Status::Ok();
}

Status SnapshotGuarantee::BeforeOpen(int node, int instance, NodeContext* ctx, KeyedState* state) {
  const NodeSpec& ns = spec_->nodes[node];
  if (ns.kind == NodeKind::kSource) {
    const NodeTypeDef* def = options_.registry->Find(ns.kind, ns.type);
    if (def != nullptr && def->journaled) {
      // A source that cannot rewind reads through its journal in the state file: what
      // it read before a crash and no checkpoint covers is replayed from there.
      auto j = std::make_unique<StoreJournal>(options_.store, &store_mu_, ns.id, instance);
      if (!j->status().ok()) return j->status();
      ctx->journal = j.get();
      if (j->size() > 0) {
        spdlog::info(
            "source '{}': the journal holds {} bytes of its stream; this run's stdin "
            "continues the stream at byte {}",
            ns.id, j->size(), j->size());
      }
      std::lock_guard<std::mutex> lock(mu_);
      Journal& slot = journals_[{node, instance}];
      slot.initial_size = j->size();
      slot.journal = std::move(j);
    }
  }
  if (options_.resume_from == 0) return Status::Ok();
  if (ns.kind == NodeKind::kSink && options_.cut_sinks_back) {
    auto it = restore_sinks_.find({node, instance});
    if (it != restore_sinks_.end()) {
      ctx->resume_path = it->second.path;
      ctx->resume_length = it->second.length;
    } else {
      // Not in the checkpoint (a sink added since): nothing of its output is committed.
      ctx->resume_path.clear();
      ctx->resume_length = 0;
    }
  } else if (ns.kind == NodeKind::kOperator) {
    auto& keys = restore_state_[node][instance];
    for (auto& [key, value] : keys) state->Restore(key, std::move(value));
    std::vector<std::pair<std::string, StateValue>>().swap(keys);
  }
  return Status::Ok();
}

Status SnapshotGuarantee::AfterOpen(int node, int instance, Source* source) {
  auto it = restore_offsets_.find({node, instance});
  // A new source starts at the beginning.
  if (it != restore_offsets_.end()) ONCEFLOW_RETURN_IF_ERROR(source->Seek(it->second));
  if (!read_ahead_) return Status::Ok();
  // At-most-once: never re-read what the previous process may have processed.
  uint64_t skipped = 0;
  ONCEFLOW_RETURN_IF_ERROR(read_ahead_->Skip(spec_->nodes[node].id, instance, source, &skipped));
  if (skipped > 0) {
    spdlog::warn(
        "source '{}' instance {}: skipped {} records read ahead before the previous run "
        "ended (at-most-once: they are not replayed; those not yet processed are lost)",
        spec_->nodes[node].id, instance, skipped);
  }
  std::lock_guard<std::mutex> lock(mu_);
  resumed_ahead_[{node, instance}] = {source->Position().count, skipped};
  return Status::Ok();
}

Status SnapshotGuarantee::BeforeSourceBatch(const SourceBatch& batch) {
  if (has_error_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  if (!read_ahead_) return Status::Ok();
  // At-most-once: the lease must cover the batch, durably, before it is processed.
  return read_ahead_->Extend(spec_->nodes[batch.node].id, batch.instance,
                             batch.source->Position());
}

FailureAction SnapshotGuarantee::OnTaskFailure(int, int, const Status& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    failed_ = true;
  }
  cv_.notify_all();
  return error.code() == Status::Code::kTransient ? FailureAction::kRecover
                                                  : FailureAction::kFailRun;
}

uint64_t SnapshotGuarantee::restored_count(int node) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [key, pos] : restore_offsets_) {
    if (key.first == node && !resumed_ahead_.count(key)) n += pos.count;
  }
  for (const auto& [key, resumed] : resumed_ahead_) {
    if (key.first == node) n += resumed.first;
  }
  return n;
}

uint64_t SnapshotGuarantee::skipped_ahead(int node) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [key, resumed] : resumed_ahead_) {
    if (key.first == node) n += resumed.second;
  }
  return n;
}

uint64_t SnapshotGuarantee::journaled_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  for (const auto& [key, j] : journals_) total += j.journal->size() - j.initial_size;
  return total;
}

uint64_t SnapshotGuarantee::OnSourceEnd(int) {
  std::lock_guard<std::mutex> lock(mu_);
  ++sources_ended_;
  return barrier_.load(std::memory_order_acquire);
}

Status SnapshotGuarantee::OnSnapshot(uint64_t checkpoint, TaskSnapshot&& snapshot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int task = snapshot.task;
    if (task < 0 || task >= tasks_) return Status::Runtime("snapshot of an unknown task");
    if (checkpoint == 0) {
      finals_[task] = std::move(snapshot);
    } else if (checkpoint != inflight_) {
      return Status::Runtime("barrier " + std::to_string(checkpoint) +
                             " is not the checkpoint in flight (" + std::to_string(inflight_) +
                             ")");
    } else {
      reports_[task] = std::move(snapshot);
    }
    if (!AllReported()) return Status::Ok();
  }
  cv_.notify_all();
  return Status::Ok();
}

bool SnapshotGuarantee::AllReported() const {
  for (int t = 0; t < tasks_; ++t) {
    if (!reports_[t] && !finals_[t]) return false;
  }
  return true;
}

std::vector<TaskSnapshot> SnapshotGuarantee::TakeSnapshots(bool final_checkpoint,
                                                           std::vector<bool>* used_final) {
  std::vector<TaskSnapshot> out;
  out.reserve(tasks_);
  used_final->assign(tasks_, false);
  for (int t = 0; t < tasks_; ++t) {
    if (reports_[t] && !final_checkpoint) {
      out.push_back(std::move(*reports_[t]));
      reports_[t].reset();
      continue;
    }
    if (!finals_[t]) continue;
    (*used_final)[t] = true;
    TaskSnapshot s;
    s.task = t;
    s.sources = finals_[t]->sources;
    for (const auto& sink : finals_[t]->sinks) {
      TaskSnapshot::SinkSnap copy{sink.node, sink.instance, {}};
      copy.pre_commit.path = sink.pre_commit.path;
      copy.pre_commit.length = sink.pre_commit.length;
      s.sinks.push_back(std::move(copy));
    }
    if (!final_included_[t]) {
      // The first checkpoint after the task ended takes its last changes, rows and dead
      // letters; they are marked taken once that checkpoint commits.
      s.state = finals_[t]->state;
      s.dead_letters = finals_[t]->dead_letters;
      for (size_t k = 0; k < s.sinks.size(); ++k)
        s.sinks[k].pre_commit.rows = finals_[t]->sinks[k].pre_commit.rows;
    }
    out.push_back(std::move(s));
  }
  return out;
}

void SnapshotGuarantee::Loop() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(options_.interval_ms, 1));
  // How often a savepoint request (a signal handler's counter: no notification) is seen.
  constexpr auto kSavepointPoll = std::chrono::milliseconds(50);
  auto savepoint_wanted = [&] {
    return options_.savepoint_requests != nullptr &&
           options_.savepoint_requests->load(std::memory_order_relaxed) > savepoints_seen_;
  };
  if (options_.savepoint_requests != nullptr)
    savepoints_seen_ = options_.savepoint_requests->load();
  std::unique_lock<std::mutex> lock(mu_);
  auto next = Clock::now() + interval;
  for (;;) {
    for (;;) {
      const auto until = std::min(next, Clock::now() + kSavepointPoll);
      if (cv_.wait_until(lock, until, [&] { return stopping_ || failed_; })) break;
      if (Clock::now() >= next || savepoint_wanted()) break;
    }
    if (stopping_ || failed_) return;
    CheckpointKind kind = CheckpointKind::kCheckpoint;
    if (savepoint_wanted()) {
      kind = CheckpointKind::kSavepoint;
      savepoints_seen_ = options_.savepoint_requests->load();
    } else {
      next = Clock::now() + interval;
    }
    if (sources_ended_ == source_tasks_) continue;  // the final checkpoint follows
    lock.unlock();
    int64_t id = 0;
    Status st;
    {
      std::lock_guard<std::mutex> sl(store_mu_);
      st = options_.store->BeginCheckpoint(kind, &id);
    }
    const Clock::time_point began = Clock::now();
    lock.lock();
    if (!st.ok()) {
      error_ = st;
      has_error_.store(true, std::memory_order_release);
      return;
    }
    // A source may have ended meanwhile; the pending row is cleaned up by the next open.
    if (stopping_ || failed_) return;
    if (sources_ended_ == source_tasks_) continue;
    inflight_ = static_cast<uint64_t>(id);
    barrier_.store(inflight_, std::memory_order_release);
    // Every task reports or ends; End() sets stopping_ only after every task thread was
    // joined, so stopping_ with reports missing means they never come.
    cv_.wait(lock, [&] { return AllReported() || failed_ || stopping_; });
    if (failed_) return;
    if (!AllReported()) {
      spdlog::error("checkpoint {} abandoned: not every task reported", id);
      return;
    }
    std::vector<bool> used_final;
    std::vector<TaskSnapshot> snaps = TakeSnapshots(false, &used_final);
    lock.unlock();
    st = Commit(id, kind, CheckpointStatus::kCompleted, std::move(snaps), began);
    if (st.ok() && kind == CheckpointKind::kSavepoint) spdlog::info("savepoint {} taken", id);
    lock.lock();
    inflight_ = 0;
    if (st.ok()) {
      for (int t = 0; t < tasks_; ++t) {
        if (used_final[t]) final_included_[t] = true;
      }
    }
    if (!st.ok()) {
      error_ = st;
      has_error_.store(true, std::memory_order_release);
      return;
    }
  }
}

Status SnapshotGuarantee::GetApplier(int node, Sink** sink) {
  auto& a = appliers_[node];
  if (!a) ONCEFLOW_RETURN_IF_ERROR(OpenApplier(*spec_, node, *options_.registry, &a));
  *sink = a->sink.get();
  return Status::Ok();
}

void SnapshotGuarantee::PersistBeforeCrash() {
  std::lock_guard<std::mutex> sl(store_mu_);
  SaveFiredLocked();
}

void SnapshotGuarantee::SaveFiredLocked() {
  if (options_.chaos == nullptr) return;
  Status st = SaveFiredFaults(options_.store, *options_.chaos);
  if (!st.ok()) spdlog::error("cannot record the fired faults: {}", st.message());
}

Status SnapshotGuarantee::Commit(int64_t id, CheckpointKind kind, CheckpointStatus status,
                                 std::vector<TaskSnapshot> snaps, Clock::time_point began) {
  const Clock::time_point t_collect = Clock::now();
  StateStore* store = options_.store;
  std::unique_lock<std::mutex> sl(store_mu_);
  if (id == 0) ONCEFLOW_RETURN_IF_ERROR(store->BeginCheckpoint(kind, &id));
  std::unique_ptr<CheckpointWriter> w;
  ONCEFLOW_RETURN_IF_ERROR(store->NewWriter(id, &w));
  int64_t events = 0;
  int64_t alignment_ns = 0;
  struct Apply {
    int node;
    std::vector<std::string> rows;
  };
  std::vector<Apply> applies;
  size_t changes = 0;
  for (const TaskSnapshot& snap : snaps) changes += snap.state.size();
  w->ReserveState(changes);
  for (TaskSnapshot& snap : snaps) {
    alignment_ns = std::max(alignment_ns, snap.alignment_ns);
    for (const TaskSnapshot::StateChange& c : snap.state) {
      w->PutStateValue(spec_->nodes[c.node].id, c.key, c.value ? &*c.value : nullptr);
    }
    for (const TaskSnapshot::SourceSnap& s : snap.sources) {
      w->AddSourceOffset({spec_->nodes[s.node].id, s.instance, s.position.name,
                          static_cast<int64_t>(s.position.offset),
                          static_cast<int64_t>(s.position.count)});
      events += static_cast<int64_t>(s.position.count);
    }
    for (TaskSnapshot::SinkSnap& s : snap.sinks) {
      const std::string& node = spec_->nodes[s.node].id;
      w->AddSinkCommit({node, s.instance, s.pre_commit.path, s.pre_commit.length, id});
      if (s.pre_commit.rows.empty()) continue;
      int64_t seq = 0;
      for (const std::string& row : s.pre_commit.rows) w->AddStagedRow(node, seq++, row);
      applies.push_back({s.node, std::move(s.pre_commit.rows)});
    }
  }
  w->SetStats(events, -1, alignment_ns / 1000000);
  // Dead letters are appended (and synced) before the commit: a crash in between leaves
  // lines that the previous checkpoint's length cuts off again on resume.
  ONCEFLOW_RETURN_IF_ERROR(WriteDeadLetters(snaps, id, w.get()));
  Chaos* chaos = options_.chaos;
  if (chaos != nullptr && chaos->Passage(HazardPoint::kInCheckpointTxn)) {
    // The fired set is recorded before the transaction it interrupts begins.
    SaveFiredLocked();
    w->SetInTransactionHook([] { CrashNow(); });
  }
  const Clock::time_point t_write = Clock::now();
  ONCEFLOW_RETURN_IF_ERROR(w->Commit(status));
  const Clock::time_point t_committed = Clock::now();
  if (chaos != nullptr && chaos->Passage(HazardPoint::kAfterCheckpointComplete)) {
    SaveFiredLocked();
    CrashNow();
  }
  // Checkpoint `id` is complete: sinks commit it. A crash from here on is rolled forward
  // by the next run (RollForward), since the staged rows stay until applied.
  for (Apply& a : applies) {
    Sink* sink = nullptr;
    ONCEFLOW_RETURN_IF_ERROR(GetApplier(a.node, &sink));
    ONCEFLOW_RETURN_IF_ERROR(sink->ApplyEpoch(store->lineage_id(), id, a.rows)
                                 .WithContext("node '" + spec_->nodes[a.node].id + "'"));
    ONCEFLOW_RETURN_IF_ERROR(store->DeleteStagedRows(id, spec_->nodes[a.node].id));
  }
  const Clock::time_point t_applied = Clock::now();
  ONCEFLOW_RETURN_IF_ERROR(store->Prune(options_.retain, nullptr));
  const double ms = MsSince(began);
  auto span = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  spdlog::debug(
      "checkpoint {}: {:.1f} ms (barrier to reports {:.1f}, collect {:.1f}, commit {:.1f}, "
      "sinks {:.1f}, prune {:.1f}), {} bytes",
      id, ms, span(began, t_collect), span(t_collect, t_write), span(t_write, t_committed),
      span(t_committed, t_applied), MsSince(t_applied), w->bytes_written());
  totals_.count++;
  totals_.total_ms += ms;
  totals_.max_ms = std::max(totals_.max_ms, ms);
  totals_.total_bytes += w->bytes_written();
  totals_.total_alignment_ms += static_cast<double>(alignment_ns) / 1e6;
  totals_.last_id = id;
  last_checkpoint_.store(id, std::memory_order_relaxed);
  return Status::Ok();
}

Status SnapshotGuarantee::WriteDeadLetters(const std::vector<TaskSnapshot>& snaps, int64_t id,
                                           CheckpointWriter* w) {
  for (size_t i = 0; i < dead_letter_paths_.size(); ++i) {
    const std::string& path = dead_letter_paths_[i];
    std::vector<const std::string*> lines;
    for (const TaskSnapshot& snap : snaps) {
      for (const TaskSnapshot::DeadLetters& d : snap.dead_letters) {
        if (spec_->nodes[d.node].dead_letter_path != path) continue;
        for (const std::string& l : d.lines) lines.push_back(&l);
      }
    }
    int64_t length = 0;
    ONCEFLOW_RETURN_IF_ERROR(AppendLines(path, lines, &length));
    w->AddSinkCommit({kDeadLetterNode, static_cast<int>(i), path, length, id});
  }
  return Status::Ok();
}

Status SnapshotGuarantee::End(const RunEnd& end) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (!end.error.ok()) failed_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!end.error.ok()) return Status::Ok();  // the attempt failed: no final checkpoint
  if (has_error_.load()) return error_;
  const CheckpointStatus status =
      end.exit_reason == "completed" ? CheckpointStatus::kCompleted : CheckpointStatus::kStopped;
  std::vector<TaskSnapshot> snaps;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<bool> used_final;
    snaps = TakeSnapshots(true, &used_final);
  }
  ONCEFLOW_RETURN_IF_ERROR(
      Commit(0, CheckpointKind::kFinal, status, std::move(snaps), Clock::now()));
  if (!read_ahead_) return Status::Ok();
  // The final checkpoint's offsets are exact (every task's last snapshot follows its last
  // record): the next run resumes there, not past the leases. A crash before this clear
  // only loses the leases' unread rest.
  std::lock_guard<std::mutex> sl(store_mu_);
  return read_ahead_->Clear(options_.store);
}

}  // namespace onceflow

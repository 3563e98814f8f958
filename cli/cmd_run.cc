// `onceflow run`: load and validate, plan, execute under the chosen guarantee, and report
// a summary. Every guarantee keeps a state file and runs on the snapshot machinery
// (snapshot.h); at-most-once adds read-ahead leases (at_most_once.h). Signals:
// SIGINT/SIGTERM stop the sources cleanly (a second one exits at once); the exit code is
// then 130/143.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/logging.h"
#include "nlohmann/json.hpp"
#include "runtime/chaos/chaos.h"
#include "runtime/exec/executor.h"
#include "runtime/guarantees/dedup.h"
#include "runtime/guarantees/snapshot.h"
#include "runtime/plan/plan.h"
#include "runtime/state/fingerprint.h"
#include "runtime/state/store.h"
#include "spdlog/spdlog.h"

namespace onceflow::cli {

namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<int> g_savepoint_requests{0};

void OnSavepointSignal(int) { g_savepoint_requests.fetch_add(1, std::memory_order_relaxed); }

void OnStopSignal(int sig) {
  int expected = 0;
  if (!g_stop_signal.compare_exchange_strong(expected, sig)) {
    _exit(128 + sig);  // second signal: give up at once
  }
}

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction su {};
  su.sa_handler = OnSavepointSignal;
  sigemptyset(&su.sa_mask);
  su.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &su, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout is an error on write, not a silent death
}

uint64_t PeakRssBytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

// Draws a one-line status on stderr every 250 ms while the run lasts (TTY only).
class StatusLine {
 public:
  // `extra` (may be empty) adds text at the end of the line, e.g. the checkpoint number.
  StatusLine(const Executor& ex, std::function<std::string()> extra)
      : ex_(ex), extra_(std::move(extra)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~StatusLine() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> l(mu_);
    uint64_t last_events = 0;
    double last_t = 0;
    while (!cv_.wait_for(l, std::chrono::milliseconds(250), [this] { return done_; })) {
      Progress p = ex_.GetProgress();
      double dt = p.elapsed_s - last_t;
      double rate = dt > 0 ? (p.source_events - last_events) / dt : 0;
      last_events = p.source_events;
      last_t = p.elapsed_s;
      std::string backlog;
      for (const auto& [id, n] : p.backlog) {
        if (n == 0) continue;
        backlog += " " + id + "=" + std::to_string(n);
      }
      const std::string extra = extra_ ? extra_() : std::string();
      std::fprintf(stderr, "\r\033[K%.1fs  %llu events  %.0f/s  backlog:%s%s", p.elapsed_s,
                   static_cast<unsigned long long>(p.source_events), rate,
                   backlog.empty() ? " none" : backlog.c_str(), extra.c_str());
      std::fflush(stderr);
    }
  }

  const Executor& ex_;
  std::function<std::string()> extra_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

struct RunTotals {
  CheckpointTotals checkpoints;
  uint64_t journaled_bytes = 0;  // stdin bytes appended to the state file's journal
  int recoveries = 0;
  double recovery_ms_total = 0;
  std::vector<double> recovery_ms;
  const DedupTotals* dedup = nullptr;  // dedup mode only
  // From the start of the command until the first attempt had every node open (restore
  // included): what a restart after a crash costs before processing resumes.
  double open_s = 0;
  std::map<std::string, uint64_t> skipped_ahead;  // per source: at-most-once resume skips
};

bool DedupMode(const PipelineSpec& spec) {
  return spec.semantics == Semantics::kEffectivelyOnce && spec.mode == Mode::kDedup;
}

nlohmann::json Summary(const PipelineSpec& spec, const RunStats& stats, const RunTotals& totals) {
  nlohmann::json j;
  j["pipeline"] = spec.name;
  j["semantics"] = SemanticsName(spec.semantics);
  j["mode"] = spec.semantics == Semantics::kEffectivelyOnce ? nlohmann::json(ModeName(spec.mode))
                                                            : nlohmann::json(nullptr);
  j["exit"] = stats.exit_reason;
  j["wall_s"] = stats.wall_s;
  j["open_s"] = totals.open_s;
  j["events_per_s"] =
      stats.wall_s > 0 ? static_cast<double>(stats.source_events) / stats.wall_s : 0.0;
  j["peak_rss_bytes"] = PeakRssBytes();
  nlohmann::json sources = nlohmann::json::object(), sinks = nlohmann::json::object(),
                 nodes = nlohmann::json::object();
  for (const NodeStats& n : stats.nodes) {
    if (n.kind == NodeKind::kSource) {
      sources[n.id] = {{"events", n.processed}, {"skipped", n.skipped}, {"replayed", n.replayed}};
      auto ahead = totals.skipped_ahead.find(n.id);
      if (ahead != totals.skipped_ahead.end()) sources[n.id]["skipped_ahead"] = ahead->second;
    } else if (n.kind == NodeKind::kSink) {
      sinks[n.id] = {{"records", n.processed}, {"skipped", n.skipped}};
    } else {
      nodes[n.id] = {{"processed", n.processed}, {"emitted", n.emitted},
                     {"skipped", n.skipped},     {"dropped", n.dropped},
                     {"replayed", n.replayed},   {"duplicates_discarded", n.duplicates_discarded}};
    }
  }
  j["sources"] = sources;
  j["sinks"] = sinks;
  j["nodes"] = nodes;
  const CheckpointTotals& c = totals.checkpoints;
  const double n = c.count > 0 ? c.count : 1;
  j["checkpoints"] = {{"count", c.count},
                      {"mean_ms", c.total_ms / n},
                      {"max_ms", c.max_ms},
                      {"mean_bytes", static_cast<double>(c.total_bytes) / n},
                      {"mean_alignment_ms", c.total_alignment_ms / n},
                      {"last_id", c.last_id}};
  j["stdin_journaled_bytes"] = totals.journaled_bytes;
  j["recoveries"] = {
      {"count", totals.recoveries},
      {"mean_ms", totals.recoveries > 0 ? totals.recovery_ms_total / totals.recoveries : 0.0},
      {"ms", totals.recovery_ms}};
  if (totals.dedup != nullptr) {
    const DedupTotals& d = *totals.dedup;
    j["dedup"] = {{"commits", d.commits},
                  {"commit_bytes", d.commit_bytes},
                  {"compactions", d.compactions},
                  {"log_rows_max", d.log_rows_max},
                  {"log_bytes_max", d.log_bytes_max},
                  {"log_rows_end", d.log_rows_end},
                  {"log_bytes_end", d.log_bytes_end},
                  {"savepoints", d.savepoints}};
  }
  return j;
}

void Accumulate(const RunStats& s, RunStats* total) {
  if (total->nodes.empty()) {
    *total = s;
    return;
  }
  total->exit_reason = s.exit_reason;
  total->signal = s.signal;
  total->wall_s += s.wall_s;
  total->source_events += s.source_events;
  for (size_t i = 0; i < s.nodes.size() && i < total->nodes.size(); ++i) {
    NodeStats& t = total->nodes[i];
    const NodeStats& n = s.nodes[i];
    t.processed += n.processed;
    t.emitted += n.emitted;
    t.skipped += n.skipped;
    t.dropped += n.dropped;
    t.replayed += n.replayed;
    t.duplicates_discarded += n.duplicates_discarded;
  }
}

// Where a checkpointing run starts, decided from the state file and the flags.
struct StartPoint {
  int64_t resume_from = 0;  // 0: from the beginning
  bool replay = false;      // --from-checkpoint ID: a replay of a chosen checkpoint
  bool already_completed = false;
  std::set<std::string> skip_restore;
};

struct RunArgs {
  std::string file;
  LoadOptions load;
  bool fresh = false;
  std::string from_checkpoint;
  bool allow_topology_change = false;
  std::string chaos;
  uint64_t max_events = 0;
  std::string duration;
  bool json = false;
  std::string summary_path;
};

// Opens nothing; reads and prepares the open state file: the fingerprint check, rolling
// staged sink epochs forward, --fresh / --from-checkpoint, the fired-fault set.
Status PrepareState(const PipelineSpec& spec, const RunArgs& args, const Registry& registry,
                    StateStore* store, Chaos* chaos, StartPoint* sp) {
  int64_t head = 0;
  ONCEFLOW_RETURN_IF_ERROR(store->LatestCompleted(&head));
  std::vector<CheckpointInfo> list;
  ONCEFLOW_RETURN_IF_ERROR(store->List(&list));
  const std::string fingerprint = Fingerprint(spec);
  std::vector<DedupChannel> dedup_channels;
  ONCEFLOW_RETURN_IF_ERROR(store->DedupChannels(&dedup_channels));
  if (!args.fresh && (!list.empty() || !dedup_channels.empty())) {
    std::string stored;
    bool found = false;
    ONCEFLOW_RETURN_IF_ERROR(store->GetMeta("fingerprint", &stored, &found));
    if (found && !stored.empty()) {
      std::vector<std::string> changes = FingerprintChanges(stored, fingerprint, &sp->skip_restore);
      if (!changes.empty()) {
        std::string all;
        for (const auto& c : changes) all += (all.empty() ? "" : "; ") + c;
        if (!args.allow_topology_change) {
          return Status::State("state file '" + store->path() +
                               "' holds checkpoints of a different topology: " + all +
                               " (resume anyway with --allow-topology-change, or start over "
                               "with --fresh)");
        }
        for (const auto& c : changes) {
          spdlog::warn("topology changed: {}{}", c,
                       c.find("removed") != std::string::npos ? " (its state is dropped)" : "");
        }
      }
    }
  }
  // A crash after a checkpoint completed and before its sinks applied it: apply now,
  // before any sink is opened or emptied.
  ONCEFLOW_RETURN_IF_ERROR(RollForward(store, spec, registry, DedupMode(spec)));

  auto find = [&](int64_t id) -> const CheckpointInfo* {
    for (const auto& c : list) {
      if (c.id == id) return &c;
    }
    return nullptr;
  };
  auto completed_final = [](const CheckpointInfo* c) {
    return c != nullptr && c->kind == CheckpointKind::kFinal &&
           c->status == CheckpointStatus::kCompleted;
  };
  // Starting from the beginning or replaying a chosen checkpoint re-reads the input on
  // purpose: at-most-once's read-ahead leases of the abandoned run no longer apply.
  if (args.fresh || (!args.from_checkpoint.empty() && args.from_checkpoint != "latest")) {
    ONCEFLOW_RETURN_IF_ERROR(store->PutMeta(ReadAhead::kMetaKey, "", /*full_sync=*/true));
  }
  if (args.fresh) {
    ONCEFLOW_RETURN_IF_ERROR(store->Fresh());
    ONCEFLOW_RETURN_IF_ERROR(SaveFiredFaults(store, *chaos));  // nothing fired yet
    sp->resume_from = 0;
  } else if (args.from_checkpoint == "none") {
    ONCEFLOW_RETURN_IF_ERROR(store->StartLine(0));
    sp->resume_from = 0;
  } else if (!args.from_checkpoint.empty() && args.from_checkpoint != "latest") {
    const int64_t id = std::stoll(args.from_checkpoint);
    const CheckpointInfo* c = find(id);
    if (c == nullptr) {
      return Status::State("no complete checkpoint " + args.from_checkpoint + " in '" +
                           store->path() + "' (see: onceflow checkpoints list --state " +
                           store->path() + ")");
    }
    if (completed_final(c)) {
      sp->already_completed = true;
      return Status::Ok();
    }
    ONCEFLOW_RETURN_IF_ERROR(store->StartLine(id));
    sp->resume_from = id;
    sp->replay = true;
  } else {
    if (completed_final(find(head))) {
      sp->already_completed = true;
      return Status::Ok();
    }
    sp->resume_from = head;
  }
  ONCEFLOW_RETURN_IF_ERROR(store->PutMeta("fingerprint", fingerprint));
  if (chaos->enabled() && !args.fresh) ONCEFLOW_RETURN_IF_ERROR(LoadFiredFaults(store, chaos));
  return Status::Ok();
}

// Usage checks of the flags that depend on the pipeline; exit 2 before anything is touched.
bool CheckRunFlags(const PipelineSpec& spec, const RunArgs& args, ChaosSpec* chaos) {
  auto fail = [](const std::string& msg) {
    std::cerr << "onceflow: error: " << msg << "\n";
    return false;
  };
  if (args.fresh && !args.from_checkpoint.empty()) {
    return fail("--fresh and --from-checkpoint exclude each other");
  }
  if (!args.from_checkpoint.empty() && args.from_checkpoint != "latest" &&
      args.from_checkpoint != "none") {
    const std::string& v = args.from_checkpoint;
    if (v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos || v[0] == '0') {
      return fail("--from-checkpoint: expected a checkpoint id, 'latest' or 'none', got '" + v +
                  "'");
    }
  }
  Status st = ChaosSpec::Parse(args.chaos, chaos);
  if (!st.ok()) return fail("--chaos: " + st.message());
  st = CheckChaosNodes(spec, *chaos);
  if (!st.ok()) return fail("--chaos: " + st.message());
  if (args.json) {
    for (const NodeSpec& n : spec.nodes) {
      if (n.kind == NodeKind::kSink && n.type == "stdout") {
        return fail("--json is refused because sink '" + n.id +
                    "' writes to stdout; use --summary PATH");
      }
    }
  }
  return true;
}

// At-most-once: whether a previous process left read-ahead leases (it ran, maybe crashed,
// and its input positions are past what any checkpoint says). Such a run continues even
// without a checkpoint to restore: its sinks keep what was written, its sources skip past
// the leases. A state file that cannot say counts as none.
bool HasReadAhead(StateStore* store) {
  std::string value;
  bool found = false;
  return store->GetMeta(ReadAhead::kMetaKey, &value, &found).ok() && found && !value.empty();
}

// One executor run with an optional status line.
Status RunOnce(const PipelineSpec& spec, const Plan& plan, const Registry& registry,
               const RunOptions& ro, RunStats* stats,
               std::function<std::string()> status_extra = nullptr) {
  Executor executor(spec, plan, registry, ro);
  std::unique_ptr<StatusLine> line;
  if (StatusLineEnabled()) line = std::make_unique<StatusLine>(executor, std::move(status_extra));
  return executor.Run(stats);
}

int Report(const PipelineSpec& spec, const RunArgs& args, const Status& st, const RunStats& stats,
           const RunTotals& totals) {
  nlohmann::json summary = Summary(spec, stats, totals);
  if (!st.ok()) {
    summary["exit"] = "failed";
    summary["error"] = st.message();
  }
  if (!args.summary_path.empty()) {
    std::ofstream out(args.summary_path, std::ios::trunc);
    out << DumpJson(summary, 2) << "\n";
    if (!out) {
      std::cerr << "onceflow: error: cannot write summary to '" << args.summary_path << "'\n";
      if (st.ok()) return kExitFailed;
    }
  }
  if (args.json) std::cout << DumpJson(summary) << std::endl;
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return ExitCodeFor(st);
  }
  spdlog::info("{}: {} events in {:.2f}s ({}{})", spec.name, stats.source_events, stats.wall_s,
               stats.exit_reason,
               totals.checkpoints.count > 0
                   ? ", " + std::to_string(totals.checkpoints.count) + " checkpoints"
                   : std::string());
  if (stats.signal != 0) return 128 + stats.signal;
  return kExitOk;
}

}  // namespace

Command RegisterRun(CLI::App& app, const Registry& registry) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "run (or resume) a pipeline");
  cmd->add_option("PIPELINE", args->file, "pipeline file")->required();
  AddLoadOptions(cmd, &args->load, /*with_run_overrides=*/true);
  cmd->add_flag("--fresh", args->fresh, "discard existing state and start from the beginning");
  cmd->add_option("--from-checkpoint", args->from_checkpoint, "ID|latest|none: where to start");
  cmd->add_flag("--allow-topology-change", args->allow_topology_change,
                "resume although nodes were added or removed");
  cmd->add_option("--chaos", args->chaos, "inject faults, e.g. seed=1,fail=counts:0.01");
  cmd->add_option("--max-events", args->max_events, "stop after N source events");
  cmd->add_option("--duration", args->duration, "stop after this long, e.g. 30s");
  cmd->add_flag("--json", args->json, "print the run summary as JSON on stdout at exit");
  cmd->add_option("--summary", args->summary_path, "write the run summary JSON to PATH");

  return [args, &registry]() -> int {
    // First of all: a SIGTERM that arrives while the pipeline loads (a supervisor stopping
    // a process it just restarted) must stop the run cleanly, not kill it.
    InstallSignalHandlers();
    const auto t_command = std::chrono::steady_clock::now();
    auto since_command = [t_command](std::chrono::steady_clock::time_point t) {
      return std::chrono::duration<double>(t - t_command).count();
    };
    PipelineSpec spec;
    if (!LoadAndReport(args->file, args->load, registry, &spec)) return kExitInvalid;

    int64_t duration_ms = 0;
    if (!args->duration.empty() && !ParseDuration(args->duration, &duration_ms)) {
      std::cerr << "onceflow: error: --duration: bad duration '" << args->duration
                << "' (use e.g. 250ms, 30s, 5m, 1h)\n";
      return kExitInvalid;
    }
    ChaosSpec chaos_spec;
    if (!CheckRunFlags(spec, *args, &chaos_spec)) return kExitInvalid;

    Plan plan = BuildPlan(spec);
    RunOptions ro;
    ro.max_events = args->max_events;
    ro.duration_ms = duration_ms;
    ro.stop_signal = &g_stop_signal;
    RunTotals totals;

    std::unique_ptr<StateStore> store;
    OpenMode open_mode;
    for (const auto& at : chaos_spec.crash_at) {
      if (at.point == HazardPoint::kInMigration) open_mode.in_migration_hook = [] { CrashNow(); };
    }
    Status st = StateStore::Open(spec.state_path, spec.name, open_mode, &store);
    if (!st.ok()) {
      spdlog::error("{}", st.message());
      return ExitCodeFor(st);
    }
    Chaos chaos(chaos_spec);
    StartPoint sp;
    st = PrepareState(spec, *args, registry, store.get(), &chaos, &sp);
    if (!st.ok()) {
      spdlog::error("{}", st.message());
      return ExitCodeFor(st);
    }
    if (sp.already_completed) {
      std::cerr << "onceflow: " << spec.name << ": already completed (use --fresh to start over)\n";
      return kExitOk;
    }
    if (sp.resume_from != 0 && !DedupMode(spec)) {
      spdlog::info("{}: resuming from checkpoint {}", spec.name, sp.resume_from);
    }
    if (chaos.enabled()) spdlog::info("fault injection: {}", chaos_spec.ToString());

    if (DedupMode(spec)) {
      // Failures are recovered inside the failing task (DedupGuarantee): one attempt.
      RunStats stats;
      std::vector<DedupChannel> committed;
      std::vector<SinkCommit> sinks;
      st = store->DedupChannels(&committed);
      if (st.ok()) st = store->DedupSinks(&sinks);
      if (!st.ok()) {
        spdlog::error("{}", st.message());
        return ExitCodeFor(st);
      }
      if (!committed.empty()) spdlog::info("{}: resuming from each task's last commit", spec.name);
      DedupOptions dopt;
      dopt.store = store.get();
      dopt.registry = &registry;
      dopt.chaos = &chaos;
      dopt.max_recoveries = spec.max_recoveries;
      dopt.savepoint_requests = &g_savepoint_requests;
      // --from-checkpoint ID (a savepoint) or none: replace the commits before the run.
      if (args->from_checkpoint == "none") {
        dopt.restore_from = 0;
      } else if (!args->from_checkpoint.empty() && args->from_checkpoint != "latest") {
        dopt.restore_from = sp.resume_from;
      }
      DedupGuarantee guarantee(dopt);
      ro.guarantee = &guarantee;
      ro.chaos = &chaos;
      ro.fresh_start = committed.empty() && sinks.empty() && dopt.restore_from < 0;
      const auto t_run = std::chrono::steady_clock::now();
      st = RunOnce(spec, plan, registry, ro, &stats, [&guarantee] {
        return "  recoveries " + std::to_string(guarantee.totals().recoveries);
      });
      totals.open_s = since_command(t_run) + stats.open_s;
      const DedupTotals& d = guarantee.totals();
      totals.recoveries = d.recoveries;
      totals.recovery_ms = d.recovery_ms;
      for (double ms : d.recovery_ms) totals.recovery_ms_total += ms;
      totals.journaled_bytes = guarantee.journaled_bytes();
      totals.dedup = &d;
      return Report(spec, *args, st, stats, totals);
    }

    // Attempts: a transient failure ends one (every task stops), and the next restores
    // every task from the latest complete checkpoint. --max-events and --duration count
    // this invocation as a whole.
    const auto t_start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point t_fail;
    RunStats total;
    // Per source node: the furthest record count an attempt of this invocation reached,
    // to count what a later attempt reads again after a recovery.
    std::map<int, uint64_t> reached;
    for (;;) {
      SnapshotOptions so;
      so.store = store.get();
      so.registry = &registry;
      so.chaos = &chaos;
      so.resume_from = sp.resume_from;
      so.interval_ms = spec.checkpoint_interval_ms;
      so.retain = spec.checkpoint_retain;
      so.skip_restore = sp.skip_restore;
      so.savepoint_requests = &g_savepoint_requests;
      if (spec.semantics == Semantics::kAtLeastOnce) so = AtLeastOnceOptions(so);
      if (spec.semantics == Semantics::kAtMostOnce) {
        so = AtMostOnceOptions(so);
        // A replay of a chosen checkpoint is exact (SPEC §4): file sinks are cut back.
        so.cut_sinks_back = sp.replay;
      }
      sp.replay = false;  // a recovery during the replay resumes it like any run
      SnapshotGuarantee guarantee(so);
      ro.guarantee = &guarantee;
      ro.chaos = &chaos;
      ro.fresh_start = sp.resume_from == 0 && !HasReadAhead(store.get());
      if (args->max_events != 0)
        ro.max_events = args->max_events - std::min(args->max_events, total.source_events);
      if (duration_ms > 0) {
        const auto used = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - t_start)
                              .count();
        ro.duration_ms = std::max<int64_t>(1, duration_ms - used);
      }
      const bool recovering = totals.recoveries > 0 && t_fail.time_since_epoch().count() != 0;
      const auto t_attempt = std::chrono::steady_clock::now();
      RunStats s;
      const int recoveries = totals.recoveries;
      st = RunOnce(spec, plan, registry, ro, &s, [&guarantee, recoveries] {
        return "  checkpoint " + std::to_string(guarantee.last_checkpoint()) + "  recoveries " +
               std::to_string(recoveries);
      });
      if (total.nodes.empty()) totals.open_s = since_command(t_attempt) + s.open_s;
      if (recovering) {
        const double ms =
            std::chrono::duration<double, std::milli>(t_attempt - t_fail).count() + s.open_s * 1000;
        totals.recovery_ms.push_back(ms);
        totals.recovery_ms_total += ms;
        t_fail = {};
      }
      for (size_t i = 0; i < s.nodes.size(); ++i) {
        if (s.nodes[i].kind != NodeKind::kSource) continue;
        const uint64_t restored = guarantee.restored_count(static_cast<int>(i));
        const uint64_t read = s.nodes[i].processed;
        uint64_t& far = reached[static_cast<int>(i)];
        s.nodes[i].replayed = far > restored ? std::min(read, far - restored) : 0;
        far = std::max(far, restored + read);
        if (const uint64_t skipped = guarantee.skipped_ahead(static_cast<int>(i)); skipped > 0)
          totals.skipped_ahead[s.nodes[i].id] += skipped;
      }
      Accumulate(s, &total);
      const CheckpointTotals& c = guarantee.totals();
      totals.checkpoints.count += c.count;
      totals.checkpoints.total_ms += c.total_ms;
      totals.checkpoints.max_ms = std::max(totals.checkpoints.max_ms, c.max_ms);
      totals.checkpoints.total_bytes += c.total_bytes;
      totals.checkpoints.total_alignment_ms += c.total_alignment_ms;
      if (c.last_id != 0) totals.checkpoints.last_id = c.last_id;
      totals.journaled_bytes += guarantee.journaled_bytes();
      if (st.code() != Status::Code::kTransient) break;
      if (totals.recoveries >= spec.max_recoveries) {
        st =
            Status::Runtime("gave up after " + std::to_string(totals.recoveries) +
                            " recoveries (recovery.max_recoveries); last failure: " + st.message());
        break;
      }
      if (g_stop_signal.load() != 0) {
        st = Status::Runtime(st.message() + " (not recovered: the run was being stopped)");
        break;
      }
      t_fail = std::chrono::steady_clock::now();
      ++totals.recoveries;
      Status ls = store->LatestCompleted(&sp.resume_from);
      if (!ls.ok()) {
        st = ls;
        break;
      }
      spdlog::warn("{}; recovering from {} (recovery {})", st.message(),
                   sp.resume_from != 0 ? "checkpoint " + std::to_string(sp.resume_from)
                                       : std::string("the beginning"),
                   totals.recoveries);
      // New nodes restored nothing the first time; from now on their state is in the
      // checkpoints like everyone else's.
      sp.skip_restore.clear();
    }
    total.wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    return Report(spec, *args, st, total, totals);
  };
}

}  // namespace onceflow::cli

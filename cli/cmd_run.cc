// `onceflow run`: load and validate, plan, execute under the chosen guarantee, and report
// a summary. Signals: SIGINT/SIGTERM stop the sources cleanly (a second one exits at
// once); the exit code is then 130/143.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/logging.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/executor.h"
#include "runtime/plan/plan.h"
#include "spdlog/spdlog.h"

namespace onceflow::cli {

namespace {

std::atomic<int> g_stop_signal{0};

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
  explicit StatusLine(const Executor& ex) : ex_(ex) {
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
      std::fprintf(stderr, "\r\033[K%.1fs  %llu events  %.0f/s  backlog:%s", p.elapsed_s,
                   static_cast<unsigned long long>(p.source_events), rate,
                   backlog.empty() ? " none" : backlog.c_str());
      std::fflush(stderr);
    }
  }

  const Executor& ex_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

nlohmann::json Summary(const PipelineSpec& spec, const RunStats& stats) {
  nlohmann::json j;
  j["pipeline"] = spec.name;
  j["semantics"] = SemanticsName(spec.semantics);
  j["mode"] = spec.semantics == Semantics::kEffectivelyOnce ? nlohmann::json(ModeName(spec.mode))
                                                             : nlohmann::json(nullptr);
  j["exit"] = stats.exit_reason;
  j["wall_s"] = stats.wall_s;
  j["events_per_s"] = stats.wall_s > 0 ? static_cast<double>(stats.source_events) / stats.wall_s : 0.0;
  j["peak_rss_bytes"] = PeakRssBytes();
  nlohmann::json sources = nlohmann::json::object(), sinks = nlohmann::json::object(),
                 nodes = nlohmann::json::object();
  for (const NodeStats& n : stats.nodes) {
    if (n.kind == NodeKind::kSource) {
      sources[n.id] = {{"events", n.processed}, {"skipped", n.skipped}};
    } else if (n.kind == NodeKind::kSink) {
      sinks[n.id] = {{"records", n.processed}, {"skipped", n.skipped}};
    } else {
      nodes[n.id] = {{"processed", n.processed},
                     {"emitted", n.emitted},
                     {"skipped", n.skipped},
                     {"dropped", n.dropped},
                     {"replayed", n.replayed},
                     {"duplicates_discarded", n.duplicates_discarded}};
    }
  }
  j["sources"] = sources;
  j["sinks"] = sinks;
  j["nodes"] = nodes;
  // At-most-once takes no checkpoints and never recovers: it drops instead.
  j["checkpoints"] = {{"count", 0}, {"mean_ms", 0}, {"max_ms", 0}, {"mean_bytes", 0},
                      {"mean_alignment_ms", 0}};
  j["recoveries"] = {{"count", 0}, {"mean_ms", 0}};
  return j;
}

}  // namespace

Command RegisterRun(CLI::App& app, const Registry& registry) {
  struct Args {
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
  auto args = std::make_shared<Args>();
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
    PipelineSpec spec;
    if (!LoadAndReport(args->file, args->load, registry, &spec)) return kExitInvalid;

    int64_t duration_ms = 0;
    if (!args->duration.empty() && !ParseDuration(args->duration, &duration_ms)) {
      std::cerr << "onceflow: error: --duration: bad duration '" << args->duration
                << "' (use e.g. 250ms, 30s, 5m, 1h)\n";
      return kExitInvalid;
    }
    // Checkpoints, replay and fault injection arrive with the checkpointing guarantees;
    // refuse their flags rather than silently ignore them.
    if (spec.semantics != Semantics::kAtMostOnce) {
      std::cerr << "onceflow: error: semantics '" << SemanticsName(spec.semantics)
                << "' is not supported yet by this version; run with --semantics at-most-once\n";
      return kExitInvalid;
    }
    for (auto [flag, given] : {std::pair<const char*, bool>{"--from-checkpoint", !args->from_checkpoint.empty()},
                               {"--allow-topology-change", args->allow_topology_change},
                               {"--chaos", !args->chaos.empty()}}) {
      if (given) {
        std::cerr << "onceflow: error: " << flag
                  << " is not supported yet by this version (it needs checkpoints)\n";
        return kExitInvalid;
      }
    }
    if (args->json) {
      for (const NodeSpec& n : spec.nodes) {
        if (n.kind == NodeKind::kSink && n.type == "stdout") {
          std::cerr << "onceflow: error: --json is refused because sink '" << n.id
                    << "' writes to stdout; use --summary PATH\n";
          return kExitInvalid;
        }
      }
    }

    Plan plan = BuildPlan(spec);
    InstallSignalHandlers();
    RunOptions ro;
    ro.max_events = args->max_events;
    ro.duration_ms = duration_ms;
    ro.stop_signal = &g_stop_signal;
    ro.fresh_start = true;  // at-most-once keeps no state between runs yet
    Executor executor(spec, plan, registry, ro);
    RunStats stats;
    Status st;
    {
      std::unique_ptr<StatusLine> line;
      if (StatusLineEnabled()) line = std::make_unique<StatusLine>(executor);
      st = executor.Run(&stats);
    }
    nlohmann::json summary = Summary(spec, stats);
    if (!st.ok()) {
      summary["exit"] = "failed";
      summary["error"] = st.message();
    }
    if (!args->summary_path.empty()) {
      std::ofstream out(args->summary_path, std::ios::trunc);
      out << summary.dump(2) << "\n";
      if (!out) {
        std::cerr << "onceflow: error: cannot write summary to '" << args->summary_path << "'\n";
        if (st.ok()) return kExitFailed;
      }
    }
    if (args->json) std::cout << summary.dump() << std::endl;
    if (!st.ok()) {
      spdlog::error("{}", st.message());
      return ExitCodeFor(st);
    }
    spdlog::info("{}: {} events in {:.2f}s ({})", spec.name, stats.source_events, stats.wall_s,
                 stats.exit_reason);
    if (stats.signal != 0) return 128 + stats.signal;
    return kExitOk;
  };
}

}  // namespace onceflow::cli

// `onceflow compare` (SPEC §6): runs a pipeline once without faults as the reference,
// then under each guarantee with the same --chaos faults, each in its own temporary state
// file and output folder, restarting the process after every self-inflicted crash until
// it exits 0, and tabulates lost / duplicated (sink_diff.h) / throughput / state size /
// recoveries against the reference.
//
// Every run is a child process of this same binary (`onceflow run ... --summary F`),
// started with posix_spawn (no shell): a chaos crash SIGKILLs the process, which only a
// parent can survive. Children run one at a time; stdout goes to /dev/null (compare's
// stdout carries only the table or the JSON), stderr to a log file per process.
//
// Threading: main thread only.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sink_diff.h"
#include "nlohmann/json.hpp"
#include "runtime/chaos/chaos.h"
#include "spdlog/spdlog.h"

extern char** environ;

namespace onceflow::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct CompareArgs {
  std::string file;
  std::vector<std::string> sets;
  std::string chaos;
  bool json = false;
  bool keep = false;
  int max_restarts = 200;
};

// One row of the table: a guarantee, the folder its runs write into.
struct RowPlan {
  std::string semantics;
  std::string mode;  // "" unless effectively-once
  std::string label;
  std::string folder;
};

// A sink compare reads back, with the rule that judges it.
struct ComparedSink {
  std::string id;
  SinkOutput output;             // path relative to a row's folder
  std::vector<std::string> key;  // empty: the multiset rule
};

struct RowResult {
  enum class Outcome { kOk, kNotSupported, kError };
  Outcome outcome = Outcome::kOk;
  std::string message;  // not supported / error
  int runs = 0;
  int restarts = 0;
  int in_process_recoveries = 0;
  double wall_s = 0;                // Σ over the row's processes, measured here
  std::vector<double> recovery_ms;  // in-process and restarts (see RunRow)
  nlohmann::json summary;           // the last process's summary
  uint64_t state_bytes = 0;
  SinkDiff diff;  // summed over the compared sinks
};

// This binary: /proc/self/exe, else argv[0] as glibc keeps it.
std::string SelfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(program_invocation_name) : p.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The last `n` lines of a child's stderr, indented, for a row that failed.
std::string Tail(const std::string& path, int n) {
  std::vector<std::string> lines;
  std::istringstream in(ReadFile(path));
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) lines.push_back(l);
  }
  std::string out;
  for (size_t i = lines.size() > static_cast<size_t>(n) ? lines.size() - n : 0; i < lines.size();
       ++i) {
    out += "    | " + lines[i] + "\n";
  }
  return out;
}

// The first "error:" line of a child's stderr, without the "onceflow: error: " prefix.
std::string FirstError(const std::string& path) {
  std::istringstream in(ReadFile(path));
  for (std::string l; std::getline(in, l);) {
    const size_t at = l.find("error: ");
    if (at != std::string::npos) return l.substr(at + 7);
  }
  return "exit status 2";
}

// Spawns `argv` with stdin and stdout on /dev/null and stderr appended to `err_path`;
// waits for it. Returns the wait status, or -1 (with *error) when it could not start.
int SpawnAndWait(const std::vector<std::string>& argv, const std::string& err_path,
                 std::string* error) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    *error = "cannot start '" + argv[0] + "': " + std::strerror(rc);
    return -1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      *error = std::string("waitpid: ") + std::strerror(errno);
      return -1;
    }
  }
  return status;
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(n);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

uint64_t SourceEvents(const nlohmann::json& summary) {
  uint64_t n = 0;
  if (summary.contains("sources") && summary["sources"].is_object()) {
    for (const auto& [id, s] : summary["sources"].items()) n += s.value("events", uint64_t{0});
  }
  return n;
}

class Comparer {
 public:
  Comparer(const CompareArgs& args, const PipelineSpec& spec, std::string exe, std::string root)
      : args_(args), spec_(spec), exe_(std::move(exe)), root_(std::move(root)) {
    PlanSinks();
  }

  const std::vector<std::string>& notes() const { return notes_; }

  // The `onceflow run` command of one process of a row.
  std::vector<std::string> Command(const RowPlan& row, bool chaos, int n) const {
    const std::string dir = root_ + "/" + row.folder;
    std::vector<std::string> cmd = {exe_,      "--quiet",         "run",         args_.file,
                                    "--state", dir + "/state.db", "--semantics", row.semantics};
    if (!row.mode.empty()) cmd.insert(cmd.end(), {"--mode", row.mode});
    for (const std::string& s : args_.sets) cmd.insert(cmd.end(), {"--set", s});
    for (const std::string& s : redirects_) cmd.insert(cmd.end(), {"--set", Expand(s, dir)});
    if (chaos && !args_.chaos.empty()) cmd.insert(cmd.end(), {"--chaos", args_.chaos});
    cmd.insert(cmd.end(), {"--summary", dir + "/summary-" + std::to_string(n) + ".json"});
    return cmd;
  }

  // Runs one row to completion: the same command again after each crash (a child killed
  // by SIGKILL, which is how chaos crashes) until it exits 0.
  //
  // Recovery times: an in-process recovery's as its summary reports it; a restart's from
  // the moment this process saw the crash until the restarted child had every node open
  // (its summary's `open_s`, measured from the start of its `run`). A child that is
  // killed writes no summary: a restart whose child crashed in turn is counted without a
  // time, and the in-process recoveries of a child that was killed later are not counted.
  // Each process gets its own --summary file; the rest of the command is the same.
  RowResult RunRow(const RowPlan& row, bool chaos) const {
    RowResult r;
    const std::string dir = root_ + "/" + row.folder;
    std::error_code ec;
    fs::create_directories(dir, ec);
    std::optional<Clock::time_point> crashed_at;
    for (int n = 1;; ++n) {
      const std::string err = dir + "/stderr-" + std::to_string(n) + ".log";
      const std::string summary_path = dir + "/summary-" + std::to_string(n) + ".json";
      std::string spawn_error;
      const auto t0 = Clock::now();
      const int status = SpawnAndWait(Command(row, chaos, n), err, &spawn_error);
      r.wall_s += std::chrono::duration<double>(Clock::now() - t0).count();
      r.runs = n;
      if (status < 0) {
        r.outcome = RowResult::Outcome::kError;
        r.message = spawn_error;
        return r;
      }
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        if (r.restarts >= args_.max_restarts) {
          r.outcome = RowResult::Outcome::kError;
          r.message = "still crashing after " + std::to_string(r.restarts) +
                      " restarts (--max-restarts); logs in " + dir;
          return r;
        }
        ++r.restarts;
        crashed_at = Clock::now();
        continue;
      }
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code == kExitInvalid && n == 1) {
        // The pipeline validated here, so the run refused this guarantee or the faults.
        r.outcome = RowResult::Outcome::kNotSupported;
        r.message = FirstError(err);
        return r;
      }
      if (code != kExitOk) {
        r.outcome = RowResult::Outcome::kError;
        r.message = "run " + std::to_string(n) + " exited with status " + std::to_string(code) +
                    ":\n" + Tail(err, 8);
        return r;
      }
      if (n > 1 && !fs::exists(summary_path)) {
        // A crash after the final checkpoint completed: the restart found the run
        // "already completed" and exits 0 without running, so without a summary.
        r.summary = nlohmann::json::object();
        break;
      }
      r.summary = nlohmann::json::parse(ReadFile(summary_path), nullptr, false);
      if (!r.summary.is_object()) {
        r.outcome = RowResult::Outcome::kError;
        r.message = "run " + std::to_string(n) + " wrote no readable summary " + summary_path;
        return r;
      }
      const nlohmann::json rec = r.summary.value("recoveries", nlohmann::json::object());
      r.in_process_recoveries = rec.value("count", 0);
      for (const auto& ms : rec.value("ms", nlohmann::json::array())) {
        r.recovery_ms.push_back(ms.get<double>());
      }
      if (crashed_at && r.summary.contains("open_s")) {
        r.recovery_ms.push_back(
            std::chrono::duration<double, std::milli>(t0 - *crashed_at).count() +
            r.summary["open_s"].get<double>() * 1000);
      }
      break;
    }
    r.state_bytes = FileSize(dir + "/state.db") + FileSize(dir + "/state.db-wal");
    return r;
  }

  // Reads the row's sinks and compares them with the reference's; false (with the
  // message in r) when a sink cannot be read.
  bool Judge(const RowPlan& ref, const RowPlan& row, RowResult* r) const {
    for (const ComparedSink& s : sinks_) {
      Records want, got;
      SinkOutput a = s.output, b = s.output;
      a.path = root_ + "/" + ref.folder + "/" + s.output.path;
      b.path = root_ + "/" + row.folder + "/" + s.output.path;
      Status st = ReadSinkRecords(a, &want);
      if (st.ok()) st = ReadSinkRecords(b, &got);
      if (!st.ok()) {
        r->outcome = RowResult::Outcome::kError;
        r->message = "sink '" + s.id + "': " + st.message();
        return false;
      }
      const SinkDiff d = s.key.empty() ? DiffMultiset(want, got) : DiffLastByKey(want, got, s.key);
      r->diff.lost += d.lost;
      r->diff.duplicated += d.duplicated;
      r->diff.changed += d.changed;
      r->diff.compared += d.compared;
      for (const std::string& sample : d.samples) r->diff.samples.push_back(s.id + ": " + sample);
    }
    return true;
  }

 private:
  // "@DIR@" in a redirect stands for the row's folder.
  static std::string Expand(const std::string& s, const std::string& dir) {
    const size_t at = s.find("@DIR@");
    return at == std::string::npos ? s : s.substr(0, at) + dir + s.substr(at + 5);
  }

  // Decides which sinks are read back (file, sqlite) and by which rule, and which
  // --set redirect every output (sinks, dead-letter files) into a row's folder.
  void PlanSinks() {
    for (const NodeSpec& n : spec_.nodes) {
      if (n.on_error == OnError::kDeadLetter) {
        redirects_.push_back("nodes." + n.id + ".dead_letter=@DIR@/" + n.id + ".dead.jsonl");
      }
      if (n.kind != NodeKind::kSink) continue;
      ComparedSink s;
      s.id = n.id;
      if (n.type == "file") {
        s.output.kind = SinkOutput::Kind::kFile;
        s.output.format = n.options.GetString("format", "jsonl");
        s.output.field = n.options.GetString("field", "line");
        s.output.path = n.id + "." + (s.output.format == "lines" ? "txt" : s.output.format);
      } else if (n.type == "sqlite") {
        s.output.kind = SinkOutput::Kind::kSqlite;
        s.output.table = n.options.GetString("table");
        s.output.path = n.id + ".db";
        if (n.options.Given("key")) s.key = n.options.GetList("key");
      } else {
        notes_.push_back("sink '" + n.id + "' (" + n.type + ") cannot be read back: not compared");
        continue;
      }
      redirects_.push_back("nodes." + n.id + ".path=@DIR@/" + s.output.path);
      if (s.key.empty()) s.key = FeedingKey(n);
      sinks_.push_back(std::move(s));
    }
  }

  // The key of the keyed operators feeding `sink` (with window_start for windows) when
  // every input is one and they agree; else empty (the multiset rule, also for `join`,
  // whose records are pairs, not successive values of a key).
  std::vector<std::string> FeedingKey(const NodeSpec& sink) const {
    std::optional<std::vector<std::string>> key;
    for (const InputSpec& in : sink.inputs) {
      const NodeSpec* up = spec_.FindNode(in.from);
      if (up == nullptr || up->kind != NodeKind::kOperator || up->key.empty() ||
          up->type == "join") {
        return {};
      }
      std::vector<std::string> k = up->key;
      if (up->type == "window") k.push_back("window_start");
      if (key && *key != k) return {};
      key = k;
    }
    return key.value_or(std::vector<std::string>{});
  }

  const CompareArgs& args_;
  const PipelineSpec& spec_;
  std::string exe_;
  std::string root_;
  std::vector<ComparedSink> sinks_;
  std::vector<std::string> redirects_;
  std::vector<std::string> notes_;
};

std::string Num(double x) {
  char buf[64];
  if (x == std::floor(x) && std::fabs(x) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", x);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", x);
  }
  return buf;
}

std::string Pad(const std::string& s, size_t width, bool left) {
  if (s.size() >= width) return s;
  return left ? s + std::string(width - s.size(), ' ') : std::string(width - s.size(), ' ') + s;
}

double EventsPerSecond(uint64_t events, const RowResult& r) {
  return r.wall_s > 0 ? static_cast<double>(events) / r.wall_s : 0;
}

void PrintTable(const std::vector<RowPlan>& rows, const std::vector<RowResult>& results,
                uint64_t events) {
  std::cout << "guarantee                    lost  duplicated  events/s  state bytes  recoveries"
               "  recovery ms (median)\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowResult& r = results[i];
    std::string line = Pad(rows[i].label, 29, true);
    if (r.outcome == RowResult::Outcome::kNotSupported) {
      line += "not supported: " + r.message;
    } else if (r.outcome == RowResult::Outcome::kError) {
      line += "error (see below)";
    } else {
      line += Pad(Num(r.diff.lost), 4, false) + "  " + Pad(Num(r.diff.duplicated), 10, false) +
              "  " + Pad(Num(std::round(EventsPerSecond(events, r))), 8, false) + "  " +
              Pad(std::to_string(r.state_bytes), 11, false) + "  " +
              Pad(std::to_string(r.in_process_recoveries + r.restarts), 10, false) + "  " +
              Pad(r.recovery_ms.empty() ? "-" : Num(std::round(Median(r.recovery_ms) * 10) / 10),
                  20, false);
    }
    std::cout << line << "\n";
  }
  std::cout.flush();
}

nlohmann::json RowJson(const RowPlan& row, const RowResult& r, uint64_t events) {
  nlohmann::json j = {
      {"semantics", row.semantics},
      {"mode", row.mode.empty() ? nlohmann::json(nullptr) : nlohmann::json(row.mode)},
      {"runs", r.runs}};
  if (r.outcome != RowResult::Outcome::kOk) {
    j[r.outcome == RowResult::Outcome::kNotSupported ? "not_supported" : "error"] = r.message;
    for (const char* f : {"lost", "duplicated", "events_per_s", "state_bytes", "recoveries",
                          "recovery_ms_median"}) {
      j[f] = nullptr;
    }
    return j;
  }
  j["lost"] = r.diff.lost;
  j["duplicated"] = r.diff.duplicated;
  j["changed"] = r.diff.changed;
  j["events_per_s"] = EventsPerSecond(events, r);
  j["state_bytes"] = r.state_bytes;
  j["recoveries"] = r.in_process_recoveries + r.restarts;
  j["restarts"] = r.restarts;
  j["recovery_ms_median"] =
      r.recovery_ms.empty() ? nlohmann::json(nullptr) : nlohmann::json(Median(r.recovery_ms));
  j["wall_s"] = r.wall_s;
  return j;
}

int Compare(const CompareArgs& args, const Registry& registry) {
  LoadOptions load;
  load.sets = args.sets;
  PipelineSpec spec;
  if (!LoadAndReport(args.file, load, registry, &spec)) return kExitInvalid;
  ChaosSpec chaos;
  Status st = ChaosSpec::Parse(args.chaos, &chaos);
  if (st.ok()) st = CheckChaosNodes(spec, chaos);
  if (!st.ok()) {
    std::cerr << "onceflow: error: --chaos: " << st.message() << "\n";
    return kExitInvalid;
  }

  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/onceflow-compare-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "onceflow: error: cannot create a temporary folder '" << tmpl
              << "': " << std::strerror(errno) << "\n";
    return kExitFailed;
  }
  const std::string root = tmpl;
  Comparer cmp(args, spec, SelfExe(), root);
  for (const std::string& note : cmp.notes()) std::cerr << "onceflow: note: " << note << "\n";

  const RowPlan reference{"effectively-once", "snapshot", "reference", "reference"};
  const std::vector<RowPlan> rows = {
      {"at-most-once", "", "at-most-once", "at-most-once"},
      {"at-least-once", "", "at-least-once", "at-least-once"},
      {"effectively-once", "snapshot", "effectively-once (snapshot)", "snapshot"},
      {"effectively-once", "dedup", "effectively-once (dedup)", "dedup"},
  };
  auto cleanup = [&] {
    if (args.keep) {
      std::cerr << "onceflow: note: runs kept in " << root << "\n";
    } else {
      std::error_code ec;
      fs::remove_all(root, ec);
    }
  };

  spdlog::info("compare: reference run (no faults)");
  RowResult ref = cmp.RunRow(reference, /*chaos=*/false);
  if (ref.outcome != RowResult::Outcome::kOk) {
    std::cerr << "onceflow: error: the reference run failed: " << ref.message << "\n";
    cleanup();
    return kExitFailed;
  }
  const uint64_t events = SourceEvents(ref.summary);

  std::vector<RowResult> results;
  for (const RowPlan& row : rows) {
    spdlog::info("compare: {}{}", row.label, args.chaos.empty() ? "" : " --chaos " + args.chaos);
    RowResult r = cmp.RunRow(row, /*chaos=*/true);
    if (r.outcome == RowResult::Outcome::kOk) cmp.Judge(reference, row, &r);
    results.push_back(std::move(r));
  }

  bool mismatch = false, failed = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowResult& r = results[i];
    if (r.outcome == RowResult::Outcome::kError) failed = true;
    if (r.outcome != RowResult::Outcome::kOk) continue;
    const bool effectively_once = rows[i].semantics == "effectively-once";
    if (effectively_once && r.diff.differs()) mismatch = true;
  }
  if (args.json) {
    nlohmann::json out = {{"reference", ref.summary}, {"rows", nlohmann::json::array()}};
    for (size_t i = 0; i < rows.size(); ++i)
      out["rows"].push_back(RowJson(rows[i], results[i], events));
    out["notes"] = cmp.notes();
    std::cout << out.dump(2) << std::endl;
  } else {
    PrintTable(rows, results, events);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowResult& r = results[i];
    if (r.outcome == RowResult::Outcome::kError) {
      std::cerr << "onceflow: error: " << rows[i].label << ": " << r.message << "\n";
    } else if (r.outcome == RowResult::Outcome::kOk && r.diff.differs()) {
      std::cerr << "onceflow: note: " << rows[i].label << " differs from the reference"
                << (r.diff.changed
                        ? " (" + std::to_string(r.diff.changed) + " keys with other fields changed)"
                        : "")
                << ":\n";
      for (const std::string& s : r.diff.samples) std::cerr << "    " << s << "\n";
    }
  }
  cleanup();
  if (mismatch) {
    std::cerr << "onceflow: error: an effectively-once row lost or duplicated effects\n";
    return kExitMismatch;
  }
  return failed ? kExitFailed : kExitOk;
}

}  // namespace

Command RegisterCompare(CLI::App& app, const Registry& registry) {
  auto args = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "run under every guarantee with the same faults and tabulate lost / duplicated / "
      "throughput / storage / recovery");
  cmd->add_option("PIPELINE", args->file, "pipeline file")->required();
  AddSetOption(cmd, &args->sets);
  cmd->add_option("--chaos", args->chaos, "faults for every row, e.g. seed=7,fail=counts:0.001");
  cmd->add_flag("--json", args->json, "print the reference summary and the rows as JSON");
  cmd->add_flag("--keep", args->keep, "keep the temporary state files, outputs and logs");
  cmd->add_option("--max-restarts", args->max_restarts,
                  "give a row up after this many crashes (default 200)")
      ->check(CLI::PositiveNumber);
  return [args, &registry]() -> int { return Compare(*args, registry); };
}

}  // namespace onceflow::cli

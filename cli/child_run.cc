// Child processes of this binary and the redirection of their outputs; see child_run.h.
#include "cli/child_run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace onceflow::cli {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_interrupt{0};     // the signal that interrupted the command
std::atomic<pid_t> g_child{0};       // the child running now, 0 when none

void OnInterrupt(int sig) {
  int expected = 0;
  g_interrupt.compare_exchange_strong(expected, sig);
  const pid_t child = g_child.load();
  if (child > 0) kill(child, sig);  // async-signal-safe; the child stops cleanly
}

}  // namespace

void InterruptChildrenOnSignal() {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int Interrupted() { return g_interrupt.load(); }

std::string SelfExe() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(program_invocation_name) : p.string();
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Tail(const std::string& path, int n) {
  std::vector<std::string> lines;
  std::istringstream in(ReadWholeFile(path));
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

std::string FirstError(const std::string& path) {
  std::istringstream in(ReadWholeFile(path));
  for (std::string l; std::getline(in, l);) {
    const size_t at = l.find("error: ");
    if (at != std::string::npos) return l.substr(at + 7);
  }
  return "exit status 2";
}

int SpawnAndWait(const std::vector<std::string>& argv, const std::string& err_path,
                 std::string* error,
                 std::optional<std::chrono::steady_clock::time_point> deadline) {
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
  g_child.store(pid);
  // A signal that came before the pid was stored was not passed on: pass it now.
  if (const int sig = g_interrupt.load()) kill(pid, sig);
  int status = 0;
  // Without a deadline, one blocking wait; with one, a poll every few milliseconds (a
  // test case's runs take tens of milliseconds or more, so the delay is noise).
  const int flags = deadline ? WNOHANG : 0;
  bool killed = false;
  for (;;) {
    const pid_t got = waitpid(pid, &status, flags);
    if (got == pid) break;
    if (got < 0 && errno != EINTR) {
      *error = std::string("waitpid: ") + std::strerror(errno);
      return -1;
    }
    if (got == 0 && !killed && std::chrono::steady_clock::now() >= *deadline) {
      kill(pid, SIGKILL);
      killed = true;
    }
    if (got == 0) usleep(2000);
  }
  g_child.store(0);
  return killed ? -2 : status;
}

RestartedRun RunRestarting(const std::function<std::vector<std::string>(int)>& command,
                           const std::string& dir, int max_restarts, int64_t timeout_ms) {
  RestartedRun r;
  std::optional<RestartedRun::Clock::time_point> deadline;
  if (timeout_ms > 0) {
    deadline = RestartedRun::Clock::now() + std::chrono::milliseconds(timeout_ms);
  }
  for (int n = 1;; ++n) {
    r.last_stderr = dir + "/stderr-" + std::to_string(n) + ".log";
    r.last_start = RestartedRun::Clock::now();
    const int status = SpawnAndWait(command(n), r.last_stderr, &r.error, deadline);
    r.wall_s += std::chrono::duration<double>(RestartedRun::Clock::now() - r.last_start).count();
    r.runs = n;
    if (const int sig = Interrupted()) {
      r.outcome = RestartedRun::Outcome::kInterrupted;
      r.error = std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM");
      return r;
    }
    if (status == -2) {
      r.outcome = RestartedRun::Outcome::kTimedOut;
      r.error = "still running after " + std::to_string(timeout_ms) + " ms: killed" +
                (r.restarts ? " (after " + std::to_string(r.restarts) + " restarts)" : "");
      return r;
    }
    if (status < 0) {
      r.outcome = RestartedRun::Outcome::kSpawnFailed;
      return r;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      if (r.restarts >= max_restarts) {
        r.outcome = RestartedRun::Outcome::kTooManyRestarts;
        r.error = "still crashing after " + std::to_string(r.restarts) +
                  " restarts (--max-restarts); logs in " + dir;
        return r;
      }
      ++r.restarts;
      r.crashed_at = RestartedRun::Clock::now();
      continue;
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
  }
}

namespace {

// The key of the keyed operators feeding `sink` (with window_start for windows) when
// every input is one and they agree; else empty.
std::vector<std::string> FeedingKey(const PipelineSpec& spec, const NodeSpec& sink) {
  std::optional<std::vector<std::string>> key;
  for (const InputSpec& in : sink.inputs) {
    const NodeSpec* up = spec.FindNode(in.from);
    // A join's records are pairs, not successive values of a key: the multiset rule.
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

std::string FileExtension(const std::string& format) { return format == "lines" ? "txt" : format; }

}  // namespace

OutputPlan PlanOutputs(const PipelineSpec& spec, bool capture_stdout) {
  OutputPlan plan;
  for (const NodeSpec& n : spec.nodes) {
    if (n.on_error == OnError::kDeadLetter) {
      plan.redirects.push_back("nodes." + n.id + ".dead_letter=@DIR@/" + n.id + ".dead.jsonl");
    }
    if (n.kind != NodeKind::kSink) continue;
    ReadBackSink s;
    s.id = n.id;
    if (n.type == "file" || (capture_stdout && n.type == "stdout")) {
      s.output.kind = SinkOutput::Kind::kFile;
      s.output.format = n.options.GetString("format", "jsonl");
      s.output.field = n.options.GetString("field", "line");
      s.output.path = n.id + "." + FileExtension(s.output.format);
      // A stdout sink's options (format, field) are a subset of a file sink's.
      if (n.type == "stdout") plan.redirects.push_back("nodes." + n.id + ".sink=file");
    } else if (n.type == "sqlite") {
      s.output.kind = SinkOutput::Kind::kSqlite;
      s.output.table = n.options.GetString("table");
      s.output.path = n.id + ".db";
      if (n.options.Given("key")) s.key = n.options.GetList("key");
    } else {
      plan.notes.push_back("sink '" + n.id + "' (" + n.type + ") cannot be read back");
      continue;
    }
    plan.redirects.push_back("nodes." + n.id + ".path=@DIR@/" + s.output.path);
    if (s.key.empty()) s.key = FeedingKey(spec, n);
    plan.sinks.push_back(std::move(s));
  }
  return plan;
}

std::string ExpandDir(const std::string& s, const std::string& dir) {
  const size_t at = s.find("@DIR@");
  return at == std::string::npos ? s : s.substr(0, at) + dir + s.substr(at + 5);
}

bool MakeTempFolder(const std::string& prefix, std::string* path, std::string* error) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/onceflow-" + prefix + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    *error = "cannot create a temporary folder '" + tmpl + "': " + std::strerror(errno);
    return false;
  }
  *path = tmpl;
  return true;
}

}  // namespace onceflow::cli

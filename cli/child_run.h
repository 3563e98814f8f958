// Running a pipeline in child processes of this same binary (`onceflow run ...`), as
// `compare` and `test` do: a chaos crash SIGKILLs the process, which only a parent can
// survive, so the parent restarts the same command until it exits. Also where a run's
// outputs are redirected to (a folder of its own) and how they are read back.
//
// Threading: main thread only (posix_spawn + waitpid).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/sink_diff.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow::cli {

// This binary: /proc/self/exe, else argv[0] as glibc keeps it.
std::string SelfExe();

// The whole file ("" when it cannot be read).
std::string ReadWholeFile(const std::string& path);

// The last `n` non-empty lines of a file, each indented as "    | LINE\n".
std::string Tail(const std::string& path, int n);

// The first "error:" line of a child's stderr, without what precedes "error: ".
std::string FirstError(const std::string& path);

// SIGINT/SIGTERM for a command that runs children (compare, test): the signal is passed on
// to the running child, which stops cleanly, no further process is started
// (RunRestarting returns kInterrupted), and the command cleans up its temporary folder
// and exits 128 + the signal. Install once, before the first child.
void InterruptChildrenOnSignal();
// The signal that interrupted the command, or 0.
int Interrupted();

// Spawns `argv` with stdin and stdout on /dev/null and stderr written to `err_path`;
// waits for it. Returns the wait status, or -1 (with *error) when it could not start.
// With a `deadline`, a child still running then is killed (SIGKILL) and -2 returned.
int SpawnAndWait(const std::vector<std::string>& argv, const std::string& err_path,
                 std::string* error,
                 std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

// How a run of restarted processes ended.
struct RestartedRun {
  using Clock = std::chrono::steady_clock;
  enum class Outcome { kExited, kSpawnFailed, kTooManyRestarts, kTimedOut, kInterrupted };
  Outcome outcome = Outcome::kExited;
  std::string error;             // kSpawnFailed, kTooManyRestarts, kTimedOut, kInterrupted
  int exit_code = 0;             // kExited: the last process's exit code (128+N when killed by N)
  int runs = 0;                  // processes started
  int restarts = 0;              // processes killed by SIGKILL and started again
  double wall_s = 0;             // Σ over the processes
  Clock::time_point last_start;  // when the last process started
  std::optional<Clock::time_point> crashed_at;  // when the last crash was seen
  std::string last_stderr;                      // the path of the last process's stderr
};

// Runs command(n) for n = 1, 2, ...: the next one whenever the previous process was
// killed by SIGKILL (how a chaos crash ends a process), at most `max_restarts` times.
// Process n's stderr goes to DIR/stderr-n.log. A `timeout_ms` > 0 bounds the whole
// series: the process running when it expires is killed (kTimedOut).
RestartedRun RunRestarting(const std::function<std::vector<std::string>(int)>& command,
                           const std::string& dir, int max_restarts, int64_t timeout_ms = 0);

// A sink whose output is read back after a run.
struct ReadBackSink {
  std::string id;
  SinkOutput output;             // path relative to the run's folder
  std::vector<std::string> key;  // key fields, when known (see OutputPlan)
};

// Where the outputs of a run go and which of them are read back: every `file` and
// `sqlite` sink and every dead-letter file written into the run's folder ("@DIR@" in a
// redirect), and, with `capture_stdout`, every `stdout` sink turned into a `file` sink
// there (its format and field kept). A sink's key is its `sqlite` key, else the key of
// the keyed operators feeding it when they agree (with window_start for windows), else
// empty.
struct OutputPlan {
  std::vector<ReadBackSink> sinks;
  std::vector<std::string> redirects;  // --set PATH=VALUE, "@DIR@" for the run's folder
  std::vector<std::string> notes;      // sinks that cannot be read back
};
OutputPlan PlanOutputs(const PipelineSpec& spec, bool capture_stdout);

// `s` with "@DIR@" replaced by `dir`.
std::string ExpandDir(const std::string& s, const std::string& dir);

// A fresh folder TMPDIR/onceflow-PREFIX-XXXXXX (or /tmp/...); false with *error.
bool MakeTempFolder(const std::string& prefix, std::string* path, std::string* error);

}  // namespace onceflow::cli

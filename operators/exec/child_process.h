// ChildProcess: a child program with its stdin, stdout and stderr on pipes, driven by
// line exchanges — the transport of the `exec` operator (SPEC §5).
//
// Exchange() writes a block of lines and reads back a given number of answer lines,
// polling all three pipes together: the child may answer (or log on stderr) while the
// block is still being written, and each side's pipe buffer fills only as far as the
// other side lets it, so a child that writes a lot cannot deadlock against a host that
// writes a lot. Stderr is handed over line by line as it arrives.
//
// The child is started with posix_spawn (safe in a threaded process, unlike fork),
// in the folder `cwd`, with every descriptor but its three pipes closed. Stop() closes
// its stdin (the end-of-input signal), waits briefly for it to exit, then SIGKILLs and
// reaps it, so no zombie is left. If onceflow itself is killed, the child sees EOF on
// stdin and is expected to exit; init reaps it then.
//
// Threading: one instance per operator instance (task thread).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "runtime/core/status.h"

namespace onceflow::ops {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Stop(); }

  // Starts argv (argv[0] searched on PATH when it holds no '/') in folder `cwd`.
  Status Start(const std::vector<std::string>& argv, const std::string& cwd);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // Writes `input` (complete lines) and reads until `answers` holds `expected` lines
  // (without their '\n'), forwarding stderr lines to `on_stderr`. A Runtime status when
  // the child closes stdout or exits first (with its exit status), or when no output
  // arrives for `timeout_ms`.
  Status Exchange(const std::string& input, size_t expected, std::vector<std::string>* answers,
                  int timeout_ms, const std::function<void(const std::string&)>& on_stderr);

  // Closes stdin, gives the child `grace_ms` to exit, then kills it; reaps it. Forwards
  // what it still wrote on stderr. Idempotent.
  void Stop(int grace_ms = 1000,
            const std::function<void(const std::string&)>& on_stderr = nullptr);

 private:
  // How the child ended, for messages: "exited with status 3", "was killed by signal 9",
  // or "is still running".
  std::string ExitText();
  void DrainStderr(const std::function<void(const std::string&)>& on_stderr, bool flush_partial);

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;  // our ends: child's stdin, stdout, stderr
  std::string out_buf_, err_buf_;
  int exit_status_ = -1;  // waitpid status once reaped
};

}  // namespace onceflow::ops

// See child_process.h.
#include "operators/exec/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

extern char** environ;

namespace onceflow::ops {

namespace {

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Moves every complete line of *buf into *lines (or to fn), keeping the partial tail.
template <typename F>
void TakeLines(std::string* buf, F&& fn) {
  size_t start = 0;
  for (size_t nl; (nl = buf->find('\n', start)) != std::string::npos; start = nl + 1) {
    fn(buf->substr(start, nl - start));
  }
  buf->erase(0, start);
}

}  // namespace

Status ChildProcess::Start(const std::vector<std::string>& argv, const std::string& cwd) {
  Stop();
  // Writing to a child that died raises SIGPIPE, whose default action would kill onceflow
  // without a word. `onceflow run` ignores it already; a host that did not (a test, an
  // embedding) gets the same: EPIPE is handled below. Checked at every start (one
  // syscall per child), so a host that resets the default is covered too.
  struct sigaction cur {};
  if (::sigaction(SIGPIPE, nullptr, &cur) == 0 && cur.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }
  int pin[2], pout[2], perr[2];
  // O_CLOEXEC: another thread spawning at the same time must not inherit our ends.
  if (::pipe2(pin, O_CLOEXEC) != 0) return Status::Runtime(Errno("pipe"));
  if (::pipe2(pout, O_CLOEXEC) != 0) {
    ::close(pin[0]), ::close(pin[1]);
    return Status::Runtime(Errno("pipe"));
  }
  if (::pipe2(perr, O_CLOEXEC) != 0) {
    ::close(pin[0]), ::close(pin[1]), ::close(pout[0]), ::close(pout[1]);
    return Status::Runtime(Errno("pipe"));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // dup2 clears FD_CLOEXEC on the copies; closefrom(3) drops everything else the
  // process has open (state database, output files, other children's pipes).
  posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
  posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
  posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child starts with default SIGPIPE handling (onceflow ignores it), so a child
  // writing to a closed stdout dies as a normal filter would.
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &def);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(pin[0]), ::close(pout[1]), ::close(perr[1]);
  if (rc != 0) {
    ::close(pin[1]), ::close(pout[0]), ::close(perr[0]);
    return Status::Runtime("cannot start '" + argv[0] + "': " + std::strerror(rc));
  }
  pid_ = pid;
  in_ = pin[1];
  out_ = pout[0];
  err_ = perr[0];
  exit_status_ = -1;
  out_buf_.clear();
  err_buf_.clear();
  for (int fd : {in_, out_, err_}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return Status::Ok();
}

std::string ChildProcess::ExitText() {
  if (exit_status_ < 0 && pid_ > 0) {
    // It closed its stdout; give it a moment to finish exiting so the message can say how.
    for (int i = 0; i < 50 && exit_status_ < 0; ++i) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        exit_status_ = st;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (exit_status_ < 0) return "is still running";
  if (WIFEXITED(exit_status_))
    return "exited with status " + std::to_string(WEXITSTATUS(exit_status_));
  if (WIFSIGNALED(exit_status_))
    return "was killed by signal " + std::to_string(WTERMSIG(exit_status_));
  return "ended";
}

void ChildProcess::DrainStderr(const std::function<void(const std::string&)>& on_stderr,
                               bool flush_partial) {
  char buf[4096];
  while (err_ >= 0) {
    const ssize_t n = ::read(err_, buf, sizeof buf);
    if (n > 0) {
      err_buf_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) CloseFd(&err_);
    break;  // EAGAIN: nothing more for now
  }
  TakeLines(&err_buf_, [&](std::string line) {
    if (on_stderr) on_stderr(line);
  });
  if (flush_partial && !err_buf_.empty() && on_stderr) on_stderr(err_buf_);
  if (flush_partial) err_buf_.clear();
}

Status ChildProcess::Exchange(const std::string& input, size_t expected,
                              std::vector<std::string>* answers, int timeout_ms,
                              const std::function<void(const std::string&)>& on_stderr) {
  if (pid_ <= 0) return Status::Runtime("the child process is not running");
  size_t written = 0;
  // Answers already buffered (none in the protocol, but a child may run ahead).
  TakeLines(&out_buf_, [&](std::string line) { answers->push_back(std::move(line)); });
  char buf[65536];
  while (answers->size() < expected) {
    pollfd fds[3];
    int n = 0;
    const bool writing = written < input.size() && in_ >= 0;
    if (writing) fds[n++] = {in_, POLLOUT, 0};
    fds[n++] = {out_, POLLIN, 0};
    const int err_slot = err_ >= 0 ? n : -1;
    if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
    const int r = ::poll(fds, static_cast<nfds_t>(n), timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::Runtime(Errno("poll"));
    }
    if (r == 0) {
      return Status::Runtime("no answer from the child process (pid " + std::to_string(pid_) +
                             ") for " + std::to_string(timeout_ms) + " ms; " +
                             std::to_string(answers->size()) + " of " + std::to_string(expected) +
                             " answers received");
    }
    if (writing && (fds[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t w = ::write(in_, input.data() + written, input.size() - written);
      if (w > 0) {
        written += static_cast<size_t>(w);
      } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        // EPIPE: the child closed its stdin (or died); its stdout tells the rest.
        CloseFd(&in_);
      }
    }
    if (err_slot >= 0 && fds[err_slot].revents) DrainStderr(on_stderr, false);
    const pollfd& o = fds[writing ? 1 : 0];
    if (o.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t got = ::read(out_, buf, sizeof buf);
      if (got > 0) {
        out_buf_.append(buf, static_cast<size_t>(got));
        TakeLines(&out_buf_, [&](std::string line) { answers->push_back(std::move(line)); });
      } else if (got == 0) {
        DrainStderr(on_stderr, true);
        return Status::Runtime("the child process (pid " + std::to_string(pid_) + ") " +
                               ExitText() + " after " + std::to_string(answers->size()) + " of " +
                               std::to_string(expected) + " answers");
      } else if (errno != EAGAIN && errno != EINTR) {
        return Status::Runtime(Errno("read from the child process"));
      }
    }
  }
  if (written < input.size()) {
    return Status::Runtime("the child process answered before reading all its input");
  }
  DrainStderr(on_stderr, false);
  return Status::Ok();
}

void ChildProcess::Stop(int grace_ms, const std::function<void(const std::string&)>& on_stderr) {
  if (pid_ <= 0) return;
  CloseFd(&in_);  // EOF: a well-behaved child exits now
  bool reaped = exit_status_ >= 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (!reaped && std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      exit_status_ = st;
      reaped = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!reaped) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  DrainStderr(on_stderr, true);
  CloseFd(&out_);
  CloseFd(&err_);
  pid_ = -1;
}

}  // namespace onceflow::ops

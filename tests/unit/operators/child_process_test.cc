// ChildProcess, the transport of the `exec` operator: exchanges, a child that dies while
// its input is being written (EPIPE, not SIGPIPE), stderr forwarding, timeouts, and that
// Stop() reaps the child.
#include "operators/exec/child_process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace onceflow::ops {

TEST_CASE("child process: one answer line per input line, stderr forwarded") {
  ChildProcess c;
  REQUIRE(c.Start({"sh", "-c", "echo hello >&2; while read l; do echo \"[$l]\"; done"}, "/").ok());
  std::vector<std::string> answers, errs;
  Status st =
      c.Exchange("1\n2\n3\n", 3, &answers, 5000, [&](const std::string& l) { errs.push_back(l); });
  REQUIRE(st.ok());
  CHECK(answers == std::vector<std::string>{"[1]", "[2]", "[3]"});
  const pid_t pid = c.pid();
  c.Stop(1000, [&](const std::string& l) { errs.push_back(l); });
  CHECK(errs == std::vector<std::string>{"hello"});
  CHECK_FALSE(c.running());
  // Reaped: the pid is no child of ours any more.
  CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
}

TEST_CASE("child process: a child that exits while a large input is written is an error") {
  // Ignoring SIGPIPE is ChildProcess's job when the host has not done it: restore the
  // default first, so this test dies instead of passing if it does not.
  ::signal(SIGPIPE, SIG_DFL);
  ChildProcess c;
  REQUIRE(c.Start({"sh", "-c", "read l; echo '[]'; exit 7"}, "/").ok());
  std::string big;
  for (int i = 0; i < 100000; ++i) big += "{\"n\":" + std::to_string(i) + "}\n";
  std::vector<std::string> answers;
  Status st = c.Exchange(big, 100000, &answers, 5000, nullptr);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("exited with status 7") != std::string::npos);
  CHECK(answers.size() == 1);
}

TEST_CASE("child process: no answer within the timeout") {
  ChildProcess c;
  REQUIRE(c.Start({"sleep", "30"}, "/").ok());
  std::vector<std::string> answers;
  Status st = c.Exchange("x\n", 1, &answers, 100, nullptr);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("no answer") != std::string::npos);
  c.Stop(0);  // kills and reaps the sleeping child at once
  CHECK_FALSE(c.running());
}

TEST_CASE("child process: does not inherit the host's other descriptors") {
  // A descriptor the host has open without O_CLOEXEC (as a library might), moved to 40,
  // clear of the descriptors a shell uses itself.
  const int devnull = ::open("/dev/null", O_RDONLY);
  REQUIRE(devnull >= 0);
  const int fd = ::fcntl(devnull, F_DUPFD, 40);
  ::close(devnull);
  REQUIRE(fd >= 40);
  ChildProcess c;
  const std::string probe = "read l; if [ -e /proc/$$/fd/" + std::to_string(fd) +
                            " ]; then echo inherited; else echo closed; fi";
  REQUIRE(c.Start({"sh", "-c", probe}, "/").ok());
  std::vector<std::string> answers;
  REQUIRE(c.Exchange("go\n", 1, &answers, 5000, nullptr).ok());
  CHECK(answers[0] == "closed");
  c.Stop();
  ::close(fd);
}

TEST_CASE("child process: a program that does not exist") {
  ChildProcess c;
  Status st = c.Start({"no-such-program-onceflow-test"}, "/");
  CHECK_FALSE(st.ok());
  CHECK_FALSE(c.running());
}

}  // namespace onceflow::ops

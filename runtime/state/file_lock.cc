// FileLock: see file_lock.h for the contract and the POSIX pitfalls it works around.
#include "runtime/state/file_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

namespace onceflow {
namespace {

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::set<std::pair<unsigned long long, unsigned long long>>& Registry() {
  static auto* held = new std::set<std::pair<unsigned long long, unsigned long long>>();
  return *held;
}

std::string ReadPid(int fd) {
  char buf[32] = {0};
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Status FileLock::Acquire(const std::string& lock_path, const std::string& what) {
  if (fd_ >= 0) return Status::State("state file " + what + ": lock already held");
  std::lock_guard<std::mutex> guard(RegistryMutex());
  // Check the registry before opening: opening and then closing a second descriptor of a
  // file we already lock would release our own lock (see the header).
  struct stat st;
  if (stat(lock_path.c_str(), &st) == 0 &&
      Registry().count({static_cast<unsigned long long>(st.st_dev),
                        static_cast<unsigned long long>(st.st_ino)}) != 0) {
    return Status::State("state file " + what + " is already open in this process (lock " +
                         lock_path + ")");
  }
  bool created = true;
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (fd < 0) {
    return Status::State("state file " + what + ": cannot open lock file " + lock_path + ": " +
                         std::strerror(errno));
  }
  struct flock fl;
  std::memset(&fl, 0, sizeof(fl));
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file
  if (fcntl(fd, F_SETLK, &fl) != 0) {
    int err = errno;
    std::string pid;
    if (err == EAGAIN || err == EACCES) {
      struct flock probe;
      std::memset(&probe, 0, sizeof(probe));
      probe.l_type = F_WRLCK;
      probe.l_whence = SEEK_SET;
      if (fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK) {
        pid = std::to_string(probe.l_pid);
      } else {
        pid = ReadPid(fd);
      }
      close(fd);
      if (created) unlink(lock_path.c_str());  // cannot happen: we made it, nobody locks it
      return Status::State("state file " + what + " is in use by process " +
                           (pid.empty() ? std::string("?") : pid) + " (lock " + lock_path + ")");
    }
    close(fd);
    return Status::State("state file " + what + ": cannot lock " + lock_path + ": " +
                         std::strerror(err));
  }
  // Only now, holding the lock, write our pid (a waiting process reads it for its message).
  std::string pid = std::to_string(static_cast<long long>(getpid())) + "\n";
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The pid is informational; the lock itself is held. Keep going.
  }
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Status::State("state file " + what + ": cannot stat lock file " + lock_path);
  }
  fd_ = fd;
  created_ = created;
  path_ = lock_path;
  dev_ = static_cast<unsigned long long>(st.st_dev);
  ino_ = static_cast<unsigned long long>(st.st_ino);
  Registry().insert({dev_, ino_});
  return Status::Ok();
}

void FileLock::RemoveIfCreated() {
  if (fd_ < 0) return;
  if (created_) unlink(path_.c_str());  // while still holding the lock
  Release();
}

void FileLock::Release() {
  if (fd_ < 0) return;
  std::lock_guard<std::mutex> guard(RegistryMutex());
  Registry().erase({dev_, ino_});
  close(fd_);  // releases the fcntl lock
  fd_ = -1;
}

}  // namespace onceflow

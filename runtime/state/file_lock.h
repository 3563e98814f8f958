// FileLock: the exclusive, process-lifetime lock that says "this state file is in use".
//
// It is an fcntl (F_SETLK, F_WRLCK) lock on a sidecar file `<state>.lock` that holds the
// holder's pid as text. Why a sidecar and why fcntl:
//   - fcntl locks die with the process, so a crashed run never leaves a stale lock (a pid
//     file alone would refuse every run after a crash);
//   - a lock on the SQLite file itself would be dropped whenever SQLite closes any of its
//     descriptors of that file (POSIX releases all of a process's fcntl locks on a file at
//     the first close() of any descriptor of it).
// The same POSIX rule makes fcntl locks per process: a second lock in the same process
// always "succeeds", and closing its descriptor would silently release the first. So this
// class also keeps a process-wide registry of held lock files (by device and inode) and
// refuses a second acquisition in the same process *without opening the file again*.
// The lock file of a state file in use is never unlinked: unlinking while another process
// is about to lock it would let two processes hold locks on two different inodes of the
// same name. The one exception is RemoveIfCreated, for a file the opener refused.
//
// Threading: Acquire may be called from any thread (the registry is mutex-protected); one
// FileLock object belongs to one owner.
#pragma once

#include <string>

#include "runtime/core/status.h"

namespace onceflow {

class FileLock {
 public:
  FileLock() = default;
  ~FileLock() { Release(); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Takes the lock on `lock_path` (created with mode 0600 when missing) for the file
  // `what` (named in messages), then writes this process's pid into it. Fails with
  // Status::State("state file W is in use by process PID (lock L)") when another process
  // holds it, or "... is already open in this process" for a second holder here.
  Status Acquire(const std::string& lock_path, const std::string& what);
  // Releases the lock (no-op when not held). The file stays, holding a stale pid that
  // nobody trusts: only the fcntl lock is authoritative.
  void Release();
  bool held() const { return fd_ >= 0; }
  // Releases the lock and, when Acquire created the lock file, removes it: for a state
  // file that was refused after the lock was taken (corrupt, another pipeline's), so that
  // refusing leaves nothing behind. A process that opened the lock file in the meantime
  // may then lock the unlinked inode while a third locks a new one; both would be
  // refused by the same check, so the file stays unused either way.
  void RemoveIfCreated();

 private:
  int fd_ = -1;
  bool created_ = false;
  std::string path_;
  unsigned long long dev_ = 0, ino_ = 0;
};

}  // namespace onceflow

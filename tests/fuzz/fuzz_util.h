// Helpers shared by the libFuzzer targets (tests/fuzz): a per-process scratch file for the
// code under test that reads paths, not buffers.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace onceflow::fuzz {

// A file under $TMPDIR (default /tmp) named after the target and the process, so parallel
// fuzzing jobs (-jobs=N) do not share it. Rewritten for every input.
class ScratchFile {
 public:
  ScratchFile(const char* target, const char* suffix) {
    const char* dir = getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/onceflow-fuzz-" + target + "-" +
            std::to_string(getpid()) + suffix;
  }
  ~ScratchFile() { Remove(); }
  const std::string& path() const { return path_; }

  // Replaces the file's contents with data[0, size); false when it could not be written.
  bool Write(const uint8_t* data, size_t size) {
    Remove();
    FILE* f = fopen(path_.c_str(), "wb");
    if (f == nullptr) return false;
    const bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
  }
  void Remove() {
    unlink(path_.c_str());
    // SQLite's side files, should the state-file target leave any behind.
    unlink((path_ + "-wal").c_str());
    unlink((path_ + "-shm").c_str());
    unlink((path_ + "-journal").c_str());
  }

 private:
  std::string path_;
};

}  // namespace onceflow::fuzz

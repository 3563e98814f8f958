// Helpers shared by the state store's unit tests: a temporary folder, whole-file reads and
// writes, and opening a store that must open.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "doctest/doctest.h"
#include "runtime/state/store.h"

namespace onceflow {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/onceflow_state_test_XXXXXX";
    char* d = mkdtemp(tmpl);
    REQUIRE(d != nullptr);
    path_ = d;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// An OpenMode without fault injection (brace-initialising it would leave the hook out).
inline OpenMode Mode(bool create_if_missing, bool read_only) {
  OpenMode m;
  m.create_if_missing = create_if_missing;
  m.read_only = read_only;
  return m;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

inline std::unique_ptr<StateStore> MustOpen(const std::string& path,
                                            const std::string& pipeline = "p",
                                            OpenMode mode = OpenMode()) {
  std::unique_ptr<StateStore> s;
  Status st = StateStore::Open(path, pipeline, mode, &s);
  INFO(st.message());
  REQUIRE(st.ok());
  return s;
}

}  // namespace onceflow

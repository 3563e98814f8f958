// Helpers shared by the unit tests of cli/: records from JSON text, a temporary folder.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

#include "cli/sink_diff.h"

namespace onceflow::cli::testing {

inline Records R(std::initializer_list<const char*> lines) {
  Records out;
  for (const char* l : lines) out.push_back(nlohmann::json::parse(l));
  return out;
}

// A temporary folder removed at the end of the test.
struct TempDir {
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "unit-cli-XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string File(const std::string& name, const std::string& text) const {
    const std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string path;
};

}  // namespace onceflow::cli::testing

// Logging set-up: spdlog on stderr in text or JSON lines. Diagnostics never go to stdout.
#pragma once

#include <string>

namespace onceflow::cli {

struct LogSettings {
  bool quiet = false;
  std::string level = "info";
  std::string format = "text";
};

void SetUpLogging(const LogSettings& s);
// True when the live status line may be drawn (stderr is a TTY and not --quiet).
bool StatusLineEnabled();

}  // namespace onceflow::cli

#include "cli/logging.h"

#include <unistd.h>

#include <chrono>
#include <memory>

#include "runtime/core/record.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace onceflow::cli {

namespace {

bool g_status_line = false;

// One JSON object per log line: {"ts": ..., "level": ..., "logger": ..., "msg": ...}.
class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string out = "{\"ts\":";
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  msg.time.time_since_epoch()).count();
    out += std::to_string(ms);
    out += ",\"level\":";
    auto lvl = spdlog::level::to_string_view(msg.level);
    AppendJsonString(std::string_view(lvl.data(), lvl.size()), &out);
    out += ",\"msg\":";
    AppendJsonString(std::string_view(msg.payload.data(), msg.payload.size()), &out);
    out += "}\n";
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

void SetUpLogging(const LogSettings& s) {
  auto logger = spdlog::stderr_color_mt("onceflow");
  spdlog::set_default_logger(logger);
  if (s.format == "json") {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("onceflow: %^%l%$: %v");
  }
  auto level = spdlog::level::from_str(s.level);
  if (s.quiet && level < spdlog::level::err) level = spdlog::level::err;
  logger->set_level(level);
  g_status_line = !s.quiet && isatty(STDERR_FILENO) && s.format == "text";
}

bool StatusLineEnabled() { return g_status_line; }

}  // namespace onceflow::cli

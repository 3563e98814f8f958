// on_error policies: fail / skip / dead_letter. See error_handler.h.
#include "runtime/exec/error_handler.h"

#include <cerrno>
#include <cstring>

#include "spdlog/spdlog.h"

namespace onceflow {
namespace {

// Records in messages are cut to this many bytes: a 1 MB line must not become a 1 MB
// error message.
constexpr size_t kMaxShown = 500;

std::string Shorten(std::string_view s) {
  if (s.size() <= kMaxShown) return std::string(s);
  // Do not cut a UTF-8 sequence in half.
  size_t n = kMaxShown;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n)) + "...";
}

}  // namespace

ErrorSink::ErrorSink(std::string node_id, std::string dead_letter_path)
    : node_id_(std::move(node_id)), path_(std::move(dead_letter_path)) {}

ErrorSink::~ErrorSink() {
  if (file_ != nullptr) std::fclose(file_);
}

Status ErrorSink::AppendDeadLetter(std::string_view line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (file_ == nullptr) {
    if (path_.empty()) {
      return Status::Invalid("node '" + node_id_ +
                             "': on_error: dead_letter needs a dead_letter path");
    }
    // Opened lazily: a run without data errors leaves no empty file behind.
    file_ = std::fopen(path_.c_str(), "ae");
    if (file_ == nullptr) {
      return Status::IOError("node '" + node_id_ + "': cannot open dead-letter file '" + path_ +
                             "': " + std::strerror(errno));
    }
  }
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fputc('\n', file_) == EOF) {
    return Status::IOError("node '" + node_id_ + "': cannot write dead-letter file '" + path_ +
                           "': " + std::strerror(errno));
  }
  return Status::Ok();
}

Status ErrorSink::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (file_ != nullptr && std::fflush(file_) != 0) {
    return Status::IOError("node '" + node_id_ + "': cannot write dead-letter file '" + path_ +
                           "': " + std::strerror(errno));
  }
  return Status::Ok();
}

bool ErrorSink::TakeWarning(bool* last) {
  uint64_t n = warnings_.fetch_add(1, std::memory_order_relaxed);
  *last = n + 1 == kMaxWarnings;
  return n < kMaxWarnings;
}

std::string NodeErrorHandler::SourceName(const Origin& origin) const {
  if (spec_ == nullptr || origin.source < 0 ||
      origin.source >= static_cast<int32_t>(spec_->nodes.size())) {
    return "";
  }
  return spec_->nodes[origin.source].id;
}

Status NodeErrorHandler::OnRecordError(const Record& rec, std::string_view error) {
  std::string json;
  rec.AppendJson(&json);
  return Handle(rec.origin, error, json, json);
}

Status NodeErrorHandler::OnRawError(const Origin& origin, std::string_view raw,
                                    std::string_view error) {
  std::string json;
  AppendJsonString(raw, &json);
  return Handle(origin, error, json, raw);
}

Status NodeErrorHandler::Handle(const Origin& origin, std::string_view error,
                                const std::string& record_json, std::string_view shown) {
  const std::string source = SourceName(origin);
  switch (node_->on_error) {
    case OnError::kFail: {
      std::string msg = "node '" + node_->id + "': " + std::string(error);
      if (!source.empty()) msg += " at " + source + ":" + std::to_string(origin.position);
      msg += ": " + Shorten(shown);
      return Status::DataError(std::move(msg));
    }
    case OnError::kSkip: {
      metrics_->skipped.fetch_add(1, std::memory_order_relaxed);
      bool last = false;
      if (sink_->TakeWarning(&last)) {
        spdlog::warn("node '{}': skipped a record: {}{}: {}", node_->id, error,
                     source.empty() ? std::string()
                                    : " at " + source + ":" + std::to_string(origin.position),
                     Shorten(shown));
        if (last) {
          spdlog::warn("node '{}': further skipped records are counted but not logged", node_->id);
        }
      }
      return Status::Ok();
    }
    case OnError::kDeadLetter: {
      std::string line = "{\"node\":";
      AppendJsonString(node_->id, &line);
      line += ",\"error\":";
      AppendJsonString(error, &line);
      line += ",\"source\":";
      if (source.empty()) {
        line += "null,\"position\":null";
      } else {
        AppendJsonString(source, &line);
        line += ",\"position\":" + std::to_string(origin.position);
      }
      line += ",\"record\":";
      line += record_json;
      line += '}';
      if (hold_) {
        held_.push_back(std::move(line));
      } else {
        ONCEFLOW_RETURN_IF_ERROR(sink_->AppendDeadLetter(line));
      }
      metrics_->skipped.fetch_add(1, std::memory_order_relaxed);
      return Status::Ok();
    }
  }
  return Status::Ok();
}

}  // namespace onceflow

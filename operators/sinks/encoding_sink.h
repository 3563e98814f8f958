// EncodingSink: the shared body of the `file` and `stdout` sinks — encode each record
// (jsonl / csv / lines) into a large in-memory buffer and hand it to write(2) when it
// fills or on Flush. A record the format cannot express is a data error for ctx.errors.
//
// Durability: an acknowledged Flush means write(2) returned for every byte; a durable
// Flush also fdatasyncs (file descriptors that cannot be synced, like a pipe, are fine).
//
// Threading: one instance per task thread.
#pragma once

#include <string>

#include "operators/formats/record_encoder.h"
#include "operators/sinks/fs_util.h"
#include "runtime/core/node.h"

namespace onceflow::ops {

class EncodingSink : public Sink {
 public:
  EncodingSink(Format format, std::string field, std::string what)
      : encoder_(format, std::move(field)), what_(std::move(what)) {}

  Status Write(RecordBatch& in) override {
    std::string error;
    for (const Record& rec : in) {
      if (!encoder_.Append(rec, &buf_, &error)) {
        ONCEFLOW_RETURN_IF_ERROR(ctx_->errors->OnRecordError(rec, error));
        continue;
      }
    }
    if (buf_.size() >= kFlushBytes) return Drain();
    return Status::Ok();
  }

  Status Flush(bool durable) override;

 protected:
  static constexpr size_t kFlushBytes = 1 << 20;

  // Writes the buffer out.
  Status Drain() {
    if (buf_.empty()) return Status::Ok();
    Status st = WriteAll(fd_, buf_, what_);
    buf_.clear();
    return st;
  }

  RecordEncoder encoder_;
  std::string what_;  // "'out/x.jsonl'" or "stdout", for messages
  std::string buf_;
  int fd_ = -1;
  NodeContext* ctx_ = nullptr;
};

}  // namespace onceflow::ops

// The `stdin` source: records from standard input (lines, jsonl or csv). Reads fd 0 in
// large chunks, waiting at most 50 ms in poll(2) so stop requests are seen while the
// writer is quiet.
//
// Replay: stdin cannot be rewound. Seek accepts only the current position (a no-op);
// journaling the stream into the state file, so that at-least-once and effectively-once
// can replay it, is the executor's job (SPEC §3) and is not done here.
//
// Threading: one instance (max_parallelism 1), called from its task thread only.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/formats/stream_decoder.h"

namespace onceflow::ops {

namespace {

constexpr int kPollMs = 50;
constexpr size_t kChunk = 1 << 20;

class StdinSource : public Source {
 public:
  explicit StdinSource(const NodeSpec& spec, int fd) : fd_(fd) {
    ParseFormat(spec.options.GetString("format", "lines"), &format_);
  }

  Status Open(NodeContext& ctx) override {
    decoder_ = std::make_unique<StreamDecoder>(format_, ctx.node_index, ctx.errors);
    eof_ = false;
    return Status::Ok();
  }

  Status Read(size_t max, Emitter& out, bool* end) override {
    *end = false;
    size_t total = 0;
    bool waited = false;
    while (total < max) {
      size_t got = 0;
      ONCEFLOW_RETURN_IF_ERROR(decoder_->Decode(max - total, eof_, out, &got));
      total += got;
      if (total >= max) break;
      if (eof_) {
        *end = decoder_->buffered() == 0;
        break;
      }
      // Wait for input once per Read; after that, take only what is already there.
      struct pollfd p = {fd_, POLLIN, 0};
      int rc = ::poll(&p, 1, waited || total > 0 ? 0 : kPollMs);
      waited = true;
      if (rc < 0) {
        if (errno == EINTR) break;
        return Status::IOError(std::string("cannot poll stdin: ") + std::strerror(errno));
      }
      if (rc == 0) break;  // nothing available now
      size_t avail = 0;
      char* buf = decoder_->WritableSpace(kChunk / 2, &avail);
      ssize_t n = ::read(fd_, buf, avail);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) break;
        return Status::IOError(std::string("cannot read stdin: ") + std::strerror(errno));
      }
      if (n == 0) {
        eof_ = true;  // the final partial line is decoded at the top of the loop
        continue;
      }
      decoder_->Commit(static_cast<size_t>(n));
    }
    return Status::Ok();
  }

  SourcePosition Position() const override {
    SourcePosition pos;
    pos.offset = decoder_->offset();
    pos.count = decoder_->count();
    return pos;
  }

  Status Seek(const SourcePosition& pos) override {
    if (pos.offset == decoder_->offset() && pos.count == decoder_->count()) {
      return Status::Ok();
    }
    return Status::Runtime("stdin cannot be rewound (to byte " + std::to_string(pos.offset) +
                           "; at byte " + std::to_string(decoder_->offset()) + ")");
  }

 private:
  int fd_;
  Format format_ = Format::kLines;
  bool eof_ = false;
  std::unique_ptr<StreamDecoder> decoder_;
};

}  // namespace

// For tests: a stdin source reading another descriptor (a pipe).
std::unique_ptr<Source> MakeStdinSourceForFd(const NodeSpec& spec, int fd) {
  return std::make_unique<StdinSource>(spec, fd);
}

NodeTypeDef StdinSourceDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSource;
  d.type = "stdin";
  d.summary = "read records from standard input (a new stream on every run)";
  d.options = {
      EnumOption("format", FormatChoices(), "lines",
                 "lines: {\"line\": TEXT} per line; jsonl: one JSON object per line; csv: "
                 "header row, then one object per row"),
  };
  d.max_parallelism = 1;
  d.make_source = [](const NodeSpec& spec) {
    return std::make_unique<StdinSource>(spec, STDIN_FILENO);
  };
  return d;
}

}  // namespace onceflow::ops

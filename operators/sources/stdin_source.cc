// The `stdin` source: records from standard input (lines, jsonl or csv). Reads fd 0 in
// large chunks, waiting at most 50 ms in poll(2) so stop requests are seen while the
// writer is quiet.
//
// Replay. Standard input cannot be rewound, so a guarantee that replays (effectively-once)
// hands the source a journal (NodeContext::journal, kept in the state file:
// runtime/state/journal.h), and then:
//   - Every chunk read from fd 0 is appended to the journal before the decoder sees it,
//     so no record ever comes from bytes a crash could lose.
//   - Offsets are offsets into the journaled stream, which runs on across runs: each
//     run's stdin continues the stream where the journal ends (to continue a producer
//     exactly, start it at that byte: the run logs it).
//   - Open starts at offset 0 and Seek(pos) at pos.offset; either way the source serves
//     the journaled bytes from there first (so a run with nothing to resume from replays
//     the whole journal: what a run that crashed before its first checkpoint had read),
//     and only when the journal is exhausted reads fd 0. The input ends at fd 0's EOF.
//   - A csv stream resumed past 0 reads its header back from the start of the journal.
// Position() is exact at record boundaries: the decoder's offset just after the last
// record it produced, not the bytes read.
// Without a journal (at-most-once) Seek accepts only the current position (a no-op).
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
    journal_ = ctx.journal;
    eof_ = false;
    read_pos_ = 0;
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
      if (journal_ != nullptr && read_pos_ < journal_->size()) {
        ONCEFLOW_RETURN_IF_ERROR(FillFromJournal());  // replay: no waiting
        continue;
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
      if (journal_ != nullptr) {
        // Durable before decoded: a record never comes from bytes a crash could lose.
        Status st = journal_->Append(std::string_view(buf, static_cast<size_t>(n)));
        if (!st.ok()) return st.WithContext("cannot journal stdin");
      }
      read_pos_ += static_cast<uint64_t>(n);
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
    if (journal_ == nullptr) {
      if (pos.offset == decoder_->offset() && pos.count == decoder_->count()) {
        return Status::Ok();
      }
      return Status::Runtime("stdin cannot be rewound (to byte " + std::to_string(pos.offset) +
                             "; at byte " + std::to_string(decoder_->offset()) + ")");
    }
    if (pos.offset > journal_->size()) {
      return Status::State("stdin journal holds " + std::to_string(journal_->size()) +
                           " bytes; cannot resume at byte " + std::to_string(pos.offset));
    }
    if (format_ == Format::kCsv && pos.offset > 0 && !decoder_->has_header()) {
      ONCEFLOW_RETURN_IF_ERROR(LoadCsvHeader());
    }
    decoder_->Reset(pos.offset, pos.count, pos.count);
    read_pos_ = pos.offset;
    eof_ = false;
    return Status::Ok();
  }

 private:
  // Hands the decoder the next journaled bytes from read_pos_.
  Status FillFromJournal() {
    size_t avail = 0;
    char* buf = decoder_->WritableSpace(kChunk / 2, &avail);
    ONCEFLOW_RETURN_IF_ERROR(journal_->Read(read_pos_, avail, &scratch_));
    if (scratch_.empty()) {
      return Status::State("stdin journal: nothing to replay at byte " + std::to_string(read_pos_) +
                           " of " + std::to_string(journal_->size()));
    }
    std::memcpy(buf, scratch_.data(), scratch_.size());
    decoder_->Commit(scratch_.size());
    read_pos_ += scratch_.size();
    return Status::Ok();
  }

  // The csv header, decoded from the start of the journaled stream.
  Status LoadCsvHeader() {
    std::vector<std::string> header;
    ONCEFLOW_RETURN_IF_ERROR(ReadCsvHeaderFrom(
                                 [&](uint64_t pos, char* buf, size_t avail, size_t* n) {
                                   ONCEFLOW_RETURN_IF_ERROR(journal_->Read(pos, avail, &scratch_));
                                   std::memcpy(buf, scratch_.data(), scratch_.size());
                                   *n = scratch_.size();
                                   return Status::Ok();
                                 },
                                 &header)
                                 .WithContext("stdin journal"));
    if (header.empty()) return Status::State("stdin journal has no csv header to resume with");
    decoder_->SetHeader(std::move(header));
    return Status::Ok();
  }

  int fd_;
  Format format_ = Format::kLines;
  bool eof_ = false;
  std::unique_ptr<StreamDecoder> decoder_;
  SourceJournal* journal_ = nullptr;  // null: not journaled (at-most-once)
  uint64_t read_pos_ = 0;             // stream offset of the next byte to hand the decoder
  std::string scratch_;
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
  d.journaled = true;
  d.summary = "read records from standard input (journaled under effectively-once)";
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

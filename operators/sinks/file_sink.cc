// The `file` sink: appends records to one file as jsonl, csv or lines, through a 1 MiB
// buffer (write(2) when it fills and on Flush; Flush(durable) also fdatasyncs).
//
// Open: missing parent folders are created. A fresh start (no checkpoint to resume)
// truncates the file, as `>` would, and fsyncs its folder so the truncation survives a
// power cut. A resumed run appends; it first cuts a torn last line (the tail of a write
// that a crash interrupted) back to the last newline. A resume from a checkpoint that
// recorded this file's length (NodeContext::resume_length) instead cuts the file back to
// exactly that length — what was appended after the checkpoint is written again by the
// replay — and refuses (Status::State) a file shorter than that: it lost committed output.
// If the checkpoint recorded another path (the path was changed with --set), the new file
// starts empty. A csv file that already has content keeps its header: rows follow its
// columns.
//
// PreCommit (at each checkpoint barrier): writes the buffer out, fdatasyncs, and reports
// the path and length, which the checkpoint records.
//
// Threading: one instance (max_parallelism 1), called from its task thread only.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/formats/csv.h"
#include "operators/sinks/encoding_sink.h"
#include "operators/sources/file_reader.h"
#include "spdlog/spdlog.h"

namespace onceflow::ops {

namespace {

Format FormatOf(const NodeSpec& spec) {
  Format f = Format::kJsonl;
  ParseFormat(spec.options.GetString("format", "jsonl"), &f);
  return f;
}

class FileSink : public EncodingSink {
 public:
  explicit FileSink(const NodeSpec& spec)
      : EncodingSink(FormatOf(spec), spec.options.GetString("field", "line"),
                     "'" + spec.options.GetPath("path") + "'"),
        path_(spec.options.GetPath("path")),
        format_(FormatOf(spec)),
        field_(spec.options.GetString("field", "line")) {}

  ~FileSink() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    // Re-opened after a recovery: what was buffered belongs to the abandoned attempt.
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
    encoder_ = RecordEncoder(format_, field_);
    ONCEFLOW_RETURN_IF_ERROR(MakeParentDirs(path_));
    struct stat st;
    bool existed = ::stat(path_.c_str(), &st) == 0;
    // O_RDWR: a resumed run reads the torn tail and the csv header back.
    int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC;
    const bool cut_to_checkpoint = !ctx.fresh_start && ctx.resume_length >= 0;
    const bool empty_it = ctx.fresh_start || (cut_to_checkpoint && ctx.resume_path != path_);
    if (empty_it) flags |= O_TRUNC;
    if (cut_to_checkpoint && !empty_it && !existed) {
      return Status::State("output file '" + path_ + "' is missing, but checkpoint holds " +
                           std::to_string(ctx.resume_length) +
                           " bytes of it (use --fresh to start over)");
    }
    fd_ = ::open(path_.c_str(), flags, 0666);
    if (fd_ < 0) return Status::IOError(FileErrorMessage("open", path_, errno));
    if (empty_it || !existed) {
      // The new or emptied file must stay so after a power cut.
      ONCEFLOW_RETURN_IF_ERROR(FsyncParentDir(path_));
      return Status::Ok();
    }
    if (cut_to_checkpoint) {
      ONCEFLOW_RETURN_IF_ERROR(CutTo(ctx.resume_length));
    } else {
      ONCEFLOW_RETURN_IF_ERROR(CutTornLine());
    }
    if (format_ == Format::kCsv) ONCEFLOW_RETURN_IF_ERROR(ReadCsvHeader());
    return Status::Ok();
  }

  Status PreCommit(SinkPreCommit* out) override {
    ONCEFLOW_RETURN_IF_ERROR(Flush(true));
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::IOError(FileErrorMessage("stat", path_, errno));
    out->path = path_;
    out->length = st.st_size;
    return Status::Ok();
  }

  Status Close() override {
    Status st;
    if (fd_ >= 0) {
      st = Drain();
      ::close(fd_);
      fd_ = -1;
    }
    return st;
  }

 private:
  // Cuts the file back to `length`, the length a checkpoint recorded (and synced).
  Status CutTo(int64_t length) {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::IOError(FileErrorMessage("stat", path_, errno));
    if (st.st_size < length) {
      return Status::State("output file '" + path_ + "' has " + std::to_string(st.st_size) +
                           " bytes, fewer than the " + std::to_string(length) +
                           " its checkpoint committed: it was truncated or replaced outside "
                           "onceflow (use --fresh to start over)");
    }
    if (st.st_size == length) return Status::Ok();
    spdlog::info("{}: cutting {} bytes written after the checkpoint", what_,
                 static_cast<long long>(st.st_size - length));
    if (::ftruncate(fd_, length) != 0 || ::fdatasync(fd_) != 0) {
      return Status::IOError(FileErrorMessage("truncate", path_, errno));
    }
    return Status::Ok();
  }

  // Cuts a last line without its newline: it is the torn tail of an interrupted write.
  Status CutTornLine() {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::IOError(FileErrorMessage("stat", path_, errno));
    off_t size = st.st_size;
    if (size == 0) return Status::Ok();
    char last = 0;
    if (::pread(fd_, &last, 1, size - 1) != 1) {
      return Status::IOError(FileErrorMessage("read", path_, errno));
    }
    if (last == '\n') return Status::Ok();
    off_t keep = 0;
    char chunk[64 * 1024];
    off_t end = size;
    while (end > 0 && keep == 0) {
      off_t start = end > static_cast<off_t>(sizeof chunk) ? end - sizeof chunk : 0;
      ssize_t n = ::pread(fd_, chunk, end - start, start);
      if (n <= 0) return Status::IOError(FileErrorMessage("read", path_, errno));
      for (ssize_t i = n - 1; i >= 0; --i) {
        if (chunk[i] == '\n') {
          keep = start + i + 1;
          break;
        }
      }
      end = start;
    }
    spdlog::warn("{}: cutting a torn last line ({} bytes) left by an interrupted run", what_,
                 static_cast<long long>(size - keep));
    if (::ftruncate(fd_, keep) != 0)
      return Status::IOError(FileErrorMessage("truncate", path_, errno));
    return Status::Ok();
  }

  // An existing csv file already has its header: continue with its columns.
  Status ReadCsvHeader() {
    std::vector<std::string> header;
    ONCEFLOW_RETURN_IF_ERROR(ReadCsvHeaderFromFd(fd_, path_, &header).WithContext(what_));
    if (!header.empty()) encoder_.SetCsvHeader(header);
    return Status::Ok();
  }

  std::string path_;
  Format format_;
  std::string field_;
};

}  // namespace

NodeTypeDef FileSinkDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSink;
  d.type = "file";
  d.summary = "write records to a file (jsonl, csv or lines)";
  d.options = {
      RequiredOption("path", OptionType::kPath,
                     "output file, relative to the pipeline file's folder; missing folders "
                     "are created; a fresh run truncates it, a resumed run appends"),
      EnumOption("format", FormatChoices(), "jsonl",
                 "jsonl: one JSON object per line; csv: header from the first record's "
                 "fields, RFC 4180 quoting, CRLF line ends; lines: the text of `field`"),
      Option("field", OptionType::kString, "line", "field written by format: lines"),
  };
  d.max_parallelism = 1;
  d.min_inputs = 1;
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    const YNode* field = spec.options.Raw("field");
    if (field != nullptr && field->loc.line > 0 &&
        spec.options.GetString("format", "jsonl") != "lines") {
      diags.Warning(*field, "node '" + spec.id + "': `field` applies only to format: lines");
    }
  };
  d.sink_guarantee = [](Semantics s) -> std::string {
    switch (s) {
      case Semantics::kEffectivelyOnce:
        return "effectively-once: cut back to the checkpointed length on recovery";
      case Semantics::kAtLeastOnce:
        return "at-least-once: records written since the last checkpoint are written again "
               "after a failure";
      case Semantics::kAtMostOnce:
        return "at-most-once: records in flight at a failure may be missing";
    }
    return "";
  };
  d.make_sink = [](const NodeSpec& spec) { return std::make_unique<FileSink>(spec); };
  return d;
}

}  // namespace onceflow::ops

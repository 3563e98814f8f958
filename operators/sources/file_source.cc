// The `file` source: records of one file (lines, jsonl or csv), optionally following the
// file as it grows (`follow: true`, like `tail -f`). Replayable: Position() is the file's
// path, the byte offset just after the last record returned and the record count, and
// Seek() reopens there (refusing another path or a file shorter than the offset).
//
// Threading: one instance (max_parallelism 1), called from its task thread only.
#include <sys/stat.h>

#include <chrono>
#include <thread>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/sources/file_reader.h"

namespace onceflow::ops {

namespace {

// How long a following source waits for the file to grow before returning an empty read
// (the Source contract: never block much longer than ~50 ms, so stop requests are seen).
constexpr auto kFollowPoll = std::chrono::milliseconds(50);

class FileSource : public Source {
 public:
  explicit FileSource(const NodeSpec& spec)
      : path_(spec.options.GetPath("path")), follow_(spec.options.GetBool("follow", false)) {
    ParseFormat(spec.options.GetString("format", "lines"), &format_);
  }

  Status Open(NodeContext& ctx) override {
    reader_ = std::make_unique<FileReader>(format_, ctx.node_index, ctx.errors);
    return reader_->Open(path_, 0, 0);
  }

  Status Read(size_t max, Emitter& out, bool* end) override {
    *end = false;
    size_t produced = 0;
    bool at_end = false;
    ONCEFLOW_RETURN_IF_ERROR(reader_->Read(max, !follow_, out, &produced, &at_end));
    if (!at_end) return Status::Ok();
    if (!follow_) {
      *end = true;
      return Status::Ok();
    }
    if (produced == 0) {
      // Nothing new: wait one poll interval, then look once more.
      std::this_thread::sleep_for(kFollowPoll);
      ONCEFLOW_RETURN_IF_ERROR(reader_->Read(max, false, out, &produced, &at_end));
    }
    return Status::Ok();
  }

  SourcePosition Position() const override {
    SourcePosition pos;
    pos.name = path_;
    pos.offset = reader_->offset();
    pos.count = reader_->count();
    return pos;
  }

  // A position belongs to the file it was taken in: resuming it in another file, or in a
  // file now shorter than the position, would read from the middle of unrelated bytes.
  Status Seek(const SourcePosition& pos) override {
    if (!pos.name.empty() && pos.name != path_) {
      return Status::State("source file is now '" + path_ +
                           "' but the checkpoint's position is in '" + pos.name +
                           "' (use --fresh to start over)");
    }
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) < pos.offset) {
      return Status::State("source file '" + path_ + "' has " + std::to_string(st.st_size) +
                           " bytes, fewer than the checkpoint's position " +
                           std::to_string(pos.offset) + ": it was replaced (use --fresh)");
    }
    return reader_->Open(path_, pos.offset, pos.count);
  }

  Status Close() override {
    reader_->Close();
    return Status::Ok();
  }

 private:
  std::string path_;
  bool follow_;
  Format format_ = Format::kLines;
  std::unique_ptr<FileReader> reader_;
};

}  // namespace

NodeTypeDef FileSourceDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSource;
  d.type = "file";
  d.summary = "read records from one file (lines, jsonl or csv), optionally following it";
  d.options = {
      RequiredOption("path", OptionType::kPath,
                     "file to read, relative to the pipeline file's folder"),
      EnumOption("format", FormatChoices(), "lines",
                 "lines: {\"line\": TEXT} per line; jsonl: one JSON object per line; csv: "
                 "header row, then one object per row (unquoted numbers as numbers)"),
      Option("follow", OptionType::kBool, "false",
             "keep reading as the file grows (like tail -f); the source then never ends"),
  };
  d.max_parallelism = 1;
  d.make_source = [](const NodeSpec& spec) { return std::make_unique<FileSource>(spec); };
  return d;
}

}  // namespace onceflow::ops

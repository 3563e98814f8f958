// The `files` source: every file matching a glob, read one after the other in name order
// (bytewise, independent of the locale). With parallelism N, instance i reads the files
// whose index in that order is ≡ i (mod N), so instances never share a file.
//
// Position: name = the file being read (or the last one finished), offset = byte offset
// in it, count = records this instance returned. Seek resumes in that file; files before
// it (in this instance's share) count as done. A checkpointed file that no longer exists
// is skipped with a warning, resuming at the next file after it in name order.
//
// The file list is taken once, at Open: files that appear later are not read.
//
// Threading: one instance per task thread; no shared state between instances.
#include <glob.h>

#include <algorithm>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/sources/file_reader.h"
#include "spdlog/spdlog.h"

namespace onceflow::ops {

namespace {

class FilesSource : public Source {
 public:
  explicit FilesSource(const NodeSpec& spec) : spec_(spec) {
    ParseFormat(spec.options.GetString("format", "lines"), &format_);
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    std::string pattern = spec_.options.GetString("glob");
    const YNode* raw = spec_.options.Raw("glob");
    bool from_cli = raw != nullptr && raw->from_command_line;
    if (!pattern.empty() && pattern[0] != '/' && !from_cli && ctx.pipeline != nullptr &&
        !ctx.pipeline->dir.empty()) {
      pattern = ctx.pipeline->dir + "/" + pattern;
    }
    glob_t g{};
    int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
    std::vector<std::string> all;
    if (rc == 0) {
      for (size_t i = 0; i < g.gl_pathc; ++i) all.emplace_back(g.gl_pathv[i]);
    }
    ::globfree(&g);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      return Status::IOError("glob '" + pattern + "' failed (read error)");
    }
    std::sort(all.begin(), all.end());
    files_.clear();
    for (size_t i = 0; i < all.size(); ++i) {
      if (static_cast<int>(i % ctx.parallelism) == ctx.instance) files_.push_back(all[i]);
    }
    if (all.empty()) {
      spdlog::warn("node '{}': glob '{}' matches no files", spec_.id, pattern);
    }
    reader_ = std::make_unique<FileReader>(format_, ctx.node_index, ctx.errors);
    next_ = 0;
    count_ = 0;
    return Status::Ok();
  }

  Status Read(size_t max, Emitter& out, bool* end) override {
    *end = false;
    size_t total = 0;
    while (total < max) {
      if (!reader_->is_open()) {
        if (next_ >= files_.size()) {
          *end = true;
          return Status::Ok();
        }
        ONCEFLOW_RETURN_IF_ERROR(reader_->Open(files_[next_], 0, 0));
        ++next_;
      }
      size_t produced = 0;
      bool at_end = false;
      ONCEFLOW_RETURN_IF_ERROR(reader_->Read(max - total, true, out, &produced, &at_end));
      total += produced;
      count_ += produced;
      if (at_end) {
        // Keep the finished file's name and size as the position until the next opens.
        done_name_ = reader_->path();
        done_offset_ = reader_->offset();
        reader_->Close();
      }
    }
    return Status::Ok();
  }

  SourcePosition Position() const override {
    SourcePosition pos;
    pos.count = count_;
    if (reader_->is_open()) {
      pos.name = reader_->path();
      pos.offset = reader_->offset();
    } else {
      pos.name = done_name_;
      pos.offset = done_offset_;
    }
    return pos;
  }

  Status Seek(const SourcePosition& pos) override {
    reader_->Close();
    count_ = pos.count;
    done_name_.clear();
    done_offset_ = 0;
    if (pos.name.empty()) {
      next_ = 0;
      return Status::Ok();
    }
    auto it = std::lower_bound(files_.begin(), files_.end(), pos.name);
    size_t idx = static_cast<size_t>(it - files_.begin());
    if (it != files_.end() && *it == pos.name) {
      // Resume inside that file; the reader keeps counting from this instance's total.
      ONCEFLOW_RETURN_IF_ERROR(reader_->Open(*it, pos.offset, 0));
      next_ = idx + 1;
      return Status::Ok();
    }
    spdlog::warn("node '{}': checkpointed file '{}' is gone; resuming with the next file",
                 spec_.id, pos.name);
    next_ = idx;
    return Status::Ok();
  }

  Status Close() override {
    if (reader_) reader_->Close();
    return Status::Ok();
  }

 private:
  const NodeSpec& spec_;
  NodeContext* ctx_ = nullptr;
  Format format_ = Format::kLines;
  std::vector<std::string> files_;  // this instance's share, in name order
  size_t next_ = 0;                 // index into files_ of the next file to open
  uint64_t count_ = 0;
  std::string done_name_;
  uint64_t done_offset_ = 0;
  std::unique_ptr<FileReader> reader_;
};

}  // namespace

NodeTypeDef FilesSourceDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSource;
  d.type = "files";
  d.summary = "read every file matching a glob, one after the other in name order";
  d.options = {
      RequiredOption("glob", OptionType::kString,
                     "shell pattern of the files, e.g. data/*.csv, relative to the pipeline "
                     "file's folder; matched once at start"),
      EnumOption("format", FormatChoices(), "lines",
                 "lines: {\"line\": TEXT} per line; jsonl: one JSON object per line; csv: "
                 "header row in every file, then one object per row"),
  };
  d.make_source = [](const NodeSpec& spec) { return std::make_unique<FilesSource>(spec); };
  return d;
}

}  // namespace onceflow::ops

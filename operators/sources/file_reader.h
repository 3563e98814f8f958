// FileReader: reads records of one format from one regular file, from a byte offset, in
// large read(2) chunks (1 MiB; never a syscall per line). Shared by the `file` and
// `files` sources. The reported position is the offset just after the last record
// returned, so Seek(Position()) resumes exactly there, whatever was buffered.
//
// Threading: one instance per source instance, used from its task thread only.
#pragma once

#include <cstdint>
#include <string>

#include "operators/formats/stream_decoder.h"
#include "runtime/core/node.h"
#include "runtime/core/status.h"

namespace onceflow::ops {

class FileReader {
 public:
  FileReader(Format format, int source, ErrorHandler* errors);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Opens `path` and positions it at `offset` with `count` records read before. For csv
  // at a non-zero offset the header is read from the start of the file first; for jsonl
  // the line number at `offset` is recounted so error positions stay exact.
  Status Open(const std::string& path, uint64_t offset, uint64_t count);
  void Close();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // Appends up to `max` records. *at_end is set when the file has no more complete
  // records right now. With `final` (not following), reaching the end of the file means
  // the input ended, so a last line without a newline is returned too; without it that
  // partial line is held back until its newline arrives.
  Status Read(size_t max, bool final, Emitter& out, size_t* produced, bool* at_end);

  uint64_t offset() const { return decoder_.offset(); }
  uint64_t count() const { return decoder_.count(); }

 private:
  Status Fill(bool* eof);
  Status LoadCsvHeader();
  Status CountLines(uint64_t upto, uint64_t* lines);

  StreamDecoder decoder_;
  std::string path_;
  int fd_ = -1;
  uint64_t read_pos_ = 0;  // file offset of the next read(2)
};

// "cannot open 'PATH': REASON" — the message every file error uses.
std::string FileErrorMessage(const std::string& verb, const std::string& path, int err);
// The csv header at the start of the open file `fd` (read with pread, so the file offset
// does not move); *header stays empty when the file ends before one.
Status ReadCsvHeaderFromFd(int fd, const std::string& path, std::vector<std::string>* header);

}  // namespace onceflow::ops

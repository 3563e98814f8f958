// FileReader: chunked reading of one file through a StreamDecoder. See file_reader.h.
#include "operators/sources/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace onceflow::ops {

namespace {
constexpr size_t kChunk = 1 << 20;
}  // namespace

std::string FileErrorMessage(const std::string& verb, const std::string& path, int err) {
  return "cannot " + verb + " '" + path + "': " + std::strerror(err);
}

FileReader::FileReader(Format format, int source, ErrorHandler* errors)
    : decoder_(format, source, errors) {}

FileReader::~FileReader() { Close(); }

void FileReader::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status FileReader::Open(const std::string& path, uint64_t offset, uint64_t count) {
  Close();
  path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(FileErrorMessage("open", path, errno));
  fd_ = fd;
  struct stat st;
  if (::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
    Close();
    return Status::IOError("cannot read '" + path + "': it is a directory");
  }
  if (offset > 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < offset) {
    // The checkpoint says we were further along: the file was truncated or replaced.
    // Resuming would silently skip or repeat data.
    Close();
    return Status::IOError("'" + path + "' is shorter (" + std::to_string(st.st_size) +
                           " bytes) than the checkpointed position " + std::to_string(offset) +
                           ": was it truncated or replaced?");
  }
  uint64_t lines = count;  // lines: one record per line; csv: data row number
  if (decoder_.format() == Format::kCsv && offset > 0) {
    ONCEFLOW_RETURN_IF_ERROR(LoadCsvHeader());
  }
  if (decoder_.format() == Format::kJsonl && offset > 0) {
    ONCEFLOW_RETURN_IF_ERROR(CountLines(offset, &lines));
  }
  decoder_.Reset(offset, count, lines);
  read_pos_ = offset;
  return Status::Ok();
}

Status ReadCsvHeaderFromFd(int fd, const std::string& path, std::vector<std::string>* header) {
  return ReadCsvHeaderFrom(
      [&](uint64_t pos, char* buf, size_t avail, size_t* n) {
        ssize_t got;
        do {
          got = ::pread(fd, buf, avail, static_cast<off_t>(pos));
        } while (got < 0 && errno == EINTR);
        if (got < 0) return Status::IOError(FileErrorMessage("read", path, errno));
        *n = static_cast<size_t>(got);
        return Status::Ok();
      },
      header);
}

Status FileReader::LoadCsvHeader() {
  std::vector<std::string> header;
  ONCEFLOW_RETURN_IF_ERROR(ReadCsvHeaderFromFd(fd_, path_, &header));
  if (header.empty()) return Status::IOError("'" + path_ + "' has no csv header to resume with");
  decoder_.SetHeader(std::move(header));
  return Status::Ok();
}

Status FileReader::CountLines(uint64_t upto, uint64_t* lines) {
  std::unique_ptr<char[]> buf(new char[kChunk]);
  uint64_t pos = 0, n_lines = 0;
  while (pos < upto) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, upto - pos));
    ssize_t n = ::pread(fd_, buf.get(), want, static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(FileErrorMessage("read", path_, errno));
    }
    if (n == 0) break;
    const char* p = buf.get();
    const char* e = p + n;
    while ((p = static_cast<const char*>(std::memchr(p, '\n', e - p))) != nullptr) {
      ++n_lines;
      ++p;
    }
    pos += static_cast<uint64_t>(n);
  }
  *lines = n_lines;
  return Status::Ok();
}

Status FileReader::Fill(bool* eof) {
  *eof = false;
  size_t avail = 0;
  char* p = decoder_.WritableSpace(kChunk / 2, &avail);
  for (;;) {
    ssize_t n = ::pread(fd_, p, avail, static_cast<off_t>(read_pos_));
    if (n < 0 && errno == ESPIPE) n = ::read(fd_, p, avail);  // a named pipe
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(FileErrorMessage("read", path_, errno));
    }
    if (n == 0) {
      *eof = true;
      return Status::Ok();
    }
    decoder_.Commit(static_cast<size_t>(n));
    read_pos_ += static_cast<uint64_t>(n);
    return Status::Ok();
  }
}

Status FileReader::Read(size_t max, bool final, Emitter& out, size_t* produced, bool* at_end) {
  *produced = 0;
  *at_end = false;
  if (fd_ < 0) return Status::Runtime("FileReader::Read before Open");
  while (*produced < max) {
    size_t got = 0;
    ONCEFLOW_RETURN_IF_ERROR(decoder_.Decode(max - *produced, false, out, &got));
    *produced += got;
    if (*produced >= max) break;
    bool eof = false;
    ONCEFLOW_RETURN_IF_ERROR(Fill(&eof));
    if (eof) {
      if (final) {
        ONCEFLOW_RETURN_IF_ERROR(decoder_.Decode(max - *produced, true, out, &got));
        *produced += got;
        // Done only when nothing is left (a `max` cut may leave complete records).
        *at_end = decoder_.buffered() == 0;
      } else {
        *at_end = true;
        // A following reader notices truncation: what it holds would be misplaced.
        struct stat st;
        if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < read_pos_) {
          return Status::IOError("'" + path_ + "' shrank while being followed (truncated?)");
        }
      }
      break;
    }
  }
  return Status::Ok();
}

}  // namespace onceflow::ops

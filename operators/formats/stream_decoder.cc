// StreamDecoder: chunked decoding of lines / jsonl / csv. See stream_decoder.h.
#include "operators/formats/stream_decoder.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "simdjson.h"

namespace onceflow::ops {

namespace {

constexpr size_t kInitialBuffer = 1 << 20;  // 1 MiB: one read(2) fills it

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

std::string_view StripUtf8Bom(std::string_view s) {
  if (s.size() >= 3 && s.compare(0, 3, "\xEF\xBB\xBF") == 0) s.remove_prefix(3);
  return s;
}

}  // namespace

StreamDecoder::StreamDecoder(Format format, int source, ErrorHandler* errors)
    : format_(format), source_(source), errors_(errors) {}

void StreamDecoder::Reset(uint64_t offset, uint64_t count, uint64_t lines) {
  begin_ = end_ = 0;
  // From the very start the first csv record is the header again.
  if (offset == 0) header_ready_ = false;
  offset_ = offset;
  count_ = count;
  lines_ = lines;
}

void StreamDecoder::SetHeader(std::vector<std::string> header) {
  header_ = std::move(header);
  header_ready_ = true;
}

char* StreamDecoder::WritableSpace(size_t min, size_t* available) {
  if (!buf_) {
    cap_ = std::max(kInitialBuffer, min);
    buf_.reset(new char[cap_]);
  }
  if (cap_ - end_ < min) {
    // Move the unconsumed tail to the front; grow only when one record does not fit.
    size_t live = end_ - begin_;
    if (cap_ - live < min) {
      size_t ncap = cap_;
      while (ncap - live < min) ncap *= 2;
      std::unique_ptr<char[]> nbuf(new char[ncap]);
      std::memcpy(nbuf.get(), buf_.get() + begin_, live);
      buf_ = std::move(nbuf);
      cap_ = ncap;
    } else {
      std::memmove(buf_.get(), buf_.get() + begin_, live);
    }
    begin_ = 0;
    end_ = live;
  }
  *available = cap_ - end_;
  return buf_.get() + end_;
}

Status StreamDecoder::DataError(uint64_t position, std::string_view raw, std::string error) {
  if (errors_ == nullptr) {
    return Status::DataError(error + " at position " + std::to_string(position));
  }
  Origin origin;
  origin.source = source_;
  origin.position = position;
  return errors_->OnRawError(origin, raw, error);
}

Status StreamDecoder::DecodeLine(std::string_view line, Emitter& out, bool* emitted) {
  *emitted = false;
  ++lines_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (format_ == Format::kLines) {
    RecordBatch* batch = out.batch();
    Record& rec = batch->emplace_back();
    rec.Append("line", Value::String(line));
    rec.origin.source = source_;
    rec.origin.position = lines_;
    *emitted = true;
    return Status::Ok();
  }
  // jsonl
  if (IsBlank(line)) return Status::Ok();
  if (lines_ == 1) line = StripUtf8Bom(line);
  RecordBatch* batch = out.batch();
  Record& rec = batch->emplace_back();
  std::string error;
  // Bytes readable from the line's start: the rest of the buffer, so that the parser can
  // read its padding in place instead of copying the line.
  size_t readable = line.size();
  const char* base = buf_.get();
  if (base != nullptr && line.data() >= base && line.data() + line.size() <= base + cap_) {
    readable = static_cast<size_t>(base + cap_ - line.data());
  }
  if (!json_.ParseObject(line, readable, &rec, &error)) {
    batch->pop_back();
    return DataError(lines_, line, std::move(error));
  }
  rec.origin.source = source_;
  rec.origin.position = lines_;
  *emitted = true;
  return Status::Ok();
}

Status StreamDecoder::Decode(size_t max, bool at_eof, Emitter& out, size_t* produced) {
  *produced = 0;
  if (format_ == Format::kCsv) return DecodeCsv(max, at_eof, out, produced);
  const char* base = buf_.get();
  while (*produced < max && begin_ < end_) {
    const char* start = base + begin_;
    size_t avail = end_ - begin_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    size_t len, consumed;
    if (nl != nullptr) {
      len = nl - start;
      consumed = len + 1;
    } else if (at_eof) {
      len = consumed = avail;  // last line without a newline, input really ended
    } else {
      break;  // hold a partial line back until its newline arrives
    }
    // Consume before reporting, so a skipped malformed line is not read again.
    begin_ += consumed;
    offset_ += consumed;
    bool emitted = false;
    Status st = DecodeLine(std::string_view(start, len), out, &emitted);
    if (emitted) {
      ++count_;
      ++*produced;
    }
    if (!st.ok()) return st;
  }
  return Status::Ok();
}

Status StreamDecoder::DecodeCsv(size_t max, bool at_eof, Emitter& out, size_t* produced) {
  const char* base = buf_ ? buf_.get() : nullptr;
  while (begin_ < end_ && (*produced < max || !header_ready_)) {
    std::string_view data(base + begin_, end_ - begin_);
    // Entirely blank lines carry no record (common at the end of exported files).
    if (data[0] == '\n' || data[0] == '\r') {
      size_t skip = data[0] == '\r' ? (data.size() > 1 && data[1] == '\n' ? 2 : 1) : 1;
      if (data[0] == '\r' && data.size() == 1 && !at_eof) break;
      begin_ += skip;
      offset_ += skip;
      continue;
    }
    size_t ncells = 0, consumed = 0;
    CsvParse r = ParseCsvRecord(data, at_eof, &cells_, &ncells, &consumed);
    if (r == CsvParse::kNeedMore) break;
    if (r == CsvParse::kError) {
      begin_ = end_;
      offset_ += data.size();
      ++lines_;
      return DataError(lines_, data.substr(0, std::min<size_t>(data.size(), 200)),
                       "csv: unterminated quoted cell at end of input");
    }
    std::string_view raw = data.substr(0, consumed);
    begin_ += consumed;
    offset_ += consumed;
    if (!header_ready_) {
      header_.clear();
      absl::flat_hash_set<std::string> seen;
      for (size_t i = 0; i < ncells; ++i) {
        std::string name = cells_[i].text;
        if (i == 0 && offset_ == consumed) name = std::string(StripUtf8Bom(name));
        if (name.empty()) {
          return Status::DataError("csv header: column " + std::to_string(i + 1) +
                                   " has no name");
        }
        // Field names are written as JSON, where invalid UTF-8 becomes U+FFFD: two names
        // that differ only in invalid bytes would then collide.
        if (!simdjson::validate_utf8(name.data(), name.size())) {
          return Status::DataError("csv header: column " + std::to_string(i + 1) +
                                   " is not valid UTF-8");
        }
        if (!seen.insert(name).second) {
          return Status::DataError("csv header: duplicate column '" + name + "'");
        }
        header_.push_back(std::move(name));
      }
      header_ready_ = true;
      continue;
    }
    ++lines_;  // data row number
    if (ncells != header_.size()) {
      while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.remove_suffix(1);
      Status st = DataError(lines_, raw,
                            "csv: row has " + std::to_string(ncells) + " cells, the header has " +
                                std::to_string(header_.size()));
      if (!st.ok()) return st;
      continue;
    }
    Record& rec = out.batch()->emplace_back();
    for (size_t i = 0; i < ncells; ++i) rec.Append(header_[i], CsvCellValue(cells_[i]));
    rec.origin.source = source_;
    rec.origin.position = lines_;
    ++count_;
    ++*produced;
  }
  return Status::Ok();
}

Status ReadCsvHeaderFrom(
    const std::function<Status(uint64_t pos, char* buf, size_t avail, size_t* n)>& read,
    std::vector<std::string>* header) {
  header->clear();
  StreamDecoder decoder(Format::kCsv, 0, nullptr);
  RecordBatch unused;
  Emitter sink(&unused);
  uint64_t pos = 0;
  while (!decoder.has_header()) {
    size_t avail = 0;
    char* p = decoder.WritableSpace(64 * 1024, &avail);
    size_t n = 0;
    ONCEFLOW_RETURN_IF_ERROR(read(pos, p, avail, &n));
    decoder.Commit(n);
    pos += n;
    size_t produced = 0;
    ONCEFLOW_RETURN_IF_ERROR(decoder.Decode(0, n == 0, sink, &produced));
    if (n == 0) break;
  }
  if (decoder.has_header()) *header = decoder.header();
  return Status::Ok();
}

}  // namespace onceflow::ops

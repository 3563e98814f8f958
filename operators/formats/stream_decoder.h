// StreamDecoder: turns a byte stream that arrives in chunks (read(2) of a file, a pipe)
// into records of one format, tracking the byte offset just after the last record it
// consumed — the position a source reports and later seeks back to.
//
//   lines  every line is a record {"line": TEXT}; "\n" and a trailing "\r" are stripped.
//   jsonl  every non-blank line is one JSON object; a malformed line goes to the error
//          handler (OnRawError) and is skipped when the handler allows it.
//   csv    the first record is the header; each later row becomes an object keyed by it.
//          Entirely blank lines are skipped; a row whose cell count differs from the
//          header's is a data error.
//
// A last record without a line terminator is complete only when the caller says the
// input really ended (`at_eof`); until then it is held back, so a `follow` source never
// emits half a line. Origin.position is the 1-based line number (lines, jsonl) or the
// 1-based data row number (csv, header excluded).
//
// Threading: one instance per source instance, used from its task thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "operators/formats/csv.h"
#include "operators/formats/format.h"
#include "runtime/core/node.h"
#include "runtime/core/status.h"

namespace onceflow::ops {

class StreamDecoder {
 public:
  // `source` is the node index stamped into each record's origin. `errors` may be null
  // (then a data error is returned as a kDataError status).
  StreamDecoder(Format format, int source, ErrorHandler* errors);

  Format format() const { return format_; }

  // Forgets buffered bytes and continues at absolute byte `offset`, having produced
  // `count` records and consumed `lines` lines (or, for csv, data rows) so far. The csv
  // header is kept (see SetHeader), except at offset 0 where it is read again.
  void Reset(uint64_t offset, uint64_t count, uint64_t lines);

  // Space to read at least `min` more bytes into; then Commit(n) the bytes read.
  char* WritableSpace(size_t min, size_t* available);
  void Commit(size_t n) { end_ += n; }

  // Decodes up to `max` records from the buffered bytes into `out`. With `at_eof`, a
  // trailing record without a line terminator is decoded too. Sets *produced. Returns a
  // non-OK status only when the error handler (or a broken csv header) says so.
  Status Decode(size_t max, bool at_eof, Emitter& out, size_t* produced);

  // Bytes buffered but not yet decoded (a partial record, or records beyond `max`).
  size_t buffered() const { return end_ - begin_; }
  // Absolute offset just after the last consumed record (or skipped line).
  uint64_t offset() const { return offset_; }
  uint64_t count() const { return count_; }
  uint64_t lines() const { return lines_; }

  // csv only.
  bool has_header() const { return header_ready_; }
  const std::vector<std::string>& header() const { return header_; }
  void SetHeader(std::vector<std::string> header);

 private:
  Status DecodeLine(std::string_view line, Emitter& out, bool* emitted);
  Status DecodeCsv(size_t max, bool at_eof, Emitter& out, size_t* produced);
  Status DataError(uint64_t position, std::string_view raw, std::string error);

  Format format_;
  int source_;
  ErrorHandler* errors_;
  JsonParser json_;

  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;    // end of valid bytes

  uint64_t offset_ = 0;
  uint64_t count_ = 0;
  uint64_t lines_ = 0;

  bool header_ready_ = false;
  std::vector<std::string> header_;
  std::vector<CsvCell> cells_;
};

// Decodes the csv header at the start of a byte source: read(pos, buf, avail, &n) fills
// up to `avail` bytes at offset `pos` (n = 0 at the end). *header stays empty when the
// source ends before a complete header.
Status ReadCsvHeaderFrom(
    const std::function<Status(uint64_t pos, char* buf, size_t avail, size_t* n)>& read,
    std::vector<std::string>* header);

}  // namespace onceflow::ops

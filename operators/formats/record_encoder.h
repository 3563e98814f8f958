// RecordEncoder: writes records in one format into a byte buffer, for the `file` and
// `stdout` sinks.
//
//   jsonl  one compact JSON object per line, fields in record order.
//   csv    a header row from the first record's field names, then one row per record in
//          header order (RFC 4180 quoting). A missing field or null writes an empty cell;
//          a field that is not in the header is a data error (the header cannot grow).
//   lines  the text of one field (`field`, default "line"): strings as they are, other
//          values as JSON. A record without that field is a data error.
//
// Threading: one instance per sink instance, used from its task thread only.
#pragma once

#include <string>
#include <vector>

#include "operators/formats/format.h"
#include "runtime/core/record.h"

namespace onceflow::ops {

class RecordEncoder {
 public:
  RecordEncoder(Format format, std::string field);

  // Appends one record. Returns false and sets *error (out untouched) on a data error.
  bool Append(const Record& rec, std::string* out, std::string* error);

  // csv: the header is already in the output (appending to an existing file), so rows
  // follow these columns and no header is written.
  void SetCsvHeader(std::vector<std::string> header);
  bool has_csv_header() const { return header_written_; }

 private:
  Format format_;
  std::string field_;
  bool header_written_ = false;
  std::vector<std::string> header_;
  std::string cell_;  // scratch
};

}  // namespace onceflow::ops

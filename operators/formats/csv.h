// CSV (RFC 4180) parsing and quoting, used by the csv format of sources and sinks.
//
// Parsing is incremental: ParseCsvRecord looks at the bytes buffered so far and either
// returns one complete record (which may span several lines when a quoted cell holds a
// line break) or asks for more input, so a reader can feed it 1 MiB chunks.
//
// Typing of cells (CsvCellValue): an unquoted cell that is a whole JSON-style number
// becomes a number (int64 when it has no fraction/exponent and fits, else double);
// everything else — including quoted cells ("42") and numbers with leading zeros
// ("007", zip codes) — stays a string. An empty cell is the empty string.
//
// Threading: pure functions; cell buffers belong to the caller.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/record.h"

namespace onceflow::ops {

struct CsvCell {
  std::string text;
  bool quoted = false;
};

enum class CsvParse {
  kRecord,    // a complete record was parsed
  kNeedMore,  // no complete record in `data` yet (only when !at_eof)
  kError,     // malformed: an unterminated quoted cell at end of input
};

// Parses one record at the start of `data`. On kRecord, `cells[0..*ncells)` hold the cells
// (the vector is grown but never shrunk, so its strings keep their capacity across calls)
// and *consumed counts the bytes including the line terminator (\n, \r\n or, at end of
// input, none). With `at_eof`, a last record without a line terminator is complete.
CsvParse ParseCsvRecord(std::string_view data, bool at_eof, std::vector<CsvCell>* cells,
                        size_t* ncells, size_t* consumed);

// The value of a parsed cell (see the typing rules above).
Value CsvCellValue(const CsvCell& cell);

// True when `text` is a JSON number; sets *is_int when it has no fraction or exponent.
bool IsJsonNumber(std::string_view text, bool* is_int);

// Appends `text` as one CSV cell, quoted (with "" doubling) when it holds a comma, a
// quote, a line break, or leading/trailing spaces.
void AppendCsvCell(std::string_view text, std::string* out);

}  // namespace onceflow::ops

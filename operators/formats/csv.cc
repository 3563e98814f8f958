// CSV parsing and quoting; see csv.h for the rules.
#include "operators/formats/csv.h"

#include <charconv>
#include <cstdint>

#include "operators/formats/format.h"

namespace onceflow::ops {

bool ParseFormat(std::string_view text, Format* format) {
  if (text == "lines") {
    *format = Format::kLines;
  } else if (text == "jsonl") {
    *format = Format::kJsonl;
  } else if (text == "csv") {
    *format = Format::kCsv;
  } else {
    return false;
  }
  return true;
}

const char* FormatName(Format format) {
  switch (format) {
    case Format::kLines: return "lines";
    case Format::kJsonl: return "jsonl";
    case Format::kCsv: return "csv";
  }
  return "?";
}

CsvParse ParseCsvRecord(std::string_view data, bool at_eof, std::vector<CsvCell>* cells,
                        size_t* ncells, size_t* consumed) {
  size_t n = 0;
  size_t i = 0;
  const size_t size = data.size();
  auto next_cell = [&]() -> CsvCell& {
    if (cells->size() <= n) cells->emplace_back();
    CsvCell& c = (*cells)[n++];
    c.text.clear();
    c.quoted = false;
    return c;
  };
  for (;;) {
    CsvCell& cell = next_cell();
    if (i < size && data[i] == '"') {
      cell.quoted = true;
      ++i;
      for (;;) {
        if (i >= size) {
          if (at_eof) return CsvParse::kError;  // unterminated quoted cell
          return CsvParse::kNeedMore;
        }
        char c = data[i];
        if (c == '"') {
          if (i + 1 >= size && !at_eof) return CsvParse::kNeedMore;  // "" split by a chunk
          if (i + 1 < size && data[i + 1] == '"') {
            cell.text.push_back('"');
            i += 2;
            continue;
          }
          ++i;  // closing quote
          break;
        }
        // Copy the run up to the next quote in one go.
        size_t q = data.find('"', i);
        if (q == std::string_view::npos) q = size;
        cell.text.append(data.data() + i, q - i);
        i = q;
      }
      // Lenient: text between the closing quote and the separator is kept (RFC 4180 does
      // not allow it; rejecting it would drop whole rows of sloppy exports).
    }
    // Unquoted part (or the tail after a quoted part). A bare \r (not followed by \n)
    // is kept as data; \r\n and \n end the record.
    for (;;) {
      size_t start = i;
      while (i < size && data[i] != ',' && data[i] != '\n' && data[i] != '\r') ++i;
      cell.text.append(data.data() + start, i - start);
      if (i >= size) {
        if (!at_eof) return CsvParse::kNeedMore;
        *ncells = n;
        *consumed = i;
        return CsvParse::kRecord;
      }
      if (data[i] != '\r') break;
      if (i + 1 >= size) {
        if (!at_eof) return CsvParse::kNeedMore;  // may be the first half of \r\n
        *ncells = n;
        *consumed = i + 1;
        return CsvParse::kRecord;
      }
      if (data[i + 1] == '\n') {
        *ncells = n;
        *consumed = i + 2;
        return CsvParse::kRecord;
      }
      cell.text.push_back('\r');
      ++i;
    }
    if (data[i] == ',') {
      ++i;
      continue;
    }
    // '\n'
    *ncells = n;
    *consumed = i + 1;
    return CsvParse::kRecord;
  }
}

bool IsJsonNumber(std::string_view t, bool* is_int) {
  size_t i = 0;
  const size_t n = t.size();
  if (i < n && t[i] == '-') ++i;
  if (i >= n) return false;
  if (t[i] == '0') {
    ++i;
  } else if (t[i] >= '1' && t[i] <= '9') {
    while (i < n && t[i] >= '0' && t[i] <= '9') ++i;
  } else {
    return false;
  }
  bool integral = true;
  if (i < n && t[i] == '.') {
    integral = false;
    ++i;
    size_t d = i;
    while (i < n && t[i] >= '0' && t[i] <= '9') ++i;
    if (i == d) return false;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    integral = false;
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    size_t d = i;
    while (i < n && t[i] >= '0' && t[i] <= '9') ++i;
    if (i == d) return false;
  }
  if (i != n) return false;
  *is_int = integral;
  return true;
}

Value CsvCellValue(const CsvCell& cell) {
  const std::string& t = cell.text;
  if (!cell.quoted && !t.empty()) {
    char c = t[0];
    if ((c >= '0' && c <= '9') || c == '-') {
      bool is_int = false;
      if (IsJsonNumber(t, &is_int)) {
        const char* b = t.data();
        const char* e = t.data() + t.size();
        if (is_int) {
          int64_t v = 0;
          auto r = std::from_chars(b, e, v);
          if (r.ec == std::errc() && r.ptr == e) return Value::Int(v);
          // Out of int64 range: fall through to double.
        }
        double d = 0;
        auto r = std::from_chars(b, e, d);
        if (r.ec == std::errc() && r.ptr == e) return Value::Double(d);
      }
    }
  }
  return Value::String(t);
}

void AppendCsvCell(std::string_view text, std::string* out) {
  bool quote = !text.empty() && (text.front() == ' ' || text.back() == ' ');
  if (!quote) {
    for (char c : text) {
      if (c == ',' || c == '"' || c == '\n' || c == '\r') {
        quote = true;
        break;
      }
    }
  }
  if (!quote) {
    out->append(text);
    return;
  }
  out->push_back('"');
  for (char c : text) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

}  // namespace onceflow::ops

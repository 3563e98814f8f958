// RecordEncoder: jsonl / csv / lines output. See record_encoder.h.
#include "operators/formats/record_encoder.h"

#include "operators/formats/csv.h"

namespace onceflow::ops {

RecordEncoder::RecordEncoder(Format format, std::string field)
    : format_(format), field_(std::move(field)) {}

void RecordEncoder::SetCsvHeader(std::vector<std::string> header) {
  header_ = std::move(header);
  header_written_ = true;
}

bool RecordEncoder::Append(const Record& rec, std::string* out, std::string* error) {
  switch (format_) {
    case Format::kJsonl:
      rec.AppendJson(out);
      out->push_back('\n');
      return true;
    case Format::kLines: {
      const Value* v = rec.Get(field_);
      if (v == nullptr) {
        *error = "lines: record has no field '" + field_ + "'";
        return false;
      }
      v->AppendText(out);
      out->push_back('\n');
      return true;
    }
    case Format::kCsv: {
      if (!header_written_) {
        header_.clear();
        for (const auto& f : rec) header_.push_back(f.first);
        for (size_t i = 0; i < header_.size(); ++i) {
          if (i > 0) out->push_back(',');
          AppendCsvCell(header_[i], out);
        }
        out->append("\r\n");  // RFC 4180 line ending
        header_written_ = true;
      }
      // Every field must have a column. Records are small: a nested scan is cheaper
      // than a hash lookup.
      for (const auto& f : rec) {
        bool found = false;
        for (const auto& h : header_) {
          if (h == f.first) {
            found = true;
            break;
          }
        }
        if (!found) {
          *error = "csv: field '" + f.first +
                   "' is not a column of the header (taken from the first record)";
          return false;
        }
      }
      for (size_t i = 0; i < header_.size(); ++i) {
        if (i > 0) out->push_back(',');
        const Value* v = rec.Get(header_[i]);
        if (v == nullptr || v->is_null()) continue;
        if (v->is_string()) {
          // A string that looks like a number is quoted, so a csv source reads it back
          // as a string (quoted cells stay strings).
          bool is_int;
          if (!v->str().empty() && IsJsonNumber(v->str(), &is_int)) {
            out->push_back('"');
            out->append(v->str());
            out->push_back('"');
          } else {
            AppendCsvCell(v->str(), out);
          }
        } else {
          cell_.clear();
          v->AppendText(&cell_);
          AppendCsvCell(cell_, out);
        }
      }
      out->append("\r\n");
      return true;
    }
  }
  return false;
}

}  // namespace onceflow::ops

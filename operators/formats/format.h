// Record formats shared by sources and sinks: `lines`, `jsonl`, `csv`.
//
//   lines  one record per line, {"line": TEXT} on input; a sink writes one field's text.
//   jsonl  one JSON object per line.
//   csv    RFC 4180: a header row, then one record per row keyed by the header.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace onceflow::ops {

enum class Format { kLines, kJsonl, kCsv };

// Parses "lines" | "jsonl" | "csv"; false otherwise.
bool ParseFormat(std::string_view text, Format* format);
const char* FormatName(Format format);
inline std::vector<std::string> FormatChoices() { return {"lines", "jsonl", "csv"}; }

}  // namespace onceflow::ops

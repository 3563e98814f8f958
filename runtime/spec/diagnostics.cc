// Diagnostics: collection and GNU-style rendering of the messages that point into a
// pipeline file, plus the "did you mean" helper every validator message uses.
//
// Threading: a Diagnostics is used by one thread; DidYouMean is a pure function.
#include "runtime/spec/diagnostics.h"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <sstream>

namespace onceflow {
namespace {

const char* SeverityName(Diagnostic::Severity s) {
  switch (s) {
    case Diagnostic::Severity::kError:
      return "error";
    case Diagnostic::Severity::kWarning:
      return "warning";
    case Diagnostic::Severity::kNote:
      return "note";
  }
  return "error";
}

// Marks values given on the command line (--set), whose position is line 0: without
// this a user could not tell which --set a message is about.
std::string WithOrigin(const YNode& at, std::string message) {
  if (at.from_command_line && at.loc.line == 0) message += " (given with --set)";
  return message;
}

// The text of 1-based line `line` of `text` without its end of line, or nullopt-like
// false when the file has fewer lines.
bool SourceLine(const std::string& text, int line, std::string_view* out) {
  size_t begin = 0;
  for (int i = 1; i < line; ++i) {
    size_t nl = text.find('\n', begin);
    if (nl == std::string::npos) return false;
    begin = nl + 1;
  }
  if (begin > text.size() || (begin == text.size() && line > 1)) return false;
  size_t end = text.find('\n', begin);
  if (end == std::string::npos) end = text.size();
  std::string_view sv(text.data() + begin, end - begin);
  if (!sv.empty() && sv.back() == '\r') sv.remove_suffix(1);
  *out = sv;
  return true;
}

void RenderOne(const Diagnostic& d, const std::string& file, const std::string& text,
               std::ostream& os) {
  os << file;
  if (d.loc.line > 0) os << ':' << d.loc.line << ':' << std::max(1, d.loc.column);
  os << ": " << SeverityName(d.severity) << ": " << d.message << '\n';
  std::string_view src;
  if (d.loc.line > 0 && SourceLine(text, d.loc.line, &src)) {
    // Gutter as GCC prints it: one space, the line number right-aligned in at least four
    // columns, " | ".
    std::string number = std::to_string(d.loc.line);
    size_t width = std::max<size_t>(4, number.size());
    os << ' ' << std::string(width - number.size(), ' ') << number << " | " << src << '\n';
    os << ' ' << std::string(width, ' ') << " | ";
    // Pad up to the column byte by byte, keeping tabs so that the caret lands under the
    // right character whatever the terminal's tab width; UTF-8 continuation bytes take no
    // cell of their own (yaml-cpp counts columns in bytes).
    size_t col = static_cast<size_t>(std::max(1, d.loc.column)) - 1;
    std::string pad;
    for (size_t i = 0; i < col && i < src.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(src[i]);
      if (c == '\t') {
        pad += '\t';
      } else if ((c & 0xC0) != 0x80) {
        pad += ' ';
      }
    }
    if (col > src.size()) pad.append(col - src.size(), ' ');
    // Underline `length` bytes, clipped to the end of the line (a multi-line value is
    // underlined on its first line only), counting UTF-8 characters, not bytes.
    size_t want = static_cast<size_t>(std::max(1, d.length));
    size_t cells = 0;
    for (size_t i = col; i < src.size() && i < col + want; ++i) {
      if ((static_cast<unsigned char>(src[i]) & 0xC0) != 0x80) ++cells;
    }
    cells = std::max<size_t>(1, cells);
    os << pad << '^' << std::string(cells - 1, '~') << '\n';
  }
  if (!d.note.empty()) os << "note: " << d.note << '\n';
}

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

// Optimal-string-alignment distance (Damerau-Levenshtein with adjacent transpositions),
// case-insensitive: "Key" and "key" are distance 0, "kye" and "key" distance 1.
size_t EditDistance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && Lower(a[i - 1]) == Lower(b[j - 2]) &&
          Lower(a[i - 2]) == Lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

}  // namespace

void Diagnostics::Error(SourceLoc loc, int length, std::string message, std::string note) {
  items_.push_back(
      {Diagnostic::Severity::kError, loc, length, std::move(message), std::move(note)});
}

void Diagnostics::Warning(SourceLoc loc, int length, std::string message, std::string note) {
  items_.push_back(
      {Diagnostic::Severity::kWarning, loc, length, std::move(message), std::move(note)});
}

void Diagnostics::Note(SourceLoc loc, int length, std::string message) {
  items_.push_back({Diagnostic::Severity::kNote, loc, length, std::move(message), ""});
}

void Diagnostics::Error(const YNode& at, std::string message, std::string note) {
  if (at.reported) return;  // already reported as meaningless: do not cascade
  Error(at.loc, at.length, WithOrigin(at, std::move(message)), std::move(note));
}

void Diagnostics::Warning(const YNode& at, std::string message, std::string note) {
  if (at.reported) return;
  Warning(at.loc, at.length, WithOrigin(at, std::move(message)), std::move(note));
}

void Diagnostics::Note(const YNode& at, std::string message) {
  Note(at.loc, at.length, WithOrigin(at, std::move(message)));
}

void Diagnostics::Append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

bool Diagnostics::has_errors() const { return error_count() > 0; }

size_t Diagnostics::error_count() const {
  return std::count_if(items_.begin(), items_.end(), [](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::kError;
  });
}

size_t Diagnostics::warning_count() const {
  return std::count_if(items_.begin(), items_.end(), [](const Diagnostic& d) {
    return d.severity == Diagnostic::Severity::kWarning;
  });
}

void Diagnostics::Render(std::ostream& os) const {
  std::vector<size_t> order(items_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [this](size_t a, size_t b) {
    const SourceLoc& la = items_[a].loc;
    const SourceLoc& lb = items_[b].loc;
    return la.line != lb.line ? la.line < lb.line : la.column < lb.column;
  });
  for (size_t i : order) RenderOne(items_[i], file_, text_, os);
}

std::string Diagnostics::RenderToString() const {
  std::ostringstream os;
  Render(os);
  return os.str();
}

std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.empty()) return "";
  const size_t limit = std::max<size_t>(1, word.size() / 3);
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& c : candidates) {
    if (c == word) continue;
    size_t dist = EditDistance(word, c);
    if (dist < best_distance) {
      best_distance = dist;
      best = c;
    }
  }
  return best;
}

std::string DidYouMeanNote(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best = DidYouMean(word, candidates);
  return best.empty() ? "" : "did you mean '" + best + "'?";
}

}  // namespace onceflow

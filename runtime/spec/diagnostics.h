// Diagnostics: GNU-style messages that point into the pipeline file, rendered with the
// source line and a caret, and an optional "did you mean" note:
//
//   pipelines/x.yaml:12:5: error: node 'counts': unknown option 'keyy'
//      12 |     keyy: word
//         |     ^~~~
//   note: did you mean 'key'?
//
// Validation collects every problem in one pass into a Diagnostics, then the CLI prints
// them all. Threading: single-threaded use.
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/spec/yaml_tree.h"

namespace onceflow {

struct Diagnostic {
  enum class Severity { kError, kWarning, kNote };
  Severity severity = Severity::kError;
  SourceLoc loc;        // line 0: no position (reported as "file: error: ...")
  int length = 1;       // caret underline width
  std::string message;
  std::string note;     // e.g. "did you mean 'key'?"; empty for none
};

class Diagnostics {
 public:
  Diagnostics() = default;
  // `file` is the path as the user wrote it; `text` the file's contents (for source lines).
  Diagnostics(std::string file, std::string text) : file_(std::move(file)), text_(std::move(text)) {}
  void Reset(std::string file, std::string text) { file_ = std::move(file); text_ = std::move(text); }

  void Error(SourceLoc loc, int length, std::string message, std::string note = "");
  void Warning(SourceLoc loc, int length, std::string message, std::string note = "");
  // Convenience: position and width taken from a node.
  void Error(const YNode& at, std::string message, std::string note = "");
  void Warning(const YNode& at, std::string message, std::string note = "");
  // A stand-alone remark ("'exactly-once' means effectively-once: ..."); never an error.
  void Note(SourceLoc loc, int length, std::string message);
  void Note(const YNode& at, std::string message);
  void Add(Diagnostic d) { items_.push_back(std::move(d)); }
  // Appends every diagnostic of `other` (positions are kept; `other`'s file is ignored).
  void Append(const Diagnostics& other);

  bool has_errors() const;
  size_t error_count() const;
  size_t warning_count() const;
  const std::vector<Diagnostic>& all() const { return items_; }
  const std::string& file() const { return file_; }

  // Renders every diagnostic sorted by position (stable: equal positions keep the order
  // reported; line 0 sorts first). Each renders as
  //   FILE:LINE:COL: error|warning|note: MESSAGE
  //    LINE | source line          (tabs kept, so the caret lines up in a terminal)
  //         |     ^~~~             (caret at COL, '~' up to `length`, clipped to the line)
  //   note: NOTE                    (when the diagnostic has one)
  // and, for line 0 (no position): "FILE: error: MESSAGE" alone (+ the note).
  void Render(std::ostream& os) const;
  std::string RenderToString() const;

 private:
  std::string file_;
  std::string text_;
  std::vector<Diagnostic> items_;
};

// The candidate closest to `word` by edit distance (Damerau-Levenshtein, optimal string
// alignment; ignoring case), or "" when none is close enough (distance <= max(1, len/3)).
// Ties go to the earlier candidate. A candidate equal to `word` is never suggested.
std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates);
// "did you mean 'x'?" or "".
std::string DidYouMeanNote(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace onceflow

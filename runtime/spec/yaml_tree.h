// YNode: a YAML document kept with the position of every key and value. yaml-cpp's own
// Node loses duplicate keys (it keeps the last silently) and key order, so the pipeline
// reader builds this tree from yaml-cpp's event stream instead (see yaml_tree.cc).
//
// Threading: immutable after parsing; safe to read from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace onceflow {

class Diagnostics;

// 1-based line and column in the pipeline file; line 0 means "not from the file" (for
// example a value given with --set on the command line).
struct SourceLoc {
  int line = 0;
  int column = 0;
};

class YNode {
 public:
  enum class Kind { kNull, kScalar, kSequence, kMap };

  // Declared here, defaulted in yaml_tree.cc: `entries` holds pairs of YNode, which is
  // incomplete inside its own class, and clang (unlike g++) instantiates the vector's
  // destructor at the closing brace if these are left implicit.
  YNode();
  YNode(const YNode&);
  YNode(YNode&&) noexcept;
  YNode& operator=(const YNode&);
  YNode& operator=(YNode&&) noexcept;
  ~YNode();

  Kind kind = Kind::kNull;
  SourceLoc loc;
  // Scalar text (after ${VAR} interpolation). Empty for non-scalars.
  std::string scalar;
  // True when the scalar was quoted ('x' or "x") or a block literal: always a string,
  // never a number or boolean.
  bool quoted = false;
  // True when the value came from --set: relative paths resolve against the working
  // directory instead of the pipeline file's folder.
  bool from_command_line = false;
  // True once an error was reported at this value that makes it meaningless (an unset
  // ${VAR}): later checks stay silent about it instead of cascading.
  bool reported = false;
  // Length of the value's source text when known (for the caret underline); 0 = unknown.
  int length = 0;
  std::vector<YNode> items;                           // kSequence
  std::vector<std::pair<YNode, YNode>> entries;       // kMap, document order (key, value)

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_map() const { return kind == Kind::kMap; }
  bool is_sequence() const { return kind == Kind::kSequence; }

  // Map lookup by key text; nullptr when absent or not a map. With duplicate keys (an
  // error reported by the reader) returns the first.
  const YNode* Find(std::string_view key) const;
  YNode* FindMutable(std::string_view key);
  // The key node of entry `key` (for positions of "unknown option" errors).
  const YNode* FindKey(std::string_view key) const;

  // Human name of the kind for messages: "a string", "a list", "a map", "null".
  std::string KindName() const;
};

// Parses `text` as one YAML document into *root (replaced). Built from yaml-cpp's event
// stream so that every node keeps its 1-based position, key order is kept, and problems
// yaml-cpp would hide are reported into *diags: syntax errors, duplicate keys (at the
// second occurrence), keys that are not scalars, and a second document. Anchors and
// aliases are supported: an alias is a copy of the anchored subtree, positions included.
// Plain `null`, `~`, `Null`, `NULL` and empty values become kNull. Returns false when an
// error was reported; after a syntax error *root holds nothing (kNull).
bool ParseYaml(std::string_view text, YNode* root, Diagnostics* diags);

}  // namespace onceflow

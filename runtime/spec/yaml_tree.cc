// Builds YNode trees from yaml-cpp's event stream (YAML::Parser + EventHandler) rather than
// from YAML::Node, because YAML::Node silently keeps the last of two duplicate keys and
// does not keep key order. Every node gets its 1-based position and the width of its
// token in the source text (for the caret underline).
//
// Threading: ParseYaml is reentrant; a YNode tree is immutable once built.
#include "runtime/spec/yaml_tree.h"

#include <sstream>
#include <unordered_map>

#include "runtime/spec/diagnostics.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/mark.h"
#include "yaml-cpp/parser.h"

namespace onceflow {

YNode::YNode() = default;
YNode::YNode(const YNode&) = default;
YNode::YNode(YNode&&) noexcept = default;
YNode& YNode::operator=(const YNode&) = default;
YNode& YNode::operator=(YNode&&) noexcept = default;
YNode::~YNode() = default;

const YNode* YNode::Find(std::string_view key) const {
  if (kind != Kind::kMap) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k.is_scalar() && k.scalar == key) return &v;
  }
  return nullptr;
}

YNode* YNode::FindMutable(std::string_view key) {
  if (kind != Kind::kMap) return nullptr;
  for (auto& [k, v] : entries) {
    if (k.is_scalar() && k.scalar == key) return &v;
  }
  return nullptr;
}

const YNode* YNode::FindKey(std::string_view key) const {
  if (kind != Kind::kMap) return nullptr;
  for (const auto& [k, v] : entries) {
    if (k.is_scalar() && k.scalar == key) return &k;
  }
  return nullptr;
}

std::string YNode::KindName() const {
  switch (kind) {
    case Kind::kNull:
      return "null";
    case Kind::kScalar:
      return "a string";
    case Kind::kSequence:
      return "a list";
    case Kind::kMap:
      return "a map";
  }
  return "null";
}

namespace {

// YAML 1.2 core schema nulls. yaml-cpp 0.7 already reports most of them through OnNull,
// but not every version does, so plain scalars are checked again here.
bool IsPlainNull(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(std::string_view text, Diagnostics* diags) : text_(text), diags_(diags) {}

  bool has_root() const { return has_root_; }
  YNode TakeRoot() { return std::move(root_); }
  int documents() const { return documents_; }
  SourceLoc second_document() const { return second_document_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ == 2) second_document_ = Loc(mark);
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    YNode n;
    n.kind = YNode::Kind::kNull;
    Place(mark, &n, 0);
    Add(std::move(n), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    // yaml-cpp rejects an alias of an unknown anchor itself (ParserException), so the
    // lookup only fails for an alias of a collection from inside that same collection.
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) {
      YNode n;
      Place(mark, &n, 1);
      diags_->Error(n.loc, n.length, "an alias cannot refer to the collection that contains it");
      Add(std::move(n), YAML::NullAnchor);
      return;
    }
    // The copy keeps the positions of the anchored original, so a message about a value
    // that came through an alias points at the place where it is written.
    Add(YNode(it->second), YAML::NullAnchor);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    YNode n;
    // "?" is the non-specific tag of plain scalars; quoted and block scalars come with "!",
    // explicitly tagged ones with their tag: all of those are strings, never numbers.
    n.quoted = tag != "?";
    if (!n.quoted && IsPlainNull(value)) {
      n.kind = YNode::Kind::kNull;
    } else {
      n.kind = YNode::Kind::kScalar;
      n.scalar = value;
    }
    Place(mark, &n, value.size());
    Add(std::move(n), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, YNode::Kind::kSequence, anchor);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, YNode::Kind::kMap, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Frame {
    YNode node;
    YAML::anchor_t anchor = YAML::NullAnchor;
    bool have_key = false;
    YNode key;
    std::unordered_map<std::string, int> first_line;  // key text -> line (maps only)
  };

  SourceLoc Loc(const YAML::Mark& mark) const {
    if (mark.is_null()) return SourceLoc{};
    return SourceLoc{mark.line + 1, mark.column + 1};
  }

  // Sets n->loc and n->length from the token at `mark`: skips node properties (&anchor,
  // !tag) so the caret points at the value itself, measures quoted scalars up to their
  // closing quote, and clips everything to the first line of the token.
  void Place(const YAML::Mark& mark, YNode* n, size_t value_size) const {
    n->loc = Loc(mark);
    n->length = static_cast<int>(std::max<size_t>(1, value_size));
    if (mark.is_null() || mark.pos < 0 || static_cast<size_t>(mark.pos) >= text_.size()) return;
    size_t pos = static_cast<size_t>(mark.pos);
    size_t eol = text_.find('\n', pos);
    if (eol == std::string_view::npos) eol = text_.size();
    if (eol > pos && text_[eol - 1] == '\r') --eol;
    size_t start = pos;
    while (start < eol && (text_[start] == '&' || text_[start] == '!')) {
      while (start < eol && text_[start] != ' ' && text_[start] != '\t') ++start;
      while (start < eol && (text_[start] == ' ' || text_[start] == '\t')) ++start;
    }
    if (start >= eol) return;  // properties alone on the line: keep the mark as is
    n->loc.column += static_cast<int>(start - pos);
    const char c = text_[start];
    size_t len = 0;
    if (n->is_scalar() && n->quoted && (c == '"' || c == '\'')) {
      size_t i = start + 1;
      for (; i < eol; ++i) {
        if (c == '"' && text_[i] == '\\') {
          ++i;
        } else if (text_[i] == c) {
          if (c == '\'' && i + 1 < eol && text_[i + 1] == '\'') {
            ++i;  // '' is an escaped quote inside single quotes
          } else {
            break;
          }
        }
      }
      len = std::min(i + 1, eol) - start;
    } else if (n->is_scalar() && n->quoted && (c == '|' || c == '>')) {
      len = 1;
    } else if (n->is_scalar() || (n->is_null() && value_size > 0)) {
      len = std::min(value_size, eol - start);
    } else if (n->is_null()) {
      // `~` / `null` written out have a width; an empty value has none.
      size_t i = start;
      while (i < eol && text_[i] != ' ' && text_[i] != '#' && text_[i] != ',' && text_[i] != '}' &&
             text_[i] != ']') {
        ++i;
      }
      len = i - start;
    } else {
      len = 1;  // a collection: point at its first character
    }
    n->length = static_cast<int>(std::max<size_t>(1, len));
  }

  void Open(const YAML::Mark& mark, YNode::Kind kind, YAML::anchor_t anchor) {
    Frame f;
    f.node.kind = kind;
    Place(mark, &f.node, 0);
    f.anchor = anchor;
    stack_.push_back(std::move(f));
  }

  void Close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    Add(std::move(f.node), f.anchor);
  }

  void Add(YNode n, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) anchors_[anchor] = n;
    if (stack_.empty()) {
      root_ = std::move(n);
      has_root_ = true;
      return;
    }
    Frame& top = stack_.back();
    if (top.node.kind == YNode::Kind::kSequence) {
      top.node.items.push_back(std::move(n));
      return;
    }
    if (!top.have_key) {
      if (!n.is_scalar()) {
        diags_->Error(n.loc, n.length, "a map key must be a plain name, not " + n.KindName());
      }
      top.key = std::move(n);
      top.have_key = true;
      return;
    }
    top.have_key = false;
    // An empty value (`key:` and nothing) is reported by yaml-cpp at the next token, often
    // on a later line; a message about it should point at its key instead.
    if (n.is_null() && n.loc.line != top.key.loc.line) {
      n.loc = top.key.loc;
      n.length = top.key.length;
    }
    if (top.key.is_scalar()) {
      auto [it, inserted] = top.first_line.emplace(top.key.scalar, top.key.loc.line);
      if (!inserted) {
        diags_->Error(top.key, "duplicate key '" + top.key.scalar + "' (first at line " +
                                   std::to_string(it->second) + ")");
      }
    }
    top.node.entries.emplace_back(std::move(top.key), std::move(n));
    top.key = YNode();
  }

  std::string_view text_;
  Diagnostics* diags_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, YNode> anchors_;
  YNode root_;
  bool has_root_ = false;
  int documents_ = 0;
  SourceLoc second_document_;
};

}  // namespace

bool ParseYaml(std::string_view text, YNode* root, Diagnostics* diags) {
  const size_t errors_before = diags->error_count();
  *root = YNode();
  // yaml-cpp wants a stream; the copy is the price of keeping string_view in the API.
  std::istringstream in{std::string(text)};
  TreeBuilder builder(text, diags);
  try {
    YAML::Parser parser(in);
    if (parser.HandleNextDocument(builder)) {
      // A second document is an error (a pipeline is one document), but parse it anyway
      // so that its syntax errors, if any, are reported too.
      YNode first = builder.TakeRoot();
      if (parser.HandleNextDocument(builder) && builder.documents() >= 2) {
        SourceLoc at = builder.second_document();
        diags->Error(at, 3, "a pipeline file holds one YAML document; a second one starts here");
      }
      *root = std::move(first);
    }
  } catch (const YAML::Exception& e) {
    SourceLoc at;
    if (!e.mark.is_null()) at = SourceLoc{e.mark.line + 1, e.mark.column + 1};
    diags->Error(at, 1, "invalid YAML: " + e.msg);
    *root = YNode();
  }
  return diags->error_count() == errors_before;
}

}  // namespace onceflow

// NativeFilter: compiler (a tokenizer and a recursive-descent parser of the grammar in
// native_filter.h, following Lua's precedence: or < and < comparison < not) and
// evaluator.
#include "operators/lua/native_filter.h"

#include <cstdlib>

namespace onceflow::ops {

namespace {

enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
enum class ConstKind { kNumber, kString, kBool, kNil };

struct Token {
  enum Kind { kName, kNumber, kString, kSymbol, kEnd } kind;
  std::string text;  // a name, a symbol, a string's contents, a number's digits
};

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || IsDigit(c); }

// Splits `code` into tokens; false on anything outside the grammar's alphabet (comments,
// escapes, long strings, operators other than comparisons).
bool Tokenize(std::string_view code, std::vector<Token>* out) {
  size_t i = 0;
  while (i < code.size()) {
    const char c = code[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
    } else if (IsIdentStart(c)) {
      size_t s = i;
      while (i < code.size() && IsIdentChar(code[i])) ++i;
      out->push_back({Token::kName, std::string(code.substr(s, i - s))});
    } else if (IsDigit(c) || (c == '.' && i + 1 < code.size() && IsDigit(code[i + 1]))) {
      size_t s = i;
      while (i < code.size() && IsDigit(code[i])) ++i;
      if (i < code.size() && code[i] == '.') {
        ++i;
        while (i < code.size() && IsDigit(code[i])) ++i;
      }
      if (i < code.size() && (code[i] == 'e' || code[i] == 'E')) {
        ++i;
        if (i < code.size() && (code[i] == '+' || code[i] == '-')) ++i;
        if (i >= code.size() || !IsDigit(code[i])) return false;
        while (i < code.size() && IsDigit(code[i])) ++i;
      }
      if (i < code.size() && (IsIdentChar(code[i]) || code[i] == '.')) return false;  // 0x1, 1..2
      out->push_back({Token::kNumber, std::string(code.substr(s, i - s))});
    } else if (c == '"' || c == '\'') {
      size_t s = ++i;
      while (i < code.size() && code[i] != c) {
        if (code[i] == '\\' || code[i] == '\n') return false;  // escapes: leave to Lua
        ++i;
      }
      if (i >= code.size()) return false;
      out->push_back({Token::kString, std::string(code.substr(s, i - s))});
      ++i;
    } else {
      static const char* const kSymbols[] = {"==", "~=", "<=", ">=", "<", ">", "(", ")",
                                             "[",  "]",  ".",  "-"};
      bool found = false;
      for (const char* sym : kSymbols) {
        const std::string_view sv(sym);
        if (code.substr(i, sv.size()) == sv) {
          // "--" starts a comment and ".." concatenates: neither is in the grammar.
          if ((sv == "-" || sv == ".") && i + 1 < code.size() && code[i + 1] == c) return false;
          if (sv == "[" && i + 1 < code.size() && (code[i + 1] == '[' || code[i + 1] == '='))
            return false;  // a long string
          out->push_back({Token::kSymbol, std::string(sv)});
          i += sv.size();
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
  }
  out->push_back({Token::kEnd, ""});
  return true;
}

bool IsKeyword(const std::string& s) {
  static const char* const kWords[] = {"and",   "break", "do",  "else", "elseif", "end",
                                       "false", "for",   "function", "goto", "if", "in",
                                       "local", "nil",   "not", "or",   "repeat", "return",
                                       "then",  "true",  "until", "while"};
  for (const char* w : kWords) {
    if (s == w) return true;
  }
  return false;
}

}  // namespace

struct NativeFilter::Node {
  enum Kind { kAnd, kOr, kNot, kCmp } kind;
  int a = -1, b = -1;  // children (nodes_ indexes)
  // kCmp: field op constant.
  std::string field;
  Op op = Op::kEq;
  ConstKind ck = ConstKind::kNil;
  double num = 0;
  std::string str;
  bool boolean = false;
};

namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& toks, std::string_view param,
         std::vector<std::unique_ptr<NativeFilter::Node>>* nodes)
      : t_(toks), param_(param), nodes_(nodes) {}

  // Returns the root's index in *nodes, or -1 when `code` is outside the grammar.
  int Parse() {
    int root = Or();
    return root >= 0 && At(Token::kEnd) ? root : -1;
  }

 private:
  using Node = NativeFilter::Node;
  bool At(Token::Kind k, std::string_view text = {}) const {
    return t_[p_].kind == k && (text.empty() || t_[p_].text == text);
  }
  bool Accept(Token::Kind k, std::string_view text) {
    if (!At(k, text)) return false;
    ++p_;
    return true;
  }
  int Add(Node n) {
    nodes_->push_back(std::make_unique<Node>(std::move(n)));
    return static_cast<int>(nodes_->size() - 1);
  }
  int Binary(Node::Kind kind, const char* word, int (Parser::*next)()) {
    int left = (this->*next)();
    while (left >= 0 && Accept(Token::kName, word)) {
      int right = (this->*next)();
      if (right < 0) return -1;
      Node n;
      n.kind = kind;
      n.a = left;
      n.b = right;
      left = Add(std::move(n));
    }
    return left;
  }
  int Or() { return Binary(Node::kOr, "or", &Parser::And); }
  int And() { return Binary(Node::kAnd, "and", &Parser::Unary); }
  // In Lua `not` binds tighter than a comparison (`not e.x == 1` is `(not e.x) == 1`):
  // accepted only before a parenthesis or another `not`.
  int Unary() {
    if (Accept(Token::kName, "not")) {
      if (!At(Token::kSymbol, "(") && !At(Token::kName, "not")) return -1;
      int inner = Unary();
      if (inner < 0) return -1;
      Node n;
      n.kind = Node::kNot;
      n.a = inner;
      return Add(std::move(n));
    }
    if (Accept(Token::kSymbol, "(")) {
      int inner = Or();
      if (inner < 0 || !Accept(Token::kSymbol, ")")) return -1;
      return inner;
    }
    return Comparison();
  }
  int Comparison() {
    Node n;
    n.kind = Node::kCmp;
    bool field_first;
    if (Field(&n.field)) {
      field_first = true;
    } else if (Const(&n)) {
      field_first = false;
    } else {
      return -1;
    }
    if (!CmpOp(&n.op)) return -1;
    if (field_first ? !Const(&n) : !Field(&n.field)) return -1;
    if (!field_first) n.op = Mirror(n.op);
    // Orderings only against numbers (Lua compares strings with strcoll).
    if (n.op != Op::kEq && n.op != Op::kNe && n.ck != ConstKind::kNumber) return -1;
    return Add(std::move(n));
  }
  static Op Mirror(Op op) {
    switch (op) {
      case Op::kLt: return Op::kGt;
      case Op::kLe: return Op::kGe;
      case Op::kGt: return Op::kLt;
      case Op::kGe: return Op::kLe;
      default: return op;
    }
  }
  bool Field(std::string* name) {
    if (!At(Token::kName, param_)) return false;
    const size_t save = p_++;
    if (Accept(Token::kSymbol, ".")) {
      if (At(Token::kName) && !IsKeyword(t_[p_].text)) {
        *name = t_[p_++].text;
        return true;
      }
    } else if (Accept(Token::kSymbol, "[")) {
      if (At(Token::kString)) {
        *name = t_[p_++].text;
        if (Accept(Token::kSymbol, "]")) return true;
      }
    }
    p_ = save;
    return false;
  }
  bool Const(Node* n) {
    const bool negative = Accept(Token::kSymbol, "-");
    if (At(Token::kNumber)) {
      const std::string& digits = t_[p_++].text;
      char* end = nullptr;
      n->num = std::strtod(digits.c_str(), &end);
      if (end != digits.c_str() + digits.size()) return false;
      if (negative) n->num = -n->num;
      n->ck = ConstKind::kNumber;
      return true;
    }
    if (negative) return false;
    if (At(Token::kString)) {
      n->str = t_[p_++].text;
      n->ck = ConstKind::kString;
      return true;
    }
    if (At(Token::kName, "true") || At(Token::kName, "false")) {
      n->boolean = t_[p_++].text == "true";
      n->ck = ConstKind::kBool;
      return true;
    }
    if (Accept(Token::kName, "nil")) {
      n->ck = ConstKind::kNil;
      return true;
    }
    return false;
  }
  bool CmpOp(Op* op) {
    static const std::pair<const char*, Op> kOps[] = {{"==", Op::kEq}, {"~=", Op::kNe},
                                                      {"<", Op::kLt},  {"<=", Op::kLe},
                                                      {">", Op::kGt},  {">=", Op::kGe}};
    for (const auto& [text, o] : kOps) {
      if (Accept(Token::kSymbol, text)) {
        *op = o;
        return true;
      }
    }
    return false;
  }

  const std::vector<Token>& t_;
  std::string_view param_;
  std::vector<std::unique_ptr<NativeFilter::Node>>* nodes_;
  size_t p_ = 0;
};

using Result = NativeFilter::Result;

Result FromBool(bool b) { return b ? Result::kTrue : Result::kFalse; }

// field == constant, as Lua decides it; kUnknown where the field's Lua value is a table
// (nested JSON), whose identity is not worth modelling.
Result Equal(const Value* v, const NativeFilter::Node& n) {
  if (v != nullptr && v->type() == ValueType::kJson) return Result::kUnknown;
  switch (n.ck) {
    case ConstKind::kNil:
      return FromBool(v == nullptr);  // JSON null is a light userdata, not nil
    case ConstKind::kBool:
      return FromBool(v != nullptr && v->type() == ValueType::kBool && v->as_bool() == n.boolean);
    case ConstKind::kString:
      return FromBool(v != nullptr && v->is_string() && v->str() == n.str);
    case ConstKind::kNumber:
      return FromBool(v != nullptr && v->is_number() && v->ToDouble() == n.num);
  }
  return Result::kUnknown;
}

Result Eval(const std::vector<std::unique_ptr<NativeFilter::Node>>& nodes, int i,
            const Record& rec) {
  const NativeFilter::Node& n = *nodes[i];
  switch (n.kind) {
    case NativeFilter::Node::kAnd: {
      Result a = Eval(nodes, n.a, rec);
      return a == Result::kTrue ? Eval(nodes, n.b, rec) : a;
    }
    case NativeFilter::Node::kOr: {
      Result a = Eval(nodes, n.a, rec);
      return a == Result::kFalse ? Eval(nodes, n.b, rec) : a;
    }
    case NativeFilter::Node::kNot: {
      Result a = Eval(nodes, n.a, rec);
      return a == Result::kUnknown ? a : FromBool(a == Result::kFalse);
    }
    case NativeFilter::Node::kCmp: {
      const Value* v = rec.Get(n.field);
      if (n.op == Op::kEq || n.op == Op::kNe) {
        Result r = Equal(v, n);
        if (r == Result::kUnknown || n.op == Op::kEq) return r;
        return FromBool(r == Result::kFalse);
      }
      // An ordering of anything but a number is an error in Lua: let Lua report it.
      if (v == nullptr || !v->is_number()) return Result::kUnknown;
      const double x = v->ToDouble();
      switch (n.op) {
        case Op::kLt: return FromBool(x < n.num);
        case Op::kLe: return FromBool(x <= n.num);
        case Op::kGt: return FromBool(x > n.num);
        case Op::kGe: return FromBool(x >= n.num);
        default: return Result::kUnknown;
      }
    }
  }
  return Result::kUnknown;
}

}  // namespace

NativeFilter::NativeFilter() = default;
NativeFilter::~NativeFilter() = default;

bool NativeFilter::Compile(std::string_view code, std::string_view param) {
  nodes_.clear();
  root_ = -1;
  std::vector<Token> toks;
  if (!Tokenize(code, &toks)) return false;
  Parser parser(toks, param, &nodes_);
  root_ = parser.Parse();
  if (root_ < 0) nodes_.clear();
  return root_ >= 0;
}

NativeFilter::Result NativeFilter::Eval(const Record& rec) const {
  if (root_ < 0) return Result::kUnknown;
  return ops::Eval(nodes_, root_, rec);
}

}  // namespace onceflow::ops

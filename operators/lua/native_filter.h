// NativeFilter: the common `where:` expressions of `filter` — comparisons of a field with
// a constant, joined by and / or / not — evaluated without entering Lua.
//
// Why: `e.status == "paid" and e.amount > 10` cost about 27 ns a record in LuaJIT (set
// the fields in the reused table, call, read the result), a tenth of the orders
// pipeline's parsing thread; evaluated natively it is a few nanoseconds.
//
// Exactness: Compile accepts only this grammar, over the text of the expression:
//   expr := or;  or := and {"or" and};  and := not {"and" not};  not := "not" not | atom
//   atom := "(" expr ")" | field op const | const op field
//   field := e.NAME | e["NAME"] | e['NAME'];  op := == ~= < <= > >=
//   const := number (decimal) | "string" | 'string' (no escapes) | true | false | nil
// with <, <=, >, >= only against a number. Anything else (comments, calls, arithmetic,
// other names) is not compiled and the filter keeps using Lua. Eval answers only where
// Lua's result is certain, as Lua computes it: == / ~= by type and value (a field holding
// an integer is the double Lua sees, JSON null is not nil), an ordering only between
// numbers; `and` / `or` short-circuit as in Lua. In every other case — an ordering with a
// non-number, which Lua reports as an error; a nested array or object — Eval answers
// kUnknown and the caller runs the Lua code for that record, so errors and their
// messages stay Lua's.
//
// Threading: immutable after Compile; Eval may run on any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/record.h"

namespace onceflow::ops {

class NativeFilter {
 public:
  enum class Result { kFalse, kTrue, kUnknown };

  NativeFilter();
  ~NativeFilter();

  // Compiles `code`, an expression over the parameter `param`; false when it is outside
  // the grammar above.
  bool Compile(std::string_view code, std::string_view param);
  Result Eval(const Record& rec) const;

  struct Node;  // in native_filter.cc

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  int root_ = -1;  // index in nodes_; -1: not compiled
};

}  // namespace onceflow::ops

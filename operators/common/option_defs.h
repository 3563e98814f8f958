// Small builders for option tables, so each node type's table reads as one line per
// option. The tables drive validation, `onceflow operators describe` and the man page:
// keep every help line one sentence that a user can act on.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "runtime/core/registry.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow::ops {

// True when option `name` has a value (given, or defaulted by the validator); an explicit
// YAML null counts as absent.
inline bool Given(const NodeOptions& options, const std::string& name) {
  const YNode* n = options.Raw(name);
  return n != nullptr && !n->is_null();
}

inline OptionDef RequiredOption(std::string name, OptionType type, std::string help) {
  OptionDef d;
  d.name = std::move(name);
  d.type = type;
  d.required = true;
  d.help = std::move(help);
  return d;
}

// `dflt` is YAML scalar text; empty means "no default" (the option is simply absent).
inline OptionDef Option(std::string name, OptionType type, std::string dflt, std::string help) {
  OptionDef d;
  d.name = std::move(name);
  d.type = type;
  d.default_value = std::move(dflt);
  d.help = std::move(help);
  return d;
}

inline OptionDef EnumOption(std::string name, std::vector<std::string> choices, std::string dflt,
                            std::string help) {
  OptionDef d = Option(std::move(name), OptionType::kEnum, std::move(dflt), std::move(help));
  d.choices = std::move(choices);
  return d;
}

inline OptionDef WithRange(OptionDef d, double min, double max) {
  d.min = min;
  d.max = max;
  return d;
}

}  // namespace onceflow::ops

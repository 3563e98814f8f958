// How `plugin inspect` and `operators list|describe` print operators and option tables
// (defined in cmd_plugin.cc).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "operators/plugin/plugin_library.h"

namespace onceflow::cli {

// Each operator (only `only` when not empty) with its summary and config options.
void PrintPluginOperators(const ops::PluginLibrary& lib, const std::string& only, std::ostream& os);
nlohmann::json PluginOperatorJson(const ops::PluginOperatorInfo& op);
// An option table as `operators describe --json` and `plugin inspect --json` print it.
nlohmann::json OptionsJson(const std::vector<OptionDef>& options);

}  // namespace onceflow::cli

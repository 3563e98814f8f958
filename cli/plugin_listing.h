// How `plugin inspect` and `operators list --pipeline` print a plugin's operators
// (defined in cmd_plugin.cc).
#pragma once

#include <ostream>
#include <string>

#include "nlohmann/json.hpp"
#include "operators/plugin/plugin_library.h"

namespace onceflow::cli {

// Each operator (only `only` when not empty) with its summary and config options.
void PrintPluginOperators(const ops::PluginLibrary& lib, const std::string& only, std::ostream& os);
nlohmann::json PluginOperatorJson(const ops::PluginOperatorInfo& op);

}  // namespace onceflow::cli

// `onceflow plugin inspect LIBRARY.so [--json]`: loads a plugin as a pipeline would
// (same loader, same checks) and prints its name, ABI version and operators with their
// option tables. A library that does not load is exit 2 with the loader's message.
#include <iostream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/plugin_listing.h"
#include "nlohmann/json.hpp"

namespace onceflow::cli {

namespace {

void PrintOption(const OptionDef& o, std::ostream& os) {
  os << "      " << o.name << " (" << OptionTypeName(o.type) << (o.required ? ", required" : "");
  if (!o.default_value.empty()) os << ", default " << o.default_value;
  os << ")\n          " << o.help << "\n";
}

}  // namespace

void PrintPluginOperators(const ops::PluginLibrary& lib, const std::string& only,
                          std::ostream& os) {
  for (const ops::PluginOperatorInfo& op : lib.operators()) {
    if (!only.empty() && only != op.op->name) continue;
    os << "  " << op.op->name << "\n      " << (op.op->summary ? op.op->summary : "") << "\n";
    if (!op.options.empty()) os << "    config:\n";
    for (const OptionDef& o : op.options) PrintOption(o, os);
  }
}

nlohmann::json OptionsJson(const std::vector<OptionDef>& options) {
  nlohmann::json opts = nlohmann::json::array();
  for (const OptionDef& o : options) {
    nlohmann::json jo = {{"name", o.name},
                         {"type", OptionTypeName(o.type)},
                         {"required", o.required},
                         {"help", o.help}};
    if (!o.default_value.empty()) jo["default"] = o.default_value;
    if (!o.choices.empty()) jo["choices"] = o.choices;
    opts.push_back(jo);
  }
  return opts;
}

nlohmann::json PluginOperatorJson(const ops::PluginOperatorInfo& op) {
  return {{"name", op.op->name},
          {"summary", op.op->summary ? op.op->summary : ""},
          {"options", OptionsJson(op.options)}};
}

Command RegisterPlugin(CLI::App& app, const Registry& registry) {
  struct Args {
    std::string library;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("plugin", "native plugins");
  cmd->require_subcommand(1);
  CLI::App* inspect =
      cmd->add_subcommand("inspect", "show a plugin library's operators and options");
  inspect->add_option("LIBRARY", args->library, "the plugin's shared library (.so)")->required();
  inspect->add_flag("--json", args->json, "print as JSON");
  return [args]() {
    const ops::PluginLibrary* lib = nullptr;
    Status st = ops::LoadPlugin(args->library, &lib);
    if (!st.ok()) {
      std::cerr << "onceflow: error: " << st.message() << "\n";
      return int(kExitInvalid);
    }
    if (args->json) {
      nlohmann::json ops_json = nlohmann::json::array();
      for (const auto& op : lib->operators()) ops_json.push_back(PluginOperatorJson(op));
      nlohmann::json j = {{"name", lib->name()},
                          {"version", lib->version()},
                          {"abi_version", lib->abi_version()},
                          {"library", lib->path()},
                          {"operators", ops_json}};
      std::cout << DumpJson(j, 2) << "\n";
      return int(kExitOk);
    }
    std::cout << "plugin: " << lib->name();
    if (!lib->version().empty()) std::cout << " " << lib->version();
    std::cout << "\nlibrary: " << lib->path() << "\nabi version: " << lib->abi_version()
              << "\noperators:\n";
    PrintPluginOperators(*lib, "", std::cout);
    return int(kExitOk);
  };
}

}  // namespace onceflow::cli

// PluginLibrary: one loaded plugin (runtime/include/onceflow/plugin.h) — dlopen'ed with
// RTLD_NOW | RTLD_LOCAL, its ABI version checked, its entry point called once — and its
// operators' option tables translated into the registry's OptionDef, so that validation,
// `onceflow plugin inspect` and `operators list --pipeline` read them like the built-in
// tables.
//
// Libraries are loaded once per process and cached by path (a pipeline may name one
// library in several nodes; validation and the run share the load) and never unloaded:
// the host keeps calling function pointers into them. A failed load is cached too, so
// every node naming the file reports the same error.
//
// Threading: LoadPlugin may be called from any thread (the cache is locked); a
// PluginLibrary is immutable once returned.
#pragma once

#include <string>
#include <vector>

#include "onceflow/plugin.h"
#include "runtime/core/registry.h"
#include "runtime/core/status.h"

namespace onceflow::ops {

struct PluginOperatorInfo {
  const onceflow_operator* op = nullptr;
  std::vector<OptionDef> options;  // the plugin's option table as OptionDefs
};

class PluginLibrary {
 public:
  const std::string& path() const { return path_; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  uint32_t abi_version() const { return abi_version_; }
  const std::vector<PluginOperatorInfo>& operators() const { return operators_; }
  // nullptr when the library has no operator `name`.
  const PluginOperatorInfo* Find(const std::string& name) const;
  std::vector<std::string> OperatorNames() const;

 private:
  friend Status LoadPlugin(const std::string& path, const PluginLibrary** out);
  std::string path_, name_, version_;
  uint32_t abi_version_ = 0;
  std::vector<PluginOperatorInfo> operators_;
};

// Loads the plugin at `path` (or returns the cached load). Status::Invalid with a message
// naming the file, and the symbol where one is at fault: no such file, not a loadable
// library, no `onceflow_plugin_init`, another ABI version, init failed, a malformed
// operator table.
Status LoadPlugin(const std::string& path, const PluginLibrary** out);

// The callback table handed to every plugin (one per process).
const onceflow_host* PluginHost();

}  // namespace onceflow::ops

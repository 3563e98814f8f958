// Loading of plugin libraries; see plugin_library.h.
#include "operators/plugin/plugin_library.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

namespace onceflow::ops {

namespace {

struct CacheEntry {
  Status status;
  std::unique_ptr<PluginLibrary> lib;
};

std::mutex g_mu;
std::map<std::string, CacheEntry>& Cache() {
  static auto* cache = new std::map<std::string, CacheEntry>();  // never destroyed: see .h
  return *cache;
}

bool MapType(onceflow_option_type t, OptionType* out) {
  switch (t) {
    case ONCEFLOW_OPTION_STRING:
      *out = OptionType::kString;
      return true;
    case ONCEFLOW_OPTION_INT:
      *out = OptionType::kInt;
      return true;
    case ONCEFLOW_OPTION_NUMBER:
      *out = OptionType::kNumber;
      return true;
    case ONCEFLOW_OPTION_BOOL:
      *out = OptionType::kBool;
      return true;
    case ONCEFLOW_OPTION_LIST:
      *out = OptionType::kStringList;
      return true;
    case ONCEFLOW_OPTION_MAP:
      *out = OptionType::kMap;
      return true;
  }
  return false;
}

std::string Str(const char* s) { return s == nullptr ? std::string() : std::string(s); }

}  // namespace

const PluginOperatorInfo* PluginLibrary::Find(const std::string& name) const {
  for (const auto& o : operators_) {
    if (name == o.op->name) return &o;
  }
  return nullptr;
}

std::vector<std::string> PluginLibrary::OperatorNames() const {
  std::vector<std::string> names;
  for (const auto& o : operators_) names.push_back(o.op->name);
  return names;
}

Status LoadPlugin(const std::string& path, const PluginLibrary** out) {
  std::lock_guard<std::mutex> lock(g_mu);
  CacheEntry& entry = Cache()[path];
  if (entry.lib != nullptr || !entry.status.ok()) {
    *out = entry.lib.get();
    return entry.status;
  }
  auto fail = [&](const std::string& msg) {
    entry.status = Status::Invalid("plugin library '" + path + "': " + msg);
    *out = nullptr;
    return entry.status;
  };
  // dlopen's message for a missing file is "cannot open shared object file", and a path
  // without '/' would be searched on the library path: check the file ourselves first.
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) return fail(std::strerror(errno));
  if (!S_ISREG(sb.st_mode)) return fail("not a regular file");
  // RTLD_NOW: an unresolved symbol fails here, at validation, not mid-run. RTLD_LOCAL:
  // two plugins may define the same symbols without clashing.
  void* handle =
      ::dlopen(path.find('/') == std::string::npos ? ("./" + path).c_str() : path.c_str(),
               RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return fail(std::string("cannot load: ") + ::dlerror());
  ::dlerror();
  void* sym = ::dlsym(handle, ONCEFLOW_PLUGIN_INIT_SYMBOL);
  if (sym == nullptr) {
    ::dlclose(handle);
    return fail("no symbol '" ONCEFLOW_PLUGIN_INIT_SYMBOL
                "' (a plugin exports it; see onceflow/plugin.h)");
  }
  auto init = reinterpret_cast<onceflow_plugin_init_fn>(sym);
  onceflow_plugin info;
  std::memset(&info, 0, sizeof info);
  const int rc = init(PluginHost(), &info);
  if (rc != ONCEFLOW_OK) {
    return fail(ONCEFLOW_PLUGIN_INIT_SYMBOL " failed (returned " + std::to_string(rc) + ")");
  }
  if (info.abi_version != ONCEFLOW_PLUGIN_ABI_VERSION) {
    return fail(ONCEFLOW_PLUGIN_INIT_SYMBOL " reports plugin ABI version " +
                std::to_string(info.abi_version) + ", this onceflow supports version " +
                std::to_string(ONCEFLOW_PLUGIN_ABI_VERSION) +
                " (rebuild the plugin against this onceflow's plugin.h)");
  }
  if (info.name == nullptr || *info.name == '\0') return fail("the plugin has no name");
  if (info.operator_count > 0 && info.operators == nullptr) {
    return fail("operator_count is " + std::to_string(info.operator_count) +
                " but operators is NULL");
  }
  auto lib = std::make_unique<PluginLibrary>();
  lib->path_ = path;
  lib->name_ = info.name;
  lib->version_ = Str(info.version);
  lib->abi_version_ = info.abi_version;
  for (size_t i = 0; i < info.operator_count; ++i) {
    const onceflow_operator& op = info.operators[i];
    const std::string where = "operator " + std::to_string(i) +
                              (op.name != nullptr ? " '" + std::string(op.name) + "'" : "");
    if (op.name == nullptr || *op.name == '\0') return fail(where + " has no name");
    if (op.create == nullptr || op.process == nullptr || op.destroy == nullptr) {
      return fail(where + ": create, process and destroy are required");
    }
    if (op.option_count > 0 && op.options == nullptr) {
      return fail(where + ": option_count is set but options is NULL");
    }
    PluginOperatorInfo oi;
    oi.op = &op;
    for (size_t k = 0; k < op.option_count; ++k) {
      const onceflow_option& o = op.options[k];
      if (o.name == nullptr || *o.name == '\0') {
        return fail(where + ": option " + std::to_string(k) + " has no name");
      }
      OptionDef d;
      d.name = o.name;
      if (!MapType(o.type, &d.type)) {
        return fail(where + ": option '" + d.name + "' has unknown type " +
                    std::to_string(static_cast<int>(o.type)));
      }
      d.required = o.required != 0;
      d.default_value = Str(o.default_value);
      d.help = Str(o.help);
      oi.options.push_back(std::move(d));
    }
    lib->operators_.push_back(std::move(oi));
  }
  // The handle is deliberately never closed (function pointers into it stay in use).
  entry.lib = std::move(lib);
  *out = entry.lib.get();
  return Status::Ok();
}

}  // namespace onceflow::ops

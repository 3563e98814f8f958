// The `plugin` node type: an operator implemented by a shared library through the C ABI
// of runtime/include/onceflow/plugin.h. This file is the host side of that ABI: the
// callback table (onceflow_host), the per-call context the callbacks act on
// (onceflow_ctx), the node's validation against the plugin's option table, and the
// Operator that drives one plugin instance.
//
// Records cross as JSON text (the header says why); keyed state lives in the instance's
// KeyedState under the encoded key of the node's `key:` fields — the same key the input
// is partitioned on and the built-in keyed operators use — so checkpoints, restores with
// another parallelism and `onceflow state get` treat it like built-in state. Within a key
// the plugin names its values: the StateValue holds (name, bytes) pairs.
//
// Threading: one PluginOperator per task thread; the callbacks run on that thread.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "nlohmann/json.hpp"
#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/ops/keyed.h"
#include "operators/plugin/plugin_library.h"
#include "runtime/spec/validate.h"

// What a host callback acts on: the instance's node, state and emitter, and the record
// being processed. Opaque to plugins (plugin.h declares it incomplete).
struct onceflow_ctx {
  const onceflow::NodeSpec* spec = nullptr;
  onceflow::NodeContext* node = nullptr;
  const std::vector<std::string>* key_fields = nullptr;
  bool final = false;
  // The current key (encoded) and whether state calls may use it: always without `key:`
  // (the whole stream is the empty key), else only while a record or a state_foreach
  // key is current.
  std::string key;
  bool has_key = false;
  onceflow::Emitter* out = nullptr;
  const onceflow::Record* current = nullptr;  // for the origin of emitted records
  std::string error;                          // set_error's message for the current call
  bool call_failed = false;  // a callback was misused or fed bad JSON: the call fails
  std::string config_json;
  std::unordered_map<std::string, std::string> config_text;  // config_get answers
  onceflow::JsonParser parser;
};

namespace onceflow::ops {

namespace {

// ---- configuration -----------------------------------------------------------------

// A YAML value as JSON: quoted scalars are strings; plain ones become numbers, booleans
// or null when they read as such (the config: map of a plugin has no schema beyond the
// option table, so maps and lists inside it are converted by this rule).
nlohmann::json ScalarJson(const YNode& n) {
  if (n.quoted) return n.scalar;
  const std::string& s = n.scalar;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "~") return nullptr;
  if (!s.empty()) {
    char* end = nullptr;
    errno = 0;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0 && *end == '\0') return i;
    double d = std::strtod(s.c_str(), &end);
    if (*end == '\0') return d;
  }
  return s;
}

nlohmann::json YamlJson(const YNode& n) {
  switch (n.kind) {
    case YNode::Kind::kNull:
      return nullptr;
    case YNode::Kind::kScalar:
      return ScalarJson(n);
    case YNode::Kind::kSequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const YNode& i : n.items) a.push_back(YamlJson(i));
      return a;
    }
    case YNode::Kind::kMap: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, v] : n.entries) o[k.scalar] = YamlJson(v);
      return o;
    }
  }
  return nullptr;
}

// One option value as the option's type says (already validated).
nlohmann::json TypedJson(const OptionDef& def, const YNode& v) {
  switch (def.type) {
    case OptionType::kString:
      return v.scalar;
    case OptionType::kStringList: {
      nlohmann::json a = nlohmann::json::array();
      if (v.is_scalar()) {
        a.push_back(v.scalar);
      } else {
        for (const YNode& i : v.items) a.push_back(i.scalar);
      }
      return a;
    }
    case OptionType::kBool:
      return v.scalar == "true" || v.scalar == "True" || v.scalar == "TRUE";
    default:
      return YamlJson(v);
  }
}

// The config: map with the option table's defaults filled in; config_get's texts.
void BuildConfig(const NodeSpec& spec, const PluginOperatorInfo& info, onceflow_ctx* c) {
  nlohmann::json cfg = nlohmann::json::object();
  const YNode* given = spec.options.Raw("config");
  for (const OptionDef& def : info.options) {
    const YNode* v = given != nullptr && given->is_map() ? given->Find(def.name) : nullptr;
    if (v != nullptr && !v->is_null()) {
      cfg[def.name] = TypedJson(def, *v);
    } else if (!def.default_value.empty()) {
      YNode d;
      Diagnostics scratch;
      if (ParseYaml(def.default_value, &d, &scratch)) cfg[def.name] = TypedJson(def, d);
    }
  }
  c->config_json = cfg.dump();
  for (const auto& [k, v] : cfg.items()) {
    c->config_text[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
}

// ---- host callbacks ----------------------------------------------------------------

int HostEmit(onceflow_ctx* c, const char* json, size_t len) {
  if (c->out == nullptr) {  // from create(): there is nowhere to emit to yet
    c->call_failed = true;
    c->error = "emit called outside process() and finish()";
    return ONCEFLOW_ERROR;
  }
  RecordBatch* b = c->out->batch();
  Record& r = b->emplace_back();
  std::string error;
  if (!c->parser.ParseObject(std::string_view(json, len), &r, &error)) {
    b->pop_back();
    c->call_failed = true;
    c->error = "emitted text that is not a JSON object (" + error +
               "): " + std::string(json, std::min<size_t>(len, 200));
    return ONCEFLOW_ERROR;
  }
  if (c->current != nullptr) r.origin = c->current->origin;
  return ONCEFLOW_OK;
}

// The value named `name` in the current key's entry: its index in the StateValue.
int FindNamed(const StateValue& v, std::string_view name) {
  for (size_t i = 0; i + 1 < v.size(); i += 2) {
    if (v[i].str() == name) return static_cast<int>(i);
  }
  return -1;
}

bool StateUsable(onceflow_ctx* c) {
  if (c->has_key) return true;
  c->error = "state used outside process() or state_foreach (no current key)";
  c->call_failed = true;
  return false;
}

int HostStateGet(onceflow_ctx* c, const char* name, size_t name_len, const char** value,
                 size_t* len) {
  if (!StateUsable(c)) return 0;
  const StateValue* v = c->node->state->Find(c->key);
  if (v == nullptr) return 0;
  const int i = FindNamed(*v, std::string_view(name, name_len));
  if (i < 0) return 0;
  const std::string& s = (*v)[i + 1].str();
  *value = s.data();
  *len = s.size();
  return 1;
}

void HostStatePut(onceflow_ctx* c, const char* name, size_t name_len, const char* value,
                  size_t len) {
  if (!StateUsable(c)) return;
  StateValue& v = c->node->state->Upsert(c->key);
  const std::string_view n(name, name_len);
  const int i = FindNamed(v, n);
  if (i >= 0) {
    v[i + 1].mutable_str().assign(value, len);
    return;
  }
  v.push_back(Value::String(n));
  v.push_back(Value::String(std::string_view(value, len)));
}

int HostStateDelete(onceflow_ctx* c, const char* name, size_t name_len) {
  if (!StateUsable(c)) return 0;
  const StateValue* found = c->node->state->Find(c->key);
  if (found == nullptr) return 0;
  const int i = FindNamed(*found, std::string_view(name, name_len));
  if (i < 0) return 0;
  if (found->size() == 2) {
    c->node->state->Erase(c->key);  // the last value of the key: a tombstone
    return 1;
  }
  StateValue& v = c->node->state->Upsert(c->key);  // marks the entry changed
  v.erase(v.begin() + i, v.begin() + i + 2);
  return 1;
}

int HostStateForeach(onceflow_ctx* c, int (*fn)(void*, onceflow_ctx*, const char*, size_t),
                     void* arg) {
  // Copied: fn may put or delete, which invalidates views into the state's index.
  std::vector<std::string> keys;
  for (std::string_view k : SortedKeys(*c->node->state)) keys.emplace_back(k);
  const std::string saved_key = c->key;
  const bool saved_has = c->has_key;
  std::string key_json;
  int rc = ONCEFLOW_OK;
  for (const std::string& k : keys) {
    Record kr;
    if (!DecodeKey(k, *c->key_fields, &kr)) continue;
    key_json.clear();
    kr.AppendJson(&key_json);
    c->key = k;
    c->has_key = true;
    rc = fn(arg, c, key_json.data(), key_json.size());
    if (rc != ONCEFLOW_OK) break;
  }
  c->key = saved_key;
  c->has_key = saved_has;
  return rc;
}

void HostLog(onceflow_ctx* c, int level, const char* message) {
  const auto lvl = level <= ONCEFLOW_LOG_DEBUG  ? spdlog::level::debug
                   : level == ONCEFLOW_LOG_INFO ? spdlog::level::info
                   : level == ONCEFLOW_LOG_WARN ? spdlog::level::warn
                                                : spdlog::level::err;
  if (c == nullptr) {
    spdlog::log(lvl, "plugin: {}", message ? message : "");
  } else {
    spdlog::log(lvl, "node '{}': {}", c->spec->id, message ? message : "");
  }
}

void HostSetError(onceflow_ctx* c, const char* message) {
  if (c != nullptr) c->error = message ? message : "";
}

const char* HostConfigJson(onceflow_ctx* c) { return c->config_json.c_str(); }

const char* HostConfigGet(onceflow_ctx* c, const char* name) {
  auto it = c->config_text.find(name ? name : "");
  return it == c->config_text.end() ? nullptr : it->second.c_str();
}

int HostEmitFinal(onceflow_ctx* c) { return c->final ? 1 : 0; }

// ---- the operator ------------------------------------------------------------------

class PluginOperator : public Operator {
 public:
  explicit PluginOperator(const NodeSpec& spec)
      : spec_(spec),
        key_fields_(KeyFieldsOf(spec)),
        path_(spec.options.GetPath("library")),
        op_name_(spec.options.GetString("name")) {}
  ~PluginOperator() override { Destroy(); }

  Status Open(NodeContext& ctx) override {
    Destroy();
    const PluginLibrary* lib = nullptr;
    ONCEFLOW_RETURN_IF_ERROR(LoadPlugin(path_, &lib));
    info_ = lib->Find(op_name_);
    if (info_ == nullptr) {
      return Status::Invalid("plugin library '" + path_ + "' has no operator '" + op_name_ + "'");
    }
    label_ = "plugin operator '" + op_name_ + "' of " + lib->name();
    c_ = std::make_unique<onceflow_ctx>();
    c_->spec = &spec_;
    c_->node = &ctx;
    c_->key_fields = &key_fields_;
    c_->final = spec_.emit == EmitMode::kFinal;
    c_->has_key = key_fields_.empty();
    BuildConfig(spec_, *info_, c_.get());
    self_ = info_->op->create(c_.get());
    if (self_ != nullptr && c_->call_failed) Destroy();
    if (self_ == nullptr) {
      return Status::Runtime(label_ + ": create failed" +
                             (c_->error.empty() ? "" : ": " + c_->error));
    }
    return Status::Ok();
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    onceflow_ctx& c = *c_;
    c.out = &out;
    Status st;
    for (const Record& rec : in) {
      if (!key_fields_.empty()) {
        if (!ExtractKey(rec, key_fields_, "plugin", c.node->errors, &c.key, &st)) {
          if (!st.ok()) return st;
          continue;
        }
        c.has_key = true;
      }
      c.current = &rec;
      c.error.clear();
      c.call_failed = false;
      json_.clear();
      rec.AppendJson(&json_);
      const size_t mark = out.batch()->size();
      int rc = info_->op->process(self_, &c, port, json_.data(), json_.size());
      if (c.call_failed) rc = ONCEFLOW_ERROR;
      if (rc == ONCEFLOW_OK) continue;
      // What a failed call emitted is dropped: the record did not go through.
      out.batch()->resize(mark);
      if (rc == ONCEFLOW_RECORD_ERROR) {
        ONCEFLOW_RETURN_IF_ERROR(c.node->errors->OnRecordError(rec, label_ + ": " + Message(c)));
        continue;
      }
      return Status::Runtime(label_ + " failed on record " + json_.substr(0, 200) + ": " +
                             Message(c));
    }
    c.current = nullptr;
    if (!key_fields_.empty()) c.has_key = false;
    return Status::Ok();
  }

  Status Finish(Emitter& out) override {
    if (info_->op->finish == nullptr) return Status::Ok();
    onceflow_ctx& c = *c_;
    c.out = &out;
    c.current = nullptr;
    c.error.clear();
    c.call_failed = false;
    int rc = info_->op->finish(self_, &c);
    if (c.call_failed) rc = ONCEFLOW_ERROR;
    if (rc != ONCEFLOW_OK) return Status::Runtime(label_ + ": finish failed: " + Message(c));
    return Status::Ok();
  }

  Status Close() override {
    Destroy();
    return Status::Ok();
  }

 private:
  static std::string Message(const onceflow_ctx& c) {
    return c.error.empty() ? "(the plugin gave no message)" : c.error;
  }
  void Destroy() {
    if (self_ != nullptr) info_->op->destroy(self_);
    self_ = nullptr;
  }

  const NodeSpec& spec_;
  const std::vector<std::string> key_fields_;
  const std::string path_, op_name_;
  const PluginOperatorInfo* info_ = nullptr;
  std::string label_;
  std::unique_ptr<onceflow_ctx> c_;
  void* self_ = nullptr;
  std::string json_;
};

// ---- validation --------------------------------------------------------------------

void CheckPluginNode(const NodeSpec& spec, Diagnostics& diags) {
  const std::string label = "node '" + spec.id + "'";
  if (spec.key.empty() && spec.parallelism > 1) {
    const YNode* at = spec.at->Find("parallelism");
    diags.Error(at != nullptr ? *at : *spec.at,
                label +
                    ": a plugin node without `key` keeps one state for the whole "
                    "stream, so it runs with parallelism 1",
                "add `key: FIELD` to partition its input and state by key");
  }
  const PluginLibrary* lib = nullptr;
  Status st = LoadPlugin(spec.options.GetPath("library"), &lib);
  if (!st.ok()) {
    diags.Error(*spec.options.Raw("library"), label + ": " + st.message());
    return;
  }
  const std::string name = spec.options.GetString("name");
  const PluginOperatorInfo* info = lib->Find(name);
  if (info == nullptr) {
    std::vector<std::string> names = lib->OperatorNames();
    std::string note = DidYouMeanNote(name, names);
    if (note.empty()) {
      note = "operators of " + lib->name() + ":";
      for (const std::string& n : names) note += " " + n;
    }
    diags.Error(*spec.options.Raw("name"),
                label + ": plugin '" + lib->name() + "' (" + lib->path() + ") has no operator '" +
                    name + "'",
                note);
    return;
  }
  const YNode* cfg = spec.options.Raw("config");
  std::vector<std::string> option_names;
  for (const OptionDef& d : info->options) option_names.push_back(d.name);
  if (cfg != nullptr && cfg->is_map()) {
    for (const auto& [k, v] : cfg->entries) {
      // A named copy: clang 14 cannot capture a structured binding in a lambda.
      const std::string& key = k.scalar;
      auto def = std::find_if(info->options.begin(), info->options.end(),
                              [&](const OptionDef& d) { return d.name == key; });
      if (def == info->options.end()) {
        diags.Error(
            k,
            label + ": unknown config option '" + k.scalar + "' of plugin operator '" + name + "'",
            DidYouMeanNote(k.scalar, option_names));
        continue;
      }
      NodeOptions::Entry entry;
      CheckOptionValue(*def, v, label + ": config option '" + k.scalar + "'", "", &entry, &diags);
    }
  }
  for (const OptionDef& d : info->options) {
    if (!d.required) continue;
    if (cfg != nullptr && cfg->is_map() && cfg->Find(d.name) != nullptr) continue;
    diags.Error(cfg != nullptr ? *cfg : *spec.options.Raw("name"),
                label + ": plugin operator '" + name + "' needs config option '" + d.name + "'",
                d.help);
  }
}

}  // namespace

const onceflow_host* PluginHost() {
  static const onceflow_host host = [] {
    onceflow_host h;
    std::memset(&h, 0, sizeof h);
    h.abi_version = ONCEFLOW_PLUGIN_ABI_VERSION;
    h.size = sizeof(onceflow_host);
    h.emit = HostEmit;
    h.state_get = HostStateGet;
    h.state_put = HostStatePut;
    h.state_delete = HostStateDelete;
    h.state_foreach = HostStateForeach;
    h.log = HostLog;
    h.set_error = HostSetError;
    h.config_json = HostConfigJson;
    h.config_get = HostConfigGet;
    h.emit_final = HostEmitFinal;
    return h;
  }();
  return &host;
}

NodeTypeDef PluginDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "plugin";
  d.summary = "an operator from a native plugin library (see onceflow/plugin.h)";
  d.options = {
      RequiredOption("library", OptionType::kPath,
                     "the plugin's shared library (.so), relative to the pipeline file"),
      RequiredOption("name", OptionType::kString,
                     "the operator of the library to run (onceflow plugin inspect lists them)"),
      Option("config", OptionType::kMap, "",
             "the operator's configuration, checked against its option table"),
      Option("key", OptionType::kFieldList, "",
             "field or list of fields partitioning the input and the plugin's state; "
             "without it the node runs with parallelism 1"),
  };
  d.keyed = true;
  d.stateful = true;
  d.check = CheckPluginNode;
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<PluginOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

// The pipeline validator: option type checks (shared with the top level in loader.cc) and
// the node / graph rules of SPEC §3. It reports every problem it can find in one pass, but
// avoids cascades: a node whose type is unknown is not checked for unknown options, an
// input that is not a node is not checked further, graph warnings are given only when
// the pipeline is otherwise valid.
//
// Threading: single-threaded; reads the registry (immutable), writes `spec` and `diags`.
#include "runtime/spec/validate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "runtime/spec/loader.h"

namespace onceflow {
namespace {

const char* KindWord(NodeKind k) {
  switch (k) {
    case NodeKind::kSource:
      return "source";
    case NodeKind::kOperator:
      return "operator";
    case NodeKind::kSink:
      return "sink";
  }
  return "operator";
}

std::string FormatNumber(double x) {
  if (std::isfinite(x) && std::floor(x) == x && std::fabs(x) < 1e15) {
    return std::to_string(static_cast<long long>(x));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

// "a, b or c"
std::string JoinOr(const std::vector<std::string>& items) {
  if (items.size() <= 1) return items.empty() ? "" : items[0];
  std::vector<std::string> head(items.begin(), items.end() - 1);
  return Join(head, ", ") + " or " + items.back();
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool ParseInt64(const std::string& s, int64_t* out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  if (b == e) return false;
  auto [p, ec] = std::from_chars(b, e, *out);
  return ec == std::errc() && p == e;
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

bool ParseBool(const YNode& v, bool* out) {
  if (!v.is_scalar() || v.quoted) return false;
  const std::string& s = v.scalar;
  if (s == "true" || s == "True" || s == "TRUE") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *out = false;
    return true;
  }
  return false;
}

std::string RangeText(const OptionDef& def, const char* unit) {
  const bool has_min = std::isfinite(def.min), has_max = std::isfinite(def.max);
  if (has_min && has_max) {
    return "must be between " + FormatNumber(def.min) + unit + " and " + FormatNumber(def.max) +
           unit;
  }
  if (has_min) return "must be at least " + FormatNumber(def.min) + unit;
  return "must be at most " + FormatNumber(def.max) + unit;
}

bool InRange(const OptionDef& def, double x) { return x >= def.min && x <= def.max; }

bool IsValidNodeId(const std::string& id) {
  if (id.empty() || !(std::isalpha(static_cast<unsigned char>(id[0])) || id[0] == '_')) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

bool IsValidFieldName(const std::string& f) {
  return !f.empty() && std::none_of(f.begin(), f.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == '(' || c == ')' || c == ',';
  });
}

void ClearPositions(YNode* n) {
  n->loc = SourceLoc{};
  n->length = 0;
  for (YNode& item : n->items) ClearPositions(&item);
  for (auto& [k, v] : n->entries) {
    ClearPositions(&k);
    ClearPositions(&v);
  }
}

// What the validator knows about one node beside its NodeSpec.
struct NodeState {
  const YNode* kind_key = nullptr;   // the source:/op:/sink: key
  const YNode* type_at = nullptr;    // its value
  const YNode* input_key = nullptr;  // the input: key, when written
  const NodeTypeDef* def = nullptr;  // nullptr when the type is unknown
  bool kind_known = false;
  bool parallelism_ok = true;              // n.parallelism is meaningful
  bool options_ok = true;                  // every option type-checked
  bool inputs_ok = true;                   // the input: value parsed
  std::vector<const YNode*> partition_at;  // per input: its partition value or nullptr
};

class NodeValidator {
 public:
  NodeValidator(const Registry& registry, PipelineSpec* spec, Diagnostics* diags)
      : registry_(registry), spec_(spec), diags_(diags) {}

  void Run(const YNode& nodes_key, const YNode& nodes) {
    if (!nodes.is_map()) {
      diags_->Error(nodes.is_null() ? nodes_key : nodes,
                    "'nodes' must be a map of node ids to nodes, got " + DescribeValue(nodes));
      return;
    }
    if (nodes.entries.empty()) {
      diags_->Error(nodes_key, "'nodes' is empty: a pipeline needs at least a source");
      return;
    }
    std::set<std::string> seen;
    for (const auto& [key, value] : nodes.entries) {
      // Non-scalar keys and duplicate ids were reported by the YAML reader; the first of
      // two nodes with one id is the one validated.
      if (!key.is_scalar() || !seen.insert(key.scalar).second) continue;
      ValidateNode(key, value);
    }
    // Type-specific checks (Lua compiles, "aggregate needs an aggregate", ...) run once the
    // node's options are known good, so they can rely on the option types.
    for (size_t i = 0; i < spec_->nodes.size(); ++i) {
      const NodeState& st = states_[i];
      if (st.def && st.options_ok && st.def->check) st.def->check(spec_->nodes[i], *diags_);
    }
    CheckGraph(nodes_key);
  }

 private:
  std::string Label(const NodeSpec& n) const { return "node '" + n.id + "'"; }
  std::string Typed(const NodeSpec& n, const NodeState& st) const {
    return st.def ? Label(n) + " (" + n.type + ")" : Label(n);
  }

  std::string TypesNote(NodeKind kind) const {
    std::vector<std::string> names = registry_.TypeNames(kind);
    if (names.empty()) return "";
    return std::string(KindWord(kind)) + " types: " + Join(names, ", ");
  }

  void ValidateNode(const YNode& key, const YNode& value) {
    NodeSpec n;
    NodeState st;
    n.id = key.scalar;
    n.id_at = &key;
    n.at = &value;
    n.dir = spec_->dir;
    if (!IsValidNodeId(n.id)) {
      diags_->Error(key, "node id '" + n.id +
                             "' must start with a letter or '_' and hold only letters, digits, "
                             "'_' and '-'");
    }
    if (!value.is_map()) {
      diags_->Error(value.is_null() ? key : value,
                    Label(n) + " must be a map with one of source:, op: or sink:, got " +
                        DescribeValue(value));
      Push(std::move(n), std::move(st));
      return;
    }
    DetectKind(value, &n, &st);
    if (!st.kind_known) {
      Push(std::move(n), std::move(st));
      return;
    }
    const YNode& tv = *st.type_at;
    if (!tv.is_scalar() || tv.scalar.empty()) {
      diags_->Error(tv,
                    Label(n) + ": '" + NodeKindName(n.kind) + ":' needs a type name, got " +
                        DescribeValue(tv),
                    TypesNote(n.kind));
    } else {
      n.type = tv.scalar;
      st.def = registry_.Find(n.kind, n.type);
      if (!st.def) {
        std::string note = DidYouMeanNote(n.type, registry_.TypeNames(n.kind));
        for (NodeKind other : {NodeKind::kSource, NodeKind::kOperator, NodeKind::kSink}) {
          if (note.empty() && other != n.kind && registry_.Find(other, n.type)) {
            note = "'" + n.type + "' is a " + KindWord(other) + " type: write '" +
                   NodeKindName(other) + ": " + n.type + "'";
          }
        }
        if (note.empty()) note = TypesNote(n.kind);
        diags_->Error(tv, Label(n) + ": unknown " + KindWord(n.kind) + " type '" + n.type + "'",
                      note);
      }
    }
    ValidateOptions(value, &n, &st);
    Push(std::move(n), std::move(st));
  }

  void Push(NodeSpec n, NodeState st) {
    spec_->nodes.push_back(std::move(n));
    states_.push_back(std::move(st));
  }

  void DetectKind(const YNode& value, NodeSpec* n, NodeState* st) {
    static const std::vector<std::string> kKinds = {"source", "op", "sink"};
    static const NodeKind kKindValues[] = {NodeKind::kSource, NodeKind::kOperator, NodeKind::kSink};
    for (const auto& [k, v] : value.entries) {
      if (!k.is_scalar()) continue;
      for (size_t i = 0; i < kKinds.size(); ++i) {
        if (k.scalar != kKinds[i]) continue;
        if (st->kind_key == nullptr) {
          st->kind_key = &k;
          st->type_at = &v;
          n->kind = kKindValues[i];
        } else {
          diags_->Error(k, Label(*n) + " has both '" + st->kind_key->scalar + ":' and '" +
                               k.scalar + ":'; a node is exactly one of source:, op:, sink:");
        }
      }
    }
    st->kind_known = st->kind_key != nullptr;
    if (st->kind_known) return;
    std::string note;
    for (const auto& [k, v] : value.entries) {
      if (!k.is_scalar() || !note.empty()) continue;
      if (k.scalar == "type" || k.scalar == "kind") {
        note = "write the type as source: TYPE, op: TYPE or sink: TYPE";
      } else if (std::string best = DidYouMean(k.scalar, kKinds); !best.empty()) {
        note = "did you mean '" + best + ":' instead of '" + k.scalar + ":'?";
      }
    }
    diags_->Error(*n->id_at, Label(*n) + " needs one of source:, op: or sink:", note);
  }

  void ValidateOptions(const YNode& value, NodeSpec* n, NodeState* st) {
    const NodeTypeDef* def = st->def;
    const bool stateful = def && def->stateful;
    const std::vector<OptionDef>& common = CommonOptions(n->kind, stateful);
    std::vector<std::string> names;
    if (def) {
      for (const OptionDef& o : def->options) names.push_back(o.name);
    }
    for (const OptionDef& o : common) names.push_back(o.name);
    const std::string label = Label(*n);

    for (const auto& [k, v] : value.entries) {
      if (!k.is_scalar() || &k == st->kind_key) continue;
      if (k.scalar == "source" || k.scalar == "op" || k.scalar == "sink") continue;
      if (k.scalar == "input") {
        if (n->kind == NodeKind::kSource) {
          diags_->Error(k, std::string("source '") + n->id + "'" +
                               (def ? " (" + n->type + ")" : "") + " takes no input");
        } else {
          st->input_key = &k;
          ParseInputs(v, n, st);
        }
        continue;
      }
      const OptionDef* od = nullptr;
      if (def) {
        for (const OptionDef& o : def->options) {
          if (o.name == k.scalar) od = &o;
        }
      }
      for (const OptionDef& o : common) {
        if (!od && o.name == k.scalar) od = &o;
      }
      if (!od) {
        if (!def) continue;  // unknown type: its options are unknown too (already reported)
        st->options_ok = false;
        if (k.scalar == "emit") {
          std::vector<std::string> stateful_types;
          for (const NodeTypeDef* d : registry_.All()) {
            if (d->stateful && d->kind == NodeKind::kOperator) stateful_types.push_back(d->type);
          }
          // Event-time operators keep state too, so say why they take no `emit`.
          diags_->Error(k,
                        Typed(*n, *st) + ": 'emit' applies only to stateful operators (" +
                            Join(stateful_types, ", ") + ")",
                        def->event_time_option.empty()
                            ? ""
                            : "'" + def->type +
                                  "' emits on the watermark: each result once, when event "
                                  "time has passed it");
          continue;
        }
        diags_->Error(k, label + ": unknown option '" + k.scalar + "'",
                      DidYouMeanNote(k.scalar, names));
        continue;
      }
      NodeOptions::Entry entry;
      if (!CheckOptionValue(*od, v, label + ": option '" + k.scalar + "'", spec_->dir, &entry,
                            diags_)) {
        st->options_ok = false;
        if (k.scalar == "parallelism") st->parallelism_ok = false;
        continue;
      }
      n->options.values_[od->name] = std::move(entry);
    }

    if (def) {
      for (const OptionDef& o : def->options) {
        if (o.required && value.Find(o.name) == nullptr) {
          diags_->Error(*n->id_at, Typed(*n, *st) + ": missing required option '" + o.name + "'");
          st->options_ok = false;
        }
      }
    }
    if (n->kind != NodeKind::kSource && st->input_key == nullptr &&
        (def == nullptr || def->min_inputs > 0)) {
      diags_->Error(*n->id_at, Typed(*n, *st) + ": missing required option 'input'");
    }
    if (def) {
      for (const OptionDef& o : def->options) FillDefault(o, value, n);
    }
    for (const OptionDef& o : common) FillDefault(o, value, n);

    const NodeOptions& opts = n->options;
    if (st->parallelism_ok && opts.Has("parallelism")) {
      n->parallelism = static_cast<int>(opts.GetInt("parallelism", 1));
    }
    if (def && st->parallelism_ok && n->parallelism > def->max_parallelism) {
      const YNode* at = value.Find("parallelism");
      std::string msg =
          std::string(KindWord(n->kind)) + " '" + n->id + "' (" + n->type +
          ") supports parallelism " +
          (def->max_parallelism == 1 ? std::string("1 only")
                                     : "up to " + std::to_string(def->max_parallelism));
      if (at) {
        diags_->Error(*at, msg);
      } else {
        diags_->Error(*n->id_at, msg);
      }
      st->parallelism_ok = false;
    }
    const std::string on_error = opts.GetString("on_error", "fail");
    n->on_error = on_error == "skip"          ? OnError::kSkip
                  : on_error == "dead_letter" ? OnError::kDeadLetter
                                              : OnError::kFail;
    // dead_letter goes with on_error: dead_letter. Without a path the policy cannot work
    // (error); a path without the policy is harmless but surely not what was meant (warning,
    // unless on_error itself is broken and already reported).
    const YNode* dead_letter_key = value.FindKey("dead_letter");
    const YNode* on_error_value = value.Find("on_error");
    const bool on_error_ok = on_error_value == nullptr || opts.Given("on_error");
    if (n->on_error == OnError::kDeadLetter && dead_letter_key == nullptr) {
      diags_->Error(*on_error_value,
                    label +
                        ": on_error: dead_letter needs 'dead_letter: PATH' (the JSONL file "
                        "that failed records go to)");
    } else if (n->on_error != OnError::kDeadLetter && dead_letter_key != nullptr && on_error_ok) {
      diags_->Warning(*dead_letter_key, label + ": 'dead_letter' is ignored: on_error is '" +
                                            on_error + "', not dead_letter");
    }
    n->dead_letter_path = opts.GetPath("dead_letter");
    n->emit = opts.GetString("emit", "updates") == "final" ? EmitMode::kFinal : EmitMode::kUpdates;
    if (def && def->keyed && opts.Has("key")) n->key = opts.GetList("key");
  }

  // Defaults are parsed from the option table's YAML text into a node the NodeOptions entry
  // owns, so that getters treat written and default values alike.
  void FillDefault(const OptionDef& o, const YNode& value, NodeSpec* n) {
    if (o.default_value.empty() || n->options.Has(o.name) || value.Find(o.name) != nullptr) {
      return;
    }
    auto owned = std::make_shared<YNode>();
    Diagnostics scratch;
    if (!ParseYaml(o.default_value, owned.get(), &scratch)) return;
    // Line 0: a default is written nowhere, so messages about it carry no position, and
    // node checks can tell it from a written value (loc.line > 0, or Given()).
    ClearPositions(owned.get());
    NodeOptions::Entry entry;
    // A default that fails its own type is a bug in the option table, not the user's
    // problem: leave the option absent so getters fall back to their own default.
    if (!CheckOptionValue(o, *owned, o.name, spec_->dir, &entry, &scratch)) return;
    entry.owned = std::move(owned);
    entry.is_default = true;
    n->options.values_[o.name] = std::move(entry);
  }

  void ParseInputs(const YNode& v, NodeSpec* n, NodeState* st) {
    const std::string label = Label(*n);
    if (v.is_null() || (v.is_sequence() && v.items.empty())) {
      diags_->Error(v, label +
                           ": 'input' needs a node id, a list of ids or {from: ID, "
                           "partition: ...}");
      st->inputs_ok = false;
      return;
    }
    if (v.is_sequence()) {
      for (const YNode& item : v.items) ParseOneInput(item, n, st);
    } else {
      ParseOneInput(v, n, st);
    }
  }

  void ParseOneInput(const YNode& item, NodeSpec* n, NodeState* st) {
    const std::string label = Label(*n);
    if (item.is_scalar()) {
      InputSpec in;
      in.from = item.scalar;
      in.at = &item;
      n->inputs.push_back(std::move(in));
      st->partition_at.push_back(nullptr);
      return;
    }
    if (!item.is_map()) {
      diags_->Error(item, label + ": an input is a node id or {from: ID, partition: ...}, got " +
                              DescribeValue(item));
      st->inputs_ok = false;
      return;
    }
    static const std::vector<std::string> kKeys = {"from", "partition"};
    bool ok = true;
    for (const auto& [k, v] : item.entries) {
      if (k.is_scalar() && k.scalar != "from" && k.scalar != "partition") {
        diags_->Error(k,
                      label + ": unknown key '" + k.scalar +
                          "' in an input (expected from "
                          "and partition)",
                      DidYouMeanNote(k.scalar, kKeys));
        ok = false;
      }
    }
    InputSpec in;
    const YNode* from = item.Find("from");
    if (from == nullptr || !from->is_scalar()) {
      diags_->Error(from ? *from : item,
                    label + ": an input map needs 'from: ID', got " +
                        (from ? DescribeValue(*from) : std::string("no 'from'")));
      ok = false;
    } else {
      in.from = from->scalar;
      in.at = from;
    }
    const YNode* partition = item.Find("partition");
    if (partition != nullptr && !ParsePartition(*partition, label, &in)) ok = false;
    if (!ok) {
      st->inputs_ok = false;
      return;
    }
    n->inputs.push_back(std::move(in));
    st->partition_at.push_back(partition);
  }

  bool ParsePartition(const YNode& v, const std::string& label, InputSpec* in) {
    static const std::vector<std::string> kNames = {"forward", "round_robin", "broadcast", "hash"};
    const std::string expected =
        "expected forward, round_robin, hash(FIELD[,FIELD...]) or broadcast";
    if (!v.is_scalar()) {
      diags_->Error(
          v, label + ": partition must be a name, got " + DescribeValue(v) + "; " + expected);
      return false;
    }
    const std::string text = Trim(v.scalar);
    if (text == "forward") {
      in->partition = PartitionKind::kForward;
    } else if (text == "round_robin") {
      in->partition = PartitionKind::kRoundRobin;
    } else if (text == "broadcast") {
      in->partition = PartitionKind::kBroadcast;
    } else if (text.rfind("hash", 0) == 0 &&
               (text.size() == 4 || Trim(text.substr(4)).front() == '(')) {
      std::string rest = Trim(text.substr(4));
      in->partition = PartitionKind::kHash;
      if (rest.empty()) return true;  // bare `hash`: on the key (checked in CheckGraph)
      if (rest.back() != ')') {
        diags_->Error(v, label + ": bad partition '" + text + "': expected hash(FIELD[,FIELD...])");
        return false;
      }
      std::string inner = rest.substr(1, rest.size() - 2);
      size_t start = 0;
      while (true) {
        size_t comma = inner.find(',', start);
        std::string field = Trim(std::string_view(inner).substr(
            start, comma == std::string::npos ? std::string::npos : comma - start));
        if (!IsValidFieldName(field)) {
          diags_->Error(v, label + ": bad partition '" + text +
                               "': expected hash(FIELD[,FIELD...]) with non-empty field names");
          return false;
        }
        in->hash_fields.push_back(field);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else {
      diags_->Error(v, label + ": unknown partition '" + text + "'; " + expected,
                    DidYouMeanNote(text, kNames));
      return false;
    }
    return true;
  }

  // Whether records partitioned on `fields` keep all records of one key of `key` together.
  static bool Subset(const std::vector<std::string>& fields, const std::vector<std::string>& key) {
    return !fields.empty() && std::all_of(fields.begin(), fields.end(), [&](const std::string& f) {
      return std::find(key.begin(), key.end(), f) != key.end();
    });
  }

  void CheckInputs(size_t i, const std::map<std::string, size_t>& index,
                   const std::vector<std::string>& ids, std::vector<std::vector<size_t>>* down,
                   std::vector<bool>* consumed) {
    NodeSpec& n = spec_->nodes[i];
    NodeState& st = states_[i];
    const std::string label = Label(n);
    std::set<std::string> seen;
    for (size_t p = 0; p < n.inputs.size(); ++p) {
      InputSpec& in = n.inputs[p];
      const YNode* partition_at = st.partition_at[p];
      if (in.from == n.id) {
        diags_->Error(*in.at, label + ": input '" + in.from + "' is the node itself");
        continue;
      }
      auto it = index.find(in.from);
      if (it == index.end()) {
        diags_->Error(*in.at, label + ": input '" + in.from + "' is not a node of this pipeline",
                      DidYouMeanNote(in.from, ids));
        continue;
      }
      if (!seen.insert(in.from).second) {
        diags_->Error(*in.at, label + ": input '" + in.from + "' is listed twice");
        continue;
      }
      const size_t j = it->second;
      const NodeSpec& up = spec_->nodes[j];
      const NodeState& ust = states_[j];
      (*consumed)[j] = true;
      if (ust.kind_known && up.kind == NodeKind::kSink) {
        diags_->Error(*in.at, "sink '" + up.id + "' cannot feed other nodes");
        continue;
      }
      (*down)[j].push_back(i);
      const bool both_parallelism = st.parallelism_ok && ust.parallelism_ok;
      if (in.partition == PartitionKind::kForward && both_parallelism &&
          up.parallelism != n.parallelism) {
        diags_->Error(*partition_at, label + ": partition forward from '" + up.id +
                                         "' needs equal parallelism ('" + up.id + "' has " +
                                         std::to_string(up.parallelism) + ", '" + n.id + "' has " +
                                         std::to_string(n.parallelism) + ")");
        continue;
      }
      const bool keyed = st.def && st.def->keyed && !n.key.empty();
      if (in.partition == PartitionKind::kHash && in.hash_fields.empty()) {
        if (keyed) {
          in.hash_fields = n.key;
        } else {
          diags_->Error(*partition_at,
                        label + ": 'hash' needs its fields here: hash(FIELD[,FIELD...])");
        }
        continue;
      }
      // A keyed operator with several instances must see every record of a key in one
      // instance, or its counts silently split: only hash on (part of) the key, or forward
      // from an upstream already hash-partitioned that way, keep that true.
      if (!keyed || !st.parallelism_ok || n.parallelism <= 1 || partition_at == nullptr) continue;
      const std::string key_text = "[" + Join(n.key, ", ") + "]";
      if (in.partition == PartitionKind::kHash && !Subset(in.hash_fields, n.key)) {
        diags_->Error(*partition_at,
                      Typed(n, st) + " is keyed on " + key_text + ": hash(" +
                          Join(in.hash_fields, ",") +
                          ") would send records of one key to several instances",
                      "hash on fields of the key, or leave 'partition' out (it hashes on the "
                      "key)");
      } else if (in.partition == PartitionKind::kRoundRobin ||
                 in.partition == PartitionKind::kBroadcast ||
                 (in.partition == PartitionKind::kForward &&
                  !(ust.def && ust.def->keyed && Subset(up.key, n.key)))) {
        diags_->Error(*partition_at,
                      Typed(n, st) + " is keyed on " + key_text + " with parallelism " +
                          std::to_string(n.parallelism) + ": partition " +
                          PartitionName(in.partition) +
                          " would send records of one key to several instances",
                      "leave 'partition' out (it hashes on the key) or use hash(FIELD)");
      }
    }
    if (st.def && st.input_key && st.inputs_ok) {
      const int count = static_cast<int>(n.inputs.size());
      const int lo = st.def->min_inputs, hi = st.def->max_inputs;
      std::string want;
      if (lo == hi && (count != lo)) {
        want = "exactly " + std::to_string(lo);
      } else if (count < lo) {
        want = "at least " + std::to_string(lo);
      } else if (count > hi) {
        want = "at most " + std::to_string(hi);
      }
      if (!want.empty()) {
        diags_->Error(*st.input_key, Typed(n, st) + " takes " + want +
                                         (lo == 1 && hi == 1 ? " input" : " inputs") + ", got " +
                                         std::to_string(count));
      }
    }
  }

  void CheckGraph(const YNode& nodes_key) {
    const size_t count = spec_->nodes.size();
    std::map<std::string, size_t> index;
    std::vector<std::string> ids;
    for (size_t i = 0; i < count; ++i) {
      index.emplace(spec_->nodes[i].id, i);
      ids.push_back(spec_->nodes[i].id);
    }
    std::vector<std::vector<size_t>> down(count);
    std::vector<bool> consumed(count, false);
    for (size_t i = 0; i < count; ++i) {
      if (states_[i].kind_known && spec_->nodes[i].kind != NodeKind::kSource) {
        CheckInputs(i, index, ids, &down, &consumed);
      }
    }
    CheckCycles(down);

    bool all_known = true, has_source = false, has_sink = false;
    for (size_t i = 0; i < count; ++i) {
      all_known = all_known && states_[i].kind_known;
      if (!states_[i].kind_known) continue;
      has_source = has_source || spec_->nodes[i].kind == NodeKind::kSource;
      has_sink = has_sink || spec_->nodes[i].kind == NodeKind::kSink;
    }
    if (all_known && !has_source) {
      diags_->Error(nodes_key, "the pipeline has no source: nothing would run");
    }
    for (size_t i = 0; i < count; ++i) {
      const NodeSpec& n = spec_->nodes[i];
      if (states_[i].kind_known && n.kind == NodeKind::kSink && n.type == "stdout" &&
          spec_->semantics == Semantics::kEffectivelyOnce) {
        diags_->Warning(
            *states_[i].type_at,
            "sink '" + n.id + "' (stdout): stdout cannot take output back: at-least-once at best");
      }
    }
    // Shape warnings only for an otherwise valid pipeline: next to errors (a misspelled
    // input, say) they would mostly repeat the error in other words.
    if (diags_->has_errors() || !all_known) return;
    if (!has_sink) {
      diags_->Warning(nodes_key, "the pipeline has no sink: its results go nowhere");
      return;
    }
    for (size_t i = 0; i < count; ++i) {
      const NodeSpec& n = spec_->nodes[i];
      if (n.kind != NodeKind::kSink && !consumed[i]) {
        diags_->Warning(*n.id_at, std::string(KindWord(n.kind)) + " '" + n.id +
                                      "': nothing takes its output (no node has it as input)");
      }
    }
  }

  // Reports each cycle found by a depth-first search once, rotated to start at the node
  // written first in the file, and at that node's id.
  void CheckCycles(const std::vector<std::vector<size_t>>& down) {
    const size_t count = down.size();
    enum Color { kWhite, kGray, kBlack };
    std::vector<Color> color(count, kWhite);
    std::vector<size_t> path;
    std::set<std::vector<size_t>> reported;
    std::function<void(size_t)> visit = [&](size_t u) {
      color[u] = kGray;
      path.push_back(u);
      for (size_t v : down[u]) {
        if (color[v] == kGray) {
          auto start = std::find(path.begin(), path.end(), v);
          std::vector<size_t> cycle(start, path.end());
          std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
          if (!reported.insert(cycle).second) continue;
          std::string text = "cycle: ";
          for (size_t c : cycle) text += spec_->nodes[c].id + " -> ";
          text += spec_->nodes[cycle.front()].id;
          diags_->Error(*spec_->nodes[cycle.front()].id_at, text);
        } else if (color[v] == kWhite) {
          visit(v);
        }
      }
      path.pop_back();
      color[u] = kBlack;
    };
    for (size_t i = 0; i < count; ++i) {
      if (color[i] == kWhite) visit(i);
    }
  }

  const Registry& registry_;
  PipelineSpec* spec_;
  Diagnostics* diags_;
  std::vector<NodeState> states_;  // parallel to spec_->nodes
};

}  // namespace

std::string DescribeValue(const YNode& v) {
  if (v.is_sequence() && v.items.empty()) return "an empty list";
  if (v.is_map() && v.entries.empty()) return "an empty map";
  if (!v.is_scalar()) return v.KindName();
  std::string text = v.scalar.substr(0, v.scalar.find('\n'));
  if (text.size() > 40)
    text = text.substr(0, 37) + "...";
  else if (text.size() < v.scalar.size())
    text += "...";
  return v.quoted ? "the quoted string '" + text + "'" : "'" + text + "'";
}

std::string ResolvePath(const std::string& path, const std::string& base_dir,
                        bool from_command_line) {
  std::filesystem::path p(path);
  if (p.is_absolute() || from_command_line || base_dir.empty()) return path;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

bool CheckOptionValue(const OptionDef& def, const YNode& v, const std::string& what,
                      const std::string& base_dir, NodeOptions::Entry* entry, Diagnostics* diags) {
  entry->node = &v;
  auto fail = [&](const std::string& msg, const std::string& note = "") {
    diags->Error(v, what + " " + msg, note);
    return false;
  };
  const std::string got = ", got " + DescribeValue(v);
  switch (def.type) {
    case OptionType::kString:
      if (!v.is_scalar()) return fail("must be a string" + got);
      return true;
    case OptionType::kLua:
      if (!v.is_scalar()) return fail("must be Lua source text (a string)" + got);
      return true;
    case OptionType::kInt: {
      int64_t x = 0;
      if (!v.is_scalar() || v.quoted || !ParseInt64(v.scalar, &x)) {
        return fail("must be an integer" + got);
      }
      if (!InRange(def, static_cast<double>(x))) return fail(RangeText(def, "") + got);
      return true;
    }
    case OptionType::kNumber: {
      double x = 0;
      if (!v.is_scalar() || v.quoted || !ParseDouble(v.scalar, &x)) {
        return fail("must be a number" + got);
      }
      if (!InRange(def, x)) return fail(RangeText(def, "") + got);
      return true;
    }
    case OptionType::kBool: {
      bool b = false;
      if (!ParseBool(v, &b)) return fail("must be true or false" + got);
      return true;
    }
    case OptionType::kDuration: {
      int64_t ms = 0;
      if (!v.is_scalar() || !ParseDuration(v.scalar, &ms)) {
        int64_t bare = 0;
        std::string note =
            v.is_scalar() && ParseInt64(v.scalar, &bare) ? "add a unit: ms, s, m or h" : "";
        return fail("must be a duration such as 250ms, 1s, 5m or 1h" + got, note);
      }
      if (!InRange(def, static_cast<double>(ms))) return fail(RangeText(def, "ms") + got);
      entry->duration_ms = ms;
      return true;
    }
    case OptionType::kPath:
      if (!v.is_scalar() || v.scalar.empty()) return fail("must be a path" + got);
      entry->resolved_path = ResolvePath(v.scalar, base_dir, v.from_command_line);
      return true;
    case OptionType::kFieldList: {
      const std::string expected = "must be a field name or a list of field names";
      if (v.is_scalar()) return v.scalar.empty() ? fail(expected + got) : true;
      if (!v.is_sequence() || v.items.empty()) return fail(expected + got);
      std::set<std::string> seen;
      bool ok = true;
      for (const YNode& item : v.items) {
        if (!item.is_scalar() || item.scalar.empty()) {
          diags->Error(item, what + ": a field name must be a string, got " + DescribeValue(item));
          ok = false;
        } else if (!seen.insert(item.scalar).second) {
          diags->Error(item, what + ": field '" + item.scalar + "' is listed twice");
          ok = false;
        }
      }
      return ok;
    }
    case OptionType::kStringList: {
      if (v.is_scalar()) return true;
      if (!v.is_sequence()) return fail("must be a string or a list of strings" + got);
      bool ok = true;
      for (const YNode& item : v.items) {
        if (!item.is_scalar()) {
          diags->Error(item, what + ": each item must be a string, got " + DescribeValue(item));
          ok = false;
        }
      }
      return ok;
    }
    case OptionType::kEnum:
      if (!v.is_scalar() ||
          std::find(def.choices.begin(), def.choices.end(), v.scalar) == def.choices.end()) {
        return fail("must be " + JoinOr(def.choices) + got,
                    v.is_scalar() ? DidYouMeanNote(v.scalar, def.choices) : "");
      }
      return true;
    case OptionType::kMap:
      if (!v.is_map()) return fail("must be a map" + got);
      return true;
  }
  return true;
}

void ValidateNodes(const YNode& nodes_key, const YNode& nodes, const Registry& registry,
                   PipelineSpec* spec, Diagnostics* diags) {
  NodeValidator(registry, spec, diags).Run(nodes_key, nodes);
}

}  // namespace onceflow

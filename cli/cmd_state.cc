// `onceflow state get`: the keyed state of one node at a checkpoint (SPEC §2, §4), read
// from the state file without a pipeline: read-only, no lock, nothing created.
//
// Keys are stored as key.h's EncodeKey bytes of the typed key field values, and the file
// does not record the key fields' names or types. So each --key string is tried first as
// a string, then, when the node holds no such key, as the typed value it spells (an
// integer, a number, true/false, null): `--key 42` finds a key field holding 42 as well as
// one holding "42". With fewer --key than key fields, every key that starts with those
// values is printed (the encoding is self-delimiting field by field, so this is a byte
// prefix). Keys print as their decoded field values, in the store's key order.
//
// Threading: main thread only.
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "nlohmann/json.hpp"
#include "runtime/core/key.h"
#include "runtime/state/store.h"
#include "spdlog/spdlog.h"

namespace onceflow::cli {

namespace {

// The values one --key string may stand for, most likely first.
std::vector<Value> Candidates(const std::string& s) {
  std::vector<Value> out{Value::String(s)};
  if (s.empty()) return out;
  const char* b = s.c_str();
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(b, &end, 10);
  bool is_int = errno == 0 && *end == '\0' && !std::isspace(static_cast<unsigned char>(s[0]));
  if (is_int) out.push_back(Value::Int(i));
  errno = 0;
  double d = std::strtod(b, &end);
  if (errno == 0 && *end == '\0' && !std::isspace(static_cast<unsigned char>(s[0]))) {
    out.push_back(Value::Double(d));
  }
  if (s == "true" || s == "false") out.push_back(Value::Bool(s == "true"));
  if (s == "null") out.push_back(Value::Null());
  return out;
}

// Every encoding of the --key strings, all-strings first, then field by field typed.
std::vector<std::string> KeyEncodings(const std::vector<std::string>& keys) {
  std::vector<std::string> out{""};
  for (const auto& k : keys) {
    std::vector<std::string> next;
    for (const auto& prefix : out) {
      for (const Value& v : Candidates(k)) {
        std::string e = prefix;
        EncodeValue(v, &e);
        next.push_back(std::move(e));
      }
    }
    out = std::move(next);
  }
  return out;
}

bool DecodeValues(std::string_view bytes, std::vector<Value>* out) {
  while (!bytes.empty()) {
    Value v;
    if (!DecodeValue(&bytes, &v)) return false;
    out->push_back(std::move(v));
  }
  return true;
}

// Text form of one value: strings bare unless empty or holding blanks, quotes or control
// characters (then JSON-quoted, so the line stays unambiguous); everything else as JSON.
std::string Text(const Value& v) {
  std::string s;
  if (v.is_string()) {
    bool plain = !v.str().empty() && v.str() != "->";
    for (unsigned char c : v.str()) {
      if (c <= ' ' || c == '"' || c == 0x7F) plain = false;
    }
    if (plain) return v.str();
    AppendJsonString(v.str(), &s);
    return s;
  }
  v.AppendText(&s);
  return s;
}

std::string TextList(const std::vector<Value>& vs) {
  std::string s;
  for (size_t i = 0; i < vs.size(); ++i) s += (i ? " " : "") + Text(vs[i]);
  return s;
}

nlohmann::ordered_json JsonList(const std::vector<Value>& vs) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const Value& v : vs) {
    nlohmann::ordered_json j =
        nlohmann::ordered_json::parse(v.ToJson(), nullptr, /*allow_exceptions=*/false);
    a.push_back(j.is_discarded() ? nlohmann::ordered_json(v.ToJson()) : j);
  }
  return a;
}

struct Entry {
  std::vector<Value> key, value;
};

struct GetArgs {
  std::string state, node, checkpoint = "latest";
  std::vector<std::string> keys;
  bool json = false;
};

int Get(const GetArgs& a) {
  std::unique_ptr<StateStore> store;
  Status st = OpenStateForReading(a.state, &store);
  // Dedup mode commits per task, after its newest savepoint: `latest` is those commits.
  std::vector<DedupChannel> dedup;
  if (st.ok()) st = store->DedupChannels(&dedup);
  const bool from_commits = st.ok() && a.checkpoint == "latest" && !dedup.empty();
  int64_t id = 0;
  if (st.ok() && !from_commits) st = ResolveCheckpoint(store.get(), a.checkpoint, &id);
  if (!st.ok()) return ReportError(st);

  std::vector<Entry> entries;
  auto add = [&](std::string_view key, std::string_view value) -> Status {
    Entry e;
    StateValue sv;
    if (!DecodeValues(key, &e.key) || !DecodeStateValue(value, &sv)) {
      return Status::State("state file " + a.state + ": node '" + a.node +
                           "': a key or value at " +
                               (from_commits ? std::string("its last commit")
                                             : "checkpoint " + std::to_string(id)) +
                           " does not decode (corrupt file, or written by a newer onceflow)");
    }
    e.value.assign(sv.begin(), sv.end());
    entries.push_back(std::move(e));
    return Status::Ok();
  };

  if (from_commits) {
    const std::vector<std::string> encodings = KeyEncodings(a.keys);
    st = store->DedupLiveState(a.node, [&](const std::string& key, const std::string& value) {
      bool match = a.keys.empty();
      for (const auto& e : encodings) match = match || key.compare(0, e.size(), e) == 0;
      return match ? add(key, value) : Status::Ok();
    });
  } else if (a.keys.empty()) {
    st = store->RestoreState(id, a.node, add);
  } else {
    const std::vector<std::string> encodings = KeyEncodings(a.keys);
    // An exact key first (one indexed lookup per reading of the --key strings) ...
    for (const auto& e : encodings) {
      std::string value;
      bool found = false;
      st = store->Get(a.node, e, id, &value, &found);
      if (!st.ok() || found) {
        if (found) st = add(e, value);
        break;
      }
    }
    // ... else every key that starts with the given fields (a scan of the node).
    if (st.ok() && entries.empty()) {
      st = store->RestoreState(id, a.node, [&](std::string_view key, std::string_view value) {
        for (const auto& e : encodings) {
          if (key.size() > e.size() && key.substr(0, e.size()) == e) return add(key, value);
        }
        return Status::Ok();
      });
    }
  }
  if (!st.ok()) return ReportError(st);

  if (a.json) {
    // One entry per line: a node may hold millions of keys, and grep still works.
    std::string out = "[";
    for (size_t i = 0; i < entries.size(); ++i) {
      nlohmann::ordered_json j = {{"key", JsonList(entries[i].key)},
                                  {"value", JsonList(entries[i].value)}};
      out += (i ? ",\n  " : "\n  ") +
             DumpJson(j);
    }
    out += entries.empty() ? "]\n" : "\n]\n";
    std::cout << out;
  } else {
    std::string out;
    for (const auto& e : entries) out += TextList(e.key) + " -> " + TextList(e.value) + "\n";
    std::cout << out;
  }
  if (entries.empty() && !from_commits) {
    // Not an error (an absent key is an answer), but say why the output is empty: a typo
    // in --node looks the same as a node without state, so name the nodes that have some.
    CheckpointDetail d;
    std::string nodes;
    if (store->Show(id, &d).ok()) {
      for (const auto& n : d.state) nodes += (nodes.empty() ? "" : ", ") + n.node;
    }
    std::string what = a.keys.empty() ? "no keyed state" : "no key matching the given --key";
    spdlog::warn("node '{}' has {} at checkpoint {} (nodes with state there: {})", a.node, what, id,
                 nodes.empty() ? "none" : nodes);
  }
  return kExitOk;
}

}  // namespace

Command RegisterState(CLI::App& app, const Registry&) {
  auto args = std::make_shared<GetArgs>();
  CLI::App* cmd = app.add_subcommand("state", "read the keyed state in a state file");
  cmd->require_subcommand(1);
  CLI::App* get =
      cmd->add_subcommand("get", "print a node's keyed state at the latest or a given checkpoint");
  get->add_option("--state", args->state, "SQLite state file")->required();
  get->add_option("--node", args->node, "node id")->required();
  get->add_option("--key", args->keys,
                  "value of a key field, once per field in the key's order (repeatable); "
                  "without --key: every key")
      ->allow_extra_args(false);
  get->add_option("--checkpoint", args->checkpoint, "checkpoint id, or 'latest' (default)");
  get->add_flag("--json", args->json, "print a JSON array of {key, value}");
  return [args]() { return Get(*args); };
}

}  // namespace onceflow::cli

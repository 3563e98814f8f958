// `onceflow checkpoints list|show|delete|prune`: inspect and maintain the checkpoints of a
// state file (SPEC §2, §4), on top of StateStore.
//
// list and show open the file read-only for any pipeline: they take no lock and create
// nothing, so they work while a run writes (SQLite's WAL gives them the last committed
// snapshot) and leave a refused (corrupt, foreign) file byte for byte as it was. delete
// and prune first make the same read-only check, so a file that is not a state file is
// refused before a lock file is created beside it, then open the file for writing, which
// takes the lock: a running pipeline holding it makes them fail with exit 3 naming its pid.
//
// Data (tables, JSON) goes to stdout; confirmations and errors to stderr.
//
// Threading: main thread only.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>
#include <set>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "nlohmann/json.hpp"
#include "runtime/state/store.h"
#include "spdlog/spdlog.h"

namespace onceflow::cli {

int ReportError(const Status& st) {
  std::cerr << "onceflow: error: " << st.message() << "\n";
  return ExitCodeFor(st);
}

Status OpenStateForReading(const std::string& path, std::unique_ptr<StateStore>* store) {
  OpenMode mode;
  mode.create_if_missing = false;
  mode.read_only = true;
  return StateStore::Open(path, /*pipeline_name=*/"", mode, store);
}

Status ResolveCheckpoint(StateStore* store, const std::string& text, int64_t* id) {
  *id = 0;
  if (text == "latest") {
    ONCEFLOW_RETURN_IF_ERROR(store->LatestCompleted(id));
    if (*id == 0) return Status::State("no complete checkpoint in " + store->path());
    return Status::Ok();
  }
  int64_t v = 0;
  bool digits = !text.empty() && text.size() <= 18;
  for (char c : text) {
    if (c < '0' || c > '9') digits = false;
  }
  if (digits) v = std::stoll(text);
  if (!digits || v <= 0) {
    return Status::Invalid("checkpoint '" + text + "': expected an id or 'latest'");
  }
  std::vector<CheckpointInfo> all;
  ONCEFLOW_RETURN_IF_ERROR(store->List(&all));
  for (const auto& c : all) {
    if (c.id == v) {
      *id = v;
      return Status::Ok();
    }
  }
  return Status::State("no checkpoint " + text + " in " + store->path());
}

namespace {

// "2026-11-27 10:02:03", local time.
std::string LocalTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// "2026-11-27T10:02:03.041Z", UTC, for JSON.
std::string IsoUtc(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

std::string HumanBytes(int64_t b) {
  if (b < 1024) return std::to_string(b) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string HumanDuration(int64_t ms) {
  if (ms < 10000) return std::to_string(ms) + " ms";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000);
  return buf;
}

// A text table: columns separated by two spaces, numbers right-aligned, no trailing blanks.
class Table {
 public:
  // A header starting with '>' marks a right-aligned column (the '>' is not printed).
  explicit Table(std::vector<std::string> header) {
    for (auto& h : header) {
      right_.push_back(!h.empty() && h[0] == '>');
      if (right_.back()) h.erase(0, 1);
    }
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.size() == 1; }
  void Print(std::ostream& os, const std::string& indent = "") const {
    std::vector<size_t> w(right_.size(), 0);
    for (const auto& r : rows_) {
      for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
    }
    for (const auto& r : rows_) {
      std::string line = indent;
      for (size_t i = 0; i < r.size(); ++i) {
        if (i > 0) line += "  ";
        std::string pad(w[i] - r[i].size(), ' ');
        line += right_[i] ? pad + r[i] : r[i] + pad;
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      os << line << "\n";
    }
  }

 private:
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

nlohmann::ordered_json InfoJson(const CheckpointInfo& c, int64_t head) {
  return {{"id", c.id},
          {"kind", CheckpointKindName(c.kind)},
          {"status", CheckpointStatusName(c.status)},
          {"created", IsoUtc(c.created_ms)},
          {"created_ms", c.created_ms},
          {"events", c.events},
          {"bytes", c.bytes},
          {"duration_ms", c.duration_ms},
          {"alignment_ms", c.alignment_ms},
          {"parent",
           c.parent == 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.parent)},
          {"latest", c.id == head}};
}

// Node names and paths come from the file: never let a stray byte abort the dump.
std::string Dump(const nlohmann::ordered_json& j) {
  return DumpJson(j, 2);
}

int List(const std::string& path, bool json) {
  std::unique_ptr<StateStore> store;
  Status st = OpenStateForReading(path, &store);
  std::vector<CheckpointInfo> all;
  int64_t head = 0;
  if (st.ok()) st = store->List(&all);
  if (st.ok()) st = store->LatestCompleted(&head);
  if (!st.ok()) return ReportError(st);
  if (json) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& c : all) arr.push_back(InfoJson(c, head));
    std::cout << Dump(arr) << "\n";
    return kExitOk;
  }
  Table t({">id", "kind", "status", "created", ">events", ">bytes", ">duration"});
  for (const auto& c : all) {
    t.Add({std::to_string(c.id), CheckpointKindName(c.kind), CheckpointStatusName(c.status),
           LocalTime(c.created_ms), std::to_string(c.events), HumanBytes(c.bytes),
           HumanDuration(c.duration_ms)});
  }
  t.Print(std::cout);
  if (all.empty()) spdlog::info("{} holds no complete checkpoint", path);
  return kExitOk;
}

int Show(const std::string& path, const std::string& id_text, bool json) {
  std::unique_ptr<StateStore> store;
  Status st = OpenStateForReading(path, &store);
  int64_t id = 0, head = 0;
  CheckpointDetail d;
  if (st.ok()) st = ResolveCheckpoint(store.get(), id_text, &id);
  if (st.ok()) st = store->LatestCompleted(&head);
  if (st.ok()) st = store->Show(id, &d);
  if (!st.ok()) return ReportError(st);
  const CheckpointInfo& c = d.info;
  if (json) {
    nlohmann::ordered_json j = InfoJson(c, head);
    j["pipeline"] = store->pipeline_name();
    auto& state = j["state"] = nlohmann::ordered_json::array();
    for (const auto& n : d.state) {
      state.push_back({{"node", n.node}, {"keys", n.keys}, {"bytes", n.bytes}});
    }
    auto& sources = j["sources"] = nlohmann::ordered_json::array();
    for (const auto& o : d.sources) {
      sources.push_back({{"node", o.node},
                         {"instance", o.instance},
                         {"name", o.name},
                         {"offset", o.offset},
                         {"count", o.count}});
    }
    auto& sinks = j["sinks"] = nlohmann::ordered_json::array();
    for (const auto& s : d.sinks) {
      sinks.push_back({{"node", s.node},
                       {"instance", s.instance},
                       {"path", s.path},
                       {"length", s.length},
                       {"epoch", s.epoch}});
    }
    std::cout << Dump(j) << "\n";
    return kExitOk;
  }
  std::ostream& os = std::cout;
  std::string bytes = HumanBytes(c.bytes);
  if (c.bytes >= 1024) bytes += " (" + std::to_string(c.bytes) + ")";
  const std::pair<const char*, std::string> fields[] = {
      {"pipeline", store->pipeline_name()},
      {"kind", CheckpointKindName(c.kind)},
      {"status", CheckpointStatusName(c.status)},
      {"created", LocalTime(c.created_ms)},
      {"events", std::to_string(c.events)},
      {"bytes", bytes},
      {"duration", HumanDuration(c.duration_ms)},
      {"alignment", HumanDuration(c.alignment_ms)},
      {"parent", c.parent == 0 ? std::string("none") : std::to_string(c.parent)},
      {"latest", c.id == head ? "yes (the next run resumes from it)" : "no"},
  };
  os << "checkpoint " << c.id << "\n";
  for (const auto& [name, value] : fields) {
    os << "  " << name << std::string(11 - std::strlen(name), ' ') << value << "\n";
  }
  // A titled table per part; a table with no rows says so instead of printing a header.
  auto section = [](const char* title, const char* none, const Table& t) {
    os << title << ":\n";
    if (t.empty()) {
      os << "  " << none << "\n";
    } else {
      t.Print(os, "  ");
    }
  };
  Table state({"node", ">keys", ">bytes"});
  for (const auto& n : d.state) state.Add({n.node, std::to_string(n.keys), HumanBytes(n.bytes)});
  section("state", "(no keyed state)", state);
  Table sources({"node", ">instance", "name", ">offset", ">count"});
  for (const auto& o : d.sources) {
    sources.Add({o.node, std::to_string(o.instance), o.name, std::to_string(o.offset),
                 std::to_string(o.count)});
  }
  section("sources", "(none)", sources);
  Table sinks({"node", ">instance", "path", ">length", ">epoch"});
  for (const auto& k : d.sinks) {
    sinks.Add({k.node, std::to_string(k.instance), k.path, std::to_string(k.length),
               std::to_string(k.epoch)});
  }
  section("sinks", "(none)", sinks);
  return kExitOk;
}

// Opens `path` for writing (taking its lock) after checking, read-only, that it is a
// state file: a file that is not is then refused without a lock file appearing beside it.
Status OpenForMaintenance(const std::string& path, std::unique_ptr<StateStore>* store) {
  {
    std::unique_ptr<StateStore> probe;
    ONCEFLOW_RETURN_IF_ERROR(OpenStateForReading(path, &probe));
  }
  OpenMode mode;
  mode.create_if_missing = false;
  mode.read_only = false;
  return StateStore::Open(path, /*pipeline_name=*/"", mode, store);
}

std::string IdList(const std::vector<int64_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s.empty() ? "none" : s;
}

int Delete(const std::string& path, int64_t id) {
  if (id <= 0) return ReportError(Status::Invalid("checkpoint ids are positive numbers"));
  std::unique_ptr<StateStore> store;
  Status st = OpenForMaintenance(path, &store);
  if (st.ok()) st = ResolveCheckpoint(store.get(), std::to_string(id), &id);
  if (st.ok()) st = store->Delete(id);
  if (!st.ok()) return ReportError(st);
  spdlog::info("deleted checkpoint {} from {}", id, path);
  return kExitOk;
}

int Prune(const std::string& path, int keep) {
  // Checked before the file is opened (and locked): usage errors touch nothing.
  if (keep < 1) return ReportError(Status::Invalid("prune: --keep must be at least 1"));
  std::unique_ptr<StateStore> store;
  Status st = OpenForMaintenance(path, &store);
  std::vector<CheckpointInfo> before, after;
  int deleted = 0;
  if (st.ok()) st = store->List(&before);
  if (st.ok()) st = store->Prune(keep, &deleted);
  if (st.ok()) st = store->List(&after);
  if (!st.ok()) return ReportError(st);
  std::set<int64_t> left;
  std::vector<int64_t> gone, kept;
  for (const auto& c : after) {
    left.insert(c.id);
    kept.push_back(c.id);
  }
  for (const auto& c : before) {
    if (!left.count(c.id)) gone.push_back(c.id);
  }
  spdlog::info("pruned {} checkpoint{} ({}); kept {}", deleted, deleted == 1 ? "" : "s",
               IdList(gone), IdList(kept));
  return kExitOk;
}

}  // namespace

Command RegisterCheckpoints(CLI::App& app, const Registry&) {
  struct Args {
    std::string state;
    std::string id_text;
    int64_t id = 0;
    int keep = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("checkpoints", "list, show, delete or prune checkpoints");
  cmd->require_subcommand(1);
  auto state_opt = [&](CLI::App* sub) {
    sub->add_option("--state", args->state, "SQLite state file")->required();
  };
  CLI::App* list = cmd->add_subcommand("list", "list the complete checkpoints of a state file");
  state_opt(list);
  list->add_flag("--json", args->json, "print a JSON array");
  CLI::App* show =
      cmd->add_subcommand("show", "show one checkpoint: state sizes, source offsets, sinks");
  show->add_option("ID", args->id_text, "checkpoint id, or 'latest'")->required();
  state_opt(show);
  show->add_flag("--json", args->json, "print a JSON object");
  CLI::App* del = cmd->add_subcommand(
      "delete", "delete one checkpoint (not the latest; later ones restore as before)");
  del->add_option("ID", args->id, "checkpoint id")->required();
  state_opt(del);
  CLI::App* prune = cmd->add_subcommand(
      "prune", "keep the N newest checkpoints (plus the latest and every savepoint)");
  prune->add_option("--keep", args->keep, "how many checkpoints to keep (at least 1)")->required();
  state_opt(prune);
  return [args, list, show, del, prune]() {
    if (list->parsed()) return List(args->state, args->json);
    if (show->parsed()) return Show(args->state, args->id_text, args->json);
    if (del->parsed()) return Delete(args->state, args->id);
    if (prune->parsed()) return Prune(args->state, args->keep);
    return int(kExitInvalid);
  };
}

}  // namespace onceflow::cli

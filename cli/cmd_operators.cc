// `onceflow operators list|describe`: the node types and their options, read from the
// same option tables the validator uses. `operators man` (hidden) prints the node
// reference section of onceflow-pipeline(5) in roff, so the man page is generated from
// the tables and a test checks that the committed page matches.
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/plugin_listing.h"
#include "nlohmann/json.hpp"
#include "runtime/spec/diagnostics.h"

namespace onceflow::cli {

namespace {

std::string KindHeading(NodeKind k) {
  switch (k) {
    case NodeKind::kSource: return "sources";
    case NodeKind::kOperator: return "operators";
    case NodeKind::kSink: return "sinks";
  }
  return "";
}

std::string TypeText(const OptionDef& o) {
  std::string t = OptionTypeName(o.type);
  if (o.type == OptionType::kEnum) {
    t.clear();
    for (size_t i = 0; i < o.choices.size(); ++i) t += (i ? "|" : "") + o.choices[i];
  }
  return t;
}

std::string RangeText(const OptionDef& o) {
  bool has_min = o.min != -std::numeric_limits<double>::infinity();
  bool has_max = o.max < 1e15;  // int64 limits are "no limit" to a reader
  if (!has_min && !has_max) return "";
  std::ostringstream s;
  if (has_min && has_max) {
    s << o.min << ".." << o.max;
  } else if (has_min) {
    s << ">= " << o.min;
  } else {
    s << "<= " << o.max;
  }
  return s.str();
}

std::string KindKey(NodeKind k) {
  return k == NodeKind::kSource ? "source" : k == NodeKind::kSink ? "sink" : "op";
}

void Describe(const NodeTypeDef& d, std::ostream& os) {
  os << KindKey(d.kind) << ": " << d.type << "\n  " << d.summary << "\n";
  if (d.keyed) os << "  keyed: input is hash-partitioned on `key` by default\n";
  if (d.max_parallelism == 1) os << "  parallelism: 1 only\n";
  os << "options:\n";
  auto print = [&](const OptionDef& o) {
    os << "  " << o.name << " (" << TypeText(o) << (o.required ? ", required" : "");
    if (!o.default_value.empty()) os << ", default " << o.default_value;
    std::string r = RangeText(o);
    if (!r.empty()) os << ", " << r;
    os << ")\n      " << o.help << "\n";
  };
  for (const OptionDef& o : d.options) print(o);
  os << "common options:\n";
  for (const OptionDef& o : CommonOptions(d.kind, d.stateful)) print(o);
}

nlohmann::json DescribeJson(const NodeTypeDef& d) {
  return {{"kind", KindKey(d.kind)}, {"type", d.type}, {"summary", d.summary},
          {"keyed", d.keyed}, {"stateful", d.stateful}, {"options", OptionsJson(d.options)}};
}

// Escapes text for roff: backslashes, and a leading dot or quote.
std::string Roff(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\\') {
      r += "\\e";
    } else if (c == '-') {
      r += "\\-";
    } else {
      r += c;
    }
  }
  if (!r.empty() && (r[0] == '.' || r[0] == '\'')) r = "\\&" + r;
  return r;
}

// "read a file" -> "Read a file."
std::string Sentence(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  if (!s.empty() && s.back() != '.' && s.back() != ')') s += '.';
  if (!s.empty() && s.back() == ')') s += '.';
  return s;
}

// Roff text with each sentence on its own line (mdoc's rule for sentence spacing).
std::string RoffText(const std::string& s) {
  std::string r = Roff(s);
  for (size_t i = 0; (i = r.find(". ", i)) != std::string::npos;) {
    r.replace(i, 2, ".\n");
    i += 2;
    if (i < r.size() && (r[i] == '.' || r[i] == '\'')) r.insert(i, "\\&");
  }
  return r;
}

void PrintMan(const Registry& registry, std::ostream& os) {
  NodeKind kinds[] = {NodeKind::kSource, NodeKind::kOperator, NodeKind::kSink};
  for (NodeKind k : kinds) {
    os << ".Ss " << (k == NodeKind::kSource ? "Sources" : k == NodeKind::kSink ? "Sinks" : "Operators")
       << "\n.Bl -tag -width Ds\n";
    for (const NodeTypeDef* d : registry.All()) {
      if (d->kind != k) continue;
      os << ".It Ic " << KindKey(k) << ": " << d->type << "\n" << RoffText(Sentence(d->summary)) << "\n";
      if (d->keyed) os << "Keyed: the input is hash-partitioned on\n.Ic key\nby default.\n";
      if (d->max_parallelism == 1) os << "Runs with parallelism 1 only.\n";
      if (d->options.empty()) continue;
      os << ".Bl -tag -width Ds -compact\n";
      for (const OptionDef& o : d->options) {
        os << ".It Ic " << o.name << "\n(" << Roff(TypeText(o)) << (o.required ? ", required" : "");
        if (!o.default_value.empty()) os << ", default " << Roff(o.default_value);
        std::string r = RangeText(o);
        if (!r.empty()) os << ", " << Roff(r);
        os << ")\n" << RoffText(o.help) << "\n";
      }
      os << ".El\n";
    }
    os << ".El\n";
  }
}

// The plugin operators a validated pipeline loads, by node id (each library is already
// loaded and cached by the validation).
std::vector<std::pair<std::string, std::pair<const ops::PluginLibrary*, const ops::PluginOperatorInfo*>>>
PluginNodes(const PipelineSpec& spec) {
  std::vector<std::pair<std::string, std::pair<const ops::PluginLibrary*, const ops::PluginOperatorInfo*>>> out;
  for (const NodeSpec& n : spec.nodes) {
    if (n.kind != NodeKind::kOperator || n.type != "plugin") continue;
    const ops::PluginLibrary* lib = nullptr;
    if (!ops::LoadPlugin(n.options.GetPath("library"), &lib).ok()) continue;
    if (const ops::PluginOperatorInfo* op = lib->Find(n.options.GetString("name"))) {
      out.push_back({n.id, {lib, op}});
    }
  }
  return out;
}

}  // namespace

Command RegisterOperators(CLI::App& app, const Registry& registry) {
  struct Args {
    std::string type;
    std::string pipeline;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("operators", "list node types and their options");
  CLI::App* list = cmd->add_subcommand("list", "list every node type");
  list->add_flag("--json", args->json, "print as JSON");
  list->add_option("--pipeline", args->pipeline,
                   "also list the plugin operators this pipeline loads");
  CLI::App* describe = cmd->add_subcommand("describe", "show a node type's options");
  describe->add_option("TYPE", args->type, "node type, e.g. count or sink:file")->required();
  describe->add_flag("--json", args->json, "print as JSON");
  CLI::App* man = cmd->add_subcommand("man", "");  // hidden: roff for onceflow-pipeline(5)
  man->group("");
  return [args, &registry, describe, man]() {
    if (man->parsed()) {
      PrintMan(registry, std::cout);
      return int(kExitOk);
    }
    if (describe->parsed()) {
      // "count", or "sink:file" / "source:file" to pick among types of the same name.
      std::string want = args->type;
      std::string kind_prefix;
      if (auto colon = want.find(':'); colon != std::string::npos) {
        kind_prefix = want.substr(0, colon);
        want = want.substr(colon + 1);
      }
      std::vector<const NodeTypeDef*> hits;
      std::vector<std::string> names;
      for (const NodeTypeDef* d : registry.All()) {
        names.push_back(d->type);
        if (d->type == want && (kind_prefix.empty() || KindKey(d->kind) == kind_prefix ||
                                (kind_prefix == "operator" && d->kind == NodeKind::kOperator))) {
          hits.push_back(d);
        }
      }
      if (hits.empty()) {
        std::cerr << "onceflow: error: unknown node type '" << args->type << "'\n";
        std::string note = DidYouMeanNote(want, names);
        if (!note.empty()) std::cerr << "note: " << note << "\n";
        return int(kExitInvalid);
      }
      if (args->json) {
        nlohmann::json j = nlohmann::json::array();
        for (const NodeTypeDef* d : hits) j.push_back(DescribeJson(*d));
        std::cout << DumpJson(hits.size() == 1 ? j[0] : j, 2) << "\n";
      } else {
        for (size_t i = 0; i < hits.size(); ++i) {
          if (i) std::cout << "\n";
          Describe(*hits[i], std::cout);
        }
      }
      return int(kExitOk);
    }
    // list (also the default with no sub-subcommand)
    PipelineSpec spec;
    if (!args->pipeline.empty() && !LoadAndReport(args->pipeline, {}, registry, &spec)) {
      return int(kExitInvalid);
    }
    const auto plugins = PluginNodes(spec);
    if (args->json) {
      nlohmann::json j = nlohmann::json::array();
      for (const NodeTypeDef* d : registry.All()) j.push_back(DescribeJson(*d));
      for (const auto& [node, op] : plugins) {
        nlohmann::json jo = PluginOperatorJson(*op.second);
        jo["kind"] = "plugin";
        jo["plugin"] = op.first->name();
        jo["library"] = op.first->path();
        jo["node"] = node;
        j.push_back(jo);
      }
      std::cout << DumpJson(j, 2) << "\n";
      return int(kExitOk);
    }
    NodeKind last = NodeKind::kSink;
    bool first = true;
    for (const NodeTypeDef* d : registry.All()) {
      if (first || d->kind != last) {
        std::cout << (first ? "" : "\n") << KindHeading(d->kind) << ":\n";
        last = d->kind;
        first = false;
      }
      std::printf("  %-10s %s\n", d->type.c_str(), d->summary.c_str());
    }
    std::fflush(stdout);
    if (!plugins.empty()) std::cout << "\nplugin operators of " << args->pipeline << ":\n";
    for (const auto& [node, op] : plugins) {
      std::cout << "  (node '" << node << "': " << op.first->name() << " from "
                << op.first->path() << ")\n";
      PrintPluginOperators(*op.first, op.second->op->name, std::cout);
    }
    return int(kExitOk);
  };
}

}  // namespace onceflow::cli

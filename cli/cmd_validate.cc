// `onceflow validate` (check and print the plan) and `onceflow graph` (text, dot,
// mermaid). Both load through the same validator as `run` and touch nothing on disk.
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "nlohmann/json.hpp"
#include "runtime/plan/plan.h"

namespace onceflow::cli {

namespace {

std::string NodeLabel(const NodeSpec& n) {
  return n.id + " (" + NodeKindName(n.kind) + " " + n.type + ")";
}

std::string SinkGuarantee(const Registry& registry, const PipelineSpec& spec, const NodeSpec& n) {
  const NodeTypeDef* def = registry.Find(n.kind, n.type);
  if (def && def->sink_guarantee) return def->sink_guarantee(spec.semantics);
  return SemanticsName(spec.semantics);
}

std::string SemanticsLabel(const PipelineSpec& spec) {
  std::string s = SemanticsName(spec.semantics);
  if (spec.semantics == Semantics::kEffectivelyOnce) s += std::string(" (") + ModeName(spec.mode) + ")";
  return s;
}

void PrintPlanText(const Registry& registry, const PipelineSpec& spec, const Plan& plan,
                   std::ostream& os) {
  os << "pipeline '" << spec.name << "' (" << spec.file << "): " << spec.nodes.size()
     << " nodes, " << plan.TaskCount() << " tasks (threads), " << plan.ChannelCount()
     << " channels\n";
  os << "semantics: " << SemanticsLabel(spec) << "\n";
  os << "state: " << spec.state_path;
  if (spec.semantics == Semantics::kEffectivelyOnce && spec.mode == Mode::kDedup) {
    os << "\ncommits: per task, every 50 ms (or 4096 envelopes); savepoints on SIGUSR1 and at a "
          "stop by signal; at most "
       << spec.max_recoveries << " local recoveries per run\n";
  } else {
    os << "\ncheckpoints: every " << spec.checkpoint_interval_ms << " ms, " << spec.checkpoint_retain
       << " retained (savepoints kept until deleted), at most " << spec.max_recoveries
       << " recoveries per run\n";
  }
  if (spec.semantics == Semantics::kAtMostOnce) {
    os << "at-most-once: source positions committed ahead of processing; a resume skips "
          "past them, failed records are dropped\n";
  }
  os << "tasks:\n";
  for (size_t c = 0; c < plan.chains.size(); ++c) {
    const Chain& ch = plan.chains[c];
    os << "  chain " << c + 1 << " x" << ch.parallelism << ": ";
    for (size_t i = 0; i < ch.nodes.size(); ++i) {
      if (i) os << " -> ";
      os << NodeLabel(spec.nodes[ch.nodes[i]]);
    }
    os << "\n";
  }
  os << "edges:\n";
  for (const PlanEdge& e : plan.edges) {
    os << "  " << spec.nodes[e.from].id << " -> " << spec.nodes[e.to].id << ": "
       << DescribeEdgePartition(e);
    if (e.chained) {
      os << ", chained (same thread)\n";
    } else {
      os << ", " << e.channels << (e.channels == 1 ? " channel\n" : " channels\n");
    }
  }
  os << "sinks:\n";
  for (const NodeSpec& n : spec.nodes) {
    if (n.kind != NodeKind::kSink) continue;
    os << "  " << n.id << " (" << n.type << "): " << SinkGuarantee(registry, spec, n) << "\n";
  }
}

nlohmann::json PlanJson(const Registry& registry, const PipelineSpec& spec, const Plan& plan) {
  nlohmann::json j;
  j["pipeline"] = spec.name;
  j["file"] = spec.file;
  j["semantics"] = SemanticsName(spec.semantics);
  j["mode"] = spec.semantics == Semantics::kEffectivelyOnce ? nlohmann::json(ModeName(spec.mode))
                                                             : nlohmann::json(nullptr);
  j["state"] = spec.state_path;
  j["checkpoint"] = {{"interval_ms", spec.checkpoint_interval_ms},
                     {"retain", spec.checkpoint_retain},
                     {"max_recoveries", spec.max_recoveries}};
  j["tasks"] = plan.TaskCount();
  j["channels"] = plan.ChannelCount();
  auto& nodes = j["nodes"] = nlohmann::json::array();
  for (const PlanNode& pn : plan.nodes) {
    const NodeSpec& n = *pn.spec;
    nlohmann::json jn = {{"id", n.id},
                         {"kind", NodeKindName(n.kind)},
                         {"type", n.type},
                         {"parallelism", pn.parallelism},
                         {"chain", pn.chain}};
    if (!n.key.empty()) jn["key"] = n.key;
    if (n.kind == NodeKind::kSink) jn["guarantee"] = SinkGuarantee(registry, spec, n);
    nodes.push_back(jn);
  }
  auto& chains = j["chains"] = nlohmann::json::array();
  for (const Chain& ch : plan.chains) {
    nlohmann::json ids = nlohmann::json::array();
    for (int n : ch.nodes) ids.push_back(spec.nodes[n].id);
    chains.push_back({{"nodes", ids}, {"parallelism", ch.parallelism}});
  }
  auto& edges = j["edges"] = nlohmann::json::array();
  for (const PlanEdge& e : plan.edges) {
    edges.push_back({{"from", spec.nodes[e.from].id},
                     {"to", spec.nodes[e.to].id},
                     {"port", e.port},
                     {"partition", DescribeEdgePartition(e)},
                     {"chained", e.chained},
                     {"channels", e.channels}});
  }
  return j;
}

// Quotes an id for dot/mermaid labels.
std::string DotQuote(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

void PrintGraph(const PipelineSpec& spec, const Plan& plan, const std::string& format,
                std::ostream& os) {
  if (format == "dot") {
    os << "digraph " << DotQuote(spec.name) << " {\n  rankdir=LR;\n";
    for (const NodeSpec& n : spec.nodes) {
      const char* shape = n.kind == NodeKind::kSource ? "invhouse"
                          : n.kind == NodeKind::kSink ? "house" : "box";
      os << "  " << DotQuote(n.id) << " [shape=" << shape << ", label="
         << DotQuote(n.id + "\n" + n.type + (n.parallelism > 1 ? " x" + std::to_string(n.parallelism) : ""))
         << "];\n";
    }
    for (const PlanEdge& e : plan.edges) {
      os << "  " << DotQuote(spec.nodes[e.from].id) << " -> " << DotQuote(spec.nodes[e.to].id)
         << " [label=" << DotQuote(DescribeEdgePartition(e)) << (e.chained ? ", style=bold" : "")
         << "];\n";
    }
    os << "}\n";
  } else if (format == "mermaid") {
    os << "flowchart LR\n";
    for (const NodeSpec& n : spec.nodes) {
      std::string label = n.id + "<br/>" + n.type +
                          (n.parallelism > 1 ? " x" + std::to_string(n.parallelism) : "");
      if (n.kind == NodeKind::kSource) {
        os << "  " << n.id << "[/\"" << label << "\"/]\n";
      } else if (n.kind == NodeKind::kSink) {
        os << "  " << n.id << "[(\"" << label << "\")]\n";
      } else {
        os << "  " << n.id << "[\"" << label << "\"]\n";
      }
    }
    for (const PlanEdge& e : plan.edges) {
      os << "  " << spec.nodes[e.from].id << " -->|" << DescribeEdgePartition(e) << "| "
         << spec.nodes[e.to].id << "\n";
    }
  } else {
    for (int idx : plan.topo_order) {
      const PlanNode& pn = plan.nodes[idx];
      os << NodeLabel(*pn.spec);
      if (pn.parallelism > 1) os << " x" << pn.parallelism;
      os << "\n";
      for (int ei : pn.out_edges) {
        const PlanEdge& e = plan.edges[ei];
        os << "  -> " << spec.nodes[e.to].id << " [" << DescribeEdgePartition(e)
           << (e.chained ? ", chained" : "") << "]\n";
      }
    }
  }
}

}  // namespace

Command RegisterValidate(CLI::App& app, const Registry& registry) {
  struct Args {
    std::string file;
    bool json = false;
    LoadOptions load;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("validate", "check a pipeline file and print its plan");
  cmd->add_option("PIPELINE", args->file, "pipeline file")->required();
  cmd->add_flag("--json", args->json, "print the plan as JSON");
  AddLoadOptions(cmd, &args->load, /*with_run_overrides=*/true);
  return [args, &registry]() {
    PipelineSpec spec;
    if (!LoadAndReport(args->file, args->load, registry, &spec)) return int(kExitInvalid);
    Plan plan = BuildPlan(spec);
    if (args->json) {
      std::cout << DumpJson(PlanJson(registry, spec, plan), 2) << "\n";
    } else {
      PrintPlanText(registry, spec, plan, std::cout);
    }
    return int(kExitOk);
  };
}

Command RegisterGraph(CLI::App& app, const Registry& registry) {
  struct Args {
    std::string file;
    std::string format = "text";
    LoadOptions load;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("graph", "print the pipeline's graph");
  cmd->add_option("PIPELINE", args->file, "pipeline file")->required();
  cmd->add_option("--format", args->format, "text|dot|mermaid (default text)")
      ->check(CLI::IsMember({"text", "dot", "mermaid"}));
  AddLoadOptions(cmd, &args->load, /*with_run_overrides=*/false);
  return [args, &registry]() {
    PipelineSpec spec;
    if (!LoadAndReport(args->file, args->load, registry, &spec)) return int(kExitInvalid);
    Plan plan = BuildPlan(spec);
    PrintGraph(spec, plan, args->format, std::cout);
    return int(kExitOk);
  };
}

}  // namespace onceflow::cli

// Helpers shared by the subcommands that read a pipeline file.
#include <iostream>

#include "cli/commands.h"
#include "runtime/chaos/chaos.h"

namespace onceflow::cli {

bool LoadAndReport(const std::string& path, const LoadOptions& opts, const Registry& registry,
                   PipelineSpec* spec) {
  Diagnostics diags;
  bool ok = LoadPipeline(path, opts, registry, spec, &diags);
  diags.Render(std::cerr);
  return ok && !diags.has_errors();
}

void AddSetOption(CLI::App* cmd, std::vector<std::string>* sets) {
  cmd->add_option("--set", *sets,
                  "override a YAML value: PATH=VALUE, e.g. nodes.out.path=/tmp/o.jsonl "
                  "(repeatable)")
      ->allow_extra_args(false);
}

Status CheckChaosNodes(const PipelineSpec& spec, const ChaosSpec& chaos) {
  for (const std::string& node : chaos.NodeNames()) {
    const NodeSpec* ns = spec.FindNode(node);
    if (ns == nullptr) {
      return Status::Invalid("fail=" + node + ": no node '" + node + "' in the pipeline");
    }
    if (ns->kind != NodeKind::kOperator) {
      return Status::Invalid("fail=" + node + ": '" + node + "' is a " + NodeKindName(ns->kind) +
                             "; only operators fail on records");
    }
  }
  return Status::Ok();
}

void AddLoadOptions(CLI::App* cmd, LoadOptions* opts, bool with_run_overrides) {
  AddSetOption(cmd, &opts->sets);
  cmd->add_option("--semantics", opts->semantics,
                  "at-most-once|at-least-once|effectively-once (overrides the file)");
  cmd->add_option("--mode", opts->mode, "snapshot|dedup (overrides the file)");
  if (with_run_overrides) {
    cmd->add_option("--state", opts->state_path, "SQLite state file");
    cmd->add_option("--checkpoint-interval", opts->checkpoint_interval,
                    "checkpoint interval, e.g. 200ms, 1s, 2m");
  }
}

}  // namespace onceflow::cli

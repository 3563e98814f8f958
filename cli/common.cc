// Helpers shared by the subcommands that read a pipeline file.
#include <iostream>

#include "cli/commands.h"

namespace onceflow::cli {

bool LoadAndReport(const std::string& path, const LoadOptions& opts, const Registry& registry,
                   PipelineSpec* spec) {
  Diagnostics diags;
  bool ok = LoadPipeline(path, opts, registry, spec, &diags);
  diags.Render(std::cerr);
  return ok && !diags.has_errors();
}

void AddLoadOptions(CLI::App* cmd, LoadOptions* opts, bool with_run_overrides) {
  cmd->add_option("--set", opts->sets,
                  "override a YAML value: PATH=VALUE, e.g. nodes.out.path=/tmp/o.jsonl "
                  "(repeatable)")
      ->allow_extra_args(false);
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

// The subcommands of the onceflow binary. Each Register* adds its CLI11 subcommand and
// returns a callback run when that subcommand was chosen; the callback returns the
// process exit code. Threading: all on the main thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "runtime/core/registry.h"
#include "runtime/spec/loader.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow::cli {

using Command = std::function<int()>;

Command RegisterRun(CLI::App& app, const Registry& registry);
Command RegisterValidate(CLI::App& app, const Registry& registry);
Command RegisterGraph(CLI::App& app, const Registry& registry);
Command RegisterOperators(CLI::App& app, const Registry& registry);

// Loads and validates a pipeline, printing every diagnostic (errors, warnings, notes) on
// stderr. Returns false when there were errors (the caller exits 2).
bool LoadAndReport(const std::string& path, const LoadOptions& opts, const Registry& registry,
                   PipelineSpec* spec);

// Adds the options shared by run/validate/graph (--set, --semantics, --mode, --state,
// --checkpoint-interval) bound to `opts`.
void AddLoadOptions(CLI::App* cmd, LoadOptions* opts, bool with_run_overrides);

}  // namespace onceflow::cli

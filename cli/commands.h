// The subcommands of the onceflow binary. Each Register* adds its CLI11 subcommand and
// returns a callback run when that subcommand was chosen; the callback returns the
// process exit code. Threading: all on the main thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "runtime/core/registry.h"
#include "runtime/core/status.h"
#include "runtime/spec/loader.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {
class StateStore;
struct ChaosSpec;
}

namespace onceflow::cli {

using Command = std::function<int()>;

Command RegisterRun(CLI::App& app, const Registry& registry);
Command RegisterValidate(CLI::App& app, const Registry& registry);
Command RegisterGraph(CLI::App& app, const Registry& registry);
Command RegisterOperators(CLI::App& app, const Registry& registry);
Command RegisterCheckpoints(CLI::App& app, const Registry& registry);
Command RegisterState(CLI::App& app, const Registry& registry);
Command RegisterCompare(CLI::App& app, const Registry& registry);
Command RegisterTest(CLI::App& app, const Registry& registry);
Command RegisterPlugin(CLI::App& app, const Registry& registry);

// Loads and validates a pipeline, printing every diagnostic (errors, warnings, notes) on
// stderr. Returns false when there were errors (the caller exits 2).
bool LoadAndReport(const std::string& path, const LoadOptions& opts, const Registry& registry,
                   PipelineSpec* spec);

// Adds the options shared by run/validate/graph (--set, --semantics, --mode, --state,
// --checkpoint-interval) bound to `opts`.
void AddLoadOptions(CLI::App* cmd, LoadOptions* opts, bool with_run_overrides);
// Adds the repeatable --set PATH=VALUE option alone (what `compare` passes on to its runs).
void AddSetOption(CLI::App* cmd, std::vector<std::string>* sets);

// Status::Invalid when a `fail=` item of --chaos names no node of `spec`, or a node that is
// not an operator (only operators fail on records).
Status CheckChaosNodes(const PipelineSpec& spec, const ChaosSpec& chaos);

// JSON text for output. Strings that are not valid UTF-8 (a raw input line quoted in an
// error, a field name) are written with U+FFFD instead of throwing: output must never
// abort the command. indent < 0: one line.
template <typename Json>
std::string DumpJson(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// Shared by `checkpoints` and `state` (defined in cmd_checkpoints.cc).
// Prints "onceflow: error: MESSAGE" on stderr and returns the exit code of `st`.
int ReportError(const Status& st);
// Opens the state file read-only for any pipeline, refusing a missing file (no lock is
// taken, nothing is created): what `checkpoints list|show` and `state get` read through.
Status OpenStateForReading(const std::string& path, std::unique_ptr<StateStore>* store);
// Resolves a checkpoint argument of a read command: "latest" (the head of the current
// line) or the id of a complete checkpoint. Status::Invalid when `text` is neither a
// positive number nor "latest"; Status::State "no checkpoint N in FILE" when there is no
// such complete checkpoint (or no checkpoint at all, for "latest").
Status ResolveCheckpoint(StateStore* store, const std::string& text, int64_t* id);

}  // namespace onceflow::cli

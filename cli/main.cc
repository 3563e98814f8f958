// onceflow: the command-line entry point. Parses the command line (CLI11), sets up
// logging (spdlog, stderr only: stdout carries data), and dispatches to a subcommand.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/logging.h"
#include "operators/builtins.h"
#include "runtime/core/registry.h"

int main(int argc, char** argv) {
  using namespace onceflow;
  Registry registry;
  RegisterBuiltins(&registry);

  CLI::App app{"onceflow: run stream-processing pipelines described in YAML, with the "
               "processing guarantee of your choice."};
  app.name("onceflow");
  app.set_version_flag("--version", std::string("onceflow ") + ONCEFLOW_VERSION);
  app.require_subcommand(1);
  app.fallthrough();

  cli::LogSettings log;
  app.add_flag("-q,--quiet", log.quiet, "only errors on stderr; no live status line");
  app.add_option("--log-level", log.level, "trace|debug|info|warn|error|off (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--log-format", log.format, "text|json (default text)")
      ->check(CLI::IsMember({"text", "json"}));

  std::map<CLI::App*, cli::Command> commands;
  auto reg = [&](cli::Command (*fn)(CLI::App&, const Registry&)) {
    cli::Command c = fn(app, registry);
    commands[app.get_subcommands({}).back()] = std::move(c);
  };
  reg(cli::RegisterRun);
  reg(cli::RegisterValidate);
  reg(cli::RegisterGraph);
  reg(cli::RegisterOperators);
  reg(cli::RegisterCheckpoints);
  reg(cli::RegisterState);
  reg(cli::RegisterCompare);
  reg(cli::RegisterTest);
  reg(cli::RegisterPlugin);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return cli::kExitInvalid;  // usage errors are exit 2 (SPEC §2)
  }
  cli::SetUpLogging(log);
  for (auto& [sub, cmd] : commands) {
    if (sub->parsed()) return cmd();
  }
  return cli::kExitInvalid;
}

// The definition (option table, checks, factory) of every built-in node type. Each
// function lives beside its implementation; builtins.cc collects them into the registry.
//
// Threading: called once at start-up.
#pragma once

#include <memory>

#include "runtime/core/registry.h"

namespace onceflow::ops {

// Sources (operators/sources/).
NodeTypeDef FileSourceDef();
NodeTypeDef FilesSourceDef();
NodeTypeDef GenerateSourceDef();
NodeTypeDef StdinSourceDef();
// A `stdin` source reading descriptor `fd` instead of 0 (tests).
std::unique_ptr<Source> MakeStdinSourceForFd(const NodeSpec& spec, int fd);

// Operators (operators/ops/, operators/lua/).
NodeTypeDef SplitDef();
NodeTypeDef CountDef();
NodeTypeDef AggregateDef();
NodeTypeDef DistinctDef();
NodeTypeDef WindowDef();
NodeTypeDef JoinDef();
NodeTypeDef MapDef();
NodeTypeDef FilterDef();
NodeTypeDef FlatMapDef();
// Extension points (operators/plugin/, operators/exec/).
NodeTypeDef PluginDef();
NodeTypeDef ExecDef();

// Sinks (operators/sinks/).
NodeTypeDef FileSinkDef();
NodeTypeDef SqliteSinkDef();
NodeTypeDef StdoutSinkDef();
NodeTypeDef DiscardSinkDef();
// A `stdout` sink writing descriptor `fd` instead of 1 (tests).
std::unique_ptr<Sink> MakeStdoutSinkForFd(const NodeSpec& spec, int fd);

}  // namespace onceflow::ops

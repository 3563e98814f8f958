// Registers every built-in node type (sources, operators, sinks) with its option table.
#pragma once

#include "runtime/core/registry.h"

namespace onceflow {

void RegisterBuiltins(Registry* registry);

}  // namespace onceflow

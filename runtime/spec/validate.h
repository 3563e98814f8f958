// Validation of a parsed (interpolated, --set-applied) pipeline tree: option type checks
// shared by the top level and the nodes, and the node/graph validator. Internal to
// runtime/spec; the entry point for everyone else is LoadPipeline() in loader.h.
//
// Threading: single-threaded; everything reports into the Diagnostics it is given.
#pragma once

#include <string>

#include "runtime/core/registry.h"
#include "runtime/spec/diagnostics.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

// How a value is named in messages: 'text' for a plain scalar, "the quoted string 'text'"
// for a quoted one, else "a list" / "a map" / "null".
std::string DescribeValue(const YNode& v);

// Resolves a path written in the pipeline file (relative to `base_dir`, the file's folder)
// or given on the command line (kept relative to the working directory). Absolute paths
// are kept. Purely lexical: nothing on disk is looked at.
std::string ResolvePath(const std::string& path, const std::string& base_dir,
                        bool from_command_line);

// Type-checks `value` against `def`. `what` names it in messages ("node 'c': option
// 'parallelism'"). On success fills entry->node and, by type, resolved_path or
// duration_ms, and returns true; otherwise reports at `value` and returns false.
bool CheckOptionValue(const OptionDef& def, const YNode& value, const std::string& what,
                      const std::string& base_dir, NodeOptions::Entry* entry, Diagnostics* diags);

// Validates `nodes:` (the value `nodes`, written at `nodes_key`) and fills spec->nodes.
// Needs spec->dir and spec->semantics to be final. Reports every problem it finds.
void ValidateNodes(const YNode& nodes_key, const YNode& nodes, const Registry& registry,
                   PipelineSpec* spec, Diagnostics* diags);

}  // namespace onceflow

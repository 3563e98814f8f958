// The topology fingerprint a state file records (meta "fingerprint"): what a resume must
// find unchanged for the stored state, offsets and sink positions to mean the same thing
// (SPEC §4) — the semantics and mode, and each node's id, kind, type and key fields.
// Options, paths and parallelism are not part of it: state is stored per key, so an
// operator's parallelism may change between runs (a source's may not; the restore checks
// that separately), and a sink pointed at a new path starts that file empty.
//
// Format: one line per item, sorted, e.g. "semantics effectively-once" / "mode snapshot" /
// "node counts op count key=word". Plain text, so `sqlite3 x.state.db "select v from meta
// where k='fingerprint'"` is readable.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

std::string Fingerprint(const PipelineSpec& spec);

// What changed from `stored` to `current`, one readable phrase per change ("node 'x'
// added", "semantics changed from at-least-once to effectively-once", ...); empty when
// nothing did. *changed_nodes gets the ids of nodes added, removed or changed in type or
// key (their stored state must not be restored).
std::vector<std::string> FingerprintChanges(const std::string& stored, const std::string& current,
                                            std::set<std::string>* changed_nodes);

}  // namespace onceflow

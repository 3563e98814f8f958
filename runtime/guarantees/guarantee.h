// Guarantee: the control-path strategy of a run, chosen once at start-up (one per
// `--semantics`/`--mode`). The data path (executor, channels, operators) is the same under
// every guarantee; the executor calls the strategy at a few control points and never
// branches on the mode itself:
//
//   Start             Run thread, once, before any task thread starts.
//   BeforeSourceBatch a source task thread, after Read() returned records and before any
//                     of them enters the chain: where at-most-once persists the offset
//                     *ahead* of processing (a crash then loses, never repeats, the batch).
//   OnTaskFailure     the failing task's thread: recover or fail the run.
//   End               Run thread, once, after every task thread has been joined.
//
// Later guarantees hook in here too: at-least-once and snapshot inject barriers at
// BeforeSourceBatch and act on Envelope::Kind::kBarrier in the executor's task loop
// (alignment for snapshot), dedup wraps channels with sequence numbers. Growing this
// interface is expected; what must not happen is mode checks scattered through the
// executor or the operators.
//
// Threading: BeforeSourceBatch may be called concurrently from several source threads
// and OnTaskFailure concurrently from several failing threads; implementations must be
// thread-safe there. Start and End are called on the Run thread alone.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/core/node.h"
#include "runtime/core/status.h"
#include "runtime/plan/plan.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

struct GuaranteeContext {
  const PipelineSpec* spec = nullptr;
  const Plan* plan = nullptr;
};

// A batch a source instance has just read and not yet processed.
struct SourceBatch {
  int node = 0;  // index in PipelineSpec::nodes
  int instance = 0;
  const Source* source = nullptr;  // Position() is just after the batch's last record
  size_t records = 0;
};

enum class FailureAction {
  kFailRun,  // record the error, cancel every task, Run() returns the error
  kRecover,  // restore and continue in-process (needs executor support: see executor.cc)
};

// How the run ended, for End().
struct RunEnd {
  std::string exit_reason;  // RunStats::exit_reason
  Status error;             // the error that failed the run, else Ok
};

class Guarantee {
 public:
  virtual ~Guarantee() = default;
  // "at-most-once", ...: for logs and the summary.
  virtual const char* name() const = 0;
  virtual Status Start(const GuaranteeContext& ctx) = 0;
  // A non-Ok status fails the run (e.g. the offset could not be persisted).
  virtual Status BeforeSourceBatch(const SourceBatch& batch) = 0;
  virtual FailureAction OnTaskFailure(int node, int instance, const Status& error) = 0;
  // May turn a successful run into a failed one (e.g. the final commit failed).
  virtual Status End(const RunEnd& end) = 0;
};

}  // namespace onceflow

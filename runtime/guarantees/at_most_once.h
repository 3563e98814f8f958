// At-most-once: no event's effect twice; events may be lost on a failure.
//
// Today (no state store yet) this is exactly the executor's plain behaviour: nothing is
// persisted, and any task failure fails the run (nothing is replayed, so nothing
// repeats). When the SQLite state store lands, BeforeSourceBatch persists the source
// position just after the batch — before the batch is processed, committed with
// synchronous=FULL — so a restart resumes after it: the batch's unprocessed events are
// lost, none is applied twice. State is then persisted periodically.
//
// Threading: stateless today, so trivially thread-safe.
#pragma once

#include "runtime/guarantees/guarantee.h"

namespace onceflow {

class AtMostOnce final : public Guarantee {
 public:
  const char* name() const override { return "at-most-once"; }
  Status Start(const GuaranteeContext& ctx) override;
  Status BeforeSourceBatch(const SourceBatch& batch) override;
  FailureAction OnTaskFailure(int node, int instance, const Status& error) override;
  Status End(const RunEnd& end) override;
};

}  // namespace onceflow

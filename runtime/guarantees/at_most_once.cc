// At-most-once strategy; see at_most_once.h.
#include "runtime/guarantees/at_most_once.h"

namespace onceflow {

Status AtMostOnce::Start(const GuaranteeContext&) { return Status::Ok(); }

// Nothing to persist until the state store exists (see the header).
Status AtMostOnce::BeforeSourceBatch(const SourceBatch&) { return Status::Ok(); }

// No replay under at-most-once: a failed task fails the run, and whatever was in flight
// is lost, which is this guarantee's contract.
FailureAction AtMostOnce::OnTaskFailure(int, int, const Status&) { return FailureAction::kFailRun; }

Status AtMostOnce::End(const RunEnd&) { return Status::Ok(); }

}  // namespace onceflow

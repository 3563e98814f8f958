// Exit codes (SPEC §2). Only cli/ knows them; everything below returns a Status.
#pragma once

#include "runtime/core/status.h"

namespace onceflow::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,    // the pipeline failed at run time
  kExitInvalid = 2,   // invalid usage, YAML or plan; nothing was touched
  kExitState = 3,     // corrupt/foreign/locked state file, incompatible topology
  kExitMismatch = 4,  // `test` or `compare` found a mismatch
};

inline int ExitCodeFor(const Status& st) {
  switch (st.code()) {
    case Status::Code::kOk: return kExitOk;
    case Status::Code::kInvalid: return kExitInvalid;
    case Status::Code::kState: return kExitState;
    default: return kExitFailed;
  }
}

}  // namespace onceflow::cli

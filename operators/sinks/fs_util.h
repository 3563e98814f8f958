// File-system helpers of the sinks: create missing parent folders, write a whole buffer
// (retrying short writes and EINTR), fsync a folder so a new or truncated file's
// directory entry survives a power cut.
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "runtime/core/status.h"

namespace onceflow::ops {

// Creates the folders above `path` that do not exist yet (like mkdir -p of its dirname).
Status MakeParentDirs(const std::string& path);
// fsyncs the folder holding `path`.
Status FsyncParentDir(const std::string& path);
// Writes all of `data` to `fd`; `what` names the output in error messages.
Status WriteAll(int fd, std::string_view data, const std::string& what);

}  // namespace onceflow::ops

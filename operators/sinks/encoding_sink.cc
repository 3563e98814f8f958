// EncodingSink: buffered, encoded output shared by the file and stdout sinks.
#include "operators/sinks/encoding_sink.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace onceflow::ops {

Status EncodingSink::Flush(bool durable) {
  ONCEFLOW_RETURN_IF_ERROR(Drain());
  // EINVAL/EROFS: the descriptor cannot be synced (a pipe, a terminal): nothing to do.
  if (durable && ::fdatasync(fd_) != 0 && errno != EINVAL && errno != EROFS) {
    return Status::IOError("cannot sync " + what_ + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace onceflow::ops

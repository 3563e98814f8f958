// Status: the error type of everything below cli/. Library code never exits and never
// throws across a subsystem boundary; it returns a Status, and only cli/ maps a Status
// to an exit code (see cli/exit_codes.h).
#pragma once

#include <string>
#include <utility>

namespace onceflow {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalid,     // bad usage, YAML or plan: exit 2, nothing touched
    kState,       // corrupt, foreign or locked state file, incompatible topology: exit 3
    kIOError,     // a read or write failed at run time
    kDataError,   // a deterministic record error (malformed line, Lua error on a record)
    kRuntime,     // any other run-time failure of a node
    kTransient,   // an injected or transient failure that a guarantee may recover from
    kCancelled,   // stopped on request (signal, --max-events, --duration)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string msg) { return Status(Code::kInvalid, std::move(msg)); }
  static Status State(std::string msg) { return Status(Code::kState, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status DataError(std::string msg) { return Status(Code::kDataError, std::move(msg)); }
  static Status Runtime(std::string msg) { return Status(Code::kRuntime, std::move(msg)); }
  static Status Transient(std::string msg) { return Status(Code::kTransient, std::move(msg)); }
  static Status Cancelled(std::string msg) { return Status(Code::kCancelled, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }

  // Returns a copy whose message is "prefix: message".
  Status WithContext(const std::string& prefix) const {
    if (ok()) return *this;
    return Status(code_, prefix + ": " + msg_);
  }

 private:
  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string msg_;
};

#define ONCEFLOW_RETURN_IF_ERROR(expr)       \
  do {                                       \
    ::onceflow::Status _st = (expr);         \
    if (!_st.ok()) return _st;               \
  } while (0)

}  // namespace onceflow

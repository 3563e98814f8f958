// The executor's ErrorHandler (core/node.h): applies a node's `on_error` policy to a
// deterministic data error on one record — fail, skip (counted, logged a few times) or
// dead_letter (one JSONL line per record in the node's dead-letter file).
//
// Messages (on_error: fail) read
//   node 'counts': <error> at <source-id>:<position>: <record as JSON, or the raw text>
// and dead-letter lines
//   {"node":"counts","error":"...","source":"lines","position":12,"record":{...}}
// where `record` is the record as a JSON object, or the raw text as a JSON string for a
// record that could not be parsed. `source`/`position` come from the record's Origin
// (Origin.source indexes PipelineSpec::nodes; position is 1-based); both are omitted
// (null) when unknown.
//
// Checkpointing guarantees hold dead letters back (set_hold): the lines wait in the
// instance's handler until its next barrier, where the executor takes them (TakeHeld) into
// the task's snapshot and the checkpoint writes them — so a record replayed after a
// recovery is not dead-lettered twice (see runtime/guarantees/snapshot.h).
//
// Threading: one NodeErrorHandler per node instance, called from that instance's task
// thread. The per-node ErrorSink (dead-letter writer, warning budget) is shared by every
// instance of the node: its file appends take a mutex — fine, data errors are rare, and
// the hot path never calls here.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

// Shared by the instances of one node.
class ErrorSink {
 public:
  ErrorSink(std::string node_id, std::string dead_letter_path);
  ~ErrorSink();
  ErrorSink(const ErrorSink&) = delete;
  ErrorSink& operator=(const ErrorSink&) = delete;

  // Appends `line` + '\n' to the dead-letter file, opening it (append mode, created if
  // absent) on first use. Thread-safe.
  Status AppendDeadLetter(std::string_view line);
  // Flushes the dead-letter file to the OS (it stays open). Thread-safe.
  Status Flush();

  // Returns true while the node may still log a skipped record (the first kMaxWarnings);
  // sets *last on the final one so the caller can say that the rest are silent.
  bool TakeWarning(bool* last);

  const std::string& node_id() const { return node_id_; }
  const std::string& dead_letter_path() const { return path_; }

  static constexpr uint64_t kMaxWarnings = 10;

 private:
  const std::string node_id_;
  const std::string path_;
  std::mutex mu_;
  std::FILE* file_ = nullptr;  // guarded by mu_
  std::atomic<uint64_t> warnings_{0};
};

class NodeErrorHandler final : public ErrorHandler {
 public:
  // `spec` resolves Origin.source to a node id; `metrics` counts skipped records.
  NodeErrorHandler(const PipelineSpec* spec, const NodeSpec* node, ErrorSink* sink,
                   NodeMetrics* metrics)
      : spec_(spec), node_(node), sink_(sink), metrics_(metrics) {}

  Status OnRecordError(const Record& rec, std::string_view error) override;
  Status OnRawError(const Origin& origin, std::string_view raw, std::string_view error) override;

  // Hold dead-letter lines instead of appending them to the file.
  void set_hold(bool hold) { hold_ = hold; }
  // The lines held since the last call (each without its newline).
  std::vector<std::string> TakeHeld() { return std::exchange(held_, {}); }

 private:
  // `record_json` is a JSON value (object, or string for raw text); `shown` is what the
  // fail message and the log show.
  Status Handle(const Origin& origin, std::string_view error, const std::string& record_json,
                std::string_view shown);
  std::string SourceName(const Origin& origin) const;

  const PipelineSpec* spec_;
  const NodeSpec* node_;
  ErrorSink* sink_;
  NodeMetrics* metrics_;
  bool hold_ = false;
  std::vector<std::string> held_;
};

}  // namespace onceflow

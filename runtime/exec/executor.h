// Executor: runs a Plan. One thread per chain instance; bounded channels carrying batches
// between tasks (backpressure: a full channel blocks its producer; nothing is unbounded).
// The data path is the same under every guarantee; what travels beside the data and what
// a failure does is decided by the guarantee strategy (runtime/guarantees/).
//
// Threading: Run() blocks the calling thread until the pipeline ends, fails or is
// stopped. Progress() may be called from any thread while Run() is in progress.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/core/registry.h"
#include "runtime/core/status.h"
#include "runtime/plan/plan.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

class Chaos;
class Guarantee;

struct RunOptions {
  uint64_t max_events = 0;     // stop after this many source events (0 = no limit)
  int64_t duration_ms = 0;     // stop after this long (0 = no limit)
  size_t batch_size = 256;     // records per batch read from a source
  size_t channel_capacity = 8; // batches a channel holds before its producer blocks
  // Set to a signal number (SIGINT/SIGTERM) by a signal handler to stop cleanly.
  const std::atomic<int>* stop_signal = nullptr;
  bool fresh_start = true;     // sinks truncate their outputs
  // The control-path strategy (runtime/guarantees/); must outlive Run(). nullptr means
  // at-most-once without a state file (StatelessGuarantee).
  Guarantee* guarantee = nullptr;
  // Fault injection (--chaos); nullptr or a disabled Chaos injects nothing. Must outlive
  // Run(); shared across the attempts of a run so a fault fires once per place.
  Chaos* chaos = nullptr;
};

struct NodeStats {
  std::string id;
  NodeKind kind = NodeKind::kOperator;
  uint64_t processed = 0, emitted = 0, skipped = 0, dropped = 0, replayed = 0,
           duplicates_discarded = 0;
};

struct RunStats {
  // "completed" (all sources ended), "stopped" (signal), "max-events", "duration",
  // "failed".
  std::string exit_reason;
  int signal = 0;              // the signal that stopped the run, else 0
  double wall_s = 0;
  double open_s = 0;           // Run() start until every node opened (restore included)
  uint64_t source_events = 0;  // Σ over sources
  std::vector<NodeStats> nodes;  // PipelineSpec::nodes order
};

struct Progress {
  uint64_t source_events = 0;
  double elapsed_s = 0;
  std::vector<std::pair<std::string, size_t>> backlog;  // node id -> batches queued
};

class Executor {
 public:
  Executor(const PipelineSpec& spec, const Plan& plan, const Registry& registry,
           RunOptions options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs to the end. Returns the first error of any task (its message names the node and,
  // for data errors, the source position and record); *stats is filled in either case.
  Status Run(RunStats* stats);
  Progress GetProgress() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace onceflow

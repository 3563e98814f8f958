// Executor internals shared by executor.cc (the data path, barriers) and sequenced.cc
// (dedup mode's sequenced channels). Not a public header.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/chaos/chaos.h"
#include "runtime/exec/channel.h"
#include "runtime/exec/error_handler.h"
#include "runtime/exec/executor.h"
#include "runtime/guarantees/at_most_once.h"
#include "runtime/guarantees/guarantee.h"
#include "runtime/plan/partitioner.h"
#include "runtime/state/keyed_state.h"

namespace onceflow {
namespace exec_internal {

using Clock = std::chrono::steady_clock;

// Sinks flush buffered output to the OS at least this often while data flows, and
// whenever their task runs out of input.
constexpr auto kSinkFlushInterval = std::chrono::milliseconds(200);
// How often Run()'s thread checks for a signal or the end of --duration.
constexpr auto kWatchInterval = std::chrono::milliseconds(20);
// Back-off bounds for a source that returns no records (follow, rate limit).
constexpr int64_t kIdleMinMs = 1;
constexpr int64_t kIdleMaxMs = 20;

enum StopReason : int { kNoStop = 0, kStopSignal, kStopMaxEvents, kStopDuration };

// One node instance inside a task.
struct Member {
  int node = 0;
  NodeKind kind = NodeKind::kOperator;
  std::unique_ptr<Source> source;
  std::unique_ptr<Operator> op;
  std::unique_ptr<Sink> sink;
  KeyedState state;
  std::unique_ptr<NodeErrorHandler> errors;
  NodeMetrics* metrics = nullptr;
  NodeContext ctx;
  RecordBatch out;  // reused output batch (clear() keeps its capacity)
  bool opened = false;
  double fail_p = 0;  // --chaos fail= probability of this operator (0: never checked)
};

struct Task;

// Sequenced channels (dedup mode): what a channel's producer and consumer share besides
// the channel itself. See sequenced.cc.
struct SeqLink {
  std::string name;          // the state file's name of the channel
  bool from_source = false;  // the producer is a source chain: positions are record counts
  Task* producer = nullptr;
  Task* consumer = nullptr;
  std::atomic<int64_t> sent{0};        // the producer sent everything up to here
  std::atomic<int64_t> acked{0};       // the consumer committed everything up to here
  std::atomic<bool> acked_end{false};  // ... including the channel's end
  std::mutex mu;                       // guards the re-send request
  std::atomic<bool> resend_pending{false};  // set with `resend`: a lock-free first look
  bool resend = false;
  int64_t resend_from = 0;  // send everything after this position again
  SourcePosition resend_pos;
};

// A committed output an operator task keeps until its consumer's commit covers it.
struct Retained {
  int64_t seq = 0;
  std::string data;  // EncodeEnvelope bytes
};

struct InChannel {
  Channel* channel = nullptr;
  int port = 0;
  bool ended = false;
  // ---- sequenced channels ----
  SeqLink* link = nullptr;
  bool stopped = false;  // ended by a stop (not sequenced, not committed)
  int64_t mark = 0;      // applied up to here
  int64_t committed = 0;
  bool committed_ended = false;
  std::string pos_name;  // source channels: the source position at `mark`
  int64_t pos_offset = 0;
  std::string committed_pos_name;  // ... and at `committed`
  int64_t committed_pos_offset = 0;
};

// One out-edge of a chain's tail, seen from one tail instance.
struct OutRoute {
  int edge = 0;  // in Plan::edges
  std::unique_ptr<Partitioner> partitioner;
  std::vector<Channel*> destinations;  // indexed like the partitioner's destinations
  std::vector<RecordBatch> staging;
  // In-band watermarks, for an edge into an event-time node (NodeTypeDef::
  // event_time_option): the downstream's time field, the max of it over the records
  // routed on the edge, and the max already announced on every destination.
  std::string wm_field;
  int64_t wm_max = INT64_MIN;
  int64_t wm_sent = INT64_MIN;
  // ---- sequenced channels, indexed like destinations ----
  std::vector<SeqLink*> links;
  std::vector<int64_t> seq;                   // operator producers: last sequence committed
  std::vector<int64_t> sent;                  // source producers: last record count sent
  std::vector<std::deque<Retained>> retained;  // operator producers
  std::vector<int64_t> trimmed;               // outbox rows deleted up to here
};

struct Task {
  int index = 0;  // in Executor::Impl::tasks
  int chain = 0;
  int instance = 0;
  std::vector<std::unique_ptr<Member>> members;  // chain order; [0] is the head
  std::vector<InChannel> inputs;                 // empty for a source head
  std::vector<OutRoute> outs;
  // Set (parts non-null) when the tail operator may place its output in the partitions of
  // its one out-edge itself (Emitter::hashed): parts is outs[0].staging.
  HashedOutput hashed;
  Notifier notifier;
  Envelope scratch;         // reused envelope for pushes
  int current = 0;          // member being called, to name it in unexpected errors
  int in_channel = 0;       // index in `inputs` of the batch being processed
  bool sink_dirty = false;  // the tail sink has unflushed writes
  // The tail sink wrote since the last dedup commit (a flush to the OS does not clear
  // it: only a commit that recorded the synced length does).
  bool sink_uncommitted = false;
  Clock::time_point last_flush;
  bool exhausted = false;  // source heads: Read() reported the end
  uint64_t injected = 0;   // source heads: the newest barrier injected
  std::thread thread;
  // ---- sequenced channels ----
  int uncommitted = 0;  // envelopes applied since the last commit
  Clock::time_point first_uncommitted;
  SourcePosition src_pos;     // source heads: the position after the last Read
  uint64_t src_read_base = 0; // dedup source heads: src_pos.count before the last Read
  SourcePosition first_pos;   // source heads: the position of the input's beginning
  bool finished = false;      // consumers: every input ended when the task opened
  // Sequenced source chains with several out-edges: a second reader of the same source
  // instance, serving one edge (see Setup). It keeps its statistics to itself.
  bool clone = false;
  std::vector<std::unique_ptr<NodeMetrics>> own_metrics;
  uint64_t read_this_run = 0;  // clones: records read (--max-events applies per reader)
  // Source heads, for savepoints: paused (or exited) at `published_pos`; a reader that
  // paused reads on up to `pause_target` (the furthest reader of the same source
  // instance) so that all its readers stop at one position.
  std::atomic<int64_t> pause_target{-1};
  std::atomic<bool> paused{false};
  std::mutex pos_mu;
  SourcePosition published_pos;  // guarded by pos_mu
};

inline bool StartsWithNode(const std::string& msg, const std::string& id) {
  const std::string prefix = "node '" + id + "'";
  return msg.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace exec_internal

using namespace exec_internal;  // NOLINT: internal header, included by the executor's .cc files only


struct Executor::Impl {
  Impl(const PipelineSpec& s, const Plan& p, const Registry& r, RunOptions o)
      : spec(s), plan(p), registry(r), opt(o) {}

  const PipelineSpec& spec;
  const Plan& plan;
  const Registry& registry;
  RunOptions opt;
  StatelessGuarantee default_guarantee;
  Guarantee* guarantee = nullptr;

  // ---- built by Setup(), immutable while tasks run ----
  std::vector<std::unique_ptr<ErrorSink>> error_sinks;               // per node
  std::vector<std::vector<std::unique_ptr<NodeMetrics>>> metrics;    // node, instance
  std::vector<std::vector<std::unique_ptr<Channel>>> edge_channels;  // per edge
  std::vector<std::unique_ptr<Task>> tasks;
  std::atomic<bool> ready{false};  // Setup() done: Progress() may look at channels

  // ---- run control ----
  Clock::time_point start_time;      // written once by Run(), then `timing` is set
  double open_s = 0;                 // Run thread only
  std::atomic<bool> started{false};  // Run() entered (guards against a second call)
  std::atomic<bool> timing{false};   // start_time valid: Progress() may read it
  std::atomic<bool> stop_requested{false};
  std::atomic<int> stop_reason{kNoStop};
  std::atomic<int> stop_signal_number{0};
  std::atomic<bool> cancelled{false};
  std::atomic<uint64_t> source_events{0};
  std::atomic<uint64_t> events_claimed{0};  // max_events budget handed out to sources

  std::mutex mu;               // guards the fields below
  std::condition_variable cv;  // gate changes, task exits
  Status first_error;
  int opened_tasks = 0;
  struct OpenError {
    int node = -1;
    Status status;
  };
  std::vector<OpenError> open_errors;  // per task, for a deterministic report
  enum class Gate { kWait, kGo, kAbort } gate = Gate::kWait;
  int running = 0;

  Channel* ChannelFor(int edge, int up_instance, int down_instance) {
    const PlanEdge& e = plan.edges[edge];
    if (e.partition == PartitionKind::kForward) return edge_channels[edge][up_instance].get();
    return edge_channels[edge][up_instance * plan.nodes[e.to].parallelism + down_instance].get();
  }

  const std::string& NodeId(int node) const { return spec.nodes[node].id; }

  Status Named(int node, const Status& st) const {
    if (st.ok() || StartsWithNode(st.message(), NodeId(node))) return st;
    return st.WithContext("node '" + NodeId(node) + "'");
  }

  void Setup();
  void TaskMain(Task* t);
  Status OpenMembers(Task& t);
  Status RunTask(Task& t);
  Status RunSource(Task& t);
  Status RunConsumer(Task& t);
  Status EndTask(Task& t, bool exhausted);
  Status ProcessFrom(Task& t, size_t first, int port, RecordBatch& batch);
  Status DeliverWatermark(Task& t, int channel, int64_t ts, bool whole_chain);
  Status RouteOut(Task& t, RecordBatch& batch);
  Status PushWatermarks(Task& t, OutRoute& r);
  Status MaybeFlushSink(Task& t, bool force);
  // The flush of a task whose input ran dry (see Sink::FlushWhenIdle). Sets *wait_ms to
  // how long the task may sleep before the sink is due (-1: no limit).
  Status FlushIdleSink(Task& t, int64_t* wait_ms);
  Status InjectBarrier(Task& t, uint64_t id);
  Status Snapshot(Task& t, uint64_t id, int64_t alignment_ns);
  Status ForwardBarrier(Task& t, uint64_t id);
  Status InjectFailures(Member& m, RecordBatch& batch);
  void Passage(HazardPoint point);
  [[noreturn]] void Crash();
  bool chaos_on() const { return opt.chaos != nullptr && opt.chaos->enabled(); }
  size_t ClaimEvents(size_t want);
  void RequestStop(int reason, int signal);
  void Fail(int node, int instance, const Status& st);
  void CancelAll();

  // ---- sequenced channels (dedup mode; sequenced.cc) ----
  std::vector<std::unique_ptr<SeqLink>> links;  // one per channel, made by Setup
  std::atomic<bool> seq_pause{false};           // sources stop reading (a savepoint)
  Clock::time_point pause_started;              // Run thread only
  bool pause_aligned = false;                   // Run thread only: targets handed out
  int stop_after_savepoint = 0;                 // Run thread only: a signal to stop with
  void SeqWatch();                              // Run thread: savepoints
  Status SeqFinalSavepoint();                   // Run thread: write the drained cut
  void PublishPosition(Task& t, bool paused);
  void SeqSetup();
  Status SeqOpen(Task& t);
  Status SeqRunSource(Task& t);
  Status SeqRunConsumer(Task& t);
  Status SeqApply(Task& t, int c, Envelope& env);
  Status SeqRouteSource(Task& t, RecordBatch& batch);
  Status SeqCommit(Task& t, bool final_commit);
  Status SeqServe(Task& t);
  Status SeqFinishConsumer(Task& t, bool exhausted);
  Status SeqAwaitAcks(Task& t);
  Status SeqPushEnd(Task& t, bool exhausted);
  Status SeqRecover(Task& t, const Status& cause);
  Status SeqReopen(Task& t);
  Status OpenMember(Task& t, size_t k);
  void CloseMembers(Task& t, bool report);
};

}  // namespace onceflow

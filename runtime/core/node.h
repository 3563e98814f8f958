// The C++ interfaces of built-in nodes: Source, Operator, Sink. Plugins see only the C
// header include/onceflow/plugin.h; these interfaces are internal and may change.
//
// Threading contract: the executor calls every method of one instance from a single
// thread (the task thread of that instance), so implementations need no locks. Different
// instances of a node run on different threads and share nothing but immutable spec.
// Calls are per batch, so a virtual call and any per-call setup are paid once per batch.
//
// State: stateful operators keep all their state in ctx.state (host-owned, see
// state/keyed_state.h): the host snapshots, restores and queries it; an operator must not
// keep state the host cannot see.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/record.h"
#include "runtime/core/status.h"
#include "runtime/spec/pipeline_spec.h"

namespace onceflow {

class KeyedState;

// The edge downstream of a chain's last operator, when it is partitioned by the hash of
// one field (see Emitter::hashed).
struct HashedOutput {
  std::string field;                          // the one field the edge hashes
  std::vector<RecordBatch>* parts = nullptr;  // one batch per partition, appended to
  size_t placed = 0;                          // records placed in parts by this call
};

// Appends records to the batch the executor routes downstream after the call returns.
// Not virtual on purpose: one inline push_back per record.
class Emitter {
 public:
  explicit Emitter(RecordBatch* out, HashedOutput* hashed = nullptr)
      : out_(out), hashed_(hashed) {}
  void Emit(Record&& r) { out_->push_back(std::move(r)); }
  RecordBatch* batch() { return out_; }
  // Non-null when the executor lets this call place its output straight into the
  // partitions of the edge downstream, instead of routing batch() after the call (a pass
  // that moves every record and then destroys the moved-from husk). Offered to a chain's
  // last operator whose one out-edge hashes one field, with no event-time watermark to
  // track and channels that are not sequenced. A record whose `field` holds the string s
  // goes to (*parts)[StringKeyPartition(s, parts->size())] (key.h; the partitioner's very
  // function) and is counted in `placed`. Records are kept in their order per partition
  // only if a call places all of its output or none of it (whatever is left in batch() is
  // routed after the placed records).
  HashedOutput* hashed() { return hashed_; }

 private:
  RecordBatch* out_;
  HashedOutput* hashed_;
};

// Applies the node's `on_error` policy to a deterministic data error on one record:
// returns Ok after skipping it (counted) or writing it to the dead-letter file, or a
// kDataError status naming node, source position and record when the policy is `fail`.
class ErrorHandler {
 public:
  virtual ~ErrorHandler() = default;
  virtual Status OnRecordError(const Record& rec, std::string_view error) = 0;
  // For errors without a record (a malformed line): `raw` is the offending text.
  virtual Status OnRawError(const Origin& origin, std::string_view raw, std::string_view error) = 0;
};

// Counters of one node instance, read by the status line and the run summary from other
// threads (relaxed atomics, updated once per batch).
struct NodeMetrics {
  std::atomic<uint64_t> processed{0};   // records taken in (sources: events read)
  std::atomic<uint64_t> emitted{0};     // records sent downstream (sinks: records written)
  std::atomic<uint64_t> skipped{0};     // data errors skipped or dead-lettered
  std::atomic<uint64_t> dropped{0};     // lost to failures (at-most-once)
  std::atomic<uint64_t> replayed{0};
  std::atomic<uint64_t> duplicates_discarded{0};
};

// The journal of a source whose input cannot be rewound (`stdin`), kept in the state
// file by the guarantee (runtime/state/journal.h) so a resumed run can replay what the
// previous process read but had not checkpointed yet. Offsets count bytes of the whole
// journaled stream, across process invocations (the next invocation's stdin continues
// the stream).
class SourceJournal {
 public:
  virtual ~SourceJournal() = default;
  // Bytes journaled so far (the offset the next Append writes at).
  virtual uint64_t size() const = 0;
  // Appends `bytes` at offset size(); survives a crash of the process once it returned,
  // so it is called before the bytes are decoded into records.
  virtual Status Append(std::string_view bytes) = 0;
  // Reads up to `max` bytes journaled at or after `offset` into *out (replaces it);
  // empty when offset >= size().
  virtual Status Read(uint64_t offset, size_t max, std::string* out) = 0;
};

struct NodeContext {
  const PipelineSpec* pipeline = nullptr;
  const NodeSpec* spec = nullptr;
  int node_index = 0;       // index in pipeline->nodes
  int instance = 0;         // 0 .. parallelism-1
  int parallelism = 1;
  KeyedState* state = nullptr;      // non-null for every operator (empty when unused)
  ErrorHandler* errors = nullptr;
  NodeMetrics* metrics = nullptr;
  // True when this run starts from the beginning (no resume): sinks truncate their output.
  bool fresh_start = true;
  // Sinks, on a resume from a checkpoint that recorded this instance's output: the file it
  // wrote and its length then. A `file` sink cuts that file back to the length (the part
  // after it was written after the checkpoint and will be written again); a file shorter
  // than that is corruption. A sink whose path differs starts its new file empty.
  // resume_length < 0: nothing recorded.
  std::string resume_path;
  int64_t resume_length = -1;
  // Sinks: hold output back until the guarantee commits it (two-phase commit under
  // effectively-once/snapshot): Write buffers, Flush writes nothing, PreCommit hands the
  // epoch's output over, and the host applies it through ApplyEpoch once the checkpoint
  // is complete. Only set for sinks whose type supports it (NodeTypeDef::two_phase).
  bool two_phase = false;
  // Sources that cannot rewind: where to journal their input; nullptr when the guarantee
  // does not replay (at-most-once).
  SourceJournal* journal = nullptr;
  // Operators: the input channels of the task that runs this instance (one per upstream
  // instance and edge; 1 when the chain starts with a source), and the channel the batch
  // being processed came from (set by the executor before each Process call). Records of
  // one channel arrive in the order they were sent, so event-time operators track their
  // watermark per channel (operators/ops/event_time.h). An operator chained behind
  // others sees its chain head's channels.
  int input_channels = 1;
  int channel = 0;
};

// A position in a source's input, recorded with checkpoints and used to rewind.
struct SourcePosition {
  std::string name;      // current file (files source), else empty
  uint64_t offset = 0;   // byte offset in the current file / generate's next n
  uint64_t count = 0;    // records read so far by this instance
};

class Source {
 public:
  virtual ~Source() = default;
  virtual Status Open(NodeContext& ctx) = 0;
  // Appends up to `max` records. Sets *end = true once the input is exhausted for good
  // (never for `follow` or an unbounded generate). May return no records (nothing new yet,
  // rate limiting) but must not block for more than ~50 ms, so stop requests are seen.
  virtual Status Read(size_t max, Emitter& out, bool* end) = 0;
  // Position just after the last record returned by Read.
  virtual SourcePosition Position() const = 0;
  // Rewinds (or fast-forwards) to a position previously returned by Position().
  virtual Status Seek(const SourcePosition& pos) = 0;
  virtual Status Close() { return Status::Ok(); }
};

// The event time a record field holds, in epoch milliseconds: an integer, or a finite
// number (floored). False for anything else. Shared by the event-time operators and the
// executor's in-band watermarks, so both read a time alike.
inline bool EventTimeMs(const Value* v, int64_t* t) {
  if (v == nullptr) return false;
  if (v->type() == ValueType::kInt) {
    *t = v->as_int();
    return true;
  }
  if (v->type() == ValueType::kDouble && std::isfinite(v->as_double()) &&
      std::fabs(v->as_double()) < 9.0e18) {
    *t = static_cast<int64_t>(std::floor(v->as_double()));
    return true;
  }
  return false;
}

class Operator {
 public:
  virtual ~Operator() = default;
  virtual Status Open(NodeContext& ctx) = 0;
  // A batch from input `port` (index into the node's `input:` list). Records may be moved
  // out of `in`. Per-record data errors go through ctx.errors.
  virtual Status Process(int port, RecordBatch& in, Emitter& out) = 0;
  // Called once when every input has ended for good (not when the run is stopped early).
  // `emit: final` operators emit their state here.
  virtual Status Finish(Emitter& out) { return Status::Ok(); }
  // Event time on input channel `channel` (see NodeContext::channel) has reached `ts`:
  // the channel will carry no more record older than that. kChannelEnded when the
  // channel's input ended for good. The default ignores it (only event-time operators
  // care); like Process, it may emit.
  static constexpr int64_t kChannelEnded = INT64_MAX;
  virtual Status OnWatermark(int channel, int64_t ts, Emitter& out) { return Status::Ok(); }
  virtual Status Close() { return Status::Ok(); }
};

// What a sink makes durable at a checkpoint barrier (Sink::PreCommit).
struct SinkPreCommit {
  std::string path;      // a file sink: the file it writes
  int64_t length = -1;   // ... and its length, synced to disk; -1: not a file
  // Two-phase sinks: the output held back since the previous barrier, as self-contained
  // rows that ApplyEpoch (of any instance of the same node spec) can write later.
  std::vector<std::string> rows;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Opens the output. With ctx.fresh_start the output is emptied first (as `>` would).
  virtual Status Open(NodeContext& ctx) = 0;
  // A batch to write. Records may be moved out of `in` (a sink that buffers them takes
  // them instead of copying); the executor discards the batch afterwards.
  virtual Status Write(RecordBatch& in) = 0;
  // Flushes buffered output; with `durable`, also makes it durable (fsync / commit).
  virtual Status Flush(bool durable) = 0;
  // Whether a task flushes this sink whenever its input runs dry (true: output shows up
  // at once; right when a flush is a cheap write). A sink whose flush is a transaction
  // says false: it is then flushed at most every 200 ms (kSinkFlushInterval), idle or not
  // — a consumer faster than its producer runs dry after nearly every batch, and a commit
  // each time cost more than the rows (and merged none of the updates to a key).
  virtual bool FlushWhenIdle() const { return true; }
  virtual Status Close() = 0;
  // At a checkpoint barrier: makes everything written so far durable and describes it in
  // *out (a file's synced length; a two-phase sink's held-back rows, which it then
  // forgets). The default is Flush(true).
  virtual Status PreCommit(SinkPreCommit* out) { return Flush(true); }
  // Two-phase sinks: writes `rows` (from PreCommit) as epoch `epoch` of lineage `lineage`,
  // exactly once: the sink records the epoch in its own output atomically with the rows,
  // and an epoch already recorded is skipped. Called by the host on an instance opened
  // with fresh_start = false and two_phase = false, possibly in another process than the
  // one that produced the rows (recovery rolls forward).
  virtual Status ApplyEpoch(const std::string& lineage, int64_t epoch,
                            const std::vector<std::string>& rows) {
    return Status::Runtime("this sink does not commit in two phases");
  }
};

}  // namespace onceflow

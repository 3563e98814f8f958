// Sequenced channels: the executor's side of effectively-once in dedup mode (the strategy
// and the state file's side are in runtime/guarantees/dedup.h). Per hop, MillWheel-style:
//
// Positions. Every envelope on a channel covers positions (seq_start, seq_end]. Out of an
// operator task, one envelope is one sequence number (seq_end = seq_start + 1). Out of a
// source chain, positions are the source's record counts (the read's starting count +
// Origin::read_index + 1, carried as Envelope::src_base), and
// an envelope covers every record of that range routed to the channel. An exhausted end
// of input takes one position after the last record too.
//
// Consumers. A consumer task keeps per input channel the position it applied up to
// (`mark`). An envelope is applied when seq_start <= mark < seq_end (records at or before
// `mark`, possible only in a source range, are dropped); seq_end <= mark is a duplicate,
// seq_start > mark a gap — left over from before a restart — and both are dropped (the
// producer sends again in order). Every kCommitEnvelopes envelopes or kCommitInterval,
// when idle with work pending, and at its end, the task commits in one transaction (the
// strategy's CommitTask): the marks, its operators' state changes, its sink's progress (a
// `file` sink's fsynced length; an `sqlite` sink's rows, staged and then applied with an
// epoch marker) and its outputs, each staged batch becoming one sequence number on its
// channel. Only after the commit are the outputs sent ("strong productions"), and the
// consumer publishes its committed marks to the producers (SeqLink::acked).
//
// Producers. An operator task keeps each committed output (encoded, as the state file has
// it) until its consumer's published mark covers it, and trims the state file's copy at
// its next commit: the dedup log holds what is in flight. A source chain (a source and
// key-less operators only: the plan never chains a keyed operator or a sink to a source
// in this mode) keeps nothing: it starts reading at the lowest position any of its
// consumers committed, and per channel skips the records that consumer already has.
//
// Failures. A transient failure in a consumer task restarts that task alone: its nodes
// are closed and opened again from its last commit (keyed state, a file sink cut back to
// its committed length, held sqlite rows dropped), its marks go back to the committed
// ones, and it asks each producer to send again from there (SeqLink::resend); operator
// producers re-push their retained outputs, sources seek back. Every other task keeps
// running. A transient failure in a source chain's operators re-reads the batch. A
// killed process restarts every task from its own last commit (SeqOpen): committed
// outputs not yet covered are sent again first.
//
// Watermarks. On an edge into an event-time node (window, join) the producer announces
// the max event time it routed (OutRoute::wm_max) after the records, on every channel of
// the edge: a source chain as an envelope covering the positions up to its read position
// (an empty range for a channel that got records, else the range it skipped, applied like
// an empty batch, so sparse channels advance); an operator task after each commit's
// outputs, stamped with the sequence number it follows and not itself sequenced (a max
// is idempotent, and these are not kept for re-sending). A consumer applies a watermark
// only when its position reached the envelope's end, so a watermark never overtakes the
// records it covers, even when a restarted consumer still finds one in its channel that
// was sent after records it rolled back. A lost watermark only delays the windows: the
// records that follow carry their times too.
//
// Ends. An exhausted end is sequenced and committed like a record: a consumer runs
// Finish() and commits its outputs together with the end of its last input, and a
// producer stays alive after its end until every consumer committed it, answering
// re-send requests meanwhile. A stop (signal, --max-events, --duration) sends an end that
// is not sequenced: consumers commit what they applied and exit, and the next run resumes.
#include <algorithm>
#include <map>
#include <cstring>

#include "runtime/core/key.h"
#include "runtime/exec/executor_impl.h"
#include "runtime/guarantees/dedup.h"
#include "spdlog/spdlog.h"

namespace onceflow {
namespace {

// A consumer commits at least every kCommitEnvelopes applied envelopes, and at most
// kCommitInterval after the first uncommitted one. Outputs wait for the commit, so the
// interval is also the latency a hop adds. The interval is the cadence; the envelope
// count only bounds what a commit holds at extreme rates. A commit costs about the keys
// it writes (state, sink rows), not the envelopes: at 256 envelopes, orders' keyed task
// committed every 40 ms and spent half its time in commits, rewriting the same 10,000
// customers each time.
constexpr int kCommitEnvelopes = 4096;
constexpr auto kCommitInterval = std::chrono::milliseconds(50);
// How long a task waiting for acknowledgements or input sleeps before looking again.
constexpr int64_t kAckPollMs = 50;

constexpr char kKindBatch = 0;
constexpr char kKindEnd = 1;

void PutRaw(const void* p, size_t n, std::string* out) {
  out->append(static_cast<const char*>(p), n);
}

// Outbox encoding of one envelope: a kind byte, then per record its length (u32), origin
// (i32 source, u64 position) and EncodeRecord bytes.
void EncodeEnvelope(char kind, const RecordBatch& batch, std::string* out) {
  out->push_back(kind);
  std::string rec;
  for (const Record& r : batch) {
    rec.clear();
    EncodeRecord(r, &rec);
    const uint32_t n = static_cast<uint32_t>(rec.size());
    PutRaw(&n, 4, out);
    PutRaw(&r.origin.source, sizeof(r.origin.source), out);
    PutRaw(&r.origin.position, sizeof(r.origin.position), out);
    out->append(rec);
  }
}

bool DecodeEnvelope(std::string_view in, char* kind, RecordBatch* batch) {
  if (in.empty()) return false;
  *kind = in[0];
  in.remove_prefix(1);
  constexpr size_t kHead = 4 + sizeof(int32_t) + sizeof(uint64_t);
  while (!in.empty()) {
    if (in.size() < kHead) return false;
    uint32_t n = 0;
    std::memcpy(&n, in.data(), 4);
    Record& r = batch->emplace_back();
    std::memcpy(&r.origin.source, in.data() + 4, sizeof(int32_t));
    std::memcpy(&r.origin.position, in.data() + 4 + sizeof(int32_t), sizeof(uint64_t));
    in.remove_prefix(kHead);
    if (in.size() < n || !DecodeRecord(in.substr(0, n), &r)) return false;
    in.remove_prefix(n);
  }
  return true;
}

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Setup and open

void Executor::Impl::SeqSetup() {
  // Links follow the channels: each task's inputs know their channel; find the producer
  // side through the out-routes.
  for (auto& tp : tasks) {
    Task& t = *tp;
    const bool source_chain = t.members[0]->kind == NodeKind::kSource;
    for (OutRoute& r : t.outs) {
      const PlanEdge& e = plan.edges[r.edge];
      const size_t n = r.destinations.size();
      if (source_chain && e.partition == PartitionKind::kRoundRobin) {
        r.partitioner = MakePositionPartitioner(static_cast<int>(n));
      }
      r.links.assign(n, nullptr);
      r.seq.assign(n, 0);
      r.sent.assign(n, 0);
      r.retained.assign(n, {});
      r.trimmed.assign(n, 0);
      for (size_t d = 0; d < n; ++d) {
        const int down = e.partition == PartitionKind::kForward ? t.instance : static_cast<int>(d);
        auto link = std::make_unique<SeqLink>();
        link->name = SequencedChannelName(NodeId(e.from), t.instance, NodeId(e.to), down);
        link->from_source = source_chain;
        link->producer = &t;
        Channel* ch = r.destinations[d];
        for (auto& cp : tasks) {
          for (InChannel& in : cp->inputs) {
            if (in.channel == ch) {
              in.link = link.get();
              link->consumer = cp.get();
            }
          }
        }
        r.links[d] = link.get();
        links.push_back(std::move(link));
      }
    }
  }
}

// Loads what the state file holds for the task's channels. Runs before the start gate,
// so it pushes nothing (a full channel would block before its consumer runs).
Status Executor::Impl::SeqOpen(Task& t) {
  for (InChannel& in : t.inputs) {
    const DedupChannel c = guarantee->CommittedChannel(in.link->name);
    in.mark = in.committed = c.consumed;
    in.ended = in.committed_ended = c.ended;
    in.pos_name = in.committed_pos_name = c.pos_name;
    in.pos_offset = in.committed_pos_offset = c.pos_offset;
    in.link->acked.store(c.consumed);
    in.link->acked_end.store(c.ended);
  }
  t.finished = !t.inputs.empty() && std::all_of(t.inputs.begin(), t.inputs.end(),
                                                [](const InChannel& in) { return in.ended; });
  const bool source = t.inputs.empty();
  SourcePosition lowest;
  bool any_open = false;
  for (OutRoute& r : t.outs) {
    for (size_t d = 0; d < r.links.size(); ++d) {
      const DedupChannel c = guarantee->CommittedChannel(r.links[d]->name);
      r.trimmed[d] = c.consumed;
      r.links[d]->sent.store(source ? c.consumed : c.produced);
      if (source) {
        r.sent[d] = c.consumed;
        if (c.ended) continue;
        if (!any_open || c.consumed < static_cast<int64_t>(lowest.count)) {
          lowest.name = c.pos_name;
          lowest.offset = static_cast<uint64_t>(c.pos_offset);
          lowest.count = static_cast<uint64_t>(c.consumed);
        }
        any_open = true;
        continue;
      }
      r.seq[d] = c.produced;
      Status st = guarantee->Outbox(r.links[d]->name, [&](int64_t seq, std::string_view data) {
        if (seq > c.consumed) r.retained[d].push_back({seq, std::string(data)});
        return Status::Ok();
      });
      ONCEFLOW_RETURN_IF_ERROR(st);
    }
  }
  if (source) {
    Member& m = *t.members[0];
    t.first_pos = m.source->Position();
    if (!any_open && !t.outs.empty()) {
      t.exhausted = true;  // every consumer already committed this source's end
    } else if (lowest.count > 0) {
      ONCEFLOW_RETURN_IF_ERROR(m.source->Seek(lowest));
    }
    t.src_pos = m.source->Position();
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Sources

Status Executor::Impl::SeqRouteSource(Task& t, RecordBatch& /*batch*/) {
  const int64_t end = static_cast<int64_t>(t.src_pos.count);
  for (OutRoute& r : t.outs) {
    for (size_t d = 0; d < r.staging.size(); ++d) {
      RecordBatch& b = r.staging[d];
      if (b.empty()) continue;
      const int64_t sent = r.sent[d];
      const int64_t base = static_cast<int64_t>(t.src_read_base);
      // Replaying after a seek back: this channel's consumer has the records up to `sent`.
      if (base + b.front().origin.read_index + 1 <= sent) {
        b.erase(std::remove_if(b.begin(), b.end(),
                               [&](const Record& rec) {
                                 return base + rec.origin.read_index + 1 <= sent;
                               }),
                b.end());
        if (b.empty()) continue;
      }
      t.scratch.kind = Envelope::Kind::kBatch;
      t.scratch.seq_start = sent;
      t.scratch.seq_end = end;
      t.scratch.src_base = base;
      t.scratch.pos_name = t.src_pos.name;
      t.scratch.pos_offset = static_cast<int64_t>(t.src_pos.offset);
      std::swap(t.scratch.batch, b);
      const bool pushed = r.destinations[d]->Push(&t.scratch);
      std::swap(t.scratch.batch, b);
      if (!pushed) return Status::Cancelled("cancelled");
      r.sent[d] = end;
      if (end > r.links[d]->sent.load(std::memory_order_relaxed))
        r.links[d]->sent.store(end, std::memory_order_release);
    }
    if (r.wm_field.empty() || r.wm_max <= r.wm_sent) continue;
    // In-band watermarks (see the top of this file): after the records, on every channel
    // of the edge. A channel that got no record up to `end` gets the range as an empty,
    // sequenced envelope, so its consumer's position moves too.
    for (size_t d = 0; d < r.destinations.size(); ++d) {
      if (r.sent[d] > end) continue;  // replaying behind what this consumer has
      t.scratch.kind = Envelope::Kind::kWatermark;
      t.scratch.ts = r.wm_max;
      t.scratch.seq_start = r.sent[d];
      t.scratch.seq_end = end;
      t.scratch.pos_name = t.src_pos.name;
      t.scratch.pos_offset = static_cast<int64_t>(t.src_pos.offset);
      t.scratch.batch.clear();
      const bool pushed = r.destinations[d]->Push(&t.scratch);
      t.scratch.kind = Envelope::Kind::kBatch;
      if (!pushed) return Status::Cancelled("cancelled");
      r.sent[d] = end;
      if (end > r.links[d]->sent.load(std::memory_order_relaxed))
        r.links[d]->sent.store(end, std::memory_order_release);
    }
    r.wm_sent = r.wm_max;
  }
  return Status::Ok();
}

Status Executor::Impl::SeqRunSource(Task& t) {
  Member& m = *t.members[0];
  bool end = t.exhausted;
  bool end_sent = t.exhausted;
  int64_t idle_ms = 0;
  for (;;) {
    if (cancelled.load(std::memory_order_acquire)) return Status::Cancelled("cancelled");
    // Re-send requests of restarted consumers: seek back to the lowest one.
    bool rewind = false;
    SourcePosition to;
    for (OutRoute& r : t.outs) {
      for (size_t d = 0; d < r.links.size(); ++d) {
        SeqLink& l = *r.links[d];
        if (!l.resend_pending.load(std::memory_order_acquire)) continue;
        std::lock_guard<std::mutex> lock(l.mu);
        if (!l.resend) continue;
        l.resend = false;
        l.resend_pending.store(false, std::memory_order_relaxed);
        r.sent[d] = l.resend_from;
        if (!rewind || static_cast<uint64_t>(l.resend_from) < to.count) {
          to = l.resend_from == 0 ? t.first_pos : l.resend_pos;
        }
        rewind = true;
      }
    }
    if (rewind) {
      if (to.count < t.src_pos.count) {
        ONCEFLOW_RETURN_IF_ERROR(m.source->Seek(to));
        t.src_pos = m.source->Position();
        end = false;
      }
      end_sent = false;  // a restarted consumer may still need the end
    }
    if (seq_pause.load(std::memory_order_acquire) && !end) {
      // A savepoint drains the pipeline: stop reading, once every channel got again what
      // a restarted consumer asked for.
      bool replaying = false;
      for (OutRoute& r : t.outs) {
        for (size_t d = 0; d < r.links.size(); ++d) {
          replaying = replaying || r.sent[d] < r.links[d]->sent.load(std::memory_order_acquire);
        }
      }
      const int64_t target = t.pause_target.load(std::memory_order_acquire);
      if (!replaying && (target < 0 || static_cast<int64_t>(t.src_pos.count) >= target)) {
        if (!t.paused.load(std::memory_order_relaxed)) PublishPosition(t, true);
        if (stop_requested.load(std::memory_order_acquire)) {
          t.paused.store(false, std::memory_order_release);
          t.exhausted = false;
          return SeqPushEnd(t, false);
        }
        uint64_t epoch = t.notifier.Epoch();
        if (!t.notifier.WaitFor(epoch, kIdleMaxMs)) return Status::Cancelled("cancelled");
        continue;
      }
    }
    if (t.paused.load(std::memory_order_relaxed)) t.paused.store(false, std::memory_order_release);
    if (end && end_sent) {
      // Ended: counts as paused for a savepoint, at the end of the input.
      if (!t.paused.load(std::memory_order_relaxed)) PublishPosition(t, true);
      if (stop_requested.load(std::memory_order_acquire)) break;
      bool all = true;
      for (OutRoute& r : t.outs) {
        for (SeqLink* l : r.links) all = all && l->acked_end.load();
      }
      if (all) break;
      uint64_t epoch = t.notifier.Epoch();
      if (!t.notifier.WaitFor(epoch, kAckPollMs)) return Status::Cancelled("cancelled");
      continue;
    }
    if (end) {
      ONCEFLOW_RETURN_IF_ERROR(SeqPushEnd(t, true));
      end_sent = true;
      continue;
    }
    if (stop_requested.load(std::memory_order_acquire)) {
      t.exhausted = false;
      return SeqPushEnd(t, false);
    }
    size_t want = opt.batch_size;
    const int64_t target = t.pause_target.load(std::memory_order_acquire);
    if (seq_pause.load(std::memory_order_acquire) && target >= 0) {
      // Catching up with the furthest reader of this source for a savepoint.
      want = std::min<size_t>(want, static_cast<size_t>(target - static_cast<int64_t>(t.src_pos.count)));
    }
    if (t.clone) {
      if (opt.max_events != 0) {
        if (t.read_this_run >= opt.max_events) {
          RequestStop(kStopMaxEvents, 0);
          continue;
        }
        want = std::min<size_t>(want, opt.max_events - t.read_this_run);
      }
    } else if (opt.max_events != 0) {
      want = ClaimEvents(want);
      if (want == 0) {
        if (source_events.load(std::memory_order_acquire) >= opt.max_events) {
          RequestStop(kStopMaxEvents, 0);
          continue;
        }
        uint64_t epoch = t.notifier.Epoch();
        if (!t.notifier.WaitFor(epoch, kIdleMinMs)) return Status::Cancelled("cancelled");
        continue;
      }
    }
    t.current = 0;
    const SourcePosition before = t.src_pos;
    m.out.clear();
    Emitter em(&m.out);
    Status st = m.source->Read(want, em, &end);
    const size_t got = m.out.size();
    if (opt.max_events != 0 && got < want && !t.clone) {
      events_claimed.fetch_sub(want - got, std::memory_order_relaxed);
    }
    if (!st.ok()) return st;
    t.src_read_base = before.count;
    for (size_t i = 0; i < got; ++i) m.out[i].origin.read_index = static_cast<uint32_t>(i);
    t.src_pos = m.source->Position();
    t.read_this_run += got;
    if (got == 0) {
      if (end) continue;
      idle_ms = std::clamp<int64_t>(idle_ms * 2, kIdleMinMs, kIdleMaxMs);
      uint64_t epoch = t.notifier.Epoch();
      if (!t.notifier.WaitFor(epoch, idle_ms)) return Status::Cancelled("cancelled");
      continue;
    }
    idle_ms = 0;
    if (chaos_on() && !t.clone) {
      const std::string& id = NodeId(m.node);
      for (const Record& r : m.out) {
        if (opt.chaos->OnSourceEvent(id, r.origin.position)) Crash();
      }
    }
    m.metrics->processed.fetch_add(got, std::memory_order_relaxed);
    m.metrics->emitted.fetch_add(got, std::memory_order_relaxed);
    if (!t.clone) source_events.fetch_add(got, std::memory_order_release);
    st = ProcessFrom(t, 1, 0, m.out);
    if (st.code() == Status::Code::kTransient) {
      // An operator of the source chain failed on this batch: read it again. Channels it
      // already reached skip it (their `sent` moved past it).
      if (!guarantee->OnLocalRecovery(t.members[t.current]->node, st)) {
        return Status::Runtime("gave up after recovery.max_recoveries recoveries; last failure: " +
                               st.message());
      }
      const Clock::time_point t0 = Clock::now();
      for (OutRoute& r : t.outs) {
        for (RecordBatch& b : r.staging) b.clear();
      }
      ONCEFLOW_RETURN_IF_ERROR(m.source->Seek(before));
      t.src_pos = m.source->Position();
      end = false;
      guarantee->RecoveredLocally(MsSince(t0));
      continue;
    }
    ONCEFLOW_RETURN_IF_ERROR(st);
  }
  t.exhausted = true;
  return Status::Ok();
}

// An end on every out channel: sequenced (one position after the last record or sequence
// number) when the input is exhausted, plain when the run stops.
Status Executor::Impl::SeqPushEnd(Task& t, bool exhausted) {
  const bool source = t.inputs.empty();
  for (OutRoute& r : t.outs) {
    for (size_t d = 0; d < r.destinations.size(); ++d) {
      t.scratch.kind = Envelope::Kind::kEnd;
      t.scratch.exhausted = exhausted;
      t.scratch.batch.clear();
      if (exhausted && source) {
        const int64_t last = static_cast<int64_t>(t.src_pos.count);
        if (r.sent[d] > last) continue;  // its consumer committed the end already
        t.scratch.seq_start = r.sent[d];
        t.scratch.seq_end = last + 1;
        t.scratch.pos_name = t.src_pos.name;
        t.scratch.pos_offset = static_cast<int64_t>(t.src_pos.offset);
      } else if (source) {
        // A stop: not sequenced, but it tells the consumer that nothing of the range up to
        // here was for it, so its committed position need not lag behind.
        t.scratch.seq_start = r.sent[d];
        t.scratch.seq_end = static_cast<int64_t>(t.src_pos.count);
        t.scratch.pos_name = t.src_pos.name;
        t.scratch.pos_offset = static_cast<int64_t>(t.src_pos.offset);
      } else {
        t.scratch.seq_start = t.scratch.seq_end = 0;
      }
      const bool pushed = r.destinations[d]->Push(&t.scratch);
      t.scratch.kind = Envelope::Kind::kBatch;
      t.scratch.exhausted = false;
      if (!pushed) return Status::Cancelled("cancelled");
      if (exhausted && source) {
        r.sent[d] = static_cast<int64_t>(t.src_pos.count) + 1;
        r.links[d]->sent.store(r.sent[d], std::memory_order_release);
      }
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Consumers

Status Executor::Impl::SeqApply(Task& t, int c, Envelope& env) {
  InChannel& in = t.inputs[c];
  Member& head = *t.members[0];
  if (env.kind == Envelope::Kind::kEnd && !env.exhausted) {
    in.ended = in.stopped = true;  // a stop: the channel's end is not committed
    if (in.link->from_source && env.seq_start <= in.mark && env.seq_end > in.mark) {
      in.mark = env.seq_end;  // the source read up to here, nothing more for this channel
      std::swap(in.pos_name, env.pos_name);
      in.pos_offset = env.pos_offset;
      if (t.uncommitted++ == 0) t.first_uncommitted = Clock::now();
    }
    return Status::Ok();
  }
  if (env.kind == Envelope::Kind::kWatermark) {
    if (in.ended) return Status::Ok();
    if (env.seq_start < env.seq_end && env.seq_start <= in.mark && in.mark < env.seq_end) {
      // A source range without a record for this channel: applied like an empty batch.
      in.mark = env.seq_end;
      std::swap(in.pos_name, env.pos_name);
      in.pos_offset = env.pos_offset;
      if (t.uncommitted++ == 0) t.first_uncommitted = Clock::now();
    }
    // Only once everything it covers is applied (after a restart the channel may still
    // hold a watermark sent after records this task rolled back and will get again).
    if (in.mark < env.seq_end) return Status::Ok();
    return DeliverWatermark(t, c, env.ts, false);
  }
  if (env.kind != Envelope::Kind::kBatch && env.kind != Envelope::Kind::kEnd) return Status::Ok();
  if (in.ended || env.seq_end <= in.mark || env.seq_start > in.mark) {
    // A duplicate (already applied) or a gap (left over from before a restart of this
    // task: the producer sends it again in order).
    head.metrics->duplicates_discarded.fetch_add(env.batch.size(), std::memory_order_relaxed);
    return Status::Ok();
  }
  if (env.seq_start < in.mark) {
    // Part of a source range this task applied already.
    const int64_t mark = in.mark;
    const int64_t base = env.src_base;
    const size_t before = env.batch.size();
    env.batch.erase(std::remove_if(env.batch.begin(), env.batch.end(),
                                   [&](const Record& r) {
                                     return base + r.origin.read_index + 1 <= mark;
                                   }),
                    env.batch.end());
    head.metrics->duplicates_discarded.fetch_add(before - env.batch.size(),
                                                 std::memory_order_relaxed);
  }
  in.mark = env.seq_end;
  if (in.link->from_source) {
    std::swap(in.pos_name, env.pos_name);
    in.pos_offset = env.pos_offset;
  }
  if (t.uncommitted++ == 0) t.first_uncommitted = Clock::now();
  if (env.kind == Envelope::Kind::kEnd) {
    in.ended = true;
    // Committed with the channel's end, like a record's effect.
    return DeliverWatermark(t, c, Operator::kChannelEnded, true);
  }
  if (env.batch.empty()) return Status::Ok();
  t.in_channel = c;
  return ProcessFrom(t, 0, in.port, env.batch);
}

Status Executor::Impl::SeqRunConsumer(Task& t) {
  const size_t n = t.inputs.size();
  // Committed outputs from before a restart go first (their consumers drop what they
  // have).
  for (OutRoute& r : t.outs) {
    for (size_t d = 0; d < r.links.size(); ++d) {
      std::lock_guard<std::mutex> lock(r.links[d]->mu);
      r.links[d]->resend = true;
      r.links[d]->resend_from = r.links[d]->acked.load();
      r.links[d]->resend_pending.store(true, std::memory_order_release);
    }
  }
  if (t.finished) return SeqFinishConsumer(t, true);
  size_t next = 0;
  Envelope env;
  auto all_ended = [&] {
    for (const InChannel& in : t.inputs) {
      if (!in.ended) return false;
    }
    return true;
  };
  auto poll = [&]() -> int {
    for (size_t k = 0; k < n; ++k) {
      size_t c = next + k;
      if (c >= n) c -= n;
      InChannel& in = t.inputs[c];
      if (in.ended) continue;
      if (in.channel->TryPop(&env)) {
        next = c + 1 == n ? 0 : c + 1;
        return static_cast<int>(c);
      }
    }
    return -1;
  };
  auto due = [&] {
    return t.uncommitted > 0 &&
           (t.uncommitted >= kCommitEnvelopes || Clock::now() - t.first_uncommitted >= kCommitInterval);
  };
  while (!all_ended()) {
    ONCEFLOW_RETURN_IF_ERROR(SeqServe(t));
    int c = poll();
    if (c < 0) {
      if (cancelled.load(std::memory_order_acquire)) return Status::Cancelled("cancelled");
      if (due()) {
        ONCEFLOW_RETURN_IF_ERROR(SeqCommit(t, false));
        continue;
      }
      uint64_t epoch = t.notifier.Epoch();
      c = poll();
      if (c < 0) {
        int64_t wait_ms = kAckPollMs;
        if (t.uncommitted > 0) {
          const auto left = kCommitInterval - (Clock::now() - t.first_uncommitted);
          wait_ms = std::max<int64_t>(
              1, std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1);
        }
        if (!t.notifier.WaitFor(epoch, wait_ms)) return Status::Cancelled("cancelled");
        continue;
      }
    }
    Status st = SeqApply(t, c, env);
    if (st.code() == Status::Code::kTransient) {
      ONCEFLOW_RETURN_IF_ERROR(SeqRecover(t, st));
      continue;
    }
    ONCEFLOW_RETURN_IF_ERROR(st);
    if (due()) ONCEFLOW_RETURN_IF_ERROR(SeqCommit(t, false));
  }
  bool exhausted = true;
  for (const InChannel& in : t.inputs) exhausted = exhausted && !in.stopped;
  return SeqFinishConsumer(t, exhausted);
}

// Every input ended. Exhausted: Finish() the operators, commit their outputs with the
// ends (one commit), send, and wait until every consumer committed this task's end.
// Stopped: commit what was applied, send it, and pass the stop on.
Status Executor::Impl::SeqFinishConsumer(Task& t, bool exhausted) {
  if (!exhausted) {
    ONCEFLOW_RETURN_IF_ERROR(SeqCommit(t, false));
    return SeqPushEnd(t, false);
  }
  if (!t.finished) {
    for (;;) {
      Status st;
      for (size_t k = 0; k < t.members.size() && st.ok(); ++k) {
        Member& m = *t.members[k];
        if (m.kind != NodeKind::kOperator) continue;
        t.current = static_cast<int>(k);
        m.out.clear();
        Emitter em(&m.out);
        st = m.op->Finish(em);
        if (st.ok() && !m.out.empty()) {
          m.metrics->emitted.fetch_add(m.out.size(), std::memory_order_relaxed);
          st = ProcessFrom(t, k + 1, 0, m.out);
        }
      }
      if (st.code() == Status::Code::kTransient) {
        // Restart from the last commit: the ends are applied again when re-sent.
        ONCEFLOW_RETURN_IF_ERROR(SeqRecover(t, st));
        return SeqRunConsumer(t);
      }
      ONCEFLOW_RETURN_IF_ERROR(st);
      break;
    }
    ONCEFLOW_RETURN_IF_ERROR(SeqCommit(t, true));
    t.finished = true;
  }
  return SeqAwaitAcks(t);
}

Status Executor::Impl::SeqAwaitAcks(Task& t) {
  for (;;) {
    ONCEFLOW_RETURN_IF_ERROR(SeqServe(t));
    bool all = true;
    for (OutRoute& r : t.outs) {
      for (SeqLink* l : r.links) all = all && l->acked_end.load();
    }
    if (all) break;
    if (cancelled.load(std::memory_order_acquire)) return Status::Cancelled("cancelled");
    if (stop_requested.load(std::memory_order_acquire)) {
      // Consumers that stop before committing the end get it again next run.
      return Status::Ok();
    }
    uint64_t epoch = t.notifier.Epoch();
    if (!t.notifier.WaitFor(epoch, kAckPollMs)) return Status::Cancelled("cancelled");
  }
  // Everything this task produced is covered: empty its outbox rows.
  return SeqCommit(t, false);
}

// Answers re-send requests and drops retained outputs that consumers committed.
Status Executor::Impl::SeqServe(Task& t) {
  for (OutRoute& r : t.outs) {
    for (size_t d = 0; d < r.links.size(); ++d) {
      SeqLink& l = *r.links[d];
      const int64_t acked = l.acked.load(std::memory_order_acquire);
      auto& kept = r.retained[d];
      while (!kept.empty() && kept.front().seq <= acked) kept.pop_front();
      int64_t from = 0;
      if (!l.resend_pending.load(std::memory_order_acquire)) continue;
      {
        std::lock_guard<std::mutex> lock(l.mu);
        if (!l.resend) continue;
        l.resend = false;
        l.resend_pending.store(false, std::memory_order_relaxed);
        from = l.resend_from;
      }
      for (const Retained& e : kept) {
        if (e.seq <= from) continue;
        char kind = 0;
        t.scratch.batch.clear();
        if (!DecodeEnvelope(e.data, &kind, &t.scratch.batch)) {
          return Status::State("corrupt outbox entry " + std::to_string(e.seq) + " of channel '" +
                               l.name + "'");
        }
        t.scratch.kind = kind == kKindEnd ? Envelope::Kind::kEnd : Envelope::Kind::kBatch;
        t.scratch.exhausted = kind == kKindEnd;
        t.scratch.seq_start = e.seq - 1;
        t.scratch.seq_end = e.seq;
        const bool pushed = r.destinations[d]->Push(&t.scratch);
        t.scratch.kind = Envelope::Kind::kBatch;
        t.scratch.exhausted = false;
        if (!pushed) return Status::Cancelled("cancelled");
      }
    }
  }
  return Status::Ok();
}

Status Executor::Impl::SeqCommit(Task& t, bool final_commit) {
  DedupCommitData d;
  for (InChannel& in : t.inputs) {
    const bool ended = in.ended && !in.stopped;
    if (in.mark == in.committed && ended == in.committed_ended) continue;
    DedupChannel c;
    c.channel = in.link->name;
    c.consumed = in.mark;
    c.ended = ended;
    c.pos_name = in.pos_name;
    c.pos_offset = in.pos_offset;
    d.consumed.push_back(std::move(c));
  }
  std::string blob;
  for (size_t k = 0; k < t.members.size(); ++k) {
    Member& m = *t.members[k];
    t.current = static_cast<int>(k);
    if (m.kind == NodeKind::kOperator) {
      blob.clear();
      const uint64_t since = m.state.epoch();
      m.state.CollectChanges(since, [&](std::string_view key, const StateValue* value) {
        AppendChange(key, value, &blob);
      });
      m.state.SetEpoch(since + 1);
      if (!blob.empty()) d.changes.emplace_back(NodeId(m.node), blob);
    } else if (m.kind == NodeKind::kSink && (t.sink_uncommitted || m.ctx.two_phase)) {
      // Whatever the sink wrote since the last commit, flushed to the OS or not, becomes
      // durable and its length part of this commit: the positions committed with it say
      // those records were applied.
      SinkPreCommit pc;
      ONCEFLOW_RETURN_IF_ERROR(m.sink->PreCommit(&pc));
      t.sink_dirty = false;
      t.sink_uncommitted = false;
      t.last_flush = Clock::now();
      if (m.ctx.two_phase) {
        if (!pc.rows.empty()) d.staged.push_back({NodeId(m.node), std::move(pc.rows)});
      } else if (pc.length >= 0) {
        d.sinks.push_back({NodeId(m.node), t.instance, pc.path, pc.length, 0});
      }
    }
  }
  struct Send {
    size_t route, dest;
    int64_t seq;
    bool end;
  };
  std::vector<Send> sends;
  for (size_t ri = 0; ri < t.outs.size(); ++ri) {
    OutRoute& r = t.outs[ri];
    for (size_t dst = 0; dst < r.links.size(); ++dst) {
      const std::string& name = r.links[dst]->name;
      bool produced = false;
      if (!r.staging[dst].empty()) {
        std::string data;
        EncodeEnvelope(kKindBatch, r.staging[dst], &data);
        const int64_t seq = ++r.seq[dst];
        r.retained[dst].push_back({seq, data});
        d.outbox.push_back({name, seq, std::move(data)});
        sends.push_back({ri, dst, seq, false});
        produced = true;
      }
      if (final_commit) {
        std::string data;
        EncodeEnvelope(kKindEnd, {}, &data);
        const int64_t seq = ++r.seq[dst];
        r.retained[dst].push_back({seq, data});
        d.outbox.push_back({name, seq, std::move(data)});
        sends.push_back({ri, dst, seq, true});
        produced = true;
      }
      if (produced) d.produced.emplace_back(name, r.seq[dst]);
      const int64_t acked = r.links[dst]->acked.load(std::memory_order_acquire);
      if (acked > r.trimmed[dst]) {
        d.trim.emplace_back(name, acked);
        r.trimmed[dst] = acked;
      }
    }
  }
  t.uncommitted = 0;
  if (d.consumed.empty() && d.changes.empty() && d.staged.empty() && d.sinks.empty() &&
      d.outbox.empty() && d.trim.empty()) {
    return Status::Ok();
  }
  if (chaos_on() && opt.chaos->Passage(HazardPoint::kInDedupCommit)) {
    d.in_txn_hook = [] { CrashNow(); };
  }
  int64_t epoch = 0;
  ONCEFLOW_RETURN_IF_ERROR(guarantee->CommitTask(d, &epoch));
  if (epoch != 0) {
    // Committed: apply the staged rows to the sink's own database (idempotent by epoch;
    // a crash before this is rolled forward by the next run).
    Member& tail = *t.members.back();
    for (auto& s : d.staged) {
      ONCEFLOW_RETURN_IF_ERROR(tail.sink->ApplyEpoch(guarantee->lineage(), epoch, s.rows));
      ONCEFLOW_RETURN_IF_ERROR(guarantee->AfterApply(epoch, s.node));
    }
  }
  for (InChannel& in : t.inputs) {
    const bool ended = in.ended && !in.stopped;
    in.committed = in.mark;
    in.committed_ended = ended;
    in.committed_pos_name = in.pos_name;
    in.committed_pos_offset = in.pos_offset;
    in.link->acked.store(in.mark, std::memory_order_release);
    if (ended) in.link->acked_end.store(true, std::memory_order_release);
  }
  for (InChannel& in : t.inputs) in.link->producer->notifier.Signal();
  // Strong productions: only now do the outputs leave.
  for (const Send& s : sends) {
    OutRoute& r = t.outs[s.route];
    t.scratch.kind = s.end ? Envelope::Kind::kEnd : Envelope::Kind::kBatch;
    t.scratch.exhausted = s.end;
    t.scratch.seq_start = s.seq - 1;
    t.scratch.seq_end = s.seq;
    if (!s.end) std::swap(t.scratch.batch, r.staging[s.dest]);
    r.links[s.dest]->sent.store(s.seq, std::memory_order_release);
    const bool pushed = r.destinations[s.dest]->Push(&t.scratch);
    if (!s.end) std::swap(t.scratch.batch, r.staging[s.dest]);
    t.scratch.kind = Envelope::Kind::kBatch;
    t.scratch.exhausted = false;
    if (!pushed) return Status::Cancelled("cancelled");
  }
  // In-band watermarks after the committed outputs, unsequenced: a consumer applies one
  // only once its position on the channel reached the sequence number it follows.
  for (OutRoute& r : t.outs) {
    if (r.wm_field.empty() || r.wm_max <= r.wm_sent) continue;
    for (size_t dst = 0; dst < r.destinations.size(); ++dst) {
      t.scratch.kind = Envelope::Kind::kWatermark;
      t.scratch.ts = r.wm_max;
      t.scratch.seq_start = t.scratch.seq_end = r.seq[dst];
      t.scratch.batch.clear();
      const bool pushed = r.destinations[dst]->Push(&t.scratch);
      t.scratch.kind = Envelope::Kind::kBatch;
      if (!pushed) return Status::Cancelled("cancelled");
    }
    r.wm_sent = r.wm_max;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Local recovery

Status Executor::Impl::SeqRecover(Task& t, const Status& cause) {
  Member& failed = *t.members[std::min<size_t>(t.current, t.members.size() - 1)];
  if (!guarantee->OnLocalRecovery(failed.node, cause)) {
    return Status::Runtime("gave up after recovery.max_recoveries local recoveries; last failure: " +
                           cause.message());
  }
  const Clock::time_point t0 = Clock::now();
  for (OutRoute& r : t.outs) {
    for (RecordBatch& b : r.staging) b.clear();
    r.wm_max = r.wm_sent;  // the dropped outputs will be produced again
  }
  ONCEFLOW_RETURN_IF_ERROR(SeqReopen(t));
  for (InChannel& in : t.inputs) {
    in.mark = in.committed;
    in.ended = in.committed_ended;
    in.stopped = false;
    in.pos_name = in.committed_pos_name;
    in.pos_offset = in.committed_pos_offset;
    if (in.ended) continue;
    {
      std::lock_guard<std::mutex> lock(in.link->mu);
      in.link->resend = true;
      in.link->resend_from = in.committed;
      in.link->resend_pos.name = in.pos_name;
      in.link->resend_pos.offset = static_cast<uint64_t>(in.pos_offset);
      in.link->resend_pos.count = static_cast<uint64_t>(in.committed);
      in.link->resend_pending.store(true, std::memory_order_release);
    }
    in.link->producer->notifier.Signal();
  }
  t.uncommitted = 0;
  guarantee->RecoveredLocally(MsSince(t0));
  return Status::Ok();
}

// Closes the task's nodes and opens them again from the last commit.
Status Executor::Impl::SeqReopen(Task& t) {
  CloseMembers(t, /*report=*/false);
  for (size_t k = 0; k < t.members.size(); ++k) {
    Member& m = *t.members[k];
    m.ctx.fresh_start = false;
    m.state.Clear();
    m.out.clear();
    ONCEFLOW_RETURN_IF_ERROR(OpenMember(t, k));
  }
  t.sink_dirty = false;
  t.sink_uncommitted = false;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Savepoints

void Executor::Impl::PublishPosition(Task& t, bool paused) {
  {
    std::lock_guard<std::mutex> lock(t.pos_mu);
    t.published_pos = t.src_pos;
  }
  t.paused.store(paused, std::memory_order_release);
}

// Run thread, every watch interval. A savepoint request pauses the sources; once every
// source paused (or ended) and every channel's consumer committed all its producer sent,
// nothing is in flight anywhere and the sources' positions with the committed state are
// a consistent cut: the strategy writes it, and the sources go on.
void Executor::Impl::SeqWatch() {
  constexpr auto kPauseLimit = std::chrono::seconds(60);
  // A stop by signal first takes a savepoint, then stops (SPEC §4).
  const int sig = opt.stop_signal != nullptr ? opt.stop_signal->load() : 0;
  if (sig != 0 && stop_after_savepoint == 0 && !stop_requested.load()) {
    stop_after_savepoint = sig;
    if (!seq_pause.load(std::memory_order_relaxed)) {
      seq_pause.store(true, std::memory_order_release);
      pause_started = Clock::now();
      pause_aligned = false;
    }
    return;
  }
  if (!seq_pause.load(std::memory_order_relaxed)) {
    if (!guarantee->SavepointDue()) return;
    seq_pause.store(true, std::memory_order_release);
    pause_started = Clock::now();
    pause_aligned = false;
    return;
  }
  auto finish = [&] {
    for (auto& t : tasks) t->pause_target.store(-1, std::memory_order_release);
    if (stop_after_savepoint != 0) {
      RequestStop(kStopSignal, stop_after_savepoint);  // sources see it while paused
      return;
    }
    seq_pause.store(false, std::memory_order_release);
    for (auto& t : tasks) {
      if (t->inputs.empty()) t->notifier.Signal();
    }
  };
  if (cancelled.load(std::memory_order_acquire)) return finish();
  if (Clock::now() - pause_started > kPauseLimit) {
    spdlog::warn("savepoint abandoned: the pipeline did not drain within 60 s");
    return finish();
  }
  bool paused = true;
  for (auto& t : tasks) {
    if (t->inputs.empty()) paused = paused && t->paused.load(std::memory_order_acquire);
  }
  if (!paused) return;
  // Every reader of a source instance must stop at the same position: the furthest.
  std::map<std::pair<int, int>, int64_t> furthest;
  for (auto& t : tasks) {
    if (!t->inputs.empty()) continue;
    std::lock_guard<std::mutex> lock(t->pos_mu);
    int64_t& f = furthest[{t->members[0]->node, t->instance}];
    f = std::max(f, static_cast<int64_t>(t->published_pos.count));
  }
  bool aligned = true;
  for (auto& t : tasks) {
    if (!t->inputs.empty()) continue;
    std::lock_guard<std::mutex> lock(t->pos_mu);
    const int64_t f = furthest[{t->members[0]->node, t->instance}];
    if (static_cast<int64_t>(t->published_pos.count) != f) {
      aligned = false;
      if (!pause_aligned) {
        t->paused.store(false, std::memory_order_release);
        t->pause_target.store(f, std::memory_order_release);
        t->notifier.Signal();
      }
    }
  }
  pause_aligned = true;
  if (!aligned) return;
  for (auto& l : links) {
    if (l->acked.load(std::memory_order_acquire) != l->sent.load(std::memory_order_acquire))
      return;
  }
  Status st = SeqFinalSavepoint();
  if (!st.ok()) spdlog::error("savepoint failed: {}", st.message());
  finish();
}

Status Executor::Impl::SeqFinalSavepoint() {
  std::vector<TaskSnapshot::SourceSnap> sources;
  for (auto& t : tasks) {
    if (!t->inputs.empty() || t->clone) continue;  // a clone stopped where its primary did
    std::lock_guard<std::mutex> lock(t->pos_mu);
    sources.push_back({t->members[0]->node, t->instance, t->published_pos});
  }
  return guarantee->Savepoint(sources);
}

}  // namespace onceflow

// Executor: runs a Plan with one thread per chain instance ("task"), bounded channels
// between tasks, and the guarantee strategy at the control points. See executor.h.
//
// Life of a run:
//   1. Run() builds channels (one per upstream-instance -> downstream-instance pair of
//      each unchained edge), tasks, partitioners, metrics and per-node error sinks.
//   2. Every task thread creates its nodes through the Registry and opens them (so every
//      method of a node instance runs on its own thread), then waits at the start gate.
//      Run() opens the gate only when every node opened; otherwise it reports the open
//      error of the first node in file order (deterministic) and no source reads at all.
//   3. Sources loop Read -> chain -> route; consumer heads poll their channels round
//      robin and sleep on their Notifier when all are empty. kEnd travels down every
//      channel; a task whose inputs all ended closes its nodes and exits.
//   4. Run()'s thread watches for stop requests (signal, --duration) every 20 ms and joins
//      every thread before returning.
//
// Checkpoints (guarantees with snapshots()): a source task injects barrier n when the
// guarantee asks for it (BarrierToInject, checked before each Read): it snapshots its
// chain — source position, the changed keyed state of each operator, the sink's
// pre-commit — hands the copy to the guarantee and pushes barrier n down every out
// channel. A consumer task feeds barriers and ends to its BarrierAligner and stops
// popping a channel while the aligner blocks it, so nothing is ever buffered; when n
// arrived on every live channel it snapshots its chain the same way and forwards n.
// Batches bypass the aligner (a popped batch always belongs to an unblocked channel).
// A source that stops reading injects a barrier still pending (OnSourceEnd) before its
// end, so a checkpoint in flight always completes on a clean stop. At its end every task
// hands over a final snapshot (checkpoint 0) after Finish() and before its end goes
// downstream.
//
// Fault injection (--chaos): operators with a `fail=` probability check each record
// before Process (a transient failure the guarantee may recover from, or a dropped record
// when the guarantee's drop_failed_records() says so); sources count
// events for crash=/crash-prob=; hazard points are passed at barriers and sink writes.
//
// Threading hazards handled here:
//   * A failure anywhere cancels every channel and notifier, which wakes every blocked
//     producer and consumer; each thread then closes its own nodes and exits. Nothing is
//     left running or blocked when Run() returns.
//   * Stop requests (signal, max_events, duration) only make sources stop reading; the
//     data already read flows to the sinks, but operators do not Finish(): their kEnd
//     says "not exhausted" (emit: final must not fire on a stopped run).
//   * Statistics are relaxed atomics bumped once per batch; Progress() may read them from
//     any thread.
#include "runtime/exec/executor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "runtime/chaos/chaos.h"
#include "runtime/exec/channel.h"
#include "runtime/exec/error_handler.h"
#include "runtime/exec/executor_impl.h"
#include "runtime/guarantees/at_most_once.h"
#include "runtime/guarantees/guarantee.h"
#include "runtime/plan/partitioner.h"
#include "runtime/state/keyed_state.h"
#include "spdlog/spdlog.h"

namespace onceflow {

// ---------------------------------------------------------------------------------------
// Setup

void Executor::Impl::Setup() {
  const int n = static_cast<int>(plan.nodes.size());
  error_sinks.resize(n);
  metrics.resize(n);
  for (int i = 0; i < n; ++i) {
    error_sinks[i] = std::make_unique<ErrorSink>(spec.nodes[i].id, spec.nodes[i].dead_letter_path);
    for (int k = 0; k < plan.nodes[i].parallelism; ++k) {
      metrics[i].push_back(std::make_unique<NodeMetrics>());
    }
  }

  // Channels. A channel's consumer notifier is the downstream task's, so tasks first.
  for (int c = 0; c < static_cast<int>(plan.chains.size()); ++c) {
    const Chain& chain = plan.chains[c];
    for (int inst = 0; inst < chain.parallelism; ++inst) {
      auto t = std::make_unique<Task>();
      t->index = static_cast<int>(tasks.size());
      t->chain = c;
      t->instance = inst;
      tasks.push_back(std::move(t));
    }
  }
  std::vector<int> first_task(plan.chains.size());
  for (int i = 0, c = 0; c < static_cast<int>(plan.chains.size()); ++c) {
    first_task[c] = i;
    i += plan.chains[c].parallelism;
  }
  auto task_of = [&](int node, int instance) -> Task& {
    return *tasks[first_task[plan.nodes[node].chain] + instance];
  };

  edge_channels.resize(plan.edges.size());
  for (int ei = 0; ei < static_cast<int>(plan.edges.size()); ++ei) {
    const PlanEdge& e = plan.edges[ei];
    if (e.chained) continue;
    const int up = plan.nodes[e.from].parallelism;
    const int down = plan.nodes[e.to].parallelism;
    if (e.partition == PartitionKind::kForward) {
      for (int i = 0; i < up; ++i) {
        Task& consumer = task_of(e.to, i);
        edge_channels[ei].push_back(
            std::make_unique<Channel>(opt.channel_capacity, &consumer.notifier));
        {
          InChannel in;
          in.channel = edge_channels[ei].back().get();
          in.port = e.port;
          consumer.inputs.push_back(std::move(in));
        }
      }
    } else {
      for (int i = 0; i < up; ++i) {
        for (int j = 0; j < down; ++j) {
          Task& consumer = task_of(e.to, j);
          edge_channels[ei].push_back(
              std::make_unique<Channel>(opt.channel_capacity, &consumer.notifier));
          {
            InChannel in;
            in.channel = edge_channels[ei].back().get();
            in.port = e.port;
            consumer.inputs.push_back(std::move(in));
          }
        }
      }
    }
  }

  // Members and out-routes. `own_metrics`: a reader clone (below) counts nothing in the
  // node's statistics, which its primary reader already counts.
  auto build_members = [&](Task& t, bool own_metrics) {
    const Chain& chain = plan.chains[t.chain];
    for (int node : chain.nodes) {
      auto m = std::make_unique<Member>();
      const NodeSpec& ns = spec.nodes[node];
      m->node = node;
      m->kind = ns.kind;
      if (own_metrics) {
        t.own_metrics.push_back(std::make_unique<NodeMetrics>());
        m->metrics = t.own_metrics.back().get();
      } else {
        m->metrics = metrics[node][t.instance].get();
      }
      m->errors =
          std::make_unique<NodeErrorHandler>(&spec, &ns, error_sinks[node].get(), m->metrics);
      m->ctx.pipeline = &spec;
      m->ctx.spec = &ns;
      m->ctx.node_index = node;
      m->ctx.instance = t.instance;
      m->ctx.parallelism = chain.parallelism;
      m->ctx.state = &m->state;
      m->ctx.errors = m->errors.get();
      m->ctx.metrics = m->metrics;
      m->ctx.fresh_start = opt.fresh_start;
      m->ctx.input_channels = t.inputs.empty() ? 1 : static_cast<int>(t.inputs.size());
      if (ns.kind == NodeKind::kSink && guarantee->two_phase_sinks()) {
        const NodeTypeDef* def = registry.Find(ns.kind, ns.type);
        m->ctx.two_phase = def != nullptr && def->two_phase;
      }
      if (ns.kind == NodeKind::kOperator && chaos_on())
        m->fail_p = opt.chaos->FailProbability(ns.id);
      m->errors->set_hold(guarantee->snapshots());
      t.members.push_back(std::move(m));
    }
  };
  std::vector<std::unique_ptr<Task>> clones;
  for (auto& tp : tasks) {
    Task& t = *tp;
    const Chain& chain = plan.chains[t.chain];
    build_members(t, false);
    const int tail = chain.nodes.back();
    for (int ei : plan.nodes[tail].out_edges) {
      const PlanEdge& e = plan.edges[ei];
      const int down = plan.nodes[e.to].parallelism;
      OutRoute r;
      r.edge = ei;
      if (e.partition == PartitionKind::kForward) {
        r.partitioner = MakePartitioner(e, t.instance, 1);
        r.destinations.push_back(ChannelFor(ei, t.instance, t.instance));
      } else {
        r.partitioner = MakePartitioner(e, t.instance, down);
        for (int j = 0; j < down; ++j) r.destinations.push_back(ChannelFor(ei, t.instance, j));
      }
      r.staging.resize(r.destinations.size());
      const NodeSpec& down_spec = spec.nodes[e.to];
      const NodeTypeDef* down_def = registry.Find(down_spec.kind, down_spec.type);
      if (down_def != nullptr && !down_def->event_time_option.empty()) {
        r.wm_field = down_spec.options.GetString(down_def->event_time_option);
      }
      t.outs.push_back(std::move(r));
    }
    // The tail operator may place its output in the partitions itself (Emitter::hashed)
    // when its one out-edge hashes one field and routing does nothing else per record.
    if (t.outs.size() == 1 && t.members.back()->kind == NodeKind::kOperator &&
        !guarantee->sequenced() && t.outs[0].wm_field.empty()) {
      const PlanEdge& e = plan.edges[t.outs[0].edge];
      if (e.partition == PartitionKind::kHash && e.hash_fields.size() == 1) {
        t.hashed.field = e.hash_fields[0];
        t.hashed.parts = &t.outs[0].staging;
      }
    }
    // Sequenced channels: a source chain with several out-edges gets one reader per edge,
    // so that each downstream branch is served from its own position — a branch that
    // stalls or recovers (and re-reads) never holds the others back. The input is read
    // once per edge; a source that cannot rewind (stdin) keeps a single reader.
    const NodeSpec& head = spec.nodes[chain.nodes[0]];
    const NodeTypeDef* def = registry.Find(head.kind, head.type);
    if (guarantee->sequenced() && head.kind == NodeKind::kSource && t.outs.size() > 1 &&
        def != nullptr && !def->journaled) {
      while (t.outs.size() > 1) {
        auto c = std::make_unique<Task>();
        c->chain = t.chain;
        c->instance = t.instance;
        c->clone = true;
        build_members(*c, true);
        c->outs.push_back(std::move(t.outs.back()));
        t.outs.pop_back();
        clones.push_back(std::move(c));
      }
    }
  }
  for (auto& c : clones) {
    c->index = static_cast<int>(tasks.size());
    tasks.push_back(std::move(c));
  }
  if (guarantee->sequenced()) SeqSetup();
  ready.store(true, std::memory_order_release);
}

// ---------------------------------------------------------------------------------------
// Control

void Executor::Impl::RequestStop(int reason, int signal) {
  int expected = kNoStop;
  if (stop_reason.compare_exchange_strong(expected, reason)) {
    stop_signal_number.store(signal, std::memory_order_relaxed);
  }
  stop_requested.store(true, std::memory_order_release);
  // Wake sources sleeping in their idle back-off (a cheap Signal per task).
  for (auto& t : tasks) {
    if (t->inputs.empty()) t->notifier.Signal();
  }
}

void Executor::Impl::CancelAll() {
  cancelled.store(true, std::memory_order_release);
  for (auto& chans : edge_channels) {
    for (auto& c : chans) c->Cancel();
  }
  for (auto& t : tasks) t->notifier.Cancel();
  {
    std::lock_guard<std::mutex> lock(mu);
    if (gate == Gate::kWait) gate = Gate::kAbort;
  }
  cv.notify_all();
}

void Executor::Impl::Fail(int node, int instance, const Status& st) {
  Status named = Named(node, st);
  // The strategy decides. Recovery is global (every task restores the last complete
  // checkpoint), so the executor does not recover in place: it stops every task and
  // returns the failure with its code intact; the caller (cmd_run) builds a new executor
  // that resumes from the checkpoint. kFailRun turns a transient failure into a plain one.
  if (guarantee->OnTaskFailure(node, instance, named) == FailureAction::kFailRun &&
      named.code() == Status::Code::kTransient) {
    named = Status::Runtime(named.message());
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.ok()) first_error = named;
  }
  CancelAll();
}

size_t Executor::Impl::ClaimEvents(size_t want) {
  uint64_t cur = events_claimed.load(std::memory_order_relaxed);
  for (;;) {
    if (cur >= opt.max_events) return 0;
    uint64_t take = std::min<uint64_t>(want, opt.max_events - cur);
    if (events_claimed.compare_exchange_weak(cur, cur + take, std::memory_order_relaxed)) {
      return static_cast<size_t>(take);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Task thread

void Executor::Impl::TaskMain(Task* t) {
  Status st;
  try {
    st = OpenMembers(*t);
  } catch (const std::exception& e) {
    st = Status::Runtime(std::string("unexpected exception: ") + e.what());
  } catch (...) {
    st = Status::Runtime("unexpected exception");
  }
  auto current_node = [&] {
    return t->members[std::min<size_t>(t->current, t->members.size() - 1)]->node;
  };
  bool go = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!st.ok()) open_errors[t->index] = {current_node(), Named(current_node(), st)};
    ++opened_tasks;
    cv.notify_all();
    cv.wait(lock, [&] { return gate != Gate::kWait; });
    go = gate == Gate::kGo;
  }
  if (go) {
    try {
      st = RunTask(*t);
    } catch (const std::exception& e) {
      st = Status::Runtime(std::string("unexpected exception: ") + e.what());
    } catch (...) {
      st = Status::Runtime("unexpected exception");
    }
    // Cancelled means another task failed first (or the gate was aborted): not an error
    // of this task.
    if (!st.ok() && st.code() != Status::Code::kCancelled) Fail(current_node(), t->instance, st);
  }

  CloseMembers(*t, /*report=*/true);
  {
    std::lock_guard<std::mutex> lock(mu);
    --running;
  }
  cv.notify_all();
}

Status Executor::Impl::OpenMembers(Task& t) {
  for (size_t k = 0; k < t.members.size(); ++k) ONCEFLOW_RETURN_IF_ERROR(OpenMember(t, k));
  t.last_flush = Clock::now();
  if (guarantee->sequenced()) return SeqOpen(t);
  return Status::Ok();
}

Status Executor::Impl::OpenMember(Task& t, size_t k) {
  Member& m = *t.members[k];
  t.current = static_cast<int>(k);
  const NodeSpec& ns = spec.nodes[m.node];
  const NodeTypeDef* def = registry.Find(ns.kind, ns.type);
  if (def == nullptr) {
    return Status::Invalid("unknown " + std::string(NodeKindName(ns.kind)) + " type '" + ns.type +
                           "'");
  }
  ONCEFLOW_RETURN_IF_ERROR(guarantee->BeforeOpen(m.node, t.instance, &m.ctx, &m.state));
  Status st;
  switch (ns.kind) {
    case NodeKind::kSource:
      if (def->make_source) m.source = def->make_source(ns);
      if (!m.source) return Status::Runtime("type '" + ns.type + "' made no source");
      st = m.source->Open(m.ctx);
      if (st.ok()) {
        m.opened = true;
        st = guarantee->AfterOpen(m.node, t.instance, m.source.get());
      }
      break;
    case NodeKind::kOperator:
      if (def->make_operator) m.op = def->make_operator(ns);
      if (!m.op) return Status::Runtime("type '" + ns.type + "' made no operator");
      st = m.op->Open(m.ctx);
      break;
    case NodeKind::kSink:
      if (def->make_sink) m.sink = def->make_sink(ns);
      if (!m.sink) return Status::Runtime("type '" + ns.type + "' made no sink");
      st = m.sink->Open(m.ctx);
      break;
  }
  if (!st.ok()) return st;
  m.opened = true;
  return Status::Ok();
}

// Closes what was opened and destroys the node objects, on the task's own thread (a
// plugin or a Lua state may care). Keyed state stays: the guarantee may persist it after
// the run. `report`: a Close error fails the run (after a failure, Close errors are noise).
void Executor::Impl::CloseMembers(Task& t, bool report) {
  for (auto& m : t.members) {
    if (!m->opened) continue;
    Status cs;
    try {
      if (m->source) cs = m->source->Close();
      if (m->op) cs = m->op->Close();
      if (m->sink) cs = m->sink->Close();
    } catch (...) {
      cs = Status::Runtime("unexpected exception in Close");
    }
    m->opened = false;
    if (report && !cs.ok() && !cancelled.load()) Fail(m->node, t.instance, cs);
  }
  for (auto& m : t.members) {
    m->source.reset();
    m->op.reset();
    m->sink.reset();
  }
}

Status Executor::Impl::RunTask(Task& t) {
  const bool source = t.members[0]->kind == NodeKind::kSource;
  if (guarantee->sequenced()) {
    if (!source) return SeqRunConsumer(t);
    Status st = SeqRunSource(t);
    PublishPosition(t, true);  // an ended source counts as paused for savepoints
    return st;
  }
  return source ? RunSource(t) : RunConsumer(t);
}

Status Executor::Impl::RunSource(Task& t) {
  Member& m = *t.members[0];
  int64_t idle_ms = 0;
  bool end = false;
  while (!end) {
    if (cancelled.load(std::memory_order_acquire)) return Status::Cancelled("cancelled");
    if (stop_requested.load(std::memory_order_acquire)) break;
    const uint64_t barrier = guarantee->BarrierToInject();
    if (barrier > t.injected) ONCEFLOW_RETURN_IF_ERROR(InjectBarrier(t, barrier));
    size_t want = opt.batch_size;
    if (opt.max_events != 0) {
      want = ClaimEvents(want);
      if (want == 0) {
        if (source_events.load(std::memory_order_acquire) >= opt.max_events) {
          RequestStop(kStopMaxEvents, 0);
          break;
        }
        // Another source holds the rest of the budget for its current Read; it hands
        // back what it does not use within ~50 ms.
        uint64_t epoch = t.notifier.Epoch();
        if (!t.notifier.WaitFor(epoch, kIdleMinMs)) return Status::Cancelled("cancelled");
        continue;
      }
    }
    t.current = 0;
    m.out.clear();
    Emitter em(&m.out);
    Status st = m.source->Read(want, em, &end);
    const size_t got = m.out.size();
    if (opt.max_events != 0 && got < want) {
      events_claimed.fetch_sub(want - got, std::memory_order_relaxed);
    }
    if (!st.ok()) return st;
    if (got > 0) {
      idle_ms = 0;
      if (chaos_on()) {
        const std::string& id = NodeId(m.node);
        for (const Record& r : m.out) {
          if (opt.chaos->OnSourceEvent(id, r.origin.position)) Crash();
        }
      }
      ONCEFLOW_RETURN_IF_ERROR(
          guarantee->BeforeSourceBatch({m.node, t.instance, m.source.get(), got}));
      m.metrics->processed.fetch_add(got, std::memory_order_relaxed);
      m.metrics->emitted.fetch_add(got, std::memory_order_relaxed);
      source_events.fetch_add(got, std::memory_order_release);
      ONCEFLOW_RETURN_IF_ERROR(ProcessFrom(t, 1, 0, m.out));
    } else if (!end) {
      // Nothing new (follow, rate limit): flush what the chain's sink holds and back off
      // instead of spinning; a stop request or a failure wakes us early.
      int64_t wait_ms = -1;
      ONCEFLOW_RETURN_IF_ERROR(FlushIdleSink(t, &wait_ms));
      idle_ms = std::clamp<int64_t>(idle_ms * 2, kIdleMinMs, kIdleMaxMs);
      if (wait_ms >= 0) idle_ms = std::min(idle_ms, wait_ms);
      uint64_t epoch = t.notifier.Epoch();
      if (!t.notifier.WaitFor(epoch, idle_ms)) return Status::Cancelled("cancelled");
    }
  }
  t.exhausted = end;
  // A checkpoint in flight must see this source's barrier before its end.
  const uint64_t pending = guarantee->OnSourceEnd(t.index);
  if (pending > t.injected) ONCEFLOW_RETURN_IF_ERROR(InjectBarrier(t, pending));
  return EndTask(t, end);
}

Status Executor::Impl::RunConsumer(Task& t) {
  const size_t n = t.inputs.size();
  size_t next = 0;
  size_t ended = 0;
  bool all_exhausted = true;
  Status cb_status;  // the first error raised inside an aligner callback
  Envelope env;
  BarrierAligner::Callbacks callbacks;
  callbacks.on_aligned = [&](uint64_t id, int64_t alignment_ns) {
    if (!cb_status.ok()) return;
    cb_status = Snapshot(t, id, alignment_ns);
    if (cb_status.ok()) cb_status = ForwardBarrier(t, id);
  };
  callbacks.on_abort = [&](uint64_t id) {
    // Never happens while blocked channels are not popped and one checkpoint is in
    // flight at a time; if it did, the checkpoint could not complete.
    if (cb_status.ok()) {
      cb_status = Status::Transient("checkpoint " + std::to_string(id) + " abandoned by a task");
    }
  };
  callbacks.deliver = [&](int c, Envelope& e) {
    if (!cb_status.ok()) return;
    InChannel& in = t.inputs[c];
    switch (e.kind) {
      case Envelope::Kind::kBatch:
        t.in_channel = c;
        if (!e.batch.empty()) cb_status = ProcessFrom(t, 0, in.port, e.batch);
        break;
      case Envelope::Kind::kEnd:
        in.ended = true;
        ++ended;
        if (!e.exhausted) {
          all_exhausted = false;
        } else {
          cb_status = DeliverWatermark(t, c, Operator::kChannelEnded, true);
        }
        break;
      case Envelope::Kind::kWatermark:
        cb_status = DeliverWatermark(t, c, e.ts, false);
        break;
      case Envelope::Kind::kBarrier:
        break;  // barriers never reach here: the aligner handles them
    }
  };
  callbacks.now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  };
  BarrierAligner aligner(static_cast<int>(n), {guarantee->alignment(), 1024}, callbacks);

  auto poll = [&]() -> int {
    for (size_t k = 0; k < n; ++k) {
      size_t c = next + k;
      if (c >= n) c -= n;
      InChannel& in = t.inputs[c];
      if (in.ended || aligner.IsBlocked(static_cast<int>(c))) continue;
      if (in.channel->TryPop(&env)) {
        next = c + 1 == n ? 0 : c + 1;  // fairness: the next poll starts after this one
        return static_cast<int>(c);
      }
    }
    return -1;
  };
  while (ended < n) {
    int c = poll();
    if (c < 0) {
      if (cancelled.load(std::memory_order_acquire)) return Status::Cancelled("cancelled");
      // Nothing queued: a good moment to hand the sink's buffer to the OS.
      int64_t wait_ms = -1;
      ONCEFLOW_RETURN_IF_ERROR(FlushIdleSink(t, &wait_ms));
      // Notifier protocol (channel.h): take the epoch, poll once more, then sleep.
      uint64_t epoch = t.notifier.Epoch();
      c = poll();
      if (c < 0) {
        const bool woke = wait_ms < 0 ? t.notifier.Wait(epoch) : t.notifier.WaitFor(epoch, wait_ms);
        if (!woke) return Status::Cancelled("cancelled");
        continue;
      }
    }
    if (env.kind == Envelope::Kind::kBatch) {
      // The hot path: a popped channel is never blocked, so the aligner would deliver the
      // batch at once; skip it and keep the envelope's vector for recycling.
      t.in_channel = c;
      if (!env.batch.empty())
        ONCEFLOW_RETURN_IF_ERROR(ProcessFrom(t, 0, t.inputs[c].port, env.batch));
      continue;
    }
    Envelope control;
    control.kind = env.kind;
    control.id = env.id;
    control.ts = env.ts;
    control.exhausted = env.exhausted;
    aligner.OnEnvelope(c, std::move(control));
    ONCEFLOW_RETURN_IF_ERROR(cb_status);
  }
  return EndTask(t, all_exhausted);
}

Status Executor::Impl::EndTask(Task& t, bool exhausted) {
  if (exhausted) {
    // Every input really ended: Finish in chain order, each one's output flowing down the
    // rest of the chain (whose operators have not finished yet).
    for (size_t k = 0; k < t.members.size(); ++k) {
      Member& m = *t.members[k];
      if (m.kind != NodeKind::kOperator) continue;
      t.current = static_cast<int>(k);
      m.out.clear();
      Emitter em(&m.out);
      ONCEFLOW_RETURN_IF_ERROR(m.op->Finish(em));
      if (!m.out.empty()) {
        m.metrics->emitted.fetch_add(m.out.size(), std::memory_order_relaxed);
        ONCEFLOW_RETURN_IF_ERROR(ProcessFrom(t, k + 1, 0, m.out));
      }
    }
  }
  // A stopped run still makes what reached the sink durable; a checkpointing guarantee
  // also gets the task's final snapshot (it commits them all as the final checkpoint).
  Member& tail = *t.members.back();
  if (guarantee->snapshots()) {
    ONCEFLOW_RETURN_IF_ERROR(Snapshot(t, 0, 0));
  } else if (tail.kind == NodeKind::kSink) {
    t.current = static_cast<int>(t.members.size() - 1);
    ONCEFLOW_RETURN_IF_ERROR(tail.sink->Flush(true));
    t.sink_dirty = false;
  }
  for (OutRoute& r : t.outs) {
    for (Channel* c : r.destinations) {
      if (!c->PushEnd(exhausted)) return Status::Cancelled("cancelled");
    }
  }
  return Status::Ok();
}

// Pushes `batch` through members [first, end) and routes the tail's output. `batch` may be
// consumed (records moved out). The hot path: per member one virtual call and two relaxed
// atomic adds per batch.
Status Executor::Impl::ProcessFrom(Task& t, size_t first, int port, RecordBatch& batch) {
  RecordBatch* cur = &batch;
  for (size_t k = first; k < t.members.size(); ++k) {
    Member& m = *t.members[k];
    t.current = static_cast<int>(k);
    const size_t n = cur->size();
    if (m.kind == NodeKind::kSink) {
      // A sink is always its chain's tail.
      ONCEFLOW_RETURN_IF_ERROR(m.sink->Write(*cur));
      m.metrics->processed.fetch_add(n, std::memory_order_relaxed);
      m.metrics->emitted.fetch_add(n, std::memory_order_relaxed);
      t.sink_dirty = true;
      t.sink_uncommitted = true;
      Status st = MaybeFlushSink(t, false);
      if (chaos_on()) Passage(HazardPoint::kAfterSinkWrite);
      return st;
    }
    if (m.fail_p > 0) {
      ONCEFLOW_RETURN_IF_ERROR(InjectFailures(m, *cur));
      if (cur->empty()) return Status::Ok();  // every record dropped
    }
    m.out.clear();
    HashedOutput* hashed =
        k + 1 == t.members.size() && t.hashed.parts != nullptr ? &t.hashed : nullptr;
    if (hashed != nullptr) hashed->placed = 0;
    Emitter em(&m.out, hashed);
    m.ctx.channel = t.in_channel;
    if (Status st = m.op->Process(port, *cur, em); !st.ok()) {
      // Like m.out, what a failed call placed is abandoned: staging must not carry it
      // into the next routed batch.
      if (hashed != nullptr) {
        for (RecordBatch& b : *hashed->parts) b.clear();
        hashed->placed = 0;
      }
      return st;
    }
    const size_t placed = hashed != nullptr ? hashed->placed : 0;
    m.metrics->processed.fetch_add(cur->size(), std::memory_order_relaxed);  // after drops
    m.metrics->emitted.fetch_add(m.out.size() + placed, std::memory_order_relaxed);
    port = 0;  // a chained edge is its downstream's only input
    cur = &m.out;
    if (cur->empty() && placed == 0) return Status::Ok();
  }
  return RouteOut(t, *cur);
}

// Hands a channel's watermark (or its end, Operator::kChannelEnded) to the chain's head
// operator — or, for an end, to every operator in chain order, each one's output flowing
// down the rest of the chain first, so that a downstream member never sees the end
// before the records its upstream releases because of it. An in-band watermark is about
// the head's input only (the event-time field of the head), so it stops there.
Status Executor::Impl::DeliverWatermark(Task& t, int channel, int64_t ts, bool whole_chain) {
  for (size_t k = 0; k < t.members.size(); ++k) {
    Member& m = *t.members[k];
    if (m.kind != NodeKind::kOperator) break;
    t.current = static_cast<int>(k);
    m.out.clear();
    Emitter em(&m.out);
    ONCEFLOW_RETURN_IF_ERROR(m.op->OnWatermark(channel, ts, em));
    if (!m.out.empty()) {
      m.metrics->emitted.fetch_add(m.out.size(), std::memory_order_relaxed);
      ONCEFLOW_RETURN_IF_ERROR(ProcessFrom(t, k + 1, 0, m.out));
    }
    if (!whole_chain) break;
  }
  return Status::Ok();
}

Status Executor::Impl::RouteOut(Task& t, RecordBatch& batch) {
  // An empty batch still pushes the records the tail placed itself (Emitter::hashed).
  const bool placed = t.hashed.placed > 0;
  t.hashed.placed = 0;
  if (t.outs.empty() || (batch.empty() && !placed)) return Status::Ok();
  Member& tail = *t.members.back();
  t.current = static_cast<int>(t.members.size() - 1);
  const size_t routes = t.outs.size();
  const bool sequenced = guarantee->sequenced();
  for (size_t r = 0; r < routes; ++r) {
    OutRoute& out = t.outs[r];
    if (!out.wm_field.empty()) {
      // Read before Route, which may move the records out.
      for (const Record& rec : batch) {
        int64_t ts;
        if (EventTimeMs(rec.Get(out.wm_field), &ts) && ts > out.wm_max) out.wm_max = ts;
      }
    }
    // Copy for every out-edge but the last, which may take the records.
    ONCEFLOW_RETURN_IF_ERROR(
        out.partitioner->Route(batch, r + 1 == routes, out.staging, tail.errors.get()));
    // Sequenced channels: the staged records wait for the task's next commit (an
    // operator task) or are stamped with source positions (a source chain).
    if (sequenced) continue;
    for (size_t d = 0; d < out.staging.size(); ++d) {
      if (out.staging[d].empty()) continue;
      t.scratch.kind = Envelope::Kind::kBatch;
      std::swap(t.scratch.batch, out.staging[d]);
      const bool pushed = out.destinations[d]->Push(&t.scratch);
      // Push left a recycled (empty) vector in scratch: it becomes the next staging batch.
      std::swap(t.scratch.batch, out.staging[d]);
      if (!pushed) return Status::Cancelled("cancelled");
    }
    ONCEFLOW_RETURN_IF_ERROR(PushWatermarks(t, out));
  }
  if (sequenced && t.inputs.empty()) return SeqRouteSource(t, batch);
  return Status::Ok();
}

// After the records of a batch (never before: a watermark must not overtake the records
// it covers), announces a new max event time on every destination of the edge, at most
// once per routed batch. The receiving channel then counts as having seen that time
// even if none of the records came its way. Not sequenced mode (see sequenced.cc).
Status Executor::Impl::PushWatermarks(Task& t, OutRoute& r) {
  if (r.wm_field.empty() || r.wm_max <= r.wm_sent) return Status::Ok();
  for (Channel* c : r.destinations) {
    t.scratch.kind = Envelope::Kind::kWatermark;
    t.scratch.ts = r.wm_max;
    t.scratch.batch.clear();
    const bool pushed = c->Push(&t.scratch);
    t.scratch.kind = Envelope::Kind::kBatch;
    if (!pushed) return Status::Cancelled("cancelled");
  }
  r.wm_sent = r.wm_max;
  return Status::Ok();
}

Status Executor::Impl::MaybeFlushSink(Task& t, bool force) {
  if (!t.sink_dirty) return Status::Ok();
  Clock::time_point now = Clock::now();
  if (!force && now - t.last_flush < kSinkFlushInterval) return Status::Ok();
  t.current = static_cast<int>(t.members.size() - 1);
  ONCEFLOW_RETURN_IF_ERROR(t.members.back()->sink->Flush(false));
  t.sink_dirty = false;
  t.last_flush = now;
  return Status::Ok();
}

Status Executor::Impl::FlushIdleSink(Task& t, int64_t* wait_ms) {
  *wait_ms = -1;
  if (!t.sink_dirty) return Status::Ok();
  if (t.members.back()->sink->FlushWhenIdle()) return MaybeFlushSink(t, true);
  const Clock::duration left = t.last_flush + kSinkFlushInterval - Clock::now();
  if (left <= Clock::duration::zero()) return MaybeFlushSink(t, true);
  *wait_ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// Checkpoints and fault injection

Status Executor::Impl::InjectBarrier(Task& t, uint64_t id) {
  if (chaos_on()) Passage(HazardPoint::kBeforeBarrier);
  ONCEFLOW_RETURN_IF_ERROR(Snapshot(t, id, 0));
  t.injected = id;
  return ForwardBarrier(t, id);
}

// Copies what checkpoint `id` (0: the task's final snapshot) needs from every member of
// the chain and hands it to the guarantee. Runs between batches, so the state is exactly
// the effect of every record before the barrier.
Status Executor::Impl::Snapshot(Task& t, uint64_t id, int64_t alignment_ns) {
  TaskSnapshot snap;
  snap.task = t.index;
  snap.alignment_ns = alignment_ns;
  for (size_t k = 0; k < t.members.size(); ++k) {
    Member& m = *t.members[k];
    t.current = static_cast<int>(k);
    std::vector<std::string> dead = m.errors->TakeHeld();
    if (!dead.empty()) snap.dead_letters.push_back({m.node, std::move(dead)});
    switch (m.kind) {
      case NodeKind::kSource:
        snap.sources.push_back({m.node, t.instance, m.source->Position()});
        break;
      case NodeKind::kOperator: {
        const uint64_t since = m.state.epoch();
        m.state.CollectChanges(since, [&](std::string_view key, const StateValue* value) {
          TaskSnapshot::StateChange c;
          c.node = m.node;
          c.key.assign(key.data(), key.size());
          if (value != nullptr) c.value = *value;
          snap.state.push_back(std::move(c));
        });
        m.state.SetEpoch(since + 1);
        break;
      }
      case NodeKind::kSink: {
        TaskSnapshot::SinkSnap s{m.node, t.instance, {}};
        ONCEFLOW_RETURN_IF_ERROR(m.sink->PreCommit(&s.pre_commit));
        t.sink_dirty = false;
        t.last_flush = Clock::now();
        snap.sinks.push_back(std::move(s));
        break;
      }
    }
  }
  return guarantee->OnSnapshot(id, std::move(snap));
}

Status Executor::Impl::ForwardBarrier(Task& t, uint64_t id) {
  for (OutRoute& r : t.outs) {
    for (Channel* c : r.destinations) {
      t.scratch.kind = Envelope::Kind::kBarrier;
      t.scratch.id = id;
      t.scratch.batch.clear();
      const bool pushed = c->Push(&t.scratch);
      t.scratch.kind = Envelope::Kind::kBatch;
      if (!pushed) return Status::Cancelled("cancelled");
    }
  }
  if (chaos_on()) Passage(HazardPoint::kAfterBarrier);
  return Status::Ok();
}

// A record that fails either fails the task (transient: the guarantee recovers) or, when
// the guarantee drops failed records, is removed from `batch` and counted as dropped.
Status Executor::Impl::InjectFailures(Member& m, RecordBatch& batch) {
  const std::string& id = NodeId(m.node);
  const bool drop = guarantee->drop_failed_records();
  size_t kept = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (opt.chaos->ShouldFail(id, batch[i].origin.position)) {
      if (!drop) {
        return Status::Transient("injected failure (--chaos fail=" + id + ") on the record at " +
                                 "source position " + std::to_string(batch[i].origin.position));
      }
      continue;
    }
    if (kept != i) batch[kept] = std::move(batch[i]);
    ++kept;
  }
  if (kept < batch.size()) {
    m.metrics->dropped.fetch_add(batch.size() - kept, std::memory_order_relaxed);
    batch.resize(kept);
  }
  return Status::Ok();
}

void Executor::Impl::Passage(HazardPoint point) {
  if (opt.chaos->Passage(point)) Crash();
}

void Executor::Impl::Crash() {
  guarantee->PersistBeforeCrash();
  CrashNow();
}

// ---------------------------------------------------------------------------------------
// Executor

Executor::Executor(const PipelineSpec& spec, const Plan& plan, const Registry& registry,
                   RunOptions options)
    : impl_(std::make_unique<Impl>(spec, plan, registry, options)) {
  impl_->guarantee = options.guarantee != nullptr ? options.guarantee : &impl_->default_guarantee;
  if (impl_->opt.batch_size == 0) impl_->opt.batch_size = 1;
  if (impl_->opt.channel_capacity == 0) impl_->opt.channel_capacity = 1;
}

Executor::~Executor() {
  // Run() joins every thread before returning; nothing to stop here.
}

Status Executor::Run(RunStats* stats) {
  Impl& x = *impl_;
  if (x.started.exchange(true)) return Status::Runtime("Executor::Run called twice");
  x.start_time = Clock::now();
  x.timing.store(true, std::memory_order_release);

  int task_count = 0;
  for (const Chain& c : x.plan.chains) task_count += c.parallelism;
  Status st = x.guarantee->Start({&x.spec, &x.plan, task_count});
  if (st.ok()) {
    x.Setup();
    x.open_errors.resize(x.tasks.size());
    x.running = static_cast<int>(x.tasks.size());
    for (auto& t : x.tasks) {
      Task* tp = t.get();
      t->thread = std::thread([&x, tp] { x.TaskMain(tp); });
    }

    // Start gate: open every node before any source reads (a sink that cannot open its
    // file must not let a source consume input), and report the first failing node in
    // file order rather than whichever thread lost a race.
    {
      std::unique_lock<std::mutex> lock(x.mu);
      x.cv.wait(lock, [&] { return x.opened_tasks == static_cast<int>(x.tasks.size()); });
    }
    const Impl::OpenError* open_error = nullptr;
    int open_instance = 0;
    for (size_t i = 0; i < x.tasks.size(); ++i) {
      const Impl::OpenError& e = x.open_errors[i];
      if (e.node >= 0 && (open_error == nullptr || e.node < open_error->node)) {
        open_error = &e;
        open_instance = x.tasks[i]->instance;
      }
    }
    if (open_error != nullptr) {
      x.Fail(open_error->node, open_instance, open_error->status);  // aborts the gate
    } else {
      std::lock_guard<std::mutex> lock(x.mu);
      x.gate = Impl::Gate::kGo;
    }
    x.open_s = std::chrono::duration<double>(Clock::now() - x.start_time).count();
    x.cv.notify_all();

    // Watch for stop requests until every task has exited.
    const auto duration = std::chrono::milliseconds(x.opt.duration_ms);
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(x.mu);
        if (x.cv.wait_for(lock, kWatchInterval, [&] { return x.running == 0; })) break;
      }
      if (x.guarantee->sequenced()) {
        x.SeqWatch();  // also turns a stop signal into a savepoint, then a stop
        if (x.stop_after_savepoint != 0) continue;
      }
      if (x.stop_requested.load()) continue;
      int sig = x.opt.stop_signal != nullptr ? x.opt.stop_signal->load() : 0;
      if (sig != 0) {
        x.RequestStop(kStopSignal, sig);
      } else if (x.opt.duration_ms > 0 && Clock::now() - x.start_time >= duration) {
        x.RequestStop(kStopDuration, 0);
      }
    }
    for (auto& t : x.tasks) {
      if (t->thread.joinable()) t->thread.join();
    }
    for (size_t i = 0; i < x.error_sinks.size(); ++i) {
      Status fs = x.error_sinks[i]->Flush();
      if (!fs.ok() && x.first_error.ok()) x.first_error = fs;
    }
    st = x.first_error;
  }

  RunStats local;
  RunStats& s = stats != nullptr ? *stats : local;
  s = RunStats();
  if (!st.ok()) {
    s.exit_reason = "failed";
  } else {
    bool all_sources_ended = true;
    for (auto& t : x.tasks) {
      if (t->inputs.empty() && !t->exhausted) all_sources_ended = false;
    }
    if (all_sources_ended) {
      s.exit_reason = "completed";
    } else {
      switch (x.stop_reason.load()) {
        case kStopMaxEvents:
          s.exit_reason = "max-events";
          break;
        case kStopDuration:
          s.exit_reason = "duration";
          break;
        default:
          s.exit_reason = "stopped";
          s.signal = x.stop_signal_number.load();
          break;
      }
    }
  }
  Status end = x.guarantee->End({s.exit_reason, st});
  if (st.ok() && !end.ok()) {
    st = end;
    s.exit_reason = "failed";
  }

  s.wall_s = std::chrono::duration<double>(Clock::now() - x.start_time).count();
  s.open_s = x.open_s;
  s.source_events = x.source_events.load();
  for (size_t i = 0; i < x.spec.nodes.size(); ++i) {
    NodeStats ns;
    ns.id = x.spec.nodes[i].id;
    ns.kind = x.spec.nodes[i].kind;
    if (i < x.metrics.size()) {
      for (const auto& m : x.metrics[i]) {
        ns.processed += m->processed.load();
        ns.emitted += m->emitted.load();
        ns.skipped += m->skipped.load();
        ns.dropped += m->dropped.load();
        ns.replayed += m->replayed.load();
        ns.duplicates_discarded += m->duplicates_discarded.load();
      }
    }
    s.nodes.push_back(std::move(ns));
  }
  return st;
}

Progress Executor::GetProgress() const {
  const Impl& x = *impl_;
  Progress p;
  p.source_events = x.source_events.load(std::memory_order_relaxed);
  if (x.timing.load(std::memory_order_acquire)) {
    p.elapsed_s = std::chrono::duration<double>(Clock::now() - x.start_time).count();
  }
  if (!x.ready.load(std::memory_order_acquire)) return p;
  for (const PlanNode& pn : x.plan.nodes) {
    bool has_channels = false;
    size_t queued = 0;
    for (int ei : pn.in_edges) {
      if (x.plan.edges[ei].chained) continue;
      has_channels = true;
      for (const auto& c : x.edge_channels[ei]) queued += c->size();
    }
    if (has_channels) p.backlog.emplace_back(x.spec.nodes[pn.index].id, queued);
  }
  return p;
}

}  // namespace onceflow

// state_bench: checkpoint and restore cost of keyed state, through the real runtime API
// (runtime/state/keyed_state.h + runtime/state/store.h), in one process on a fresh state
// file.
//
// Usage: state_bench [--keys N] [--changes N] [--rounds K] [--retain R] [--dir DIR] [--keep]
//   --keys N     live keys (default 1000000; k/M suffixes accepted)
//   --changes N  keys changed before each incremental checkpoint (default 1% of --keys)
//   --rounds K   incremental checkpoints taken; the median is reported (default 8)
//   --retain R   after every commit, Prune(R) as a run with checkpoint.retain R does
//                (default 3); its time counts in the checkpoint's total
//   --dir DIR    where the temporary state file goes (default $TMPDIR or /tmp)
//   --keep       keep the state file (its path is printed)
//
// The state is a word counter's: keys are key.h encodings of a one-field string key
// ("key0000000" .. ), each value a StateValue holding one int Value (the count). Measured:
//   (a) full checkpoint of every key: BeginCheckpoint, then the timed part — CollectChanges
//       into CheckpointWriter::PutStateValue, then Commit (synchronous=FULL) returning;
//   (b) K times: --changes distinct random keys incremented (untimed), then an incremental
//       checkpoint timed the same way;
//   (c) restore: the store is closed and reopened (as by a new process; the page cache is
//       warm), then the timed part — RestoreState of the latest checkpoint,
//       DecodeStateValue and KeyedState::Restore into an empty KeyedState — and the result
//       is checked against the live state.
// Bytes: `ckpt bytes` is CheckpointInfo.bytes (key + value bytes the checkpoint wrote);
// `written` is what the process passed to write(2) during the timed part (/proc/self/io
// wchar: WAL frames, and WAL checkpoints into the file). The state file's size after all
// checkpoints is printed too.
//
// Prints a table and the ratios incremental/full time (target <= 0.10) and restore/full
// time (target <= 0.33). Exit status: 0 when every step succeeded and the restored state
// equals the live one (a missed target is reported, not an error), 1 otherwise, 2 on bad
// arguments.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "runtime/core/key.h"
#include "runtime/core/record.h"
#include "runtime/state/keyed_state.h"
#include "runtime/state/store.h"

namespace {

using onceflow::CheckpointInfo;
using onceflow::CheckpointKind;
using onceflow::CheckpointWriter;
using onceflow::KeyedState;
using onceflow::OpenMode;
using onceflow::StateStore;
using onceflow::StateValue;
using onceflow::Status;
using onceflow::Value;
using Clock = std::chrono::steady_clock;

constexpr char kPipeline[] = "state_bench";
constexpr char kNode[] = "counts";

[[noreturn]] void Fail(const char* what, const Status& st) {
  std::fprintf(stderr, "state_bench: %s: %s\n", what, st.message().c_str());
  std::exit(1);
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// Bytes this process has passed to write(2) and friends so far (/proc/self/io wchar): what
// a commit writes to the WAL plus any WAL checkpoint into the main file. The files' sizes
// say little once the WAL is reused. -1 when /proc is not there.
int64_t BytesWritten() {
  FILE* f = std::fopen("/proc/self/io", "r");
  if (!f) return -1;
  char line[128];
  int64_t v = -1;
  while (std::fgets(line, sizeof(line), f)) {
    if (std::sscanf(line, "wchar: %" SCNd64, &v) == 1) break;
  }
  std::fclose(f);
  return v;
}

std::string KeyOf(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key%07" PRIu64, i);
  std::string enc;
  onceflow::EncodeValue(Value::String(std::string(buf)), &enc);  // as EncodeKey of {k: buf}
  return enc;
}

struct Measure {
  double collect_s = 0;  // CollectChanges + PutStateValue
  double commit_s = 0;   // Commit
  double prune_s = 0;    // Prune(retain) after the commit, as a run does
  int64_t keys = 0;      // changes written
  int64_t info_bytes = 0;
  int64_t written = 0;  // write(2) bytes during the timed part
  double total() const { return collect_s + commit_s + prune_s; }
};

int g_retain = 3;

// One checkpoint of the changes since `since`; the state's epoch moves to the next one.
Measure Checkpoint(StateStore* store, KeyedState* state, uint64_t since) {
  int64_t id = 0;
  Status st = store->BeginCheckpoint(CheckpointKind::kCheckpoint, &id);
  if (!st.ok()) Fail("BeginCheckpoint", st);
  std::unique_ptr<CheckpointWriter> w;
  st = store->NewWriter(id, &w);
  if (!st.ok()) Fail("NewWriter", st);
  Measure m;
  const int64_t w0 = BytesWritten();
  auto t0 = Clock::now();
  state->CollectChanges(since, [&](std::string_view key, const StateValue* value) {
    w->PutStateValue(kNode, key, value);
    ++m.keys;
  });
  state->SetEpoch(state->epoch() + 1);
  auto t1 = Clock::now();
  st = w->Commit();
  auto t2 = Clock::now();
  if (!st.ok()) Fail("Commit", st);
  st = store->Prune(g_retain, nullptr);
  auto t3 = Clock::now();
  if (!st.ok()) Fail("Prune", st);
  m.collect_s = Seconds(t0, t1);
  m.commit_s = Seconds(t1, t2);
  m.prune_s = Seconds(t2, t3);
  m.written = w0 < 0 ? -1 : BytesWritten() - w0;
  std::vector<CheckpointInfo> list;
  st = store->List(&list);
  if (!st.ok()) Fail("List", st);
  for (const auto& c : list) {
    if (c.id == id) m.info_bytes = c.bytes;
  }
  return m;
}

std::string Human(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 20))
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else if (bytes >= 1024 || bytes <= -1024)
    std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(bytes) / 1024);
  else
    std::snprintf(buf, sizeof(buf), "%" PRId64 " B", bytes);
  return buf;
}

void Row(const char* what, int64_t keys, const Measure& m) {
  std::printf("  %-22s %9" PRId64 " %9.3f %9.3f %9.3f %9.3f %12s %12s\n", what, keys, m.total(),
              m.collect_s, m.commit_s, m.prune_s, Human(m.info_bytes).c_str(),
              m.written < 0 ? "n/a" : Human(m.written).c_str());
}

template <typename T, typename F>
double MedianOf(const std::vector<T>& v, F f) {
  std::vector<double> x;
  for (const auto& e : v) x.push_back(f(e));
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int Usage() {
  std::fprintf(stderr,
               "usage: state_bench [--keys N] [--changes N] [--rounds K] [--retain R] [--dir DIR] [--keep]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n_keys = 1'000'000, n_changes = 0, rounds = 8;
  bool changes_set = false, keep = false;
  std::string dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--keys") {
      if (!(v = next()) || !onceflow::bench::ParseCount(v, &n_keys)) return Usage();
    } else if (a == "--changes") {
      if (!(v = next()) || !onceflow::bench::ParseCount(v, &n_changes)) return Usage();
      changes_set = true;
    } else if (a == "--retain") {
      uint64_t r = 0;
      if (!(v = next()) || !onceflow::bench::ParseCount(v, &r) || r == 0) return Usage();
      g_retain = static_cast<int>(r);
    } else if (a == "--rounds") {
      if (!(v = next()) || !onceflow::bench::ParseCount(v, &rounds)) return Usage();
    } else if (a == "--dir") {
      if (!(v = next())) return Usage();
      dir = v;
    } else if (a == "--keep") {
      keep = true;
    } else {
      return Usage();
    }
  }
  if (n_keys == 0 || rounds == 0) return Usage();
  if (!changes_set) n_changes = std::max<uint64_t>(1, n_keys / 100);
  n_changes = std::min(n_changes, n_keys);

  std::string tmpl = dir + "/state_bench.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) {
    std::perror("state_bench: mkdtemp");
    return 1;
  }
  const std::string tmpdir = buf.data();
  const std::string path = tmpdir + "/state.db";

  std::unique_ptr<StateStore> store;
  Status st = StateStore::Open(path, kPipeline, OpenMode{}, &store);
  if (!st.ok()) Fail("Open", st);

  // The live state: every key counted once, in epoch 1.
  std::vector<std::string> keys;
  keys.reserve(n_keys);
  for (uint64_t i = 0; i < n_keys; ++i) keys.push_back(KeyOf(i));
  KeyedState state;
  state.SetEpoch(1);
  for (const auto& k : keys) {
    StateValue& v = state.Upsert(k);
    v.push_back(Value::Int(1));
  }

  std::printf("state store: %" PRIu64 " keys (key.h string keys, one int value each), %" PRIu64
              " changed per incremental checkpoint, %" PRIu64 " rounds\n",
              n_keys, n_changes, rounds);
  std::printf("  state file %s\n", path.c_str());
  std::printf("  %-22s %9s %9s %9s %9s %9s %12s %12s\n", "step", "keys", "total s", "collect s",
              "commit s", "prune s", "ckpt bytes", "written");

  // (a) full checkpoint.
  uint64_t since = state.epoch();
  const Measure full = Checkpoint(store.get(), &state, since);
  Row("full checkpoint", full.keys, full);

  // (b) incremental checkpoints of n_changes distinct random keys each.
  onceflow::bench::Rng rng(0x7374617465303031ULL);  // "state001"
  std::vector<uint32_t> perm(n_keys);
  for (uint32_t i = 0; i < n_keys; ++i) perm[i] = i;
  std::vector<Measure> incs;
  for (uint64_t r = 0; r < rounds; ++r) {
    // Partial Fisher-Yates: the first n_changes entries are a uniform random subset.
    for (uint64_t i = 0; i < n_changes; ++i) {
      const uint64_t j = i + rng.Below(static_cast<uint32_t>(n_keys - i));
      std::swap(perm[i], perm[j]);
    }
    since = state.epoch();
    for (uint64_t i = 0; i < n_changes; ++i) {
      StateValue& v = state.Upsert(keys[perm[i]]);
      v[0].SetInt(v[0].as_int() + 1);
    }
    Measure m = Checkpoint(store.get(), &state, since);
    if (m.keys != static_cast<int64_t>(n_changes)) {
      std::fprintf(stderr, "state_bench: incremental checkpoint wrote %" PRId64
                           " keys, expected %" PRIu64 "\n", m.keys, n_changes);
      return 1;
    }
    char label[48];
    std::snprintf(label, sizeof(label), "incremental #%" PRIu64, r + 1);
    Row(label, m.keys, m);
    incs.push_back(m);
  }
  Measure inc;
  inc.keys = static_cast<int64_t>(n_changes);
  inc.collect_s = MedianOf(incs, [](const Measure& m) { return m.collect_s; });
  inc.commit_s = MedianOf(incs, [](const Measure& m) { return m.commit_s; });
  inc.prune_s = MedianOf(incs, [](const Measure& m) { return m.prune_s; });
  inc.info_bytes = static_cast<int64_t>(MedianOf(incs, [](const Measure& m) {
    return static_cast<double>(m.info_bytes); }));
  inc.written = static_cast<int64_t>(MedianOf(incs, [](const Measure& m) {
    return static_cast<double>(m.written); }));
  const double inc_total = MedianOf(incs, [](const Measure& m) { return m.total(); });
  double inc_mean = 0;
  for (const auto& m : incs) inc_mean += m.total() / static_cast<double>(incs.size());

  // (c) restore into a new KeyedState from a reopened store.
  store.reset();
  st = StateStore::Open(path, kPipeline, OpenMode{}, &store);
  if (!st.ok()) Fail("reopen", st);
  int64_t head = 0;
  st = store->LatestCompleted(&head);
  if (!st.ok()) Fail("LatestCompleted", st);
  KeyedState restored;
  int64_t restored_keys = 0, restored_bytes = 0;
  auto t0 = Clock::now();
  st = store->RestoreState(head, kNode, [&](std::string_view key, std::string_view bytes) {
    StateValue v;
    if (!onceflow::DecodeStateValue(bytes, &v)) return Status::State("undecodable state value");
    restored.Restore(key, std::move(v));
    ++restored_keys;
    restored_bytes += static_cast<int64_t>(key.size() + bytes.size());
    return Status::Ok();
  });
  auto t1 = Clock::now();
  if (!st.ok()) Fail("RestoreState", st);
  const double restore_s = Seconds(t0, t1);

  // The restored state must equal the live one.
  bool equal = restored.size() == state.size();
  state.ForEach([&](std::string_view key, const StateValue& v) {
    const StateValue* r = restored.Find(key);
    if (!r || r->size() != 1 || v.size() != 1 || (*r)[0].as_int() != v[0].as_int()) equal = false;
  });
  std::printf("  %-22s %9" PRId64 " %9.3f %9s %9s %9s %12s %12s\n", "restore", restored_keys,
              restore_s, "", "", "", Human(restored_bytes).c_str(), "");
  std::printf("  %-22s %9" PRId64 " %9.3f %9.3f %9.3f %9.3f %12s %12s\n", "incremental (median)",
              inc.keys, inc_total, inc.collect_s, inc.commit_s, inc.prune_s,
              Human(inc.info_bytes).c_str(),
              inc.written < 0 ? "n/a" : Human(inc.written).c_str());
  std::printf("  state file after all checkpoints: %s (+ WAL %s)\n",
              Human(FileSize(path)).c_str(), Human(FileSize(path + "-wal")).c_str());

  const double r_inc = full.total() > 0 ? inc_total / full.total() : 0;
  const double r_restore = full.total() > 0 ? restore_s / full.total() : 0;
  std::printf("  ratios: incremental/full = %.3f (target <= 0.10: %s), restore/full = %.3f "
              "(target <= 0.33: %s)\n",
              r_inc, r_inc <= 0.10 ? "met" : "MISSED", r_restore,
              r_restore <= 0.33 ? "met" : "MISSED");
  std::printf("  incremental mean (with the compaction every 8th prune): %.3f s = %.3f of full\n",
              inc_mean, full.total() > 0 ? inc_mean / full.total() : 0);
  if (!equal) std::printf("  MISMATCH: the restored state differs from the live state\n");

  store.reset();
  if (keep) {
    std::printf("  kept %s\n", path.c_str());
  } else {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) ::unlink((path + suffix).c_str());
    ::rmdir(tmpdir.c_str());
  }
  return equal ? 0 : 1;
}

// make_state_fixture: writes a deterministic state file for the e2e tests of
// `checkpoints` and `state get` (checkpoints_test.py), through the same StateStore API a
// run uses, so those commands are tested without depending on a pipeline run.
// Test-only: built by tests/e2e/CMakeLists.txt, never installed.
//
// Usage: make_state_fixture PATH   (PATH must not exist)
//
// Contents (pipeline "wordcount"); `count` is keyed by one string field, `agg` by
// (string, integer), `byn` by one integer:
//   1 checkpoint  count a=1 b=1                      lines@10/2   out len 20
//   2 savepoint   count a=2 c=1                      lines@20/4   out len 40
//   3 checkpoint  count a=3, b erased; agg (alice,2026)=[12.5,3], (bob,2026)=[1.5,1];
//                 byn 42=[7]                         lines@30/6   out len 60
//   4 checkpoint  count a=4                          lines@40/8   out len 80
//   5 final (completed, the head)  count c=2         lines@50/10  out len 100
//   6 pending: begun, never committed (invisible to readers)
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/key.h"
#include "runtime/state/store.h"

namespace {

using onceflow::CheckpointKind;
using onceflow::CheckpointStatus;
using onceflow::CheckpointWriter;
using onceflow::StateStore;
using onceflow::StateValue;
using onceflow::Status;
using onceflow::Value;

std::string Key(const std::vector<Value>& fields) {
  std::string k;
  for (const Value& v : fields) onceflow::EncodeValue(v, &k);
  return k;
}

void Put(CheckpointWriter* w, const std::string& node, const std::vector<Value>& key,
         const std::vector<Value>& value) {
  StateValue sv(value.begin(), value.end());
  w->PutStateValue(node, Key(key), &sv);
}

bool Check(const Status& st) {
  if (!st.ok()) std::fprintf(stderr, "make_state_fixture: %s\n", st.message().c_str());
  return st.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_state_fixture PATH\n");
    return 2;
  }
  const std::string path = argv[1];
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    std::fprintf(stderr, "make_state_fixture: %s exists\n", path.c_str());
    return 2;
  }
  std::unique_ptr<StateStore> store;
  if (!Check(StateStore::Open(path, "wordcount", onceflow::OpenMode{}, &store))) return 1;

  struct Step {
    CheckpointKind kind;
    void (*fill)(CheckpointWriter*);
  };
  const Step steps[] = {
      {CheckpointKind::kCheckpoint,
       [](CheckpointWriter* w) {
         Put(w, "count", {Value::String("a")}, {Value::Int(1)});
         Put(w, "count", {Value::String("b")}, {Value::Int(1)});
       }},
      {CheckpointKind::kSavepoint,
       [](CheckpointWriter* w) {
         Put(w, "count", {Value::String("a")}, {Value::Int(2)});
         Put(w, "count", {Value::String("c")}, {Value::Int(1)});
       }},
      {CheckpointKind::kCheckpoint,
       [](CheckpointWriter* w) {
         Put(w, "count", {Value::String("a")}, {Value::Int(3)});
         w->PutStateValue("count", Key({Value::String("b")}), nullptr);
         Put(w, "agg", {Value::String("alice"), Value::Int(2026)},
             {Value::Double(12.5), Value::Int(3)});
         Put(w, "agg", {Value::String("bob"), Value::Int(2026)},
             {Value::Double(1.5), Value::Int(1)});
         Put(w, "byn", {Value::Int(42)}, {Value::Int(7)});
       }},
      {CheckpointKind::kCheckpoint,
       [](CheckpointWriter* w) { Put(w, "count", {Value::String("a")}, {Value::Int(4)}); }},
      {CheckpointKind::kFinal,
       [](CheckpointWriter* w) { Put(w, "count", {Value::String("c")}, {Value::Int(2)}); }},
  };
  int n = 0;
  for (const Step& s : steps) {
    ++n;
    int64_t id = 0;
    std::unique_ptr<CheckpointWriter> w;
    if (!Check(store->BeginCheckpoint(s.kind, &id))) return 1;
    if (!Check(store->NewWriter(id, &w))) return 1;
    s.fill(w.get());
    w->AddSourceOffset({"lines", 0, "data/words.txt", 10 * n, 2 * n});
    w->AddSinkCommit({"out", 0, "out/counts.jsonl", 20 * n, id});
    w->SetStats(/*events=*/2 * n, /*duration_ms=*/40 + n, /*alignment_ms=*/n);
    if (!Check(w->Commit(CheckpointStatus::kCompleted))) return 1;
  }
  int64_t pending = 0;
  if (!Check(store->BeginCheckpoint(CheckpointKind::kCheckpoint, &pending))) return 1;
  return 0;
}

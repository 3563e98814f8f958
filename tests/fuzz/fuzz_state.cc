// libFuzzer target: everything that reads a state file back.
//
// Byte 0 picks what the rest is:
//   0  a stored state value (DecodeStateValue): decoding its own encoding gives it back;
//   1  a changelog blob of dedup mode (ForEachChange);
//   2  an encoded record (DecodeRecord, the dedup outbox's rows): likewise round-trips;
//   3+ a whole state file, opened read-only as `checkpoints list|show` and `state get`
//      open it: every reader runs over it, and the file must be byte for byte the same
//      afterwards (a refused or corrupt state file is never written to).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>

#include "runtime/core/key.h"
#include "runtime/core/record.h"
#include "runtime/state/store.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using onceflow::Status;

// Decoding its own encoding gives a value that encodes to the same bytes (compared as
// bytes: a NaN from arbitrary bytes is not equal to itself).
template <typename T, typename Decode, typename Encode>
void RoundTrip(std::string_view bytes, Decode decode, Encode encode) {
  T v;
  if (!decode(bytes, &v)) return;
  std::string once, twice;
  encode(v, &once);
  T w;
  if (!decode(once, &w)) abort();
  encode(w, &twice);
  if (once != twice) abort();
}

void StateValueRoundTrip(std::string_view bytes) {
  RoundTrip<onceflow::StateValue>(bytes, onceflow::DecodeStateValue, onceflow::EncodeStateValue);
}

void RecordRoundTrip(std::string_view bytes) {
  RoundTrip<onceflow::Record>(bytes, onceflow::DecodeRecord, onceflow::EncodeRecord);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// What the read-only commands do with a state file. Errors are fine; crashes are not.
void ReadStateFile(const std::string& path) {
  std::unique_ptr<onceflow::StateStore> store;
  onceflow::OpenMode mode;
  mode.create_if_missing = false;
  mode.read_only = true;
  if (!onceflow::StateStore::Open(path, "", mode, &store).ok()) return;
  int64_t latest = 0;
  (void)store->LatestCompleted(&latest);
  std::vector<onceflow::CheckpointInfo> list;
  if (store->List(&list).ok()) {
    for (const auto& info : list) {
      onceflow::CheckpointDetail detail;
      if (!store->Show(info.id, &detail).ok()) continue;
      for (const auto& node : detail.state) {
        (void)store->RestoreState(info.id, node.node, [](std::string_view, std::string_view v) {
          StateValueRoundTrip(v);
          return Status::Ok();
        });
      }
    }
  }
  std::vector<onceflow::DedupChannel> channels;
  (void)store->DedupChannels(&channels);
  std::vector<onceflow::SinkCommit> sinks;
  (void)store->DedupSinks(&sinks);
  std::vector<std::pair<int64_t, std::string>> staged;
  (void)store->StagedEpochs(&staged);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0]) {
    case 0:
      StateValueRoundTrip(rest);
      return 0;
    case 1:
      (void)onceflow::ForEachChange(rest, [](std::string_view, const std::string_view* v) {
        if (v != nullptr) StateValueRoundTrip(*v);
      });
      return 0;
    case 2:
      RecordRoundTrip(rest);
      return 0;
    default:
      break;
  }
  static onceflow::fuzz::ScratchFile file("state", ".db");
  if (!file.Write(data + 1, size - 1)) return 0;
  ReadStateFile(file.path());
  if (ReadAll(file.path()) != rest) abort();  // read-only means untouched
  return 0;
}

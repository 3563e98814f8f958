// libFuzzer target: record decoding (StreamDecoder: lines, jsonl, csv) fed in chunks of
// fuzzer-chosen sizes, the way a source reads a file or a pipe.
//
// Input: byte 0 picks the format (% 3), byte 1 the chunk size (1..64 bytes, so records
// straddle chunk boundaries), the rest is the stream. Checks, besides "no crash, no
// sanitizer report":
//   - every decoded record, written as JSONL by the sinks' RecordEncoder, reads back as a
//     record that writes the same line again (what a jsonl sink writes, a jsonl source
//     reads back; compared as written text because the encoder repairs invalid UTF-8
//     with U+FFFD, so the text, not the raw record, is what must survive);
//   - offsets only grow and never pass the bytes fed;
//   - at the end of input nothing stays buffered: every byte became a record or an error.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "operators/formats/record_encoder.h"
#include "operators/formats/stream_decoder.h"
#include "runtime/core/node.h"
#include "runtime/core/record.h"

namespace {

// on_error: skip — a malformed record is counted and decoding goes on.
class SkipErrors : public onceflow::ErrorHandler {
 public:
  onceflow::Status OnRecordError(const onceflow::Record&, std::string_view) override {
    return onceflow::Status::Ok();
  }
  onceflow::Status OnRawError(const onceflow::Origin&, std::string_view,
                              std::string_view) override {
    return onceflow::Status::Ok();
  }
};

void CheckRoundTrip(const onceflow::RecordBatch& batch) {
  static onceflow::ops::RecordEncoder encoder(onceflow::ops::Format::kJsonl, "line");
  static onceflow::JsonParser parser;
  std::string line, again, error;
  for (const onceflow::Record& rec : batch) {
    line.clear();
    if (!encoder.Append(rec, &line, &error)) continue;  // not representable: a data error
    if (line.empty() || line.back() != '\n') abort();
    onceflow::Record back;
    if (!parser.ParseObject(std::string_view(line).substr(0, line.size() - 1), &back, &error))
      abort();  // we wrote what we cannot read
    again.clear();
    if (!encoder.Append(back, &again, &error) || again != line) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto format = static_cast<onceflow::ops::Format>(data[0] % 3);
  const size_t chunk = 1 + data[1] % 64;
  data += 2;
  size -= 2;

  SkipErrors errors;
  onceflow::ops::StreamDecoder decoder(format, 0, &errors);
  onceflow::RecordBatch batch;
  onceflow::Emitter out(&batch);
  size_t fed = 0;
  uint64_t last_offset = 0;
  for (;;) {
    const bool at_eof = fed == size;
    if (!at_eof) {
      size_t avail = 0;
      char* space = decoder.WritableSpace(chunk, &avail);
      const size_t n = std::min({chunk, avail, size - fed});
      std::copy(data + fed, data + fed + n, space);
      decoder.Commit(n);
      fed += n;
    }
    size_t produced = 0;
    do {
      batch.clear();
      if (!decoder.Decode(7, at_eof, out, &produced).ok()) return 0;  // e.g. a bad csv header
      CheckRoundTrip(batch);
      if (decoder.offset() < last_offset || decoder.offset() > fed) abort();
      last_offset = decoder.offset();
    } while (produced > 0);
    if (at_eof) break;
  }
  if (decoder.buffered() != 0) abort();
  return 0;
}

// The `stdout` sink: writes records to standard output (jsonl, csv or lines) through a
// 1 MiB buffer. Output cannot be taken back once written, so after a failure and replay
// it may repeat: at-least-once at best, whatever the pipeline's semantics.
//
// Threading: one instance per task thread; several instances would interleave whole
// buffers (each write(2) of at most the buffer), so the node is limited to one.
#include <unistd.h>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/sinks/encoding_sink.h"

namespace onceflow::ops {

namespace {

class StdoutSink : public EncodingSink {
 public:
  StdoutSink(const NodeSpec& spec, int fd)
      : EncodingSink(ParsedFormat(spec), spec.options.GetString("field", "line"), "stdout") {
    fd_ = fd;
  }

  Status Open(NodeContext& ctx) override {
    ctx_ = &ctx;
    return Status::Ok();
  }

  Status Close() override { return Drain(); }

 private:
  static Format ParsedFormat(const NodeSpec& spec) {
    Format f = Format::kJsonl;
    ParseFormat(spec.options.GetString("format", "jsonl"), &f);
    return f;
  }
};

}  // namespace

std::unique_ptr<Sink> MakeStdoutSinkForFd(const NodeSpec& spec, int fd) {
  return std::make_unique<StdoutSink>(spec, fd);
}

NodeTypeDef StdoutSinkDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSink;
  d.type = "stdout";
  d.summary = "write records to standard output (jsonl, csv or lines)";
  d.options = {
      EnumOption("format", FormatChoices(), "jsonl",
                 "jsonl: one JSON object per line; csv: header from the first record's "
                 "fields; lines: the text of `field`"),
      Option("field", OptionType::kString, "line", "field written by format: lines"),
  };
  d.max_parallelism = 1;
  d.sink_guarantee = [](Semantics s) -> std::string {
    if (s == Semantics::kAtMostOnce) {
      return "at-most-once: records in flight at a failure may be missing";
    }
    return "at-least-once at best — stdout cannot take output back";
  };
  d.make_sink = [](const NodeSpec& spec) { return std::make_unique<StdoutSink>(spec, STDOUT_FILENO); };
  return d;
}

}  // namespace onceflow::ops

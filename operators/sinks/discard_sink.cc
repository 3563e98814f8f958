// The `discard` sink: drops every record (benchmarks, pipelines run for their state or
// their side outputs). Nothing is written, so nothing can be duplicated or lost.
//
// Threading: stateless; any number of instances.
#include "operators/common/option_defs.h"
#include "operators/defs.h"

namespace onceflow::ops {

namespace {

class DiscardSink : public Sink {
 public:
  Status Open(NodeContext&) override { return Status::Ok(); }
  Status Write(RecordBatch&) override { return Status::Ok(); }
  Status Flush(bool) override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
};

}  // namespace

NodeTypeDef DiscardSinkDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kSink;
  d.type = "discard";
  d.summary = "drop every record";
  d.sink_guarantee = [](Semantics) -> std::string {
    return "not applicable: records are dropped";
  };
  d.make_sink = [](const NodeSpec&) { return std::make_unique<DiscardSink>(); };
  return d;
}

}  // namespace onceflow::ops

// Partitioner implementations; see partitioner.h. Each is called once per batch by the
// upstream task thread.
#include "runtime/plan/partitioner.h"

#include <cstring>
#include <utility>

#include "runtime/core/key.h"

namespace onceflow {
namespace {

inline void Put(Record& r, bool consume, RecordBatch& dst) {
  if (consume) {
    dst.push_back(std::move(r));
  } else {
    dst.push_back(r);
  }
}

class ForwardPartitioner final : public Partitioner {
 public:
  ForwardPartitioner() : Partitioner(1) {}
  Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
               ErrorHandler*) override {
    RecordBatch& dst = out[0];
    if (consume && dst.empty()) {
      // The whole batch moves: swap vectors rather than moving record by record. `in`
      // receives dst's (empty) vector, which keeps its capacity for the next batch.
      std::swap(dst, in);
      return Status::Ok();
    }
    dst.reserve(dst.size() + in.size());
    for (Record& r : in) Put(r, consume, dst);
    return Status::Ok();
  }
};

// Per record, rotating. Per batch would be cheaper but skews badly when batches differ in
// size (a source that returns a few records when idle and 1024 when busy).
class RoundRobinPartitioner final : public Partitioner {
 public:
  RoundRobinPartitioner(int n, int start) : Partitioner(n), next_(start % n) {}
  Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
               ErrorHandler*) override {
    const int n = destinations();
    int next = next_;
    for (Record& r : in) {
      Put(r, consume, out[next]);
      if (++next == n) next = 0;
    }
    next_ = next;
    return Status::Ok();
  }

 private:
  int next_;
};

// round_robin out of a source chain in dedup mode: the destination is a function of the
// record's source position, so a source that re-reads after a restart routes every record
// where it went the first time (a rotating counter would start over elsewhere).
class PositionPartitioner final : public Partitioner {
 public:
  explicit PositionPartitioner(int n) : Partitioner(n) {}
  Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
               ErrorHandler*) override {
    const uint64_t n = static_cast<uint64_t>(destinations());
    for (Record& r : in) Put(r, consume, out[static_cast<size_t>(r.origin.position % n)]);
    return Status::Ok();
  }
};

class HashPartitioner final : public Partitioner {
 public:
  HashPartitioner(int n, std::vector<std::string> fields)
      : Partitioner(n), fields_(std::move(fields)) {}
  Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
               ErrorHandler* errors) override {
    const int n = destinations();
    for (Record& r : in) {
      // The common key, one string field, is hashed straight from the record (the same
      // value as hashing its encoding; see StringKeyPartition).
      if (fields_.size() == 1) {
        const Value* v = r.Get(fields_[0]);
        if (v != nullptr && v->is_string()) {
          Put(r, consume, out[StringKeyPartition(v->str(), n)]);
          continue;
        }
      }
      key_.clear();
      if (!EncodeKey(r, fields_, &key_)) {
        Status st = errors != nullptr ? errors->OnRecordError(r, MissingMessage(r))
                                      : Status::DataError(MissingMessage(r));
        if (!st.ok()) return st;
        continue;
      }
      Put(r, consume, out[HashDestination(key_, n)]);
    }
    return Status::Ok();
  }

 private:
  std::string MissingMessage(const Record& r) const {
    for (const std::string& f : fields_) {
      if (r.Get(f) == nullptr) return "record has no field '" + f + "' to hash-partition on";
    }
    return "record's key fields cannot be encoded";
  }

  std::vector<std::string> fields_;
  std::string key_;  // reused encoding buffer
};

class BroadcastPartitioner final : public Partitioner {
 public:
  explicit BroadcastPartitioner(int n) : Partitioner(n) {}
  Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
               ErrorHandler*) override {
    const int n = destinations();
    for (int d = 0; d < n; ++d) {
      const bool last = d == n - 1;
      RecordBatch& dst = out[d];
      dst.reserve(dst.size() + in.size());
      for (Record& r : in) Put(r, consume && last, dst);
    }
    return Status::Ok();
  }
};

}  // namespace

int HashDestination(std::string_view encoded_key, int parallelism) {
  return HashToPartition(StableHash(encoded_key), parallelism);
}

std::unique_ptr<Partitioner> MakePartitioner(const PlanEdge& edge, int upstream_instance,
                                             int downstream_parallelism) {
  const int n = downstream_parallelism < 1 ? 1 : downstream_parallelism;
  switch (edge.partition) {
    case PartitionKind::kForward:
      return std::make_unique<ForwardPartitioner>();
    case PartitionKind::kHash:
      return std::make_unique<HashPartitioner>(n, edge.hash_fields);
    case PartitionKind::kBroadcast:
      return std::make_unique<BroadcastPartitioner>(n);
    case PartitionKind::kRoundRobin:
    case PartitionKind::kDefault:  // never after planning; spreading is the safe choice
      break;
  }
  return std::make_unique<RoundRobinPartitioner>(n, upstream_instance);
}

std::unique_ptr<Partitioner> MakePositionPartitioner(int downstream_parallelism) {
  return std::make_unique<PositionPartitioner>(downstream_parallelism);
}

}  // namespace onceflow

// Partitioners: route the records of one output batch of an upstream instance to the
// instances of a downstream node (forward, round_robin, hash(fields), broadcast).
//
// One Partitioner per (edge, upstream instance); it is called once per batch (one virtual
// call), and loops over the records without locks, virtual calls or allocation (the
// output batches and the key buffer are reused).
//
// Threading: owned and called by the upstream instance's task thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/node.h"
#include "runtime/core/record.h"
#include "runtime/core/status.h"
#include "runtime/plan/plan.h"

namespace onceflow {

class Partitioner {
 public:
  virtual ~Partitioner() = default;

  // Number of destination batches Route() fills: one per downstream instance this
  // upstream instance sends to (1 for forward).
  int destinations() const { return destinations_; }

  // Appends the records of `in` to `out[d]` (d < destinations()); `out` batches are not
  // cleared first. With `consume` the records are moved out of `in` (the caller then
  // discards `in`); without it they are copied (a tail feeding several edges copies for
  // all but the last). A record the partitioner cannot route (hash field missing) is a
  // data error of the upstream node: it goes to `errors` and is dropped if that returns
  // Ok; a non-Ok status (on_error: fail) is returned at once.
  virtual Status Route(RecordBatch& in, bool consume, std::vector<RecordBatch>& out,
                       ErrorHandler* errors) = 0;

 protected:
  explicit Partitioner(int destinations) : destinations_(destinations) {}

 private:
  int destinations_;
};

// `edge` must be planned (partition never kDefault) and not chained. `upstream_instance`
// seeds round_robin so that instances do not all start with destination 0.
std::unique_ptr<Partitioner> MakePartitioner(const PlanEdge& edge, int upstream_instance,
                                             int downstream_parallelism);

// round_robin by source position (origin.position mod parallelism): deterministic for a
// source chain that re-reads its input (dedup mode).
std::unique_ptr<Partitioner> MakePositionPartitioner(int downstream_parallelism);

// The downstream instance a hash partitioner sends an encoded key to: StableHash(key) mod
// parallelism. Exposed so that state redistribution (restore with another parallelism)
// uses the very same function.
int HashDestination(std::string_view encoded_key, int parallelism);

}  // namespace onceflow

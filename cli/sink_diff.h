// What `onceflow compare` judges a run by (SPEC §1 "survived"): reading a sink's output
// back as records, and the lost / duplicated figures of a run's records against a
// failure-free reference's. Pure functions over records (plus the readers, which only
// read files), so the rules are unit-tested without running a pipeline.
//
// The two rules:
//   keyed     for a sink fed by a keyed operator (or an `sqlite` sink with `key`): the
//             last record of each key (a later record of a key replaces an earlier one, as
//             an update stream or an upsert does). Over the numeric fields that are not
//             key fields, lost = Σ max(0, reference − run) and duplicated =
//             Σ max(0, run − reference); a key missing on one side counts as 0 there.
//             Doubles within a relative 1e-6 are equal (floating-point sums may differ in
//             the last bits after a recovery). A key missing on one side whose records
//             carry no numeric field (a `distinct` output) counts as one record lost or
//             duplicated, since the numeric rule cannot see it; a key present on both
//             sides whose numbers agree but whose other fields differ is `changed`.
//   multiset  for any other sink: the records written, as a multiset; lost = records of
//             the reference missing from the run, duplicated = records of the run beyond
//             the reference's.
//
// Threading: pure functions; no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "runtime/core/status.h"

namespace onceflow::cli {

using Records = std::vector<nlohmann::json>;  // each a JSON object

struct SinkDiff {
  double lost = 0;
  double duplicated = 0;
  uint64_t changed = 0;              // keyed: keys whose numbers agree but other fields differ
  uint64_t compared = 0;             // keys (keyed) or records (multiset) of the reference
  std::vector<std::string> samples;  // the first few differences, human-readable

  // True when the run differs from the reference in any way the rule can see.
  bool differs() const { return lost != 0 || duplicated != 0 || changed != 0; }
};

// The keyed rule; `key` is the list of key fields (with `window_start` for windows).
SinkDiff DiffLastByKey(const Records& reference, const Records& run,
                       const std::vector<std::string>& key);

// The multiset rule.
SinkDiff DiffMultiset(const Records& reference, const Records& run);

// What `onceflow test` reports for one sink: the records it wrote against the expected
// ones, compared as multisets (records equal as `compare` sees them: fields in any order,
// an integral double equal to the integer, other doubles to 6 decimals).
//   missing     expected records not written (as often as they are missing)
//   unexpected  written records not expected
//   changed     (expected, written) pairs with equal key fields taken out of missing and
//               unexpected: the same record with other values. Without key fields,
//               nothing is paired.
//   ordered     with `ordered`, when the multisets agree but the sequences do not: the
//               first position that differs.
struct ExpectDiff {
  Records missing;
  Records unexpected;
  std::vector<std::pair<nlohmann::json, nlohmann::json>> changed;
  long long order_differs_at = -1;  // -1: in order (or not ordered)
  size_t expected_count = 0;
  size_t written_count = 0;

  bool ok() const {
    return missing.empty() && unexpected.empty() && changed.empty() && order_differs_at < 0;
  }
};

// True when two values are equal as DiffExpected and DiffMultiset compare them.
bool EquivalentValues(const nlohmann::json& a, const nlohmann::json& b);

ExpectDiff DiffExpected(const Records& expected, const Records& written,
                        const std::vector<std::string>& key, bool ordered);

// Where and how a sink wrote, as compare reads it back.
struct SinkOutput {
  enum class Kind { kFile, kSqlite };
  Kind kind = Kind::kFile;
  std::string path;
  std::string format = "jsonl";  // file: jsonl | csv | lines
  std::string field = "line";    // file, format lines: the field each line is
  std::string table;             // sqlite
};

// Reads every record the sink wrote, in file (or rowid) order. A missing file, or a
// missing table in an existing database, is no records (a sink that received nothing
// may create nothing). A line that is not a JSON object, a torn last line or an
// unreadable database is Status::IOError naming the file and line.
Status ReadSinkRecords(const SinkOutput& out, Records* records);

}  // namespace onceflow::cli

// Fault injection: --chaos parsing, deterministic decisions, the fired set, CrashNow().
// See chaos.h for the contract; thread safety is documented there.
#include "runtime/chaos/chaos.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "runtime/core/key.h"
#include "runtime/core/varint.h"
#include "runtime/spec/diagnostics.h"

namespace onceflow {
namespace {

constexpr const char* kPointNames[kHazardPointCount] = {
    "before-barrier",
    "after-barrier",
    "after-sink-write",
    "in-checkpoint-txn",
    "after-checkpoint-complete",
    "in-dedup-commit",
    "in-migration",
};

const std::vector<std::string>& ItemNames() {
  static const std::vector<std::string> names = {"seed", "fail", "crash", "crash-prob", "crash-at"};
  return names;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// Whole string, decimal, no sign, no spaces.
bool ParseUint(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// A probability: a finite decimal in [0, 1].
Status ParseProbability(std::string_view item, std::string_view s, double* out) {
  double p = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), p,
                                   std::chars_format::fixed | std::chars_format::scientific);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(p)) {
    return Status::Invalid("--chaos item " + Quote(item) + ": " + Quote(s) +
                           " is not a number (a probability between 0 and 1)");
  }
  if (p < 0 || p > 1) {
    return Status::Invalid("--chaos item " + Quote(item) + ": probability " + std::string(s) +
                           " is outside [0, 1]");
  }
  *out = p;
  return Status::Ok();
}

std::string FormatProbability(double p) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), p);  // shortest round trip
  return std::string(buf, ec == std::errc() ? ptr : buf);
}

}  // namespace

const char* HazardPointName(HazardPoint point) { return kPointNames[static_cast<int>(point)]; }

bool ParseHazardPoint(std::string_view name, HazardPoint* point) {
  for (int i = 0; i < kHazardPointCount; ++i) {
    if (name == kPointNames[i]) {
      *point = static_cast<HazardPoint>(i);
      return true;
    }
  }
  return false;
}

std::vector<std::string> HazardPointNames() {
  return std::vector<std::string>(kPointNames, kPointNames + kHazardPointCount);
}

Status ChaosSpec::Parse(std::string_view text, ChaosSpec* out) {
  ChaosSpec spec;
  bool have_seed = false;
  bool have_crash_prob = false;
  if (Trim(text).empty()) {
    *out = spec;
    return Status::Ok();
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = Trim(text.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) {
      return Status::Invalid("--chaos: empty item (two commas in a row, or a comma at an end)");
    }
    const size_t eq = item.find('=');
    const std::string_view key = Trim(item.substr(0, eq));
    const bool known = std::find(ItemNames().begin(), ItemNames().end(), key) != ItemNames().end();
    if (!known) {
      std::string msg = "--chaos: unknown item " + Quote(key) +
                        " (expected seed=, fail=, crash=, crash-prob= or crash-at=)";
      const std::string note = DidYouMeanNote(key, ItemNames());
      if (!note.empty()) msg += "; " + note;
      return Status::Invalid(msg);
    }
    if (eq == std::string_view::npos) {
      return Status::Invalid("--chaos item " + Quote(item) + ": expected " + std::string(key) +
                             "=VALUE");
    }
    const std::string_view value = Trim(item.substr(eq + 1));

    if (key == "seed") {
      if (have_seed) return Status::Invalid("--chaos: seed= given twice");
      if (!ParseUint(value, &spec.seed)) {
        return Status::Invalid("--chaos item " + Quote(item) + ": " + Quote(value) +
                               " is not a non-negative integer");
      }
      have_seed = true;
    } else if (key == "fail") {
      const size_t colon = value.rfind(':');
      if (colon == std::string_view::npos) {
        return Status::Invalid("--chaos item " + Quote(item) + ": expected fail=NODE:P");
      }
      Fail fail;
      fail.node = std::string(Trim(value.substr(0, colon)));
      if (fail.node.empty()) {
        return Status::Invalid("--chaos item " + Quote(item) + ": the node name is empty");
      }
      ONCEFLOW_RETURN_IF_ERROR(
          ParseProbability(item, Trim(value.substr(colon + 1)), &fail.probability));
      for (const Fail& f : spec.fail) {
        if (f.node == fail.node) {
          return Status::Invalid("--chaos: fail= given twice for node " + Quote(fail.node));
        }
      }
      spec.fail.push_back(std::move(fail));
    } else if (key == "crash") {
      if (spec.crash_after) return Status::Invalid("--chaos: crash= given twice");
      uint64_t n = 0;
      if (!ParseUint(value, &n)) {
        return Status::Invalid("--chaos item " + Quote(item) + ": " + Quote(value) +
                               " is not a non-negative integer (a count of source events)");
      }
      if (n < 1) {
        return Status::Invalid("--chaos item " + Quote(item) +
                               ": the count of source events must be at least 1");
      }
      spec.crash_after = n;
    } else if (key == "crash-prob") {
      if (have_crash_prob) return Status::Invalid("--chaos: crash-prob= given twice");
      ONCEFLOW_RETURN_IF_ERROR(ParseProbability(item, value, &spec.crash_probability));
      have_crash_prob = true;
    } else {  // crash-at
      const size_t colon = value.find(':');
      const std::string_view point_name = Trim(value.substr(0, colon));
      CrashAt at;
      if (!ParseHazardPoint(point_name, &at.point)) {
        std::string msg = "--chaos item " + Quote(item) + ": unknown hazard point " +
                          Quote(point_name) + " (one of ";
        for (int i = 0; i < kHazardPointCount; ++i) {
          msg += (i ? ", " : "") + std::string(kPointNames[i]);
        }
        msg += ")";
        const std::string note = DidYouMeanNote(point_name, HazardPointNames());
        if (!note.empty()) msg += "; " + note;
        return Status::Invalid(msg);
      }
      if (colon != std::string_view::npos) {
        const std::string_view k = Trim(value.substr(colon + 1));
        if (!ParseUint(k, &at.passage)) {
          return Status::Invalid("--chaos item " + Quote(item) + ": " + Quote(k) +
                                 " is not a non-negative integer (the passage K)");
        }
        if (at.passage < 1) {
          return Status::Invalid("--chaos item " + Quote(item) + ": the passage K counts from 1");
        }
      }
      for (const CrashAt& c : spec.crash_at) {
        if (c.point == at.point && c.passage == at.passage) {
          return Status::Invalid("--chaos: crash-at=" + std::string(HazardPointName(at.point)) +
                                 ":" + std::to_string(at.passage) + " given twice");
        }
      }
      spec.crash_at.push_back(at);
    }
  }
  *out = std::move(spec);
  return Status::Ok();
}

std::vector<std::string> ChaosSpec::NodeNames() const {
  std::vector<std::string> names;
  names.reserve(fail.size());
  for (const Fail& f : fail) names.push_back(f.node);
  return names;
}

bool ChaosSpec::empty() const {
  return fail.empty() && !crash_after && crash_probability == 0 && crash_at.empty();
}

std::string ChaosSpec::ToString() const {
  std::string s = "seed=" + std::to_string(seed);
  for (const Fail& f : fail) s += ",fail=" + f.node + ":" + FormatProbability(f.probability);
  if (crash_after) s += ",crash=" + std::to_string(*crash_after);
  if (crash_probability > 0) s += ",crash-prob=" + FormatProbability(crash_probability);
  for (const CrashAt& c : crash_at) {
    s += ",crash-at=" + std::string(HazardPointName(c.point)) + ":" + std::to_string(c.passage);
  }
  return s;
}

Chaos::Chaos(ChaosSpec spec) : spec_(std::move(spec)), enabled_(!spec_.empty()) {
  for (const ChaosSpec::Fail& f : spec_.fail) fail_[f.node] = f.probability;
}

double Chaos::Draw(uint64_t seed, Kind kind, std::string_view node, uint64_t position) {
  // Fixed little-endian layout so the draw is the same on every platform and run:
  // seed (8 bytes), kind (1), position (8), node bytes.
  std::string bytes;
  bytes.reserve(17 + node.size());
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(seed >> (8 * i)));
  bytes.push_back(static_cast<char>(kind));
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(position >> (8 * i)));
  bytes.append(node);
  // The top 53 bits as a double in [0, 1): exact, and never 1.0.
  return static_cast<double>(StableHash(bytes) >> 11) * 0x1.0p-53;
}

bool Chaos::Fire(Place place) {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_.insert(std::move(place)).second;
}

double Chaos::FailProbability(std::string_view node) const {
  auto it = fail_.find(node);
  return it == fail_.end() ? 0 : it->second;
}

bool Chaos::ShouldFail(std::string_view node, uint64_t position) {
  if (!enabled_) return false;
  const double p = FailProbability(node);
  if (p <= 0) return false;
  if (Draw(spec_.seed, Kind::kFail, node, position) >= p) return false;
  return Fire(Place{Kind::kFail, std::string(node), position});
}

bool Chaos::OnSourceEvent(std::string_view source, uint64_t position) {
  if (!enabled_) return false;
  if (spec_.crash_after) {
    const uint64_t count = source_events_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (count == *spec_.crash_after && Fire(Place{Kind::kCrashCount, "", count})) return true;
  }
  if (spec_.crash_probability > 0 &&
      Draw(spec_.seed, Kind::kCrashProb, source, position) < spec_.crash_probability) {
    return Fire(Place{Kind::kCrashProb, std::string(source), position});
  }
  return false;
}

bool Chaos::Passage(HazardPoint point) {
  if (!enabled_ || spec_.crash_at.empty()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t k = ++passages_[static_cast<int>(point)];
  for (const ChaosSpec::CrashAt& c : spec_.crash_at) {
    if (c.point == point && c.passage == k) {
      return fired_.insert(Place{Kind::kCrashAt, HazardPointName(point), k}).second;
    }
  }
  return false;
}

std::string Chaos::ExportFired() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  if (fired_.empty()) return out;
  out.push_back(1);                // format version
  for (const Place& p : fired_) {  // std::set: sorted, so the bytes are canonical
    out.push_back(static_cast<char>(p.kind));
    PutVarint(p.node.size(), &out);
    out.append(p.node);
    PutVarint(p.position, &out);
  }
  return out;
}

Status Chaos::ImportFired(std::string_view bytes) {
  if (bytes.empty()) return Status::Ok();
  auto corrupt = [](const char* what) {
    return Status::State(std::string("chaos fired-place set in the state file is corrupt: ") +
                         what);
  };
  if (bytes.front() != 1) return corrupt("unknown format version");
  bytes.remove_prefix(1);
  std::vector<Place> places;
  while (!bytes.empty()) {
    Place p;
    const uint8_t kind = static_cast<uint8_t>(bytes.front());
    bytes.remove_prefix(1);
    if (kind < 1 || kind > 4) return corrupt("unknown place kind");
    p.kind = static_cast<Kind>(kind);
    uint64_t len = 0;
    if (!GetVarint(&bytes, &len) || len > bytes.size()) return corrupt("bad node name length");
    p.node = std::string(bytes.substr(0, len));
    bytes.remove_prefix(len);
    if (!GetVarint(&bytes, &p.position)) return corrupt("bad position");
    places.push_back(std::move(p));
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (Place& p : places) fired_.insert(std::move(p));
  return Status::Ok();
}

bool Chaos::HasFired(const Place& place) const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_.count(place) != 0;
}

size_t Chaos::fired_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fired_.size();
}

void CrashNow() {
  // SIGKILL cannot be caught, blocked or ignored: the kernel ends every thread without
  // running a destructor, an atexit handler or a stdio flush — exactly a `kill -9`, the
  // crash the guarantees must survive. kill() on our own pid may return before delivery
  // completes on another CPU, so wait for it rather than run on.
  kill(getpid(), SIGKILL);
  for (;;) pause();
}

}  // namespace onceflow

// The lost / duplicated rules of SPEC §1 and the sink readers `compare` uses; see
// sink_diff.h.
#include "cli/sink_diff.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "operators/formats/csv.h"

namespace onceflow::cli {

namespace {

constexpr double kFloatTolerance = 1e-6;  // relative, as tests/crash/crash_test.py
constexpr size_t kMaxSamples = 8;

// A canonical text of a JSON value, equal for values the rules treat as equal: object
// fields in name order (nlohmann::json keeps them sorted), an integral double spelled as
// the integer, other doubles rounded to 6 decimals without trailing zeros (so a double that
// rounds to an integer is spelled as that integer too).
void AppendCanonical(const nlohmann::json& v, std::string* out) {
  if (v.is_object()) {
    out->push_back('{');
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out->push_back(',');
      first = false;
      *out += nlohmann::json(it.key()).dump();
      out->push_back(':');
      AppendCanonical(it.value(), out);
    }
    out->push_back('}');
  } else if (v.is_array()) {
    out->push_back('[');
    for (size_t i = 0; i < v.size(); ++i) {
      if (i != 0) out->push_back(',');
      AppendCanonical(v[i], out);
    }
    out->push_back(']');
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    char buf[64];
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      std::snprintf(buf, sizeof buf, "%.0f", d);
    } else {
      std::snprintf(buf, sizeof buf, "%.6f", d);
      // Rounded to 6 decimals, a sum that drifted off an integer (2939.000000000001) must
      // read as that integer, as it would had it landed on it: trailing zeros go.
      std::string_view t(buf);
      if (t.find('.') != std::string_view::npos) {
        while (t.back() == '0') t.remove_suffix(1);
        if (t.back() == '.') t.remove_suffix(1);
      }
      if (t == "-0") t = "0";
      *out += t;
      return;
    }
    *out += buf;
  } else {
    *out += v.dump();
  }
}

std::string Canonical(const nlohmann::json& v) {
  std::string s;
  AppendCanonical(v, &s);
  return s;
}

std::string Short(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 200) s = s.substr(0, 197) + "...";
  return s;
}

bool Close(double a, double b) {
  return std::fabs(a - b) <= kFloatTolerance * std::max({1.0, std::fabs(a), std::fabs(b)});
}

bool IsKeyField(const std::vector<std::string>& key, const std::string& field) {
  return std::find(key.begin(), key.end(), field) != key.end();
}

// The record's non-key numeric fields (booleans are not numbers here).
std::map<std::string, double> NumericFields(const nlohmann::json* r,
                                            const std::vector<std::string>& key) {
  std::map<std::string, double> out;
  if (r == nullptr || !r->is_object()) return out;
  for (auto it = r->begin(); it != r->end(); ++it) {
    if (it.value().is_number() && !IsKeyField(key, it.key())) {
      out[it.key()] = it.value().get<double>();
    }
  }
  return out;
}

// The record's other fields (neither key nor numeric), canonical.
std::map<std::string, std::string> OtherFields(const nlohmann::json& r,
                                               const std::vector<std::string>& key) {
  std::map<std::string, std::string> out;
  if (!r.is_object()) return out;
  for (auto it = r.begin(); it != r.end(); ++it) {
    if (!it.value().is_number() && !IsKeyField(key, it.key())) {
      out[it.key()] = Canonical(it.value());
    }
  }
  return out;
}

// {canonical key: last record with that key}. A record lacking a key field is its own
// key (it can only match an identical record).
std::map<std::string, const nlohmann::json*> LastByKey(const Records& records,
                                                       const std::vector<std::string>& key) {
  std::map<std::string, const nlohmann::json*> out;
  for (const nlohmann::json& r : records) {
    nlohmann::json k = nlohmann::json::array();
    bool complete = r.is_object();
    for (const std::string& f : key) {
      if (!complete || !r.contains(f)) {
        complete = false;
        break;
      }
      k.push_back(r[f]);
    }
    out[complete ? Canonical(k) : "<no key> " + Canonical(r)] = &r;
  }
  return out;
}

std::map<std::string, int64_t> Multiset(const Records& records) {
  std::map<std::string, int64_t> out;
  for (const nlohmann::json& r : records) ++out[Canonical(r)];
  return out;
}

void AddSample(SinkDiff* d, std::string text) {
  if (d->samples.size() < kMaxSamples) d->samples.push_back(std::move(text));
}

}  // namespace

SinkDiff DiffLastByKey(const Records& reference, const Records& run,
                       const std::vector<std::string>& key) {
  SinkDiff d;
  const auto ref = LastByKey(reference, key);
  const auto got = LastByKey(run, key);
  d.compared = ref.size();
  std::set<std::string> keys;
  for (const auto& [k, r] : ref) keys.insert(k);
  for (const auto& [k, r] : got) keys.insert(k);
  for (const std::string& k : keys) {
    const auto ia = ref.find(k), ib = got.find(k);
    const nlohmann::json* a = ia == ref.end() ? nullptr : ia->second;
    const nlohmann::json* b = ib == got.end() ? nullptr : ib->second;
    const auto na = NumericFields(a, key), nb = NumericFields(b, key);
    bool bad = a == nullptr || b == nullptr;
    std::set<std::string> fields;
    for (const auto& [f, v] : na) fields.insert(f);
    for (const auto& [f, v] : nb) fields.insert(f);
    for (const std::string& f : fields) {
      const double va = na.count(f) ? na.at(f) : 0, vb = nb.count(f) ? nb.at(f) : 0;
      if (Close(va, vb)) continue;
      bad = true;
      if (va > vb) {
        d.lost += va - vb;
      } else {
        d.duplicated += vb - va;
      }
    }
    if (fields.empty() && a == nullptr) d.duplicated += 1;
    if (fields.empty() && b == nullptr) d.lost += 1;
    if (!bad && OtherFields(*a, key) != OtherFields(*b, key)) {
      bad = true;
      ++d.changed;
    }
    if (bad) {
      AddSample(&d, "key " + k + ": reference " + (a ? Short(*a) : "(missing)") + ", run " +
                        (b ? Short(*b) : "(missing)"));
    }
  }
  return d;
}

SinkDiff DiffMultiset(const Records& reference, const Records& run) {
  SinkDiff d;
  d.compared = reference.size();
  const auto ref = Multiset(reference), got = Multiset(run);
  // Adds to *sum how many more times each record is in `a` than in `b`.
  auto excess = [&d](const std::map<std::string, int64_t>& a,
                     const std::map<std::string, int64_t>& b, double* sum, const char* what) {
    for (const auto& [r, n] : a) {
      const auto it = b.find(r);
      const int64_t m = it == b.end() ? 0 : it->second;
      if (n <= m) continue;
      *sum += static_cast<double>(n - m);
      AddSample(&d, std::string("record ") + what + " x" + std::to_string(n - m) + ": " + r);
    }
  };
  excess(ref, got, &d.lost, "missing");
  excess(got, ref, &d.duplicated, "extra");
  return d;
}

bool EquivalentValues(const nlohmann::json& a, const nlohmann::json& b) {
  return Canonical(a) == Canonical(b);
}

ExpectDiff DiffExpected(const Records& expected, const Records& written,
                        const std::vector<std::string>& key, bool ordered) {
  ExpectDiff d;
  d.expected_count = expected.size();
  d.written_count = written.size();
  std::vector<std::string> exp_canon, got_canon;
  for (const nlohmann::json& r : expected) exp_canon.push_back(Canonical(r));
  for (const nlohmann::json& r : written) got_canon.push_back(Canonical(r));
  // Each side's records beyond the other's, kept in their own order.
  auto beyond = [](const Records& records, const std::vector<std::string>& canon,
                   const std::vector<std::string>& other, Records* out) {
    std::map<std::string, int64_t> left;
    for (const std::string& c : other) ++left[c];
    for (size_t i = 0; i < records.size(); ++i) {
      auto it = left.find(canon[i]);
      if (it != left.end() && it->second > 0) {
        --it->second;
      } else {
        out->push_back(records[i]);
      }
    }
  };
  beyond(expected, exp_canon, got_canon, &d.missing);
  beyond(written, got_canon, exp_canon, &d.unexpected);

  if (!key.empty()) {
    // The canonical key of a record, "" when it lacks a key field.
    auto key_of = [&key](const nlohmann::json& r) -> std::string {
      nlohmann::json k = nlohmann::json::array();
      for (const std::string& f : key) {
        if (!r.is_object() || !r.contains(f)) return "";
        k.push_back(r[f]);
      }
      return Canonical(k);
    };
    Records still_missing;
    std::vector<bool> paired(d.unexpected.size(), false);
    for (const nlohmann::json& m : d.missing) {
      const std::string k = key_of(m);
      bool found = false;
      for (size_t i = 0; !k.empty() && i < d.unexpected.size(); ++i) {
        if (!paired[i] && key_of(d.unexpected[i]) == k) {
          paired[i] = true;
          d.changed.emplace_back(m, d.unexpected[i]);
          found = true;
          break;
        }
      }
      if (!found) still_missing.push_back(m);
    }
    Records still_unexpected;
    for (size_t i = 0; i < d.unexpected.size(); ++i) {
      if (!paired[i]) still_unexpected.push_back(d.unexpected[i]);
    }
    d.missing = std::move(still_missing);
    d.unexpected = std::move(still_unexpected);
  }

  if (ordered && d.ok()) {
    for (size_t i = 0; i < exp_canon.size(); ++i) {
      if (exp_canon[i] != got_canon[i]) {
        d.order_differs_at = static_cast<long long>(i);
        break;
      }
    }
  }
  return d;
}

namespace {

Status ReadSqlite(const SinkOutput& out, Records* records) {
  std::ifstream probe(out.path);
  if (!probe) return Status::Ok();
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(out.path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IOError("cannot open '" + out.path + "': " + msg);
  }
  Status st;
  sqlite3_stmt* stmt = nullptr;
  // The table exists only once the sink wrote a record.
  bool exists = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1", -1,
                         &stmt, nullptr) == SQLITE_OK) {
    sqlite3_bind_text(stmt, 1, out.table.c_str(), -1, SQLITE_TRANSIENT);
    exists = sqlite3_step(stmt) == SQLITE_ROW;
  }
  sqlite3_finalize(stmt);
  stmt = nullptr;
  std::string quoted = "\"";
  for (char c : out.table) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  const std::string sql = "SELECT * FROM " + quoted;
  if (exists && sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    st = Status::IOError("reading table '" + out.table + "' of '" + out.path +
                         "': " + sqlite3_errmsg(db));
  } else if (exists) {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      nlohmann::json row = nlohmann::json::object();
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const std::string name = sqlite3_column_name(stmt, i);
        switch (sqlite3_column_type(stmt, i)) {
          case SQLITE_INTEGER:
            row[name] = sqlite3_column_int64(stmt, i);
            break;
          case SQLITE_FLOAT:
            row[name] = sqlite3_column_double(stmt, i);
            break;
          case SQLITE_NULL:
            row[name] = nullptr;
            break;
          default:
            row[name] = std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i)),
                                    sqlite3_column_bytes(stmt, i));
        }
      }
      records->push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) {
      st = Status::IOError("reading table '" + out.table + "' of '" + out.path +
                           "': " + sqlite3_errmsg(db));
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return st;
}

Status ReadCsv(const std::string& path, const std::string& data, Records* records) {
  std::vector<ops::CsvCell> cells;
  std::vector<std::string> header;
  size_t pos = 0;
  int line = 0;
  while (pos < data.size()) {
    size_t n = 0, consumed = 0;
    ++line;
    if (ops::ParseCsvRecord(std::string_view(data).substr(pos), true, &cells, &n, &consumed) !=
        ops::CsvParse::kRecord) {
      return Status::IOError("'" + path + "' record " + std::to_string(line) +
                             ": unterminated quoted cell");
    }
    pos += consumed;
    if (header.empty()) {
      for (size_t i = 0; i < n; ++i) header.push_back(cells[i].text);
      continue;
    }
    nlohmann::json r = nlohmann::json::object();
    for (size_t i = 0; i < n && i < header.size(); ++i) {
      r[header[i]] = nlohmann::json::parse(ops::CsvCellValue(cells[i]).ToJson());
    }
    records->push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace

Status ReadSinkRecords(const SinkOutput& out, Records* records) {
  records->clear();
  if (out.kind == SinkOutput::Kind::kSqlite) return ReadSqlite(out, records);
  std::ifstream in(out.path, std::ios::binary);
  if (!in) return Status::Ok();
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string data = buf.str();
  if (!data.empty() && data.back() != '\n') {
    return Status::IOError("'" + out.path + "' ends with a torn line");
  }
  if (out.format == "csv") return ReadCsv(out.path, data, records);
  size_t start = 0;
  int line = 0;
  while (start < data.size()) {
    const size_t end = data.find('\n', start);
    const std::string text = data.substr(start, end - start);
    start = end + 1;
    ++line;
    if (out.format == "lines") {
      records->push_back(nlohmann::json{{out.field, text}});
      continue;
    }
    if (text.empty()) continue;
    nlohmann::json r = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!r.is_object()) {
      return Status::IOError("'" + out.path + "' line " + std::to_string(line) +
                             " is not a JSON object: " + text.substr(0, 200));
    }
    records->push_back(std::move(r));
  }
  return Status::Ok();
}

}  // namespace onceflow::cli

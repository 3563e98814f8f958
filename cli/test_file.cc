// Reading and checking a pipeline test file; see test_file.h.
#include "cli/test_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "runtime/spec/loader.h"
#include "runtime/spec/validate.h"

namespace onceflow::cli {

namespace {

const std::vector<std::string>& TopKeys() {
  static const std::vector<std::string> k = {"pipeline", "description", "cases"};
  return k;
}
const std::vector<std::string>& CaseKeys() {
  static const std::vector<std::string> k = {"name",    "description", "semantics",    "mode",
                                             "chaos",   "set",         "inputs",       "expect",
                                             "ordered", "expect_exit", "expect_error", "timeout"};
  return k;
}
const std::vector<std::string>& RecordsKeys(bool expect) {
  static const std::vector<std::string> in = {"records", "file"};
  static const std::vector<std::string> out = {"records", "file", "ordered", "key"};
  return expect ? out : in;
}

// Reports every key of map `m` that is not in `keys`.
void UnknownKeys(const YNode& m, const std::vector<std::string>& keys, const std::string& where,
                 Diagnostics* diags) {
  for (const auto& [k, v] : m.entries) {
    if (k.is_scalar() && std::find(keys.begin(), keys.end(), k.scalar) == keys.end()) {
      diags->Error(k, "unknown key '" + k.scalar + "'" + where, DidYouMeanNote(k.scalar, keys));
    }
  }
}

// A non-empty string scalar; reports and returns false otherwise.
bool String(const YNode& v, const std::string& what, std::string* out, Diagnostics* diags) {
  if (!v.is_scalar() || v.scalar.empty()) {
    diags->Error(v, what + " must be a string, got " + DescribeValue(v));
    return false;
  }
  *out = v.scalar;
  return true;
}

bool Bool(const YNode& v, const std::string& what, bool* out, Diagnostics* diags) {
  if (v.is_scalar() && !v.quoted && (v.scalar == "true" || v.scalar == "false")) {
    *out = v.scalar == "true";
    return true;
  }
  diags->Error(v, what + " must be true or false, got " + DescribeValue(v));
  return false;
}

// A YAML scalar as it would be written after --set PATH=: a quoted string stays a string.
std::string SetValueText(const YNode& v) {
  if (v.is_null()) return "";
  if (!v.quoted) return v.scalar;
  return nlohmann::json(v.scalar).dump();  // a JSON string is a YAML double-quoted scalar
}

class Reader {
 public:
  Reader(TestFile* file, Diagnostics* diags) : file_(file), diags_(diags) {
    dir_ = std::filesystem::path(file->path).parent_path().string();
  }

  void Run(const YNode& root) {
    if (!root.is_map()) {
      diags_->Error(root,
                    "a test file must be a map (pipeline:, cases:), got " + DescribeValue(root));
      return;
    }
    UnknownKeys(root, TopKeys(), "", diags_);
    const YNode* p = root.Find("pipeline");
    if (p == nullptr) {
      diags_->Error(SourceLoc{}, 0, "missing 'pipeline: FILE' (the pipeline file under test)");
    } else if (String(*p, "'pipeline'", &file_->pipeline, diags_)) {
      file_->pipeline = ResolvePath(file_->pipeline, dir_, false);
    }
    const YNode* cases = root.Find("cases");
    if (cases == nullptr) {
      diags_->Error(SourceLoc{}, 0, "missing 'cases:' (a list of test cases)");
      return;
    }
    if (!cases->is_sequence() || cases->items.empty()) {
      diags_->Error(*cases,
                    "'cases' must be a non-empty list of cases, got " + DescribeValue(*cases));
      return;
    }
    std::set<std::string> names;
    for (const YNode& c : cases->items) {
      TestCase tc;
      if (!Case(c, &tc)) continue;
      if (!names.insert(tc.name).second) {
        diags_->Error(*c.Find("name"), "duplicate case name '" + tc.name + "'");
      }
      file_->cases.push_back(std::move(tc));
    }
  }

 private:
  bool Case(const YNode& c, TestCase* tc) {
    if (!c.is_map()) {
      diags_->Error(c, "a case must be a map (name:, inputs:, expect:), got " + DescribeValue(c));
      return false;
    }
    tc->at = &c;
    UnknownKeys(c, CaseKeys(), " in a case", diags_);
    const YNode* name = c.Find("name");
    if (name == nullptr) {
      diags_->Error(c, "a case needs a 'name:'");
      return false;
    }
    if (!String(*name, "'name'", &tc->name, diags_)) return false;
    const std::string where = "case '" + tc->name + "': ";
    if (const YNode* d = c.Find("description"); d != nullptr && !d->is_scalar()) {
      diags_->Error(*d, where + "'description' must be a string, got " + DescribeValue(*d));
    }
    if (const YNode* s = c.Find("semantics")) {
      tc->semantics_at = s;
      String(*s, where + "'semantics'", &tc->semantics, diags_);
    }
    if (const YNode* m = c.Find("mode")) {
      tc->mode_at = m;
      String(*m, where + "'mode'", &tc->mode, diags_);
    }
    if (const YNode* ch = c.Find("chaos")) {
      tc->chaos_at = ch;
      String(*ch, where + "'chaos'", &tc->chaos, diags_);
    }
    if (const YNode* set = c.Find("set")) Sets(*set, where, tc);
    bool ordered = false;
    if (const YNode* o = c.Find("ordered")) Bool(*o, where + "'ordered'", &ordered, diags_);
    if (const YNode* e = c.Find("expect_exit")) {
      int64_t code = 0;
      if (!e->is_scalar() || e->quoted || !ParseCode(e->scalar, &code)) {
        diags_->Error(
            *e, where + "'expect_exit' must be an exit code (0 to 255), got " + DescribeValue(*e));
      } else {
        tc->expect_exit = static_cast<int>(code);
      }
    }
    if (const YNode* t = c.Find("timeout")) {
      if (!t->is_scalar() || t->quoted || !ParseDuration(t->scalar, &tc->timeout_ms) ||
          tc->timeout_ms < 1) {
        diags_->Error(
            *t, where + "'timeout' must be a duration such as 30s or 2m, got " + DescribeValue(*t));
      }
    }
    if (const YNode* e = c.Find("expect_error")) {
      String(*e, where + "'expect_error'", &tc->expect_error, diags_);
    }
    if (const YNode* in = c.Find("inputs")) RecordsMap(*in, where + "'inputs'", false, &tc->inputs);
    const YNode* ex = c.Find("expect");
    if (ex != nullptr) RecordsMap(*ex, where + "'expect'", true, &tc->expect);
    if (ex == nullptr && c.Find("expect_exit") == nullptr && c.Find("expect_error") == nullptr) {
      diags_->Error(c, where +
                           "nothing to check: give 'expect:' (sink -> records) or "
                           "'expect_exit:'");
    }
    for (CaseRecords& e : tc->expect) e.ordered = e.ordered || ordered;
    return true;
  }

  static bool ParseCode(const std::string& s, int64_t* out) {
    if (s.empty() || s.size() > 3 || !std::all_of(s.begin(), s.end(), ::isdigit)) return false;
    *out = std::stoll(s);
    return *out <= 255;
  }

  void Sets(const YNode& set, const std::string& where, TestCase* tc) {
    if (!set.is_map()) {
      diags_->Error(set, where + "'set' must be a map of PATH: VALUE (as --set PATH=VALUE), got " +
                             DescribeValue(set));
      return;
    }
    for (const auto& [k, v] : set.entries) {
      if (!v.is_scalar() && !v.is_null()) {
        diags_->Error(
            v, where + "'set." + k.scalar + "' must be a single value, got " + DescribeValue(v));
        continue;
      }
      tc->sets.push_back(k.scalar + "=" + SetValueText(v));
    }
  }

  // `inputs:` / `expect:`: node id -> a list of records, or a map {records: [...]} or
  // {file: JSONL} (plus ordered:, key: for expect).
  void RecordsMap(const YNode& m, const std::string& what, bool expect,
                  std::vector<CaseRecords>* out) {
    if (!m.is_map()) {
      diags_->Error(m, what + " must be a map of " + (expect ? "sink" : "source") +
                           " id -> records, got " + DescribeValue(m));
      return;
    }
    for (const auto& [k, v] : m.entries) {
      CaseRecords cr;
      cr.node = k.scalar;
      cr.at = &k;
      const std::string node_what = what + " of '" + k.scalar + "'";
      const YNode* list = &v;
      if (v.is_map()) {
        UnknownKeys(v, RecordsKeys(expect), " in " + node_what, diags_);
        if (const YNode* o = v.Find("ordered"))
          Bool(*o, node_what + ": 'ordered'", &cr.ordered, diags_);
        if (const YNode* key = v.Find("key")) Key(*key, node_what, &cr.key);
        list = v.Find("records");
        const YNode* file = v.Find("file");
        if ((list == nullptr) == (file == nullptr)) {
          diags_->Error(v, node_what + ": give either 'records:' or 'file:'");
          continue;
        }
        if (file != nullptr) {
          if (RecordsFile(*file, node_what, &cr.records)) out->push_back(std::move(cr));
          continue;
        }
      }
      if (list->is_null()) {  // `out: []` written as `out:`: no records
        out->push_back(std::move(cr));
        continue;
      }
      if (!list->is_sequence()) {
        diags_->Error(*list, node_what + " must be a list of records, got " + DescribeValue(*list));
        continue;
      }
      bool ok = true;
      for (const YNode& r : list->items) {
        if (!r.is_map()) {
          diags_->Error(
              r, node_what + ": a record must be a map (field: value), got " + DescribeValue(r));
          ok = false;
          continue;
        }
        cr.records.push_back(YamlToJson(r));
      }
      if (ok) out->push_back(std::move(cr));
    }
  }

  void Key(const YNode& key, const std::string& what, std::vector<std::string>* out) {
    if (key.is_scalar() && !key.scalar.empty()) {
      out->push_back(key.scalar);
      return;
    }
    if (key.is_sequence() && !key.items.empty()) {
      for (const YNode& f : key.items) {
        if (!f.is_scalar() || f.scalar.empty()) {
          diags_->Error(f, what + ": a key field must be a name, got " + DescribeValue(f));
          return;
        }
        out->push_back(f.scalar);
      }
      return;
    }
    diags_->Error(key,
                  what + ": 'key' must be a field or a list of fields, got " + DescribeValue(key));
  }

  // A JSONL file of records, relative to the test file.
  bool RecordsFile(const YNode& f, const std::string& what, Records* records) {
    std::string path;
    if (!String(f, what + ": 'file'", &path, diags_)) return false;
    path = ResolvePath(path, dir_, false);
    std::ifstream probe(path);
    if (!probe) {
      diags_->Error(f, what + ": cannot read '" + path + "': " + std::strerror(errno));
      return false;
    }
    SinkOutput in;
    in.path = path;
    const Status st = ReadSinkRecords(in, records);
    if (!st.ok()) {
      diags_->Error(f, what + ": " + st.message());
      return false;
    }
    return true;
  }

  TestFile* file_;
  Diagnostics* diags_;
  std::string dir_;
};

}  // namespace

nlohmann::json YamlToJson(const YNode& v) {
  switch (v.kind) {
    case YNode::Kind::kNull:
      return nullptr;
    case YNode::Kind::kSequence: {
      nlohmann::json a = nlohmann::json::array();
      for (const YNode& i : v.items) a.push_back(YamlToJson(i));
      return a;
    }
    case YNode::Kind::kMap: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, val] : v.entries) o[k.scalar] = YamlToJson(val);
      return o;
    }
    case YNode::Kind::kScalar:
      break;
  }
  if (v.quoted) return v.scalar;
  const std::string& s = v.scalar;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (std::regex_match(s, kInt)) {
    errno = 0;
    char* end = nullptr;
    const long long i = std::strtoll(s.c_str(), &end, 10);
    if (errno == 0) return static_cast<int64_t>(i);
  }
  if (std::regex_match(s, kFloat)) return std::strtod(s.c_str(), nullptr);
  return s;
}

bool LoadTestFile(const std::string& path, TestFile* file, Diagnostics* diags) {
  *file = TestFile();
  file->path = path;
  std::error_code ec;
  std::ifstream in(path, std::ios::binary);
  if (std::filesystem::is_directory(path, ec) || !in) {
    diags->Reset(path, "");
    diags->Error(
        SourceLoc{}, 0,
        std::string("cannot read the test file: ") +
            (std::filesystem::is_directory(path, ec) ? "is a directory" : std::strerror(errno)));
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  file->text = ss.str();
  diags->Reset(path, file->text);
  file->root = std::make_shared<YNode>();
  if (!ParseYaml(file->text, file->root.get(), diags)) return false;
  if (file->root->is_null()) {
    diags->Error(SourceLoc{}, 0, "the test file is empty: it needs 'pipeline:' and 'cases:'");
    return false;
  }
  Reader(file, diags).Run(*file->root);
  return !diags->has_errors();
}

}  // namespace onceflow::cli

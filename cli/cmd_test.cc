// `onceflow test TESTS.yaml` (SPEC §3 "Pipeline tests"): runs each case of a test file —
// the pipeline with some sources replaced by the case's records, under the case's
// semantics, mode and faults — and compares the records its sinks wrote with the expected
// ones (DiffExpected in sink_diff.h).
//
// Every check that needs no run happens first, for every case, so a bad test file or a
// case the pipeline refuses exits 2 before anything runs. Each case then runs in a
// temporary folder of its own, as a child process of this binary (`onceflow run`):
// chaos crashes SIGKILL the process, and the same child-process path for every case means
// a case behaves the same with or without crash points. The case's settings reach the
// child as command-line overrides applied to the pipeline tree (--set), never by editing
// the pipeline's text:
//   - a replaced source becomes `{source: file, format: jsonl, path: CASE/input-ID.jsonl}`
//     (the whole node is replaced, so none of its own options stay), the file holding
//     the case's records in order;
//   - file and sqlite sinks, dead-letter files and the state file go into the case
//     folder; stdout sinks become file sinks there (same format), so they can be read.
//
// Output: one line per case on stdout (`ok` / `FAIL` / `ERROR`, name, time), a diff per
// sink for a failure, and a summary line; with --json one document instead. Exit 0 when
// every case passed, 4 when one failed, 1 when one could not run, 2 for a bad test file.
//
// Threading: main thread only.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "cli/child_run.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sink_diff.h"
#include "cli/test_file.h"
#include "nlohmann/json.hpp"
#include "runtime/chaos/chaos.h"

namespace onceflow::cli {

namespace {

namespace fs = std::filesystem;

struct TestArgs {
  std::string file;
  bool json = false;
  bool keep = false;
  int max_restarts = 200;
  std::string timeout;  // --timeout: for each case without its own `timeout:`
  int64_t timeout_ms = 0;
};

constexpr size_t kMaxShown = 20;  // records shown per category of a sink's diff

// A case ready to run: its folder, its overrides and the sinks to read back.
struct PreparedCase {
  const TestCase* tc = nullptr;
  std::string dir;
  std::vector<std::string> sets;  // case `set:`, source replacements, output redirects
  OutputPlan plan;
};

struct SinkResult {
  const CaseRecords* expect = nullptr;
  std::vector<std::string> key;
  ExpectDiff diff;
};

struct CaseResult {
  enum class Status { kOk, kFail, kError };
  Status status = Status::kOk;
  std::string message;  // fail (not a sink diff) / error
  double seconds = 0;
  int runs = 0;
  int restarts = 0;
  int recoveries = 0;  // in-process recoveries of the last process (its summary)
  int exit_code = 0;
  std::vector<SinkResult> sinks;
};

const char* StatusName(CaseResult::Status s) {
  switch (s) {
    case CaseResult::Status::kOk:
      return "ok";
    case CaseResult::Status::kFail:
      return "fail";
    case CaseResult::Status::kError:
      return "error";
  }
  return "?";
}

std::vector<std::string> NodesOfKind(const PipelineSpec& spec, NodeKind kind) {
  std::vector<std::string> ids;
  for (const NodeSpec& n : spec.nodes) {
    if (n.kind == kind) ids.push_back(n.id);
  }
  return ids;
}

const char* WithArticle(NodeKind kind) {
  switch (kind) {
    case NodeKind::kSource:
      return "a source";
    case NodeKind::kOperator:
      return "an operator";
    case NodeKind::kSink:
      return "a sink";
  }
  return "?";
}

// Reports every id of `records` (written under `key`: inputs or expect) that is not a node
// of `kind` in the pipeline.
void CheckIds(const std::vector<CaseRecords>& records, NodeKind kind, const char* key,
              const std::string& where, const PipelineSpec& spec, Diagnostics* diags) {
  const std::vector<std::string> ids = NodesOfKind(spec, kind);
  for (const CaseRecords& cr : records) {
    const NodeSpec* n = spec.FindNode(cr.node);
    if (n == nullptr) {
      diags->Error(*cr.at, where + "no node '" + cr.node + "' in " + spec.file,
                   DidYouMeanNote(cr.node, ids));
    } else if (n->kind != kind) {
      diags->Error(*cr.at, where + "'" + cr.node + "' is " + WithArticle(n->kind) + ", not " +
                               WithArticle(kind) + ": only " + NodeKindName(kind) + "s take '" +
                               key + "'");
    }
  }
}

// The checks of a case that need the pipeline, reported at the test file's positions.
void CheckCase(const TestCase& tc, const PipelineSpec& spec, Diagnostics* diags) {
  const std::string where = "case '" + tc.name + "': ";
  static const std::vector<std::string> kSemantics = {"at-most-once", "at-least-once",
                                                      "effectively-once", "exactly-once"};
  static const std::vector<std::string> kModes = {"snapshot", "dedup"};
  bool effectively_once = spec.semantics == Semantics::kEffectivelyOnce;
  if (tc.semantics_at != nullptr && !tc.semantics.empty()) {
    if (std::find(kSemantics.begin(), kSemantics.end(), tc.semantics) == kSemantics.end()) {
      diags->Error(*tc.semantics_at,
                   where +
                       "'semantics' must be at-most-once, at-least-once or "
                       "effectively-once, got '" +
                       tc.semantics + "'",
                   DidYouMeanNote(tc.semantics, kSemantics));
    }
    effectively_once = tc.semantics == "effectively-once" || tc.semantics == "exactly-once";
  }
  if (tc.mode_at != nullptr && !tc.mode.empty()) {
    if (std::find(kModes.begin(), kModes.end(), tc.mode) == kModes.end()) {
      diags->Error(*tc.mode_at, where + "'mode' must be snapshot or dedup, got '" + tc.mode + "'",
                   DidYouMeanNote(tc.mode, kModes));
    } else if (!effectively_once) {
      diags->Error(*tc.mode_at, where + "'mode' applies to effectively-once only");
    }
  }
  if (tc.chaos_at != nullptr) {
    ChaosSpec chaos;
    Status st = ChaosSpec::Parse(tc.chaos, &chaos);
    if (st.ok()) st = CheckChaosNodes(spec, chaos);
    if (!st.ok()) diags->Error(*tc.chaos_at, where + "'chaos': " + st.message());
  }
  CheckIds(tc.inputs, NodeKind::kSource, "inputs", where, spec, diags);
  CheckIds(tc.expect, NodeKind::kSink, "expect", where, spec, diags);
  // What a case's run can read back is what PlanOutputs plans to.
  const OutputPlan plan = PlanOutputs(spec, /*capture_stdout=*/true);
  for (const CaseRecords& ex : tc.expect) {
    const NodeSpec* n = spec.FindNode(ex.node);
    const bool readable = std::any_of(plan.sinks.begin(), plan.sinks.end(),
                                      [&](const ReadBackSink& s) { return s.id == ex.node; });
    if (n != nullptr && n->kind == NodeKind::kSink && !readable) {
      diags->Error(*ex.at, where + "sink '" + ex.node + "' (" + n->type +
                               ") writes nothing that can be read back; expect file, "
                               "sqlite or stdout sinks");
    }
  }
}

// Writes the case's input files and works out its overrides; checks the pipeline with
// them (as the child will load it). False, with the pipeline's diagnostics printed, when
// the pipeline refuses them.
bool Prepare(const TestCase& tc, const TestFile& file, const Registry& registry, PreparedCase* pc) {
  pc->tc = &tc;
  pc->sets = tc.sets;
  for (const CaseRecords& in : tc.inputs) {
    const std::string path = pc->dir + "/input-" + in.node + ".jsonl";
    std::ofstream out(path, std::ios::binary);
    for (const nlohmann::json& r : in.records) out << r.dump() << "\n";
    if (!out.flush()) {
      std::cerr << "onceflow: error: cannot write '" << path << "'\n";
      return false;
    }
    // The node's map as a YAML flow map (a JSON string is a YAML double-quoted scalar).
    pc->sets.push_back("nodes." + in.node +
                       "={source: file, format: jsonl, path: " + nlohmann::json(path).dump() + "}");
  }
  LoadOptions opts;
  opts.sets = pc->sets;
  opts.semantics = tc.semantics;
  opts.mode = tc.mode;
  PipelineSpec spec;
  Diagnostics diags;
  if (!LoadPipeline(file.pipeline, opts, registry, &spec, &diags)) {
    std::cerr << "onceflow: error: case '" << tc.name
              << "': the pipeline refuses this case's settings:\n";
    diags.Render(std::cerr);
    return false;
  }
  pc->plan = PlanOutputs(spec, /*capture_stdout=*/true);
  for (const std::string& r : pc->plan.redirects) pc->sets.push_back(ExpandDir(r, pc->dir));
  return true;
}

// The command of the n-th process of a case (each writes its own summary).
std::vector<std::string> RunCommand(const PreparedCase& pc, const TestFile& file, int n) {
  const TestCase& tc = *pc.tc;
  std::vector<std::string> cmd = {SelfExe(),     "--quiet", "run",
                                  file.pipeline, "--state", pc.dir + "/state.db"};
  if (!tc.semantics.empty()) cmd.insert(cmd.end(), {"--semantics", tc.semantics});
  if (!tc.mode.empty()) cmd.insert(cmd.end(), {"--mode", tc.mode});
  for (const std::string& s : pc.sets) cmd.insert(cmd.end(), {"--set", s});
  if (!tc.chaos.empty()) cmd.insert(cmd.end(), {"--chaos", tc.chaos});
  cmd.insert(cmd.end(), {"--summary", pc.dir + "/summary-" + std::to_string(n) + ".json"});
  return cmd;
}

CaseResult RunCase(const PreparedCase& pc, const TestFile& file, const TestArgs& args) {
  const TestCase& tc = *pc.tc;
  CaseResult r;
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&]() -> CaseResult {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };
  const RestartedRun run =
      RunRestarting([&](int n) { return RunCommand(pc, file, n); }, pc.dir, args.max_restarts,
                    tc.timeout_ms > 0 ? tc.timeout_ms : args.timeout_ms);
  r.runs = run.runs;
  r.restarts = run.restarts;
  r.exit_code = run.exit_code;
  if (run.outcome != RestartedRun::Outcome::kExited) {
    r.status = CaseResult::Status::kError;
    r.message = run.error;
    return finish();
  }
  // A process killed after its final checkpoint leaves no summary: its restart finds the
  // run completed and exits at once, without one either.
  const nlohmann::json summary = nlohmann::json::parse(
      ReadWholeFile(pc.dir + "/summary-" + std::to_string(run.runs) + ".json"), nullptr, false);
  if (summary.is_object() && summary.contains("recoveries")) {
    r.recoveries = summary["recoveries"].value("count", 0);
  }
  const int want = tc.expect_exit.value_or(0);
  if (run.exit_code != want) {
    r.status = tc.expect_exit ? CaseResult::Status::kFail : CaseResult::Status::kError;
    r.message = "the run exited with status " + std::to_string(run.exit_code) +
                (tc.expect_exit ? ", expected " + std::to_string(want) : "") + ":\n" +
                Tail(run.last_stderr, 8);
    return finish();
  }
  if (!tc.expect_error.empty() &&
      ReadWholeFile(run.last_stderr).find(tc.expect_error) == std::string::npos) {
    r.status = CaseResult::Status::kFail;
    r.message = "stderr does not contain \"" + tc.expect_error + "\":\n" + Tail(run.last_stderr, 8);
    return finish();
  }
  for (const CaseRecords& ex : tc.expect) {
    const auto it = std::find_if(pc.plan.sinks.begin(), pc.plan.sinks.end(),
                                 [&](const ReadBackSink& s) { return s.id == ex.node; });
    // CheckCase allowed only readable sinks, and PlanOutputs reads every one of them.
    if (it == pc.plan.sinks.end()) continue;
    SinkOutput out = it->output;
    out.path = pc.dir + "/" + it->output.path;
    Records written;
    const Status st = ReadSinkRecords(out, &written);
    if (!st.ok()) {
      r.status = CaseResult::Status::kError;
      r.message = "sink '" + ex.node + "': " + st.message();
      return finish();
    }
    SinkResult sr;
    sr.expect = &ex;
    sr.key = ex.key.empty() ? it->key : ex.key;
    sr.diff = DiffExpected(ex.records, written, sr.key, ex.ordered);
    if (!sr.diff.ok()) r.status = CaseResult::Status::kFail;
    r.sinks.push_back(std::move(sr));
  }
  return finish();
}

// ", 1 restart after a crash, 2 in-process recoveries" (what the faults did), or "".
std::string Recoveries(const CaseResult& r) {
  std::string out;
  if (r.restarts) {
    out += ", " + std::to_string(r.restarts) +
           (r.restarts == 1 ? " restart after a crash" : " restarts after crashes");
  }
  if (r.recoveries) {
    out += ", " + std::to_string(r.recoveries) +
           (r.recoveries == 1 ? " in-process recovery" : " in-process recoveries");
  }
  return out;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", s);
  return buf;
}

// The fields of `a` and `b` that differ: "count 3 -> 2, total (none) -> 5".
std::string ChangedFields(const nlohmann::json& a, const nlohmann::json& b) {
  std::set<std::string> fields;
  for (auto it = a.begin(); it != a.end(); ++it) fields.insert(it.key());
  for (auto it = b.begin(); it != b.end(); ++it) fields.insert(it.key());
  std::string out;
  for (const std::string& f : fields) {
    const bool ia = a.contains(f), ib = b.contains(f);
    if (ia && ib && EquivalentValues(a[f], b[f])) continue;
    if (!out.empty()) out += ", ";
    out += f + " " + (ia ? a[f].dump() : "(none)") + " -> " + (ib ? b[f].dump() : "(none)");
  }
  return out;
}

// A record as one line of JSON with its key fields first (then the others by name), so
// the records of a diff line up by key.
std::string Show(const nlohmann::json& r, const std::vector<std::string>& key,
                 bool key_only = false) {
  if (!r.is_object()) return r.dump();
  std::string out = "{";
  auto field = [&out](const std::string& name, const nlohmann::json& v) {
    if (out.size() > 1) out += ",";
    out += nlohmann::json(name).dump() + ":" + v.dump();
  };
  for (const std::string& f : key) {
    if (r.contains(f)) field(f, r[f]);
  }
  if (!key_only) {
    for (auto it = r.begin(); it != r.end(); ++it) {
      if (std::find(key.begin(), key.end(), it.key()) == key.end()) field(it.key(), it.value());
    }
  }
  return out + "}";
}

void PrintSink(const SinkResult& s, std::ostream& os) {
  const ExpectDiff& d = s.diff;
  os << "  sink '" << s.expect->node << "': " << d.expected_count << " records expected, "
     << d.written_count << " written\n";
  auto records = [&os, &s](const char* title, const char* mark, const Records& rs) {
    if (rs.empty()) return;
    os << "    " << title << " (" << rs.size() << "):\n";
    for (size_t i = 0; i < rs.size() && i < kMaxShown; ++i) {
      os << "      " << mark << " " << Show(rs[i], s.key) << "\n";
    }
    if (rs.size() > kMaxShown) os << "      ... and " << rs.size() - kMaxShown << " more\n";
  };
  records("missing", "-", d.missing);
  records("unexpected", "+", d.unexpected);
  if (!d.changed.empty()) {
    os << "    changed (" << d.changed.size() << "):\n";
    for (size_t i = 0; i < d.changed.size() && i < kMaxShown; ++i) {
      const auto& [want, got] = d.changed[i];
      os << "      ~ " << Show(want, s.key, /*key_only=*/true) << ": " << ChangedFields(want, got)
         << "\n";
    }
    if (d.changed.size() > kMaxShown) {
      os << "      ... and " << d.changed.size() - kMaxShown << " more\n";
    }
  }
  if (d.order_differs_at >= 0) {
    os << "    same records in another order; first difference at record " << d.order_differs_at + 1
       << " (ordered: true)\n";
  }
}

nlohmann::json CaseJson(const TestCase& tc, const CaseResult& r) {
  nlohmann::json j = {{"name", tc.name},          {"status", StatusName(r.status)},
                      {"seconds", r.seconds},     {"runs", r.runs},
                      {"restarts", r.restarts},   {"recoveries", r.recoveries},
                      {"exit_code", r.exit_code}, {"sinks", nlohmann::json::array()}};
  if (!r.message.empty()) j["message"] = r.message;
  for (const SinkResult& s : r.sinks) {
    nlohmann::json changed = nlohmann::json::array();
    for (const auto& [want, got] : s.diff.changed) {
      changed.push_back({{"expected", want}, {"written", got}});
    }
    j["sinks"].push_back({{"sink", s.expect->node},
                          {"ok", s.diff.ok()},
                          {"expected", s.diff.expected_count},
                          {"written", s.diff.written_count},
                          {"key", s.key},
                          {"missing", s.diff.missing},
                          {"unexpected", s.diff.unexpected},
                          {"changed", changed},
                          {"order_differs_at", s.diff.order_differs_at < 0
                                                   ? nlohmann::json(nullptr)
                                                   : nlohmann::json(s.diff.order_differs_at)}});
  }
  return j;
}

int Test(TestArgs& args, const Registry& registry, bool quiet) {
  if (!args.timeout.empty() &&
      (!ParseDuration(args.timeout, &args.timeout_ms) || args.timeout_ms < 1)) {
    std::cerr << "onceflow: error: --timeout: '" << args.timeout
              << "' is not a duration such as 30s or 2m\n";
    return kExitInvalid;
  }
  TestFile file;
  Diagnostics diags;
  const bool file_ok = LoadTestFile(args.file, &file, &diags);
  diags.Render(std::cerr);
  if (!file_ok) return kExitInvalid;
  PipelineSpec spec;
  if (!LoadAndReport(file.pipeline, LoadOptions{}, registry, &spec)) return kExitInvalid;
  Diagnostics case_diags(file.path, file.text);
  for (const TestCase& tc : file.cases) CheckCase(tc, spec, &case_diags);
  case_diags.Render(std::cerr);
  if (case_diags.has_errors()) return kExitInvalid;

  std::string root, error;
  if (!MakeTempFolder("test", &root, &error)) {
    std::cerr << "onceflow: error: " << error << "\n";
    return kExitFailed;
  }
  auto cleanup = [&] {
    if (args.keep) {
      std::cerr << "onceflow: note: case folders kept in " << root << "\n";
    } else {
      std::error_code ec;
      fs::remove_all(root, ec);
    }
  };
  std::vector<PreparedCase> prepared(file.cases.size());
  bool prepared_ok = true;
  for (size_t i = 0; i < file.cases.size(); ++i) {
    std::error_code ec;
    prepared[i].dir = fs::absolute(root + "/case-" + std::to_string(i + 1), ec).string();
    fs::create_directories(prepared[i].dir, ec);
    if (!Prepare(file.cases[i], file, registry, &prepared[i])) prepared_ok = false;
  }
  if (!prepared_ok) {
    cleanup();
    return kExitInvalid;
  }

  InterruptChildrenOnSignal();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<CaseResult> results;
  int passed = 0, failed = 0, errors = 0;
  for (const PreparedCase& pc : prepared) {
    CaseResult r = RunCase(pc, file, args);
    if (const int sig = Interrupted()) {
      cleanup();
      return 128 + sig;
    }
    if (r.status == CaseResult::Status::kOk) ++passed;
    if (r.status == CaseResult::Status::kFail) ++failed;
    if (r.status == CaseResult::Status::kError) ++errors;
    if (!args.json && !(quiet && r.status == CaseResult::Status::kOk)) {
      static const char* kLabel[] = {"ok   ", "FAIL ", "ERROR"};
      std::cout << kLabel[static_cast<int>(r.status)] << " " << pc.tc->name << " ("
                << Seconds(r.seconds) << Recoveries(r) << ")\n";
      if (!r.message.empty())
        std::cout << "  " << r.message << (r.message.back() == '\n' ? "" : "\n");
      for (const SinkResult& s : r.sinks) {
        if (!s.diff.ok()) PrintSink(s, std::cout);
      }
      std::cout.flush();
    }
    results.push_back(std::move(r));
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (args.json) {
    nlohmann::json out = {{"file", file.path},
                          {"pipeline", file.pipeline},
                          {"passed", passed},
                          {"failed", failed},
                          {"errors", errors},
                          {"seconds", total},
                          {"cases", nlohmann::json::array()}};
    for (size_t i = 0; i < results.size(); ++i) {
      out["cases"].push_back(CaseJson(file.cases[i], results[i]));
    }
    std::cout << DumpJson(out, 2) << std::endl;
  } else {
    std::cout << file.path << ": " << results.size()
              << (results.size() == 1 ? " case: " : " cases: ") << passed << " passed, " << failed
              << " failed"
              << (errors ? ", " + std::to_string(errors) + (errors == 1 ? " error" : " errors")
                         : "")
              << " (" << Seconds(total) << ")\n";
  }
  cleanup();
  if (errors) return kExitFailed;
  return failed ? kExitMismatch : kExitOk;
}

}  // namespace

Command RegisterTest(CLI::App& app, const Registry& registry) {
  auto args = std::make_shared<TestArgs>();
  CLI::App* cmd = app.add_subcommand(
      "test", "pipeline tests: run cases (inputs -> expected sink records) from a test file");
  cmd->add_option("TESTS", args->file, "test file (YAML: pipeline:, cases:)")->required();
  cmd->add_flag("--json", args->json, "print the results as one JSON document");
  cmd->add_flag("--keep", args->keep, "keep each case's folder (state, outputs, logs)");
  cmd->add_option("--max-restarts", args->max_restarts,
                  "give a case up after this many crashes (default 200)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--timeout", args->timeout,
                  "kill a case still running after this long, e.g. 30s, 2m (default: none; "
                  "a case's own timeout: wins)");
  CLI::App* parent = &app;
  return [args, &registry, parent]() -> int {
    return Test(*args, registry, parent->get_option("--quiet")->count() > 0);
  };
}

}  // namespace onceflow::cli

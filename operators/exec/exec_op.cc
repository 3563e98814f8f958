// The `exec` operator (SPEC §5): one child process per instance, fed one JSON record per
// line on its stdin; it answers each line with exactly one line on stdout, a JSON array of
// the records it emits for that input ([] for none).
//
// Per input batch the whole batch is written and all its answers read in one
// ChildProcess::Exchange (which polls both ways, so neither side can block the other),
// so the cost of a round trip is paid once per batch, not per record.
//
// Failures: a child that exits, stops answering for `timeout`, prints a line that is not
// a JSON array of objects, or prints more lines than it was given records fails the
// operator. The child is killed, and the failure is transient — the guarantee recovers
// (restores the last checkpoint or commit and replays, reopening this operator, whose
// next batch starts a new child) — provided the child had answered at least one record
// since it started: a child that cannot answer its first record (a missing script, a
// syntax error) would fail the same way after every restart, so that ends the run.
// The child's stderr goes to onceflow's log line by line, prefixed with the node id.
//
// The child runs in the pipeline file's folder, so relative paths in `command` are
// relative to the pipeline file. It must flush stdout after each answer (Python:
// print(..., flush=True)): a block-buffered answer never arrives and times out.
//
// Threading: one instance per task thread; the child belongs to that instance.
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "operators/common/option_defs.h"
#include "operators/defs.h"
#include "operators/exec/child_process.h"
#include "runtime/spec/validate.h"

namespace onceflow::ops {

namespace {

bool IsExecutable(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// argv[0] as the child is started: a name without '/' is searched on PATH (by
// posix_spawnp); a path is resolved against the pipeline file's folder.
std::string ResolveProgram(const std::string& program, const std::string& dir) {
  if (program.find('/') == std::string::npos) return program;
  return ResolvePath(program, dir, false);
}

// Whether `program` (resolved) can be started: an executable file, or a name on PATH.
bool ProgramExists(const std::string& program) {
  if (program.find('/') != std::string::npos) return IsExecutable(program);
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  for (;;) {
    const size_t colon = p.find(':', start);
    std::string d = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    if (d.empty()) d = ".";
    if (IsExecutable(d + "/" + program)) return true;
    if (colon == std::string::npos) return false;
    start = colon + 1;
  }
}

// Parses one answer line, a JSON array of objects, appending its records to *out.
bool ParseAnswer(std::string_view line, JsonParser& parser, RecordBatch* out, std::string* error) {
  auto skip_ws = [&](size_t i) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    return i;
  };
  size_t i = skip_ws(0);
  if (i >= line.size() || line[i] != '[') {
    *error = "not a JSON array";
    return false;
  }
  i = skip_ws(i + 1);
  if (i < line.size() && line[i] == ']') {
    if (skip_ws(i + 1) == line.size()) return true;
    *error = "text after the array";
    return false;
  }
  for (;;) {
    if (i >= line.size() || line[i] != '{') {
      *error = "an element is not a JSON object";
      return false;
    }
    // The element's extent: matching braces outside strings; the parser checks the rest.
    const size_t start = i;
    int depth = 0;
    bool in_str = false;
    for (; i < line.size(); ++i) {
      const char ch = line[i];
      if (in_str) {
        if (ch == '\\') {
          ++i;
        } else if (ch == '"') {
          in_str = false;
        }
      } else if (ch == '"') {
        in_str = true;
      } else if (ch == '{' || ch == '[') {
        ++depth;
      } else if ((ch == '}' || ch == ']') && --depth == 0) {
        ++i;
        break;
      }
    }
    if (depth != 0) {
      *error = "unterminated element";
      return false;
    }
    Record& r = out->emplace_back();
    if (!parser.ParseObject(line.substr(start, i - start), &r, error)) {
      out->pop_back();
      return false;
    }
    i = skip_ws(i);
    if (i < line.size() && line[i] == ',') {
      i = skip_ws(i + 1);
      continue;
    }
    if (i < line.size() && line[i] == ']' && skip_ws(i + 1) == line.size()) return true;
    *error = "expected ',' or ']' after an element";
    return false;
  }
}

class ExecOperator : public Operator {
 public:
  explicit ExecOperator(const NodeSpec& spec)
      : id_(spec.id),
        argv_(spec.options.GetList("command")),
        dir_(spec.dir),
        timeout_ms_(static_cast<int>(spec.options.GetDurationMs("timeout", 30000))) {
    if (!argv_.empty()) argv_[0] = ResolveProgram(argv_[0], dir_);
    for (size_t i = 0; i < argv_.size(); ++i) command_text_ += (i ? " " : "") + argv_[i];
  }
  ~ExecOperator() override { child_.Stop(0); }

  Status Open(NodeContext& ctx) override {
    child_.Stop(0);
    return Status::Ok();  // the child starts with the first batch
  }

  Status Process(int port, RecordBatch& in, Emitter& out) override {
    if (in.empty()) return Status::Ok();
    if (!child_.running()) {
      Status st = child_.Start(argv_, dir_);
      if (!st.ok()) return Status::Runtime("exec '" + command_text_ + "': " + st.message());
      answered_ = 0;
      spdlog::debug("node '{}': started '{}' (pid {})", id_, command_text_, child_.pid());
    }
    input_.clear();
    for (const Record& rec : in) {
      rec.AppendJson(&input_);
      input_ += '\n';
    }
    answers_.clear();
    Status st = child_.Exchange(input_, in.size(), &answers_, timeout_ms_, Forward());
    if (!st.ok()) return Failed(st.message());
    if (answers_.size() != in.size()) {
      return Failed("the child (pid " + std::to_string(child_.pid()) + ") printed " +
                    std::to_string(answers_.size()) + " lines for " + std::to_string(in.size()) +
                    " records (exactly one JSON array per line)");
    }
    std::string error;
    for (size_t i = 0; i < in.size(); ++i) {
      const size_t mark = out.batch()->size();
      if (!ParseAnswer(answers_[i], parser_, out.batch(), &error)) {
        out.batch()->resize(mark);
        return Failed("the child (pid " + std::to_string(child_.pid()) + ") answered record " +
                      in[i].ToJson().substr(0, 200) + " with '" + answers_[i].substr(0, 200) +
                      "': " + error + " (expected one JSON array of objects per line)");
      }
      for (size_t k = mark; k < out.batch()->size(); ++k) (*out.batch())[k].origin = in[i].origin;
      ++answered_;
    }
    return Status::Ok();
  }

  Status Close() override {
    child_.Stop(1000, Forward());
    return Status::Ok();
  }

 private:
  std::function<void(const std::string&)> Forward() {
    return [this](const std::string& line) { spdlog::info("node '{}' (stderr): {}", id_, line); };
  }

  // Kills the child; see the top of the file for transient vs final.
  Status Failed(const std::string& what) {
    child_.Stop(0, Forward());
    std::string msg = "exec '" + command_text_ + "': " + what;
    if (answered_ == 0) {
      return Status::Runtime(msg + " (not restarted: it failed before answering any record)");
    }
    return Status::Transient(msg + " (the child is restarted on recovery)");
  }

  const std::string id_;
  std::vector<std::string> argv_;
  const std::string dir_;
  const int timeout_ms_;
  std::string command_text_;
  ChildProcess child_;
  uint64_t answered_ = 0;  // answers of the current child
  std::string input_;
  std::vector<std::string> answers_;
  JsonParser parser_;
};

}  // namespace

NodeTypeDef ExecDef() {
  NodeTypeDef d;
  d.kind = NodeKind::kOperator;
  d.type = "exec";
  d.summary = "pipe records through a child process: one JSON line in, one JSON array line out";
  d.options = {
      RequiredOption("command", OptionType::kStringList,
                     "program and arguments, e.g. [python3, op.py]; it runs in the pipeline "
                     "file's folder, so relative paths are relative to the pipeline file"),
      Option("timeout", OptionType::kDuration, "30s",
             "how long the child may take to answer before it counts as failed"),
  };
  d.check = [](const NodeSpec& spec, Diagnostics& diags) {
    const YNode* at = spec.options.Raw("command");
    const std::vector<std::string> argv = spec.options.GetList("command");
    if (argv.empty() || argv[0].empty()) {
      diags.Error(*at, "node '" + spec.id + "': command is empty");
      return;
    }
    const YNode* prog_at = at->is_sequence() && !at->items.empty() ? &at->items[0] : at;
    const std::string program = ResolveProgram(argv[0], spec.dir);
    if (!ProgramExists(program)) {
      diags.Error(*prog_at, "node '" + spec.id + "': program '" + argv[0] + "' " +
                                (program.find('/') == std::string::npos
                                     ? "not found on PATH"
                                     : "(" + program + ") does not exist or is not executable"));
    }
    if (spec.options.GetDurationMs("timeout", 30000) <= 0) {
      diags.Error(*spec.options.Raw("timeout"), "node '" + spec.id + "': timeout must be positive");
    }
  };
  d.make_operator = [](const NodeSpec& spec) { return std::make_unique<ExecOperator>(spec); };
  return d;
}

}  // namespace onceflow::ops

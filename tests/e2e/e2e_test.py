#!/usr/bin/env python3
"""End-to-end tests of the onceflow binary: examples against expected outputs, the CLI
contract (exit codes, --json summary, stdout/stderr separation), signals and on_error.

Usage: e2e_test.py ONCEFLOW_BINARY REPO_ROOT [TEST_NAME_SUBSTRING]
Prints one line per test and a final "N passed, N failed" line; exits 1 on any failure.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tmp, canon, check, expect_rc, read_jsonl, run, test, write  # noqa: E402
import harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
ONLY = sys.argv[3] if len(sys.argv) > 3 else ""
PIPES = os.path.join(ROOT, "pipelines")
harness.setup(BIN, ROOT)


# ---------------------------------------------------------------- examples

@test
def example_wordcount():
    with Tmp() as d:
        out = os.path.join(d, "wc.jsonl")
        p = run(["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}", "--state", os.path.join(d, "s.db"), "-q"])
        expect_rc(p, 0)
        got = read_jsonl(out)
        want = read_jsonl(os.path.join(PIPES, "expected/wordcount.jsonl"))
        check(canon(got) == canon(want), f"wordcount output differs: {len(got)} vs {len(want)} records")
        check(p.stdout == "", "stdout must be empty without stdout sinks")


@test
def example_orders():
    with Tmp() as d:
        db = os.path.join(d, "orders.db")
        p = run(["run", "pipelines/orders.yaml", "--set", f"nodes.db.path={db}", "--state", os.path.join(d, "s.db"), "-q"])
        expect_rc(p, 0)
        con = sqlite3.connect(db)
        rows = con.execute("SELECT customer, sum_amount, count FROM revenue ORDER BY customer").fetchall()
        got = "".join("%s\t%.6f\t%d\n" % r for r in rows)
        with open(os.path.join(PIPES, "expected/orders.tsv")) as f:
            want = f.read()
        check(got == want, f"orders table differs:\n{got[:400]}\nvs\n{want[:400]}")


@test
def example_fanin():
    with Tmp() as d:
        out = os.path.join(d, "fanin.jsonl")
        p = run(["run", "pipelines/fanin.yaml", "--set", f"nodes.out.path={out}", "--state", os.path.join(d, "s.db"), "-q"])
        expect_rc(p, 0)
        got = read_jsonl(out)
        want = read_jsonl(os.path.join(PIPES, "expected/fanin.jsonl"))
        check(canon(got) == canon(want), f"fanin output differs: {len(got)} vs {len(want)} records")


@test
def example_windows_and_joins():
    # Event-time examples: the expected files were checked against an independent
    # computation of the windows and pairs (tests/e2e/windows_test.py recomputes them).
    for name in ("windows", "joins"):
        with Tmp() as d:
            out = os.path.join(d, name + ".jsonl")
            p = run(["run", f"pipelines/{name}.yaml", "--set", f"nodes.out.path={out}",
                     "--state", os.path.join(d, "s.db"), "-q"])
            expect_rc(p, 0)
            got = read_jsonl(out)
            want = read_jsonl(os.path.join(PIPES, f"expected/{name}.jsonl"))
            check(canon(got) == canon(want), f"{name} output differs: {len(got)} vs {len(want)} records")


@test
def examples_validate():
    for name in ("wordcount", "orders", "fanin", "windows", "joins"):
        p = run(["validate", f"pipelines/{name}.yaml"])
        expect_rc(p, 0)
        check(f"pipeline '{name}'" in p.stdout, "plan names the pipeline")
        check("sinks:" in p.stdout, "plan lists sinks with their guarantee")
        pj = run(["validate", f"pipelines/{name}.yaml", "--json"])
        expect_rc(pj, 0)
        j = json.loads(pj.stdout)
        check(j["pipeline"] == name and j["tasks"] >= 1 and j["edges"], "validate --json plan")


# ---------------------------------------------------------------- CLI contract

@test
def validate_plan_shows_chains_and_partitions():
    p = run(["validate", "pipelines/wordcount.yaml"])
    expect_rc(p, 0)
    check("lines (source file) -> words (op split)" in p.stdout, "source and split are chained:\n" + p.stdout)
    check("words -> counts: hash(word), 2 channels" in p.stdout, "hash edge:\n" + p.stdout)
    check("counts -> out: round_robin, 2 channels" in p.stdout, "merge edge:\n" + p.stdout)


@test
def graph_formats():
    for fmt, marker in (("text", "->"), ("dot", "digraph"), ("mermaid", "flowchart LR")):
        p = run(["graph", "pipelines/fanin.yaml", "--format", fmt])
        expect_rc(p, 0)
        check(marker in p.stdout, f"graph {fmt}: {p.stdout[:200]}")
    p = run(["graph", "pipelines/fanin.yaml", "--format", "svg"])
    expect_rc(p, 2)


@test
def run_json_summary():
    with Tmp() as d:
        out = os.path.join(d, "wc.jsonl")
        p = run(["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}", "--state", os.path.join(d, "s.db"), "--json", "-q"])
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        for k in ("pipeline", "semantics", "mode", "exit", "wall_s", "events_per_s", "peak_rss_bytes",
                  "sources", "sinks", "nodes", "checkpoints", "recoveries"):
            check(k in s, f"summary lacks {k}")
        check(s["exit"] == "completed", s["exit"])
        check(s["semantics"] == "effectively-once" and s["mode"] == "snapshot", s["semantics"])
        check(s["checkpoints"]["count"] >= 1, "a final checkpoint at least")
        lines = sum(1 for _ in open(os.path.join(PIPES, "data/words.txt")))
        check(s["sources"]["lines"]["events"] == lines, f"events {s['sources']['lines']} vs {lines} lines")
        words = sum(len(l.split()) for l in open(os.path.join(PIPES, "data/words.txt")))
        check(s["nodes"]["words"]["emitted"] == words, f"split emitted {s['nodes']['words']}")
        check(s["nodes"]["counts"]["processed"] == words, "count processed every word")
        check(s["sinks"]["out"]["records"] == len(read_jsonl(out)), "sink records")
        summ = os.path.join(d, "summary.json")
        p = run(["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}", "--state", os.path.join(d, "s.db"), "--fresh", "--summary", summ, "-q"])
        expect_rc(p, 0)
        check(json.load(open(summ))["exit"] == "completed", "--summary file")


@test
def json_refused_with_stdout_sink():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, count: 3}
  out: {sink: stdout, input: g}
""")
        p = run(["run", y, "--json"])
        expect_rc(p, 2)
        check("--summary" in p.stderr, p.stderr)
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        check(canon([json.loads(l) for l in p.stdout.splitlines()]) == canon([{"n": 0}, {"n": 1}, {"n": 2}]),
              "stdout sink data:\n" + p.stdout)


@test
def max_events_stops_cleanly():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate}
  c: {op: count, input: g, key: n, emit: final}
  out: {sink: file, input: g, path: out.jsonl}
""")
        p = run(["run", y, "--max-events", "5000", "--json", "-q"])
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        check(s["exit"] == "max-events", s["exit"])
        check(s["sources"]["g"]["events"] == 5000, f"exactly 5000 events: {s['sources']}")
        check(len(read_jsonl(os.path.join(d, "out.jsonl"))) == 5000, "sink got 5000")
        check(s["nodes"]["c"]["emitted"] == 0, "emit: final must not fire when stopped early")


@test
def duration_stops_unbounded_source():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, rate: 1000}
  out: {sink: discard, input: g}
""")
        t = time.time()
        p = run(["run", y, "--duration", "700ms", "--json", "-q"])
        expect_rc(p, 0)
        check(time.time() - t < 30, "stopped")
        s = json.loads(p.stdout)
        check(s["exit"] == "duration", s["exit"])
        check(s["sources"]["g"]["events"] > 0, "read something")


@test
def sigterm_and_sigint_stop_cleanly():
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        with Tmp() as d:
            y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, rate: 2000}
  out: {sink: file, input: g, path: out.jsonl}
""")
            proc = subprocess.Popen([BIN, "run", y, "--summary", os.path.join(d, "s.json"), "-q"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.8)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
            check(proc.returncode == code, f"{sig}: exit {proc.returncode}, want {code}; {err}")
            s = json.load(open(os.path.join(d, "s.json")))
            check(s["exit"] == "stopped", s["exit"])
            n = s["sinks"]["out"]["records"]
            got = read_jsonl(os.path.join(d, "out.jsonl"))
            check(len(got) == n and n > 0, f"file holds what the summary says: {len(got)} vs {n}")
            check([r["n"] for r in got] == list(range(n)), "records in order, none torn")


@test
def exactly_once_alias_note_and_resume():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: exactly-once
nodes:
  g: {source: generate, count: 3}
  out: {sink: discard, input: g}
""")
        p = run(["validate", y])
        expect_rc(p, 0)
        check("effectively-once" in p.stderr, "alias note on stderr: " + p.stderr)
        p = run(["run", y, "-q"], cwd=d)
        expect_rc(p, 0)
        check(os.path.exists(os.path.join(d, "p.state.db")), "state file in the working directory")
        p = run(["run", y], cwd=d)
        expect_rc(p, 0)
        check("already completed" in p.stderr, p.stderr)
        # Another mode on the same state file is refused (exit 3), --fresh starts over.
        p = run(["run", y, "--mode", "dedup"], cwd=d)
        expect_rc(p, 3)
        check("mode changed from snapshot to dedup" in p.stderr, p.stderr)
        p = run(["run", y, "--mode", "dedup", "--fresh", "-q"], cwd=d)
        expect_rc(p, 0)
        p = run(["run", y, "--mode", "dedup", "--from-checkpoint", "1"], cwd=d)
        expect_rc(p, 3)  # --fresh deleted the snapshot mode's checkpoints
        check("no complete checkpoint 1" in p.stderr, p.stderr)


@test
def runtime_failure_exit_1_names_node_and_record():
    with Tmp() as d:
        write(os.path.join(d, "in.jsonl"), '{"a": 1}\nnot json\n{"a": 3}\n')
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  src: {source: file, path: in.jsonl, format: jsonl}
  out: {sink: file, input: src, path: out.jsonl}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 1)
        check("src" in p.stderr and ":2" in p.stderr and "not json" in p.stderr,
              "error names node, position and record: " + p.stderr)


@test
def on_error_skip_and_dead_letter():
    with Tmp() as d:
        write(os.path.join(d, "in.jsonl"), '{"a": 1}\nnot json\n{"a": 3}\n{"a": "x"}\n')
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  src: {source: file, path: in.jsonl, format: jsonl, on_error: skip}
  m:
    op: map
    input: src
    lua: "return {b = e.a * 2}"
    on_error: dead_letter
    dead_letter: dead.jsonl
  out: {sink: file, input: m, path: out.jsonl}
""")
        p = run(["run", y, "--json", "-q"])
        expect_rc(p, 0)
        check(canon(read_jsonl(os.path.join(d, "out.jsonl"))) == canon([{"b": 2}, {"b": 6}]), "good records pass")
        s = json.loads(p.stdout)
        check(s["sources"]["src"]["skipped"] == 1, f"malformed line skipped: {s['sources']}")
        dl = read_jsonl(os.path.join(d, "dead.jsonl"))
        check(len(dl) == 1 and dl[0]["node"] == "m" and dl[0]["record"] == {"a": "x"}
              and "error" in dl[0] and "position" in dl[0], f"dead letter: {dl}")


@test
def missing_input_file_is_runtime_error():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  src: {source: file, path: nope.txt}
  out: {sink: discard, input: src}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 1)
        check("nope.txt" in p.stderr, p.stderr)


@test
def bad_yaml_touches_nothing():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  src: {source: generate, count: 3}
  out: {sink: file, input: srcc, path: out.jsonl}
""")
        before = sorted(os.listdir(d))
        p = run(["run", y], cwd=d)
        expect_rc(p, 2)
        check("p.yaml:6:" in p.stderr and "did you mean 'src'" in p.stderr, p.stderr)
        check(sorted(os.listdir(d)) == before, "no file created")


@test
def env_interpolation_and_set():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, count: ${N:-4}}
  out: {sink: file, input: g, path: ${OUT}}
""")
        env = dict(os.environ, OUT="o1.jsonl")
        p = run(["run", y, "-q"], env=env)
        expect_rc(p, 0)
        check(len(read_jsonl(os.path.join(d, "o1.jsonl"))) == 4, "default used")
        env["N"] = "7"
        # --fresh: the first run completed (a plain rerun would say "already completed").
        p = run(["run", y, "-q", "--fresh", "--set", "nodes.g.count=9", "--set", f"nodes.out.path={d}/o2.jsonl"], env=env)
        expect_rc(p, 0)
        check(len(read_jsonl(os.path.join(d, "o2.jsonl"))) == 9, "--set wins")


@test
def parallel_hash_count_matches():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, count: 20000, parallelism: 2, lua: "return {k = n % 97}"}
  c: {op: count, input: g, key: k, parallelism: 3, emit: final}
  out: {sink: file, input: c, path: out.jsonl, format: csv}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        with open(os.path.join(d, "out.jsonl")) as f:
            rows = [l.strip().split(",") for l in f]
        check(rows[0] == ["k", "count"], f"csv header {rows[0]}")
        got = {int(k): int(c) for k, c in rows[1:]}
        want = {}
        for n in range(20000):
            want[n % 97] = want.get(n % 97, 0) + 1
        check(got == want, "counts per key")


@test
def operators_list_and_describe():
    p = run(["operators", "list"])
    expect_rc(p, 0)
    for t in ("file", "generate", "split", "count", "aggregate", "distinct", "map", "filter",
              "flat_map", "sqlite", "stdout", "discard", "files", "stdin"):
        check(t in p.stdout, f"list lacks {t}")
    p = run(["operators", "describe", "count"])
    expect_rc(p, 0)
    check("key" in p.stdout and "required" in p.stdout, p.stdout)
    p = run(["operators", "describe", "cuont"])
    expect_rc(p, 2)
    check("did you mean 'count'" in p.stderr, p.stderr)


@test
def man_pages_lint_and_node_reference_in_sync():
    man = run(["operators", "man"])
    expect_rc(man, 0)
    page = open(os.path.join(ROOT, "man/onceflow-pipeline.5")).read()
    begin, end = ".\\\" BEGIN NODE REFERENCE\n", ".\\\" END NODE REFERENCE\n"
    check(begin in page and end in page, "markers in onceflow-pipeline.5")
    section = page.split(begin)[1].split(end)[0]
    check(section == man.stdout,
          "man/onceflow-pipeline.5 node reference is stale: regenerate with "
          "`onceflow operators man` (see README)")
    for name in ("onceflow.1", "onceflow-pipeline.5"):
        q = subprocess.run(["mandoc", "-Tlint", "-Wwarning", os.path.join(ROOT, "man", name)],
                           capture_output=True, text=True)
        check(q.returncode == 0 and q.stdout.strip() == "", f"mandoc -Tlint {name}:\n{q.stdout}{q.stderr}")


@test
def usage_errors_exit_2():
    expect_rc(run(["run"]), 2)
    expect_rc(run(["frobnicate"]), 2)
    expect_rc(run(["run", "pipelines/wordcount.yaml", "--duration", "soon"]), 2)
    p = run(["--version"])
    expect_rc(p, 0)
    check(p.stdout.startswith("onceflow "), p.stdout)


@test
def stdin_files_and_csv_sources():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  in: {source: stdin, format: jsonl}
  out: {sink: file, input: in, path: out.jsonl}
""")
        p = run(["run", y, "-q"], input='{"a": 1}\n{"a": 2}\n')
        expect_rc(p, 0)
        check(read_jsonl(os.path.join(d, "out.jsonl")) == [{"a": 1}, {"a": 2}], "stdin records in order")
        write(os.path.join(d, "in/b.csv"), 'name,qty\r\n"Smith, J",3\r\nLee,4.5\r\n')
        write(os.path.join(d, "in/a.csv"), "name,qty\nAda,1\n")
        y = write(os.path.join(d, "q.yaml"), """pipeline: q
semantics: at-most-once
state: q.state.db   # beside the pipeline, in the temp dir
nodes:
  in: {source: files, glob: "in/*.csv", format: csv}
  out: {sink: file, input: in, path: out2.jsonl}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        check(read_jsonl(os.path.join(d, "out2.jsonl")) ==
              [{"name": "Ada", "qty": 1}, {"name": "Smith, J", "qty": 3}, {"name": "Lee", "qty": 4.5}],
              "files in name order, csv quoting and numbers: " + open(os.path.join(d, "out2.jsonl")).read())


@test
def sqlite_sink_upserts_and_survives_hostile_values():
    with Tmp() as d:
        write(os.path.join(d, "in.jsonl"),
              '{"k": "a", "v": 1}\n{"k": "x\'); DROP TABLE t;--", "v": 2}\n{"k": "a", "v": 3}\n')
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  in: {source: file, path: in.jsonl, format: jsonl}
  db: {sink: sqlite, input: in, path: out.db, table: t, key: k}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        rows = sqlite3.connect(os.path.join(d, "out.db")).execute("SELECT k, v FROM t ORDER BY k").fetchall()
        check(rows == [("a", 3), ("x'); DROP TABLE t;--", 2)], f"upsert keeps last per key: {rows}")
        # A fresh run empties the table first (like > for a file).
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        rows = sqlite3.connect(os.path.join(d, "out.db")).execute("SELECT count(*) FROM t").fetchall()
        check(rows == [(2,)], f"fresh run replaces the table's rows: {rows}")


@test
def lua_sandbox_blocks_os_io_require():
    for expr in ('os.time()', 'io.open("x")', 'require("os")', 'load("return 1")()', 'math.random()'):
        with Tmp() as d:
            y = write(os.path.join(d, "p.yaml"), f"""pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {{source: generate, count: 1}}
  m: {{op: map, input: g, lua: 'return {{x = {expr}}}'}}
  out: {{sink: discard, input: m}}
""")
            p = run(["run", y, "-q"])
            expect_rc(p, 1)
            check("lua" in p.stderr.lower() and "'m'" in p.stderr, f"{expr}: {p.stderr}")


@test
def distinct_and_aggregate_updates():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  g: {source: generate, count: 1000, lua: "return {k = n % 7, v = n}"}
  first: {op: distinct, input: g, key: k}
  agg: {op: aggregate, input: g, key: k, sum: v, min: v, max: v, count: true, emit: final}
  o1: {sink: file, input: first, path: first.jsonl}
  o2: {sink: file, input: agg, path: agg.jsonl}
""")
        p = run(["run", y, "-q"])
        expect_rc(p, 0)
        first = read_jsonl(os.path.join(d, "first.jsonl"))
        check(canon(first) == canon([{"k": k, "v": k} for k in range(7)]), f"distinct: {first}")
        agg = {r["k"]: r for r in read_jsonl(os.path.join(d, "agg.jsonl"))}
        for k in range(7):
            vs = [n for n in range(1000) if n % 7 == k]
            r = agg[k]
            check(r["sum_v"] == sum(vs) and r["min_v"] == min(vs) and r["max_v"] == max(vs)
                  and r["count"] == len(vs), f"aggregate {k}: {r}")


@test
def follow_tails_a_growing_file_until_stopped():
    with Tmp() as d:
        path = write(os.path.join(d, "log.txt"), "one\n")
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
state: state.db   # beside the pipeline, in the temp dir
nodes:
  in: {source: file, path: log.txt, follow: true}
  out: {sink: file, input: in, path: out.jsonl}
""")
        proc = subprocess.Popen([BIN, "run", y, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        with open(path, "a") as f:
            f.write("two\nthr")
            f.flush()
            time.sleep(0.3)
            f.write("ee\n")
        deadline = time.time() + 20
        out = os.path.join(d, "out.jsonl")
        while time.time() < deadline:
            if os.path.exists(out) and len(read_jsonl(out)) >= 3:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        check(proc.returncode == 143, f"exit {proc.returncode}: {err}")
        check([r["line"] for r in read_jsonl(out)] == ["one", "two", "three"],
              "appended lines, a partial line held until its newline: " + open(out).read())

# ---------------------------------------------------------------- checkpoints (snapshot mode)

GEN_PIPELINE = """pipeline: gen
checkpoint: {interval: 50ms}
nodes:
  events: {source: generate, count: COUNT, lua: 'return {n = n, user = "u" .. (n % 13)}'}
  per_user: {op: count, input: events, key: user, parallelism: 2}
  out: {sink: file, input: per_user, path: out.jsonl}
"""


def gen_pipeline(d, count=20000, text=GEN_PIPELINE):
    return write(os.path.join(d, "gen.yaml"), text.replace("COUNT", str(count)))


def last_per_key(records, key="user"):
    last = {}
    for r in records:
        last[r[key]] = r["count"]
    return last


def expected_counts(count, users=13):
    want = {}
    for n in range(count):
        want["u%d" % (n % users)] = want.get("u%d" % (n % users), 0) + 1
    return want


def checkpoint_ids(d):
    p = run(["checkpoints", "list", "--state", os.path.join(d, "gen.state.db"), "--json"])
    expect_rc(p, 0)
    return [(c["id"], c["kind"], c["status"]) for c in json.loads(p.stdout)]


def resumable(ids):
    """The oldest checkpoint a replay can start from (a completed final one cannot)."""
    return next(i for i, kind, status in ids if (kind, status) != ("final", "completed"))


@test
def snapshot_stop_resume_and_already_completed():
    with Tmp() as d:
        y = gen_pipeline(d)
        # A state file in a folder that does not exist yet: the folder is created.
        p = run(["run", y, "--max-events", "10", "-q", "--state", os.path.join(d, "new/dir/s.db")], cwd=d)
        expect_rc(p, 0)
        check(os.path.exists(os.path.join(d, "new/dir/s.db")), "state file in a new folder")
        p = run(["run", y, "--max-events", "5000", "-q"], cwd=d)
        expect_rc(p, 0)
        ids = checkpoint_ids(d)
        check(ids and ids[-1][1:] == ("final", "stopped"), f"a stopped final checkpoint: {ids}")
        p = run(["run", y, "-q", "--json"], cwd=d)
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        check(s["sources"]["events"]["events"] == 15000, f"resumed after 5000: {s['sources']}")
        check(last_per_key(read_jsonl(os.path.join(d, "out.jsonl"))) == expected_counts(20000),
              "final counts equal a single run's")
        ids = checkpoint_ids(d)
        check(ids[-1][1:] == ("final", "completed"), f"completed: {ids}")
        before = open(os.path.join(d, "out.jsonl")).read()
        p = run(["run", y], cwd=d)
        expect_rc(p, 0)
        check("already completed" in p.stderr, p.stderr)
        check(open(os.path.join(d, "out.jsonl")).read() == before, "nothing touched")


@test
def snapshot_replay_from_checkpoint_cuts_the_file():
    with Tmp() as d:
        y = gen_pipeline(d)
        for _ in range(3):
            expect_rc(run(["run", y, "--max-events", "4000", "-q"], cwd=d), 0)
        expect_rc(run(["run", y, "-q"], cwd=d), 0)
        ref = read_jsonl(os.path.join(d, "out.jsonl"))
        ids = checkpoint_ids(d)
        first = resumable(ids)
        shown = json.loads(run(["checkpoints", "show", str(first), "--state",
                                os.path.join(d, "gen.state.db"), "--json"]).stdout)
        length = [x for x in shown["sinks"] if x["node"] == "out"][0]["length"]
        original = open(os.path.join(d, "out.jsonl"), "rb").read()
        p = run(["run", y, "--from-checkpoint", str(first), "-q"], cwd=d)
        expect_rc(p, 0)
        replayed = open(os.path.join(d, "out.jsonl"), "rb").read()
        check(replayed[:length] == original[:length], "the file kept what the checkpoint committed")
        got = read_jsonl(os.path.join(d, "out.jsonl"))
        check(last_per_key(got) == last_per_key(ref) == expected_counts(20000),
              "replay ends with the same counts")
        # Updates are coalesced per batch, so a replay in one go may emit fewer records than
        # the original's four stopped runs did; never one past the final count.
        want = expected_counts(20000)
        check(all(r["count"] <= want[r["user"]] for r in got), "no overcount")
        new_ids = [i for i, _, _ in checkpoint_ids(d)]
        check(max(new_ids) > max(i for i, _, _ in ids), f"ids continue: {ids} -> {new_ids}")
        check(length > 0, "the checkpoint recorded the file's length")
        # Replay into another file: it starts empty and gets what follows the checkpoint.
        other = os.path.join(d, "other.jsonl")
        first = resumable(checkpoint_ids(d))  # retention pruned the old line's checkpoints
        expect_rc(run(["run", y, "--from-checkpoint", str(first), "--set", f"nodes.out.path={other}",
                       "-q"], cwd=d), 0)
        rest = last_per_key(read_jsonl(other))
        check(rest and all(want[k] == v for k, v in rest.items()),
              "the new file has what follows the checkpoint")
        p = run(["run", y, "--from-checkpoint", "999", "-q"], cwd=d)
        expect_rc(p, 3)


@test
def snapshot_topology_change_needs_flag():
    with Tmp() as d:
        y = gen_pipeline(d)
        expect_rc(run(["run", y, "--max-events", "3000", "-q"], cwd=d), 0)
        changed = GEN_PIPELINE.replace("key: user", "key: [user, n]")
        gen_pipeline(d, text=changed)
        p = run(["run", y, "-q"], cwd=d)
        expect_rc(p, 3)
        check("per_user" in p.stderr and "--allow-topology-change" in p.stderr, p.stderr)
        p = run(["run", y, "--semantics", "effectively-once", "--mode", "snapshot", "--max-events",
                 "10", "--allow-topology-change"], cwd=d)
        expect_rc(p, 0)
        check("topology changed" in p.stderr, p.stderr)


@test
def snapshot_state_file_locked_and_corrupt():
    with Tmp() as d:
        y = gen_pipeline(d, text=GEN_PIPELINE.replace("count: COUNT", "rate: 2000"))
        proc = subprocess.Popen([BIN, "run", y, "-q"], cwd=d, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 20
            while time.time() < deadline and not os.path.exists(os.path.join(d, "out.jsonl")):
                time.sleep(0.05)
            time.sleep(0.2)
            p = run(["run", y, "-q"], cwd=d)
            expect_rc(p, 3)
            check(str(proc.pid) in p.stderr, f"names pid {proc.pid}: {p.stderr}")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        check(proc.returncode == 143, f"stopped cleanly: {proc.returncode} {err}")
        bad = os.path.join(d, "bad.db")
        with open(bad, "wb") as f:
            f.write(b"this is not a database" * 100)
        before = open(bad, "rb").read()
        p = run(["run", y, "--state", bad, "-q"], cwd=d)
        expect_rc(p, 3)
        check(open(bad, "rb").read() == before, "refused file untouched")


@test
def snapshot_chaos_fail_recovers_exactly():
    with Tmp() as d:
        out = os.path.join(d, "wc.jsonl")
        p = run(["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}",
                 "--set", "nodes.counts.emit=updates", "--state", os.path.join(d, "s.db"),
                 "--checkpoint-interval", "10ms", "--chaos", "seed=5,fail=counts:0.3", "--json", "-q"])
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        check(s["recoveries"]["count"] >= 1, f"recovered: {s['recoveries']}")
        lines = sum(1 for _ in open(os.path.join(PIPES, "data/words.txt")))
        src = s["sources"]["lines"]
        check(src["events"] == lines + src["replayed"] and src["replayed"] > 0,
              f"events read = lines + events read again after recoveries: {src}")
        want = read_jsonl(os.path.join(PIPES, "expected/wordcount.jsonl"))
        got = last_per_key(read_jsonl(out), key="word")
        check(got == {r["word"]: r["count"] for r in want}, "final counts exact")


@test
def snapshot_crash_at_hazard_points_resume_exactly():
    with Tmp() as d:
        y = gen_pipeline(d, count=400000)
        expect_rc(run(["run", y, "-q"], cwd=d), 0)
        ref = last_per_key(read_jsonl(os.path.join(d, "out.jsonl")))
        check(ref == expected_counts(400000), "reference counts")
        for point in ("before-barrier", "after-barrier", "after-sink-write", "in-checkpoint-txn",
                      "after-checkpoint-complete"):
            cmd = ["run", y, "-q", "--checkpoint-interval", "5ms", "--chaos", f"seed=2,crash-at={point}:2"]
            p = run(cmd + ["--fresh"], cwd=d)
            check(p.returncode == -9, f"{point}: killed by SIGKILL, got {p.returncode}: {p.stderr}")
            for _ in range(5):
                p = run(cmd, cwd=d)
                if p.returncode == 0:
                    break
            expect_rc(p, 0)
            check(last_per_key(read_jsonl(os.path.join(d, "out.jsonl"))) == ref, f"{point}: output exact")


@test
def sigkill_during_schema_migration():
    import sqlite3
    with Tmp() as d:
        y = gen_pipeline(d, count=100000)
        state = os.path.join(d, "gen.state.db")
        # A stopped run leaves a checkpoint to resume; then the file is turned into a
        # version-2 file (before dedup mode's tables, and with the index state_by_version
        # where version 4 keeps key lists), as an older onceflow wrote it.
        expect_rc(run(["run", y, "-q", "--state", state, "--max-events", "30000"], cwd=d), 0)
        db = sqlite3.connect(state)
        for t in ("dedup_channels", "dedup_outbox", "dedup_changes", "dedup_state", "dedup_sinks",
                  "state_keys"):
            db.execute(f"DROP TABLE {t}")
        db.execute("CREATE INDEX state_by_version ON state(version)")
        db.execute("PRAGMA user_version = 2")
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        listed = run(["checkpoints", "list", "--state", state]).stdout
        p = run(["run", y, "-q", "--state", state, "--chaos", "crash-at=in-migration"], cwd=d)
        check(p.returncode == -9, f"killed inside the migration: {p.returncode} {p.stderr}")
        with open(state, "rb") as f:
            f.seek(60)
            check(int.from_bytes(f.read(4), "big") == 2, "the file is still at version 2")
        p = run(["checkpoints", "list", "--state", state])
        expect_rc(p, 0)
        check(p.stdout == listed, f"its checkpoints read as before:\n{listed}\n{p.stdout}")
        expect_rc(run(["run", y, "-q", "--state", state], cwd=d), 0)  # migrates, resumes
        with open(state, "rb") as f:
            f.seek(60)
            check(int.from_bytes(f.read(4), "big") == 4, "migrated to version 4")
        db = sqlite3.connect(state)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        db.close()
        check("state_keys" in names and "state_by_version" not in names, f"key lists: {names}")
        check(last_per_key(read_jsonl(os.path.join(d, "out.jsonl"))) == expected_counts(100000),
              "the resumed run's counts are exact")


@test
def chaos_flag_errors_exit_2():
    with Tmp() as d:
        y = gen_pipeline(d)
        for chaos, want in (("fail=nosuch:0.1", "no node 'nosuch'"), ("fail=events:0.1", "only operators"),
                            ("crash-at=sometime", "crash-at"), ("seed=1,seed=2", "seed")):
            p = run(["run", y, "--chaos", chaos], cwd=d)
            expect_rc(p, 2)
            check(want in p.stderr, f"{chaos}: {p.stderr}")


@test
def sqlite_sink_applies_each_epoch_once():
    with Tmp() as d:
        db = os.path.join(d, "orders.db")
        st = os.path.join(d, "s.db")
        expect_rc(run(["run", "pipelines/orders.yaml", "--set", f"nodes.db.path={db}", "--state", st,
                       "--max-events", "20", "-q"]), 0)
        expect_rc(run(["run", "pipelines/orders.yaml", "--set", f"nodes.db.path={db}", "--state", st,
                       "-q"]), 0)
        con = sqlite3.connect(db)
        epochs = con.execute("SELECT count(*), count(DISTINCT epoch) FROM onceflow_applied_epochs").fetchone()
        check(epochs[0] >= 2 and epochs[0] == epochs[1], f"one marker per applied epoch: {epochs}")
        rows = con.execute("SELECT customer, sum_amount, count FROM revenue ORDER BY customer").fetchall()
        got = "".join("%s\t%.6f\t%d\n" % r for r in rows)
        with open(os.path.join(PIPES, "expected/orders.tsv")) as f:
            check(got == f.read(), "table equals the expected totals after a stop and resume")


@test
def snapshot_max_recoveries_bounds_recovery():
    with Tmp() as d:
        out = os.path.join(d, "wc.jsonl")
        p = run(["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}",
                 "--set", "recovery.max_recoveries=2", "--state", os.path.join(d, "s.db"),
                 "--chaos", "seed=1,fail=counts:0.9", "-q"])
        expect_rc(p, 1)
        check("gave up after 2 recoveries" in p.stderr and "injected failure" in p.stderr, p.stderr)


@test
def snapshot_stdin_is_journaled_and_replayed():
    with Tmp() as d:
        y = write(os.path.join(d, "in.yaml"), """pipeline: stdinp
checkpoint: {interval: 20ms}
nodes:
  in: {source: stdin, format: lines}
  out: {sink: file, input: in, path: out.jsonl}
""")
        first = "".join("%d\n" % i for i in range(1, 200001))
        p = subprocess.run([BIN, "run", y, "-q", "--chaos", "crash=120000"], cwd=d, input=first,
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == -9, f"crashed: {p.returncode} {p.stderr}")
        # The next run says where the stream stands; feeding the rest from that byte
        # continues it exactly (the bytes the killed process had read are in the journal).
        journal = sqlite3.connect(os.path.join(d, "stdinp.state.db")).execute(
            "SELECT max(offset + length(data)) FROM journal").fetchone()[0]
        check(0 < journal < len(first), f"journaled {journal} of {len(first)} bytes")
        rest = first[journal:]
        p = run(["run", y, "--json"], cwd=d, input=rest)
        expect_rc(p, 0)
        check(f"continues the stream at byte {journal}" in p.stderr, p.stderr)
        s = json.loads(p.stdout)
        check(s["stdin_journaled_bytes"] == len(rest), f"journaled the rest: {s}")
        got = [int(r["line"]) for r in read_jsonl(os.path.join(d, "out.jsonl"))]
        check(got == list(range(1, 200001)), f"{len(got)} records, each once, in order")

@test
def snapshot_resume_refuses_another_input_file():
    with Tmp() as d:
        out = os.path.join(d, "wc.jsonl")
        st = os.path.join(d, "s.db")
        base = ["run", "pipelines/wordcount.yaml", "--set", f"nodes.out.path={out}", "--state", st, "-q"]
        expect_rc(run(base + ["--max-events", "5"]), 0)
        other = write(os.path.join(d, "other.txt"), "x y z\n")
        p = run(base + ["--set", f"nodes.lines.path={other}"])
        expect_rc(p, 3)
        check("checkpoint's position is in" in p.stderr, p.stderr)
        expect_rc(run(base), 0)  # the original input still resumes


@test
def snapshot_dead_letters_once_across_recoveries_and_crashes():
    with Tmp() as d:
        y = write(os.path.join(d, "dl.yaml"), """pipeline: dl
checkpoint: {interval: 5ms}
nodes:
  events: {source: generate, count: 600000}
  parse:
    op: map
    input: events
    lua: 'if e.n % 30000 == 7 then error("bad " .. e.n) end; return {k = e.n % 5}'
    on_error: dead_letter
    dead_letter: dl.jsonl
  counts: {op: count, input: parse, key: k, emit: final}
  out: {sink: file, input: counts, path: out.jsonl}
""")
        def dead():
            return sorted(r["record"]["n"] for r in read_jsonl(os.path.join(d, "dl.jsonl")))
        want = [n for n in range(600000) if n % 30000 == 7]
        # In-process recoveries replay records that were dead-lettered already.
        p = run(["run", y, "--json", "-q", "--chaos", "seed=3,fail=counts:0.00002"], cwd=d)
        expect_rc(p, 0)
        check(json.loads(p.stdout)["recoveries"]["count"] >= 2, p.stdout)
        check(dead() == want, f"each bad record once: {dead()}")
        # So do restarts after a crash.
        for point in ("after-checkpoint-complete", "in-checkpoint-txn", "after-barrier"):
            # The 2nd passage: a run on a loaded machine may commit few checkpoints.
            cmd = ["run", y, "-q", "--chaos", f"seed=4,crash-at={point}:2"]
            p = run(cmd + ["--fresh"], cwd=d)
            check(p.returncode == -9, f"{point}: {p.returncode} {p.stderr}")
            expect_rc(run(cmd, cwd=d), 0)
            check(dead() == want, f"{point}: each bad record once: {dead()}")


@test
def at_least_once_checkpoints_and_resumes_without_loss():
    with Tmp() as d:
        y = gen_pipeline(d)
        p = run(["run", y, "--semantics", "at-least-once", "--max-events", "5000", "--json", "-q"], cwd=d)
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        check(s["semantics"] == "at-least-once" and s["mode"] is None, s)
        check(s["checkpoints"]["count"] >= 1, "checkpoints are taken")
        p = run(["run", y, "--semantics", "at-least-once", "-q", "--chaos", "seed=9,fail=per_user:0.0002"], cwd=d)
        expect_rc(p, 0)
        got = last_per_key(read_jsonl(os.path.join(d, "out.jsonl")))
        want = expected_counts(20000)
        check(all(got.get(k, 0) >= v for k, v in want.items()), f"nothing lost: {got} vs {want}")
        # The fingerprint holds the semantics: resuming under another one is refused.
        expect_rc(run(["run", y, "--fresh", "--max-events", "100", "-q"], cwd=d), 0)
        p = run(["run", y, "--semantics", "at-least-once", "-q"], cwd=d)
        expect_rc(p, 3)
        check("semantics changed from effectively-once to at-least-once" in p.stderr, p.stderr)


@test
def at_most_once_fail_drops_and_counts():
    with Tmp() as d:
        y = gen_pipeline(d)
        p = run(["run", y, "--semantics", "at-most-once", "--json", "-q"], cwd=d)
        expect_rc(p, 0)
        check(json.loads(p.stdout)["checkpoints"]["count"] >= 1, "at-most-once keeps checkpoints")
        check(os.path.exists(os.path.join(d, "gen.state.db")), "default state file beside the cwd")
        ref = last_per_key(read_jsonl(os.path.join(d, "out.jsonl")))
        check(ref == expected_counts(20000), f"failure-free run is exact: {ref}")
        # A rerun of a completed run touches nothing, as under every guarantee.
        p = run(["run", y, "--semantics", "at-most-once"], cwd=d)
        expect_rc(p, 0)
        check("already completed" in p.stderr, p.stderr)
        p = run(["run", y, "--semantics", "at-most-once", "--fresh", "--json", "-q",
                 "--chaos", "seed=3,fail=per_user:0.01"], cwd=d)
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        dropped = s["nodes"]["per_user"]["dropped"]
        check(dropped > 0 and s["recoveries"]["count"] == 0, f"dropped, not recovered: {s}")
        got = last_per_key(read_jsonl(os.path.join(d, "out.jsonl")))
        check(sum(got.values()) == 20000 - dropped, f"exactly the dropped records are missing: {got}")
        check(all(got.get(k, 0) <= v for k, v in ref.items()), f"nothing counted twice: {got}")


@test
def at_most_once_kill_resumes_after_the_read_ahead():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: p
semantics: at-most-once
checkpoint: {interval: 50ms}
nodes:
  g: {source: generate, count: 2000000}
  out: {sink: file, input: g, path: out.jsonl}
""")
        st = os.path.join(d, "s.db")
        # The process kills itself (SIGKILL) after 60000 source events. Its lease then
        # covers up to about a quarter second of input (at most 8x the previous lease,
        # 1024 -> 8192 -> 65536 -> 524288 records): the input is long enough to outlast it.
        p = run(["run", y, "--state", st, "-q", "--chaos", "seed=1,crash=60000"])
        check(p.returncode == -9, f"killed by signal 9: {p.returncode} {p.stderr}")
        before = len(read_jsonl(os.path.join(d, "out.jsonl")))
        p = run(["run", y, "--state", st, "--json", "-q", "--chaos", "seed=1,crash=60000"])
        expect_rc(p, 0)
        s = json.loads(p.stdout)
        skipped = s["sources"]["g"]["skipped_ahead"]
        check(skipped > 0, f"the resume skipped past the lease: {s['sources']}")
        ns = [r["n"] for r in read_jsonl(os.path.join(d, "out.jsonl"))]
        check(len(ns) == len(set(ns)), f"no record written twice ({len(ns) - len(set(ns))} repeats)")
        check(before <= len(ns) < 2000000, f"kept the first run's output, lost some: {before}, {len(ns)}")
        check(ns and max(ns) == 1999999, f"read to the end: skipped {skipped}")
        p = run(["checkpoints", "list", "--state", st, "--json"])
        expect_rc(p, 0)
        check(json.loads(p.stdout)[-1]["kind"] == "final", p.stdout)


if __name__ == "__main__":
    sys.exit(harness.main("e2e", ONLY))

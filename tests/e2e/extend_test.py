#!/usr/bin/env python3
"""End-to-end tests of the two ways to bring one's own logic (SPEC §5): native plugins
(the example plugin built by CMake, operators/plugin/example, and small plugins compiled
here with `cc` for the loader's error paths) and the `exec` operator (the Python example
pipelines/exec/enrich.py, and children that die, hang or print garbage).

Usage: extend_test.py ONCEFLOW_BINARY REPO_ROOT EXAMPLE_PLUGIN.so [TEST_NAME_SUBSTRING]
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tmp, canon, check, expect_rc, read_jsonl, run, test, write  # noqa: E402
import harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
PLUGIN = os.path.abspath(sys.argv[3])
ONLY = sys.argv[4] if len(sys.argv) > 4 else ""
harness.setup(BIN, ROOT)
PIPES = os.path.join(ROOT, "pipelines")
ORDERS = os.path.join(PIPES, "data", "orders.jsonl")
ENV = dict(os.environ, ONCEFLOW_EXAMPLE_PLUGIN=PLUGIN)


def orders():
    return read_jsonl(ORDERS)


def moving_avg(records, key, field, window):
    """What moving_avg computes, independently: per key the mean of the last `window`
    values, in input order."""
    last, out = {}, []
    for r in records:
        vals = last.setdefault(r[key], [])
        vals.append(r[field])
        del vals[:-window]
        out.append(sum(vals) / len(vals))
    return out


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def run_example(d, name, extra=(), env=None):
    out = os.path.join(d, name + ".jsonl")
    p = run(["run", os.path.join(PIPES, name + ".yaml"), "--state", os.path.join(d, name + ".db"),
             "--set", "nodes.out.path=" + out] + list(extra), env=env or ENV)
    return p, out


# ---------------------------------------------------------------- plugins

@test
def plugin_example_pipeline():
    with Tmp() as d:
        p, out = run_example(d, "moving_avg")
        expect_rc(p, 0)
        got = read_jsonl(out)
        src = orders()
        want = moving_avg(src, "customer", "amount", 3)
        check(len(got) == len(src), f"{len(got)} records, expected {len(src)}")
        for g, s, w in zip(got, src, want):
            check({k: v for k, v in g.items() if k not in ("avg_amount", "via")} == s,
                  f"record changed: {g} from {s}")
            check(close(g["avg_amount"], w), f"avg_amount {g['avg_amount']}, expected {w}: {g}")
            check(g["via"] == "plugin", f"tag missing: {g}")
        check(got == read_jsonl(os.path.join(PIPES, "expected", "moving_avg.jsonl")),
              "output differs from pipelines/expected/moving_avg.jsonl")


@test
def plugin_emit_final_and_state():
    with Tmp() as d:
        p, out = run_example(d, "moving_avg", ["--set", "nodes.avg.emit=final"])
        expect_rc(p, 0)
        got = read_jsonl(out)
        src = orders()
        want = {}
        for r in src:
            want.setdefault(r["customer"], []).append(r["amount"])
        check(len(got) == len(want), f"{len(got)} records, expected one per customer ({len(want)})")
        check([g["customer"] for g in got] == sorted(want), "final records not in key order")
        for g in got:
            vals = want[g["customer"]][-3:]
            check(set(g) == {"customer", "avg_amount", "via"}, f"fields: {g}")
            check(close(g["avg_amount"], sum(vals) / len(vals)), f"final average: {g}")
        # The plugin's state is host state: `state get` shows the last values of a key.
        p = run(["state", "get", "--state", os.path.join(d, "moving_avg.db"), "--node", "avg",
                 "--key", "c020", "--json"])
        expect_rc(p, 0)
        check("last" in p.stdout and str(want["c020"][-1]) in p.stdout,
              f"state of c020: {p.stdout}")


@test
def plugin_resume_and_parallelism():
    """Stopped half-way and resumed (state restored through the host), and with two
    instances, under both effectively-once modes: the same records as one clean run."""
    with Tmp() as d:
        p, ref = run_example(d, "moving_avg", ["--fresh"])
        expect_rc(p, 0)
        want = canon(read_jsonl(ref))
        for mode in ("snapshot", "dedup"):
            for par in ("1", "2"):
                tag = f"{mode}-{par}"
                out = os.path.join(d, tag + ".jsonl")
                args = ["run", os.path.join(PIPES, "moving_avg.yaml"), "--mode", mode,
                        "--state", os.path.join(d, tag + ".db"), "--set", "nodes.out.path=" + out,
                        "--set", "nodes.avg.parallelism=" + par, "--checkpoint-interval", "10ms"]
                p = run(args + ["--max-events", "700"], env=ENV)
                expect_rc(p, 0)
                check(len(read_jsonl(out)) < 2000, f"{tag}: --max-events did not stop early")
                p = run(args, env=ENV)
                expect_rc(p, 0)
                check(canon(read_jsonl(out)) == want, f"{tag}: resumed output differs")


@test
def plugin_record_error_follows_on_error():
    with Tmp() as d:
        data = write(os.path.join(d, "in.jsonl"),
                     '{"k":"a","x":1}\n{"k":"a"}\n{"k":"a","x":"str"}\n{"k":"a","x":3}\n')
        yaml = write(os.path.join(d, "p.yaml"), f"""pipeline: perr
nodes:
  s: {{source: file, path: in.jsonl, format: jsonl}}
  m:
    op: plugin
    input: s
    library: {PLUGIN}
    name: moving_avg
    key: k
    on_error: skip
    config: {{field: x, window: 2}}
  out: {{sink: file, input: m, path: out.jsonl}}
""")
        p = run(["run", yaml, "--state", os.path.join(d, "s.db"), "--json"], env=ENV)
        expect_rc(p, 0)
        got = read_jsonl(os.path.join(d, "out.jsonl"))
        check([g["avg"] for g in got] == [1, 2], f"averages {got}")
        s = json.loads(p.stdout)
        check(s["nodes"]["m"]["skipped"] == 2, f"skipped: {s['nodes']['m']}")
        # on_error: fail (the default) names the node and the plugin's message.
        p = run(["run", yaml, "--fresh", "--state", os.path.join(d, "s.db"),
                 "--set", "nodes.m.on_error=fail"], env=ENV)
        expect_rc(p, 1)
        check("'m'" in p.stderr and "field 'x' is missing" in p.stderr, p.stderr)


@test
def plugin_inspect():
    p = run(["plugin", "inspect", PLUGIN])
    expect_rc(p, 0)
    for s in ("plugin: example", "abi version: 1", "moving_avg", "tag", "window (integer, default 3)",
              "field (string, required)"):
        check(s in p.stdout, f"missing {s!r} in:\n{p.stdout}")
    p = run(["plugin", "inspect", PLUGIN, "--json"])
    expect_rc(p, 0)
    j = json.loads(p.stdout)
    check(j["name"] == "example" and j["abi_version"] == 1, j)
    ops = {o["name"]: o for o in j["operators"]}
    check(set(ops) == {"moving_avg", "tag"}, ops)
    check([o["name"] for o in ops["moving_avg"]["options"]] == ["field", "window", "out"], ops)
    p = run(["plugin", "inspect", "/nonexistent/x.so"])
    expect_rc(p, 2)
    check("/nonexistent/x.so" in p.stderr and "No such file" in p.stderr, p.stderr)


@test
def operators_list_shows_pipeline_plugins():
    p = run(["operators", "list"])
    expect_rc(p, 0)
    check("moving_avg" not in p.stdout and "plugin " in p.stdout, p.stdout)
    p = run(["operators", "list", "--pipeline", "pipelines/moving_avg.yaml"], env=ENV)
    expect_rc(p, 0)
    check("plugin operators of pipelines/moving_avg.yaml" in p.stdout and
          "node 'avg'" in p.stdout and "moving_avg" in p.stdout and "node 'tagged'" in p.stdout,
          p.stdout)
    p = run(["operators", "list", "--pipeline", "pipelines/moving_avg.yaml", "--json"], env=ENV)
    expect_rc(p, 0)
    plugins = [o for o in json.loads(p.stdout) if o.get("kind") == "plugin"]
    check(sorted(o["node"] for o in plugins) == ["avg", "tagged"], plugins)


@test
def readme_minimal_plugin():
    """The minimal plugin of README.md, built with the README's cc command, counts the
    records of each key."""
    cc = shutil.which("cc") or shutil.which("gcc")
    check(cc is not None, "no C compiler (cc)")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    start = readme.index("/* seen.c */")
    src = readme[start:readme.index("```", start)]
    with Tmp() as d:
        write(os.path.join(d, "seen.c"), src)
        subprocess.run([cc, "-shared", "-fPIC", "-I", os.path.join(ROOT, "runtime", "include"),
                        "-o", "seen.so", "seen.c"], cwd=d, check=True)
        words = ["a", "b", "a", "c", "a", "b"]
        write(os.path.join(d, "in.txt"), "\n".join(words) + "\n")
        yaml = write(os.path.join(d, "p.yaml"), """pipeline: seen
nodes:
  words: {source: file, path: in.txt}
  seen: {op: plugin, input: words, library: ./seen.so, name: seen, key: line, parallelism: 2}
  out: {sink: file, input: seen, path: out.jsonl}
""")
        p = run(["run", yaml, "--state", os.path.join(d, "s.db")])
        expect_rc(p, 0)
        got = sorted(r["seen"] for r in read_jsonl(os.path.join(d, "out.jsonl")))
        check(got == [1, 1, 1, 2, 2, 3], f"seen values {got}")


BAD_PLUGINS = {
    "nosym.c": "int not_the_entry_point(void) { return 0; }\n",
    "abi2.c": """#include "onceflow/plugin.h"
ONCEFLOW_PLUGIN_EXPORT int onceflow_plugin_init(const onceflow_host* h, onceflow_plugin* out) {
  out->abi_version = 2; out->name = "future"; return ONCEFLOW_OK;
}
""",
    "initfail.c": """#include "onceflow/plugin.h"
ONCEFLOW_PLUGIN_EXPORT int onceflow_plugin_init(const onceflow_host* h, onceflow_plugin* out) {
  h->log(0, ONCEFLOW_LOG_ERROR, "no licence"); return ONCEFLOW_ERROR;
}
""",
}


@test
def plugin_load_errors_are_validation_errors():
    cc = shutil.which("cc") or shutil.which("gcc")
    check(cc is not None, "no C compiler (cc) to build the test plugins")
    with Tmp() as d:
        libs = {}
        for name, src in BAD_PLUGINS.items():
            c = write(os.path.join(d, name), src)
            so = os.path.join(d, name[:-2] + ".so")
            subprocess.run([cc, "-shared", "-fPIC", "-I", os.path.join(ROOT, "runtime", "include"),
                            "-o", so, c], check=True)
            libs[name[:-2]] = so
        write(os.path.join(d, "notalib.so"), "hello\n")
        cases = [
            ("missing.so", "No such file or directory"),
            ("notalib.so", "cannot load"),
            ("nosym.so", "no symbol 'onceflow_plugin_init'"),
            ("abi2.so", "ABI version 2, this onceflow supports version 1"),
            ("initfail.so", "onceflow_plugin_init failed"),
        ]
        for lib, msg in cases:
            yaml = write(os.path.join(d, "p.yaml"), f"""pipeline: bad
nodes:
  s: {{source: generate, count: 3}}
  m:
    op: plugin
    input: s
    library: {lib}
    name: anything
  out: {{sink: discard, input: m}}
""")
            state = os.path.join(d, "never.db")
            for cmd in ("validate", "run"):
                p = run([cmd, yaml, "--state", state])
                expect_rc(p, 2)
                check(f"p.yaml:7:14: error: node 'm': plugin library '{os.path.join(d, lib)}'" in p.stderr
                      and msg in p.stderr, f"{lib}: {p.stderr}")
            check(not os.path.exists(state), "a failed validation created the state file")


# ---------------------------------------------------------------- exec

def enrich_expected():
    out = []
    for r in orders():
        if r["status"] != "paid":
            continue
        a = r["amount"]
        out.append(dict(r, band="small" if a < 50 else "medium" if a < 150 else "large",
                        amount_cents=round(a * 100)))
    return out


@test
def exec_example_pipeline():
    with Tmp() as d:
        p, out = run_example(d, "enrich")
        expect_rc(p, 0)
        got = read_jsonl(out)
        check(got == enrich_expected(), f"{len(got)} records differ from the Python computation")
        check(got == read_jsonl(os.path.join(PIPES, "expected", "enrich.jsonl")),
              "output differs from pipelines/expected/enrich.jsonl")
        check("node 'enrich' (stderr): enrich: ready" in p.stderr,
              f"child stderr not forwarded with the node name:\n{p.stderr}")


FLAKY = """import json, os, sys
marker = sys.argv[1]
n = 0
for line in sys.stdin:
    n += 1
    if n == 300 and not os.path.exists(marker):
        open(marker, "w").close()
        print("flaky: exiting on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    r = json.loads(line)
    print(json.dumps([dict(r, seen=n > 0)] if r["status"] == "paid" else []), flush=True)
"""


def exec_yaml(d, name, command, extra=""):
    return write(os.path.join(d, name + ".yaml"), f"""pipeline: {name}
nodes:
  s: {{source: file, path: {ORDERS}, format: jsonl}}
  e:
    op: exec
    input: s
    command: {json.dumps(command)}
{extra}  out: {{sink: file, input: e, path: out-{name}.jsonl}}
""")


@test
def exec_child_dies_and_is_restarted():
    """The child exits mid-stream once: recovery starts a new one and, under both
    effectively-once modes, the output is exactly that of a failure-free run."""
    with Tmp() as d:
        write(os.path.join(d, "flaky.py"), FLAKY)
        want = canon(dict(r, seen=True) for r in orders() if r["status"] == "paid")
        for mode in ("snapshot", "dedup"):
            marker = os.path.join(d, "marker-" + mode)
            yaml = exec_yaml(d, "flaky" + mode, ["python3", "flaky.py", marker])
            p = run(["run", yaml, "--mode", mode, "--state", os.path.join(d, mode + ".db"),
                     "--checkpoint-interval", "20ms", "--json"])
            expect_rc(p, 0)
            check(os.path.exists(marker), f"{mode}: the child never failed")
            s = json.loads(p.stdout)
            check(s["recoveries"]["count"] >= 1, f"{mode}: no recovery: {s['recoveries']}")
            check("exited with status 3" in p.stderr and "flaky: exiting on purpose" in p.stderr,
                  p.stderr)
            got = canon(read_jsonl(os.path.join(d, f"out-flaky{mode}.jsonl")))
            check(got == want, f"{mode}: {len(got)} records, expected {len(want)} (exact)")


@test
def exec_garbage_fails_naming_the_node():
    with Tmp() as d:
        write(os.path.join(d, "garbage.py"),
              "import sys\nfor line in sys.stdin:\n    print('not json', flush=True)\n")
        p = run(["run", exec_yaml(d, "garbage", ["python3", "garbage.py"]),
                 "--state", os.path.join(d, "s.db")])
        expect_rc(p, 1)
        check("node 'e'" in p.stderr and "not a JSON array" in p.stderr and "'not json'" in p.stderr,
              p.stderr)
        # Two lines for one record is garbage too.
        write(os.path.join(d, "twice.py"),
              "import sys\nfor line in sys.stdin:\n    print('[]', flush=True)\n    print('[]', flush=True)\n")
        p = run(["run", exec_yaml(d, "twice", ["python3", "twice.py"]),
                 "--state", os.path.join(d, "t.db")])
        expect_rc(p, 1)
        check("node 'e'" in p.stderr and "lines for" in p.stderr, p.stderr)


@test
def exec_timeout():
    with Tmp() as d:
        write(os.path.join(d, "slow.py"), "import sys, time\nsys.stdin.readline()\ntime.sleep(30)\n")
        t0 = time.time()
        p = run(["run", exec_yaml(d, "slow", ["python3", "slow.py"], "    timeout: 300ms\n"),
                 "--state", os.path.join(d, "s.db")])
        expect_rc(p, 1)
        check(time.time() - t0 < 10, "the timeout did not end the run promptly")
        check("node 'e'" in p.stderr and "no answer" in p.stderr, p.stderr)


@test
def exec_missing_program_is_exit_2():
    with Tmp() as d:
        for cmd, msg in ((["no-such-program-xyz", "a.py"], "'no-such-program-xyz' not found on PATH"),
                         (["./missing.sh"], "does not exist or is not executable")):
            yaml = exec_yaml(d, "missing", cmd)
            p = run(["validate", yaml])
            expect_rc(p, 2)
            check("missing.yaml:7:15: error: node 'e': program" in p.stderr and msg in p.stderr,
                  p.stderr)


@test
def exec_large_answers_do_not_deadlock():
    """Records of ~1 KB and answers of ~3 KB: both a batch's input and its answers
    overflow the pipes, so writing the whole batch before reading would block both
    sides for good. onceflow must read while it writes."""
    with Tmp() as d:
        write(os.path.join(d, "fan.py"), """import json, sys
for line in sys.stdin:
    r = json.loads(line)
    sys.stdout.write(json.dumps([dict(n=r["n"], i=i, pad="x" * 300) for i in range(10)]) + "\\n")
    sys.stdout.flush()
""")
        yaml = write(os.path.join(d, "fan.yaml"), """pipeline: fan
nodes:
  s: {source: generate, count: 20000, lua: 'return {n = n, pad = string.rep("y", 1000)}'}
  e: {op: exec, input: s, command: [python3, fan.py], timeout: 10s}
  c: {op: count, input: e, key: i, emit: final}
  out: {sink: file, input: c, path: out.jsonl}
""")
        p = run(["run", yaml, "--state", os.path.join(d, "s.db")], timeout=60)
        expect_rc(p, 0)
        got = {r["i"]: r["count"] for r in read_jsonl(os.path.join(d, "out.jsonl"))}
        check(got == {i: 20000 for i in range(10)}, f"counts {got}")


@test
def exec_child_exits_when_onceflow_is_killed():
    """SIGKILL leaves no child behind: it reads EOF on stdin and exits."""
    with Tmp() as d:
        pidfile = os.path.join(d, "child.pid")
        write(os.path.join(d, "echo.py"), f"""import json, os, sys
open({pidfile!r}, "w").write(str(os.getpid()))
for line in sys.stdin:
    print(json.dumps([json.loads(line)]), flush=True)
""")
        yaml = write(os.path.join(d, "k.yaml"), """pipeline: kill
nodes:
  s: {source: generate, rate: 200}
  e: {op: exec, input: s, command: [python3, echo.py]}
  out: {sink: discard, input: e}
""")
        proc = subprocess.Popen([BIN, "run", yaml, "--state", os.path.join(d, "s.db"), "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(pidfile) and open(pidfile).read():
                break
            time.sleep(0.05)
        child = int(open(pidfile).read())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        gone = False
        for _ in range(100):
            try:
                with open(f"/proc/{child}/status") as f:
                    gone = "State:\tZ" in f.read()  # exited; its new parent reaps it
            except FileNotFoundError:
                gone = True
            if gone:
                break
            time.sleep(0.05)
        check(gone, f"child {child} still running 5 s after onceflow was killed")


sys.exit(harness.main("extend", ONLY))

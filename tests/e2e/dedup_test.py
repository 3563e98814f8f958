#!/usr/bin/env python3
"""End-to-end tests of effectively-once in dedup mode (`--mode dedup`): the example
pipelines give the snapshot mode's outputs; a transient failure is recovered by the
failing task alone; a stopped run resumes to the same result; the dedup log is empty at
the end; a resume with another parallelism is refused; round_robin out of a source and
stdin replay the same records after a restart. (kill -9 at random instants: the crash
test, tests/crash/crash_test.py --mode dedup.)

Usage: dedup_test.py ONCEFLOW_BINARY REPO_ROOT [TEST_NAME_SUBSTRING]
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
harness.setup(BIN, ROOT)

PIPES = os.path.join(ROOT, "pipelines")


def run_pipeline(d, name, mode, extra=(), tag=None):
    """Runs pipelines/NAME.yaml with its outputs and state under d; returns (process,
    summary dict, output path)."""
    tag = tag or mode
    out = os.path.join(d, tag, "out.db" if name == "orders" else "out.jsonl")
    sink = {"orders": "db"}.get(name, "out")
    summary = os.path.join(d, tag, "summary.json")
    os.makedirs(os.path.join(d, tag), exist_ok=True)
    args = ["run", os.path.join(PIPES, name + ".yaml"), "--mode", mode,
            "--state", os.path.join(d, tag, "state.db"), "--set",
            "nodes.%s.path=%s" % (sink, out), "--summary", summary, "-q"] + list(extra)
    p = run(args)
    s = {}
    if os.path.exists(summary):
        with open(summary) as f:
            s = json.load(f)
    return p, s, out


def table(path):
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT customer, sum_amount, count FROM revenue").fetchall())
    finally:
        db.close()


def outputs(name, path):
    return table(path) if name == "orders" else canon(read_jsonl(path))


def log_rows(state):
    db = sqlite3.connect("file:%s?mode=ro" % state, uri=True)
    try:
        return sum(db.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0]
                   for t in ("dedup_outbox", "dedup_changes"))
    finally:
        db.close()


@test
def examples_match_snapshot_mode():
    for name in ("wordcount", "orders", "fanin"):
        with Tmp() as d:
            p, ref, ref_out = run_pipeline(d, name, "snapshot")
            expect_rc(p, 0)
            p, s, out = run_pipeline(d, name, "dedup")
            expect_rc(p, 0)
            check(s["mode"] == "dedup" and s["exit"] == "completed", s)
            check(outputs(name, out) == outputs(name, ref_out), name + ": outputs differ")
            check(s["dedup"]["commits"] > 0, s["dedup"])
            check(s["dedup"]["log_rows_end"] == 0, "log not empty at the end: %s" % s["dedup"])
            check(s["checkpoints"]["count"] == 0, "dedup mode takes no checkpoints")
            # A second run finds everything committed: nothing changes.
            before = outputs(name, out)
            p, s2, _ = run_pipeline(d, name, "dedup")
            expect_rc(p, 0)
            check(outputs(name, out) == before, name + ": a rerun changed the output")
            check(s2["sources"][list(s2["sources"])[0]]["events"] == 0,
                  "a rerun read input again: %s" % s2["sources"])


@test
def a_sink_flushed_before_its_commit_is_still_committed():
    # The output arrives more than 200 ms after the sink opened, so the sink has flushed
    # it to the OS before the task commits; the commit must still record its length, or
    # the next run would cut the file back to nothing.
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: fl
semantics: effectively-once
mode: dedup
nodes:
  g: {source: generate, count: 3000, rate: 10000, lua: 'return {k = "k" .. (n % 7)}'}
  c: {op: count, input: g, key: k, emit: final}
  out: {sink: file, input: c, path: out.jsonl}
""")
        st = os.path.join(d, "s.db")
        expect_rc(run(["run", y, "--state", st, "-q"], cwd=d), 0)
        out = os.path.join(d, "out.jsonl")
        first = read_jsonl(out)
        check(sum(r["count"] for r in first) == 3000, first)
        expect_rc(run(["run", y, "--state", st, "-q"], cwd=d), 0)
        check(read_jsonl(out) == first, "the rerun changed the output: %s" % read_jsonl(out))


@test
def state_get_reads_the_last_commits():
    with Tmp() as d:
        p, s, out = run_pipeline(d, "wordcount", "dedup")
        expect_rc(p, 0)
        st = os.path.join(d, "dedup", "state.db")
        want = {r["word"]: r["count"] for r in read_jsonl(out)}
        q = run(["state", "get", "--state", st, "--node", "counts", "--json"])
        expect_rc(q, 0)
        got = {r["key"][0]: r["value"][0] for r in json.loads(q.stdout)}
        check(got == want, "state get differs from the output")
        q = run(["state", "get", "--state", st, "--node", "counts", "--key", "the"])
        expect_rc(q, 0)
        check(q.stdout == "the -> %d\n" % want["the"], q.stdout)
        q = run(["state", "get", "--state", st, "--node", "counts", "--checkpoint", "1"])
        expect_rc(q, 3)  # no savepoint was taken


@test
def chaos_fail_recovers_the_failed_task_alone():
    with Tmp() as d:
        p, ref, ref_out = run_pipeline(d, "fanin", "snapshot")
        expect_rc(p, 0)
        p, s, out = run_pipeline(d, "fanin", "dedup",
                                 ["--chaos", "seed=3,fail=per_user:0.0005,fail=views:0.0005"])
        expect_rc(p, 0)
        check(s["recoveries"]["count"] >= 2, s["recoveries"])
        check(len(s["recoveries"]["ms"]) == s["recoveries"]["count"], s["recoveries"])
        check(canon(read_jsonl(out)) == canon(read_jsonl(ref_out)), "outputs differ")
        dups = sum(n["duplicates_discarded"] for n in s["nodes"].values())
        check(dups > 0, "replays after a recovery discard duplicates: %s" % s["nodes"])
        check(log_rows(os.path.join(d, "dedup", "state.db")) == 0, "log not trimmed")


@test
def chaos_fail_in_a_source_chain_rereads_the_batch():
    with Tmp() as d:
        p, _, ref_out = run_pipeline(d, "wordcount", "snapshot")
        expect_rc(p, 0)
        p, s, out = run_pipeline(d, "wordcount", "dedup", ["--chaos", "seed=5,fail=words:0.2"])
        expect_rc(p, 0)
        check(s["recoveries"]["count"] >= 1, s["recoveries"])
        check(canon(read_jsonl(out)) == canon(read_jsonl(ref_out)), "outputs differ")


@test
def source_positions_that_are_not_counts_replay_exactly():
    # A consumer's mark counts source records. A generate instance numbers its records
    # across all instances (n = i, i + p, ...) and a jsonl line number counts blank and
    # skipped lines: neither is a count, and filtering replays by them let records through
    # twice after a local recovery (300,251 of 300,000 with generate at parallelism 2),
    # or hung the run (the jsonl case with seeds 1 and 3, before the fix).
    with Tmp() as d:
        lines = []
        for n in range(60000):
            lines.append(json.dumps({"k": "k%d" % (n % 13), "n": n}))
            if n % 3 == 0:
                lines.append("")               # a blank line: no record
            if n % 1000 == 0:
                lines.append("not json")        # skipped: no record
        write(os.path.join(d, "in.jsonl"), "\n".join(lines) + "\n")
        sources = {
            "generate": "{source: generate, count: 300000, parallelism: 2,"
                        " lua: \"return {k = 'k' .. (n % 13), n = n}\"}",
            "jsonl": "{source: file, path: in.jsonl, format: jsonl, on_error: skip}",
        }
        prob = {"generate": "0.00003", "jsonl": "0.0005"}
        for (name, src), seed in ((kv, seed) for kv in sources.items() for seed in (1, 3)):
            y = write(os.path.join(d, name + ".yaml"),
                      "pipeline: positions\nnodes:\n  src: %s\n"
                      "  per_k: {op: aggregate, input: src, key: k, count: true, sum: n,"
                      " parallelism: 2, emit: final}\n"
                      "  out: {sink: file, input: per_k, path: %s.out.jsonl}\n" % (src, name))
            p = run(["run", y, "-q", "--json", "--semantics", "effectively-once", "--mode", "dedup",
                     "--state", os.path.join(d, "%s-%d.db" % (name, seed)),
                     "--chaos", "seed=%d,fail=per_k:%s" % (seed, prob[name])], cwd=d, timeout=60)
            expect_rc(p, 0)
            s = json.loads(p.stdout)
            check(s["recoveries"]["count"] >= 1, "%s: recovered locally: %s" % (name, s["recoveries"]))
            got = read_jsonl(os.path.join(d, name + ".out.jsonl"))
            total = 300000 if name == "generate" else 60000
            check(sum(r["count"] for r in got) == total,
                  "%s: every record counted once: %d" % (name, sum(r["count"] for r in got)))
            check(sum(r["sum_n"] for r in got) == total * (total - 1) // 2, "%s: sums exact" % name)


@test
def max_recoveries_gives_up_with_exit_1():
    with Tmp() as d:
        p, s, _ = run_pipeline(d, "fanin", "dedup",
                               ["--chaos", "seed=1,fail=per_user:0.5",
                                "--set", "recovery.max_recoveries=3"])
        expect_rc(p, 1)
        check("max_recoveries" in p.stderr, p.stderr)


@test
def stopped_run_resumes_to_the_same_result():
    with Tmp() as d:
        p, _, ref_out = run_pipeline(d, "wordcount", "snapshot")
        expect_rc(p, 0)
        p, s, out = run_pipeline(d, "wordcount", "dedup", ["--max-events", "7"])
        expect_rc(p, 0)
        check(s["exit"] == "max-events", s["exit"])
        check(read_jsonl(out) == [], "emit: final wrote before the end")
        p, s, out = run_pipeline(d, "wordcount", "dedup")
        expect_rc(p, 0)
        check(s["exit"] == "completed", s["exit"])
        check(canon(read_jsonl(out)) == canon(read_jsonl(ref_out)), "outputs differ")
        events = s["sources"]["lines"]["events"]
        check(events < 21, "the resumed run read %d lines: it started over" % events)


@test
def another_parallelism_is_refused():
    with Tmp() as d:
        p, _, _ = run_pipeline(d, "wordcount", "dedup", ["--max-events", "5"])
        expect_rc(p, 0)
        p, _, _ = run_pipeline(d, "wordcount", "dedup", ["--set", "nodes.counts.parallelism=3"])
        expect_rc(p, 3)
        check("parallelism" in p.stderr and "counts" in p.stderr, p.stderr)


@test
def round_robin_out_of_a_source_resumes_exactly():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: rr
semantics: effectively-once
mode: dedup
nodes:
  g:
    source: generate
    count: 20000
    lua: return {n = n, k = "k" .. (n % 7)}
  tag:
    op: map
    input: {from: g, partition: round_robin}
    parallelism: 3
    lua: e.m = e.n * 2; return e
  c:
    op: count
    input: tag
    key: k
    emit: final
  out: {sink: file, input: c, path: out.jsonl}
""")
        st = os.path.join(d, "s.db")
        for i, extra in enumerate((["--max-events", "1300"], ["--max-events", "2000"])):
            p = run(["run", y, "--state", st, "-q"] + extra, cwd=d)
            expect_rc(p, 0)
        # Crashes leave the three consumers of `g` at different committed positions: the
        # source re-reads from the lowest, and must route each record where it went before.
        for i in range(60):
            p = run(["run", y, "--state", st, "-q", "--chaos",
                     "seed=4,crash-at=in-dedup-commit:%d" % (2 + i % 3)], cwd=d)
            if p.returncode == 0:
                break
            check(p.returncode == -9, "exit %d: %s" % (p.returncode, p.stderr))
        expect_rc(p, 0)
        check(i >= 2, "only %d crashes" % i)
        got = {r["k"]: r["count"] for r in read_jsonl(os.path.join(d, "out.jsonl"))}
        want = {}
        for n in range(20000):
            want["k%d" % (n % 7)] = want.get("k%d" % (n % 7), 0) + 1
        check(got == want, "%s != %s" % (got, want))


@test
def stdin_is_journaled_and_replayed():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: st
semantics: effectively-once
mode: dedup
nodes:
  in: {source: stdin, format: lines}
  w: {op: split, input: in, field: line, into: word}
  c: {op: count, input: w, key: word, emit: final}
  out: {sink: file, input: c, path: out.jsonl}
""")
        text = "".join("a b c\n" if i % 2 else "b c\n" for i in range(400))
        p = run(["run", y, "--state", os.path.join(d, "s.db"), "--json"], cwd=d, input=text)
        expect_rc(p, 0)
        got = {r["word"]: r["count"] for r in read_jsonl(os.path.join(d, "out.jsonl"))}
        check(got == {"a": 200, "b": 400, "c": 400}, got)
        check(json.loads(p.stdout)["stdin_journaled_bytes"] == len(text), p.stdout)


def last_sum(path, key, field):
    last = {}
    for r in read_jsonl(path):
        last[r[key]] = r[field]
    return sum(last.values())


def run_and_signal(y, st, d, extra, signals):
    """Starts `onceflow run`, sends each (delay, signal) in turn, expects exit 143 (the last
    is SIGTERM) and returns the checkpoints the state file lists."""
    proc = subprocess.Popen([BIN, "run", y, "--state", st] + extra, cwd=d,
                            stderr=subprocess.PIPE, text=True)
    for delay, sig in signals:
        time.sleep(delay)
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    check(proc.returncode == 143, "exit %s: %s" % (proc.returncode, err))
    p = run(["checkpoints", "list", "--state", st, "--json"])
    expect_rc(p, 0)
    return json.loads(p.stdout)


def state_total(st, node, checkpoint=None):
    args = ["state", "get", "--state", st, "--node", node, "--json"]
    if checkpoint is not None:
        args += ["--checkpoint", str(checkpoint)]
    q = run(args)
    expect_rc(q, 0)
    return sum(r["value"][0] for r in json.loads(q.stdout))


@test
def savepoints_drain_the_pipeline_and_restore():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: sp
semantics: effectively-once
mode: dedup
nodes:
  g:
    source: generate
    rate: 20000
    lua: return {n = n, k = "k" .. (n % 13)}
  c: {op: count, input: g, key: k, parallelism: 2}
  out: {sink: file, input: c, path: out.jsonl}
""")
        st = os.path.join(d, "s.db")
        cps = run_and_signal(y, st, d, [], [(0.7, signal.SIGUSR1), (0.7, signal.SIGTERM)])
        check([c["kind"] for c in cps] == ["savepoint", "savepoint"], cps)
        for c in cps:
            # Taken with nothing in flight: the counts add up to the events read.
            total = state_total(st, "c", c["id"])
            check(total == c["events"] and total > 0, "savepoint %s: counts %d, events %d"
                  % (c["id"], total, c["events"]))
        out = os.path.join(d, "out.jsonl")
        check(last_sum(out, "k", "count") == cps[-1]["events"], "output after SIGTERM")
        first = cps[0]
        p = run(["run", y, "--state", st, "--from-checkpoint", str(first["id"]),
                 "--max-events", "1000", "-q"], cwd=d)
        expect_rc(p, 0)
        check(last_sum(out, "k", "count") == first["events"] + 1000,
              "replay from savepoint %s: %d" % (first["id"], last_sum(out, "k", "count")))
        p = run(["run", y, "--state", st, "--max-events", "500", "-q"], cwd=d)
        expect_rc(p, 0)
        check(last_sum(out, "k", "count") == first["events"] + 1500, "resume after the replay")


@test
def two_readers_stop_at_one_position_for_a_savepoint():
    # A source feeding two branches has one reader per branch in dedup mode; a savepoint
    # (here the one SIGTERM takes) aligns them first, so both branches' counts add up to
    # the same number of events.
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), """pipeline: tb
semantics: effectively-once
mode: dedup
nodes:
  g:
    source: generate
    rate: 30000
    lua: return {n = n, k = "k" .. (n % 5)}
  a: {op: count, input: g, key: k}
  b: {op: count, input: g, key: k, parallelism: 2}
  a_out: {sink: file, input: a, path: a.jsonl}
  b_out: {sink: file, input: b, path: b.jsonl}
""")
        st = os.path.join(d, "s.db")
        cps = run_and_signal(y, st, d, ["--chaos", "seed=2,fail=a:0.002"],
                             [(1.2, signal.SIGTERM)])
        check(len(cps) == 1 and cps[0]["kind"] == "savepoint", cps)
        for node in ("a", "b"):
            total = state_total(st, node)
            check(total == cps[0]["events"], "node %s counted %d of %d events"
                  % (node, total, cps[0]["events"]))
        check(last_sum(os.path.join(d, "a.jsonl"), "k", "count") == cps[0]["events"], "a.jsonl")
        check(last_sum(os.path.join(d, "b.jsonl"), "k", "count") == cps[0]["events"], "b.jsonl")


if __name__ == "__main__":
    sys.exit(harness.main("dedup e2e", ONLY))

#!/usr/bin/env python3
"""End-to-end tests of `onceflow compare` (SPEC §6): the table and the JSON, the rows
under faults (in-process failures and self-inflicted crashes with restarts), the exit
codes, and that a bad pipeline is refused before anything runs.

Usage: compare_test.py ONCEFLOW_BINARY REPO_ROOT [TEST_NAME_SUBSTRING]
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tmp, check, expect_rc, run, test, write  # noqa: E402
import harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
ONLY = sys.argv[3] if len(sys.argv) > 3 else ""
harness.setup(BIN, ROOT)

HEADER = ("guarantee                    lost  duplicated  events/s  state bytes  recoveries"
          "  recovery ms (median)")
LABELS = ["at-most-once", "at-least-once", "effectively-once (snapshot)",
          "effectively-once (dedup)"]
ROWS = [("at-most-once", None), ("at-least-once", None), ("effectively-once", "snapshot"),
        ("effectively-once", "dedup")]


def gen_words(path, n_lines, seed=3):
    rng = random.Random(seed)
    vocab = ["w%03d" % i for i in range(400)]
    with open(path, "w") as f:
        for _ in range(n_lines):
            f.write(" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12))) + "\n")
    return path


def env_with_tmpdir(d):
    env = dict(os.environ)
    env["TMPDIR"] = d
    return env


def row_is_run(r):
    return "not_supported" not in r and "error" not in r


@test
def compare_wordcount_under_faults_json():
    with Tmp() as d:
        words = gen_words(os.path.join(d, "words.txt"), 30000)
        tmp = os.path.join(d, "tmp")
        os.makedirs(tmp)
        # About 225k words through `counts` (fail on some: in-process recoveries) and
        # 30000 source events (crash=2000 kills the process once; crash-prob adds more).
        p = run(["compare", "pipelines/wordcount.yaml", "--set", f"nodes.lines.path={words}",
                 "--set", "checkpoint.interval=50ms", "--chaos",
                 "seed=7,fail=counts:0.0002,crash=2000,crash-prob=0.0002", "--json"],
                timeout=300, env=env_with_tmpdir(tmp))
        check(p.returncode in (0, 4), f"exit {p.returncode}\n{p.stderr[-3000:]}")
        out = json.loads(p.stdout)
        ref = out["reference"]
        check(ref["pipeline"] == "wordcount" and ref["exit"] == "completed", ref)
        check(ref["sources"]["lines"]["events"] == 30000, ref["sources"])
        check(ref["sinks"]["out"]["records"] == 400, ref["sinks"])
        rows = out["rows"]
        check([(r["semantics"], r["mode"]) for r in rows] == ROWS, rows)
        for r in rows:
            for f in ("lost", "duplicated", "events_per_s", "state_bytes", "recoveries",
                      "recovery_ms_median", "runs"):
                check(f in r, f"row {r['semantics']}/{r['mode']} lacks {f}: {r}")
            check("error" not in r, f"row failed: {r}")
        snap = rows[2]
        check(row_is_run(snap), f"the snapshot row must run: {snap}")
        check(snap["lost"] == 0 and snap["duplicated"] == 0, f"snapshot row: {snap}")
        check(snap["runs"] >= 2, f"crash=2000 kills the first process: {snap}")
        check(snap["recoveries"] >= snap["runs"] - 1 + 1,
              f"restarts and in-process recoveries both count: {snap}")
        check(snap["recovery_ms_median"] is not None and snap["recovery_ms_median"] > 0, snap)
        check(snap["state_bytes"] > 0 and snap["events_per_s"] > 0, snap)
        alo = rows[1]
        check(row_is_run(alo), f"the at-least-once row must run: {alo}")
        check(alo["lost"] == 0, f"at-least-once loses nothing: {alo}")
        check(alo["runs"] >= 2, alo)
        amo = rows[0]
        if row_is_run(amo):
            check(amo["duplicated"] == 0, f"at-most-once duplicates nothing: {amo}")
        dedup = rows[3]
        check(row_is_run(dedup), f"the dedup row must run: {dedup}")
        check(dedup["lost"] == 0 and dedup["duplicated"] == 0, f"dedup row: {dedup}")
        check(dedup["runs"] >= 2, f"crash=2000 kills the first process: {dedup}")
        eo_bad = any(row_is_run(r) and (r["lost"] or r["duplicated"]) for r in rows[2:])
        check(p.returncode == (4 if eo_bad else 0), f"exit {p.returncode}, rows {rows}")
        check(os.listdir(tmp) == [], f"temporary folders removed: {os.listdir(tmp)}")


@test
def compare_table_without_faults():
    with Tmp() as d:
        words = gen_words(os.path.join(d, "words.txt"), 800)
        p = run(["compare", "pipelines/wordcount.yaml", "--set", f"nodes.lines.path={words}",
                 "--keep"], env=env_with_tmpdir(d))
        expect_rc(p, 0)
        lines = p.stdout.splitlines()
        check(lines[0] == HEADER, f"header: {lines[0]!r}")
        check(len(lines) == 5, p.stdout)
        for label, line in zip(LABELS, lines[1:]):
            check(line.startswith(label + " "), f"row {label!r}: {line!r}")
            if "not supported" in line:
                continue
            cells = line[29:].split()
            check(cells[0] == "0" and cells[1] == "0", f"no faults, no differences: {line!r}")
            check(cells[4] == "0" and cells[5] == "-", f"no recoveries: {line!r}")
            check(int(cells[2]) > 0, line)
        snap = lines[3][29:].split()
        check(snap[:2] == ["0", "0"] and int(snap[3]) > 0, f"snapshot row: {lines[3]!r}")
        # --keep: the folder is named on stderr and holds each row's outputs and logs.
        kept = [l.split(" in ", 1)[1] for l in p.stderr.splitlines() if "runs kept in" in l]
        check(len(kept) == 1 and os.path.isdir(kept[0]), p.stderr)
        for row in ("reference", "at-least-once", "snapshot"):
            check(os.path.exists(os.path.join(kept[0], row, "out.jsonl")), os.listdir(kept[0]))
            check(os.path.exists(os.path.join(kept[0], row, "summary-1.json")), row)


@test
def compare_orders_sqlite_sink():
    # A keyed sqlite sink: read back from each row's own database.
    with Tmp() as d:
        p = run(["compare", "pipelines/orders.yaml", "--chaos", "seed=3,fail=per_customer:0.002",
                 "--json"], env=env_with_tmpdir(d))
        check(p.returncode in (0, 4), f"exit {p.returncode}\n{p.stderr[-3000:]}")
        out = json.loads(p.stdout)
        check(out["reference"]["sinks"]["db"]["records"] > 0, out["reference"])
        snap = out["rows"][2]
        check(row_is_run(snap) and snap["lost"] == 0 and snap["duplicated"] == 0, snap)
        check(snap["recoveries"] >= 1 and snap["runs"] == 1, f"in-process only: {snap}")
        check(out["rows"][1]["lost"] == 0, out["rows"][1])
        check(out["notes"] == [], out["notes"])


@test
def compare_detects_duplicates_exit_4():
    # A pipeline that is not reproducible on purpose: its `files` source reads the run
    # summaries the earlier rows left in compare's temporary folder, so each row writes
    # more records than the reference (which found none) — the mismatch compare exists for.
    with Tmp() as d:
        y = write(os.path.join(d, "leak.yaml"),
                  "pipeline: leak\nnodes:\n  earlier:\n    source: files\n"
                  f"    glob: {d}/onceflow-compare-*/*/summary-*.json\n    format: lines\n"
                  "  out: {sink: file, input: earlier, path: out.jsonl}\n")
        p = run(["compare", y, "--json"], env=env_with_tmpdir(d))
        expect_rc(p, 4)
        rows = json.loads(p.stdout)["rows"]
        check(rows[0]["lost"] == 0 and rows[0]["duplicated"] > 0, rows[0])
        for prev, row in zip(rows, rows[1:3]):
            check(row["lost"] == 0 and row["duplicated"] > prev["duplicated"], (prev, row))
        check("effectively-once (snapshot) differs from the reference" in p.stderr, p.stderr)
        check("record extra" in p.stderr, p.stderr)
        check("an effectively-once row lost or duplicated" in p.stderr, p.stderr)


@test
def compare_refuses_bad_pipeline_before_running():
    with Tmp() as d:
        y = write(os.path.join(d, "bad.yaml"),
                  "pipeline: bad\nnodes:\n  src:\n    source: generate\n    count: 10\n"
                  "  out:\n    sink: file\n    input: srcc\n    path: o.jsonl\n")
        p = run(["compare", y], env=env_with_tmpdir(d))
        expect_rc(p, 2)
        check(f"{y}:8:12: error:" in p.stderr, p.stderr)
        check(p.stdout == "", p.stdout)
        check(sorted(os.listdir(d)) == ["bad.yaml"], f"nothing ran: {os.listdir(d)}")
        p = run(["compare", "pipelines/wordcount.yaml", "--chaos", "fail=lines:0.1"],
                env=env_with_tmpdir(d))
        expect_rc(p, 2)
        check("only operators fail on records" in p.stderr, p.stderr)
        p = run(["compare", "pipelines/wordcount.yaml", "--chaos", "crash-prob=2"],
                env=env_with_tmpdir(d))
        expect_rc(p, 2)
        check(sorted(os.listdir(d)) == ["bad.yaml"], f"nothing ran: {os.listdir(d)}")


@test
def compare_skips_sinks_it_cannot_read():
    with Tmp() as d:
        y = write(os.path.join(d, "gen.yaml"),
                  "pipeline: gen\nnodes:\n  src:\n    source: generate\n    count: 500\n"
                  "  keep:\n    sink: file\n    input: src\n    path: o.jsonl\n"
                  "  drop:\n    sink: discard\n    input: src\n")
        p = run(["compare", y, "--json"], env=env_with_tmpdir(d))
        expect_rc(p, 0)
        out = json.loads(p.stdout)
        check(any("'drop'" in n for n in out["notes"]), out["notes"])
        check("sink 'drop' (discard) cannot be read back" in p.stderr, p.stderr)
        for r in out["rows"]:
            if row_is_run(r):
                check(r["lost"] == 0 and r["duplicated"] == 0, r)
        check(not os.path.exists(os.path.join(d, "o.jsonl")),
              "outputs go to the temporary folders, never to the pipeline's own paths")


@test
def compare_interrupted_cleans_up():
    import signal
    import subprocess
    import time
    with Tmp() as d:
        # An unbounded, rate-limited source: the reference run never ends by itself.
        y = write(os.path.join(d, "slow.yaml"),
                  "pipeline: slow\nnodes:\n  src:\n    source: generate\n    rate: 200\n"
                  "  out:\n    sink: file\n    input: src\n    path: o.jsonl\n")
        tmp = os.path.join(d, "tmp")
        os.makedirs(tmp)
        proc = subprocess.Popen([BIN, "compare", y], env=env_with_tmpdir(tmp),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline and not any(
                f == "out.jsonl" for _, _, fs in os.walk(tmp) for f in fs):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # to the parent only: it must pass it on
        _, err = proc.communicate(timeout=60)
        check(proc.returncode == 130, f"exit 130 after SIGINT, got {proc.returncode}: {err}")
        check(os.listdir(tmp) == [], f"temporary folders removed: {os.listdir(tmp)}")


if __name__ == "__main__":
    sys.exit(harness.main("compare", ONLY))

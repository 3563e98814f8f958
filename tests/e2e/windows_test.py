#!/usr/bin/env python3
"""End-to-end tests of the event-time operators `window` and `join` through the binary:
outputs against an independent computation in Python, under snapshot and dedup mode,
with several upstream channels, after a stop and resume, and late records (counted in the
node's `skipped`, dead-lettered with on_error: dead_letter).

Usage: windows_test.py ONCEFLOW_BINARY REPO_ROOT [TEST_NAME_SUBSTRING]
"""
import json
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Tmp, canon, check, expect_rc, read_jsonl, run, test, write  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
ONLY = sys.argv[3] if len(sys.argv) > 3 else ""
PIPES = os.path.join(ROOT, "pipelines")
harness.setup(BIN, ROOT)


def windows_reference(rows, key, size, slide, fields):
    """{(key, start): {window record}} of sliding windows (slide == size: tumbling) with
    count, sum_F and max_F, nothing late."""
    w = {}
    for r in rows:
        t = r["ts"]
        start = t // slide * slide
        while start > t - size:
            k = (r[key], start)
            a = w.setdefault(k, {key: r[key], "window_start": start, "window_end": start + size,
                                 **{f"sum_{f}": 0 for f in fields}, **{f"max_{f}": None for f in fields},
                                 "count": 0})
            a["count"] += 1
            for f in fields:
                a[f"sum_{f}"] += r[f]
                a[f"max_{f}"] = r[f] if a[f"max_{f}"] is None else max(a[f"max_{f}"], r[f])
            start -= slide
    return w


def by_window(records, key):
    return {(r[key], r["window_start"]): r for r in records}


@test
def example_windows_match_an_independent_computation():
    rows = read_jsonl(os.path.join(PIPES, "data/pageviews.jsonl"))
    ref = windows_reference(rows, "page", 10000, 10000, ["ms"])
    want = read_jsonl(os.path.join(PIPES, "expected/windows.jsonl"))
    check(by_window(want, "page") == ref, "expected/windows.jsonl is the tumbling-window result")
    for mode in ("snapshot", "dedup"):
        with Tmp() as d:
            out = os.path.join(d, "w.jsonl")
            p = run(["run", "pipelines/windows.yaml", "--mode", mode, "--set", f"nodes.out.path={out}",
                     "--set", "nodes.per_page.slide=2500ms", "--state", os.path.join(d, "s.db"), "-q"])
            expect_rc(p, 0)
            got = read_jsonl(out)
            check(len(got) == len(by_window(got, "page")), f"{mode}: each window once")
            check(by_window(got, "page") == windows_reference(rows, "page", 10000, 2500, ["ms"]),
                  f"{mode}: sliding windows differ")


@test
def example_joins_match_an_independent_computation():
    imps = read_jsonl(os.path.join(PIPES, "data/impressions.jsonl"))
    clicks = read_jsonl(os.path.join(PIPES, "data/clicks.jsonl"))
    ref = sorted((i["imp"], c["click"]) for i in imps for c in clicks
                 if i["ad"] == c["ad"] and abs(i["ts"] - c["ts"]) <= 10000)
    want = read_jsonl(os.path.join(PIPES, "expected/joins.jsonl"))
    check(sorted((r["left"]["imp"], r["right"]["click"]) for r in want) == ref,
          "expected/joins.jsonl holds every pair within 10 s")
    with Tmp() as d:
        out = os.path.join(d, "j.jsonl")
        p = run(["run", "pipelines/joins.yaml", "--mode", "dedup", "--set", f"nodes.out.path={out}",
                 "--set", "nodes.matched.parallelism=2", "--state", os.path.join(d, "s.db"), "-q"])
        expect_rc(p, 0)
        check(canon(read_jsonl(out)) == canon(want), "dedup, parallelism 2: the same pairs")


@test
def injected_failures_recover_to_the_same_windows_and_pairs():
    """--chaos fail= on the window and join nodes: recovered (globally in snapshot mode,
    locally in dedup mode) to exactly the failure-free output."""
    for name, node in (("windows", "per_page"), ("joins", "matched")):
        want = canon(read_jsonl(os.path.join(PIPES, f"expected/{name}.jsonl")))
        for mode in ("snapshot", "dedup"):
            with Tmp() as d:
                out = os.path.join(d, "o.jsonl")
                p = run(["run", f"pipelines/{name}.yaml", "--mode", mode, "--set", f"nodes.out.path={out}",
                         "--set", f"nodes.{node}.parallelism=2", "--checkpoint-interval", "20ms",
                         "--chaos", f"seed=3,fail={node}:0.01", "--state", os.path.join(d, "s.db"),
                         "--json", "-q"])
                expect_rc(p, 0)
                s = json.loads(p.stdout)
                check(s["recoveries"]["count"] > 0, f"{name}/{mode}: no failure injected")
                check(canon(read_jsonl(out)) == want, f"{name}/{mode}: output differs after recoveries")


GEN_YAML = """pipeline: gen-windows
checkpoint: {interval: 100ms}
nodes:
  events:
    source: generate
    count: 40000
    parallelism: %(src)d
    rate: %(rate)d
    lua: 'return {ts = 1000000 + n * 5, page = "p" .. (n * 31 %% 7), ms = n %% 101}'
  per_page:
    op: window
    input: events
    key: page
    time: ts
    size: 1s
    slide: 500ms
    count: true
    sum: ms
    max: ms
    parallelism: %(par)d
  out: {sink: file, input: per_page, path: out.jsonl}
"""


def gen_rows(n):
    return [{"ts": 1000000 + i * 5, "page": "p%d" % (i * 31 % 7), "ms": i % 101} for i in range(n)]


@test
def several_upstream_channels_and_a_resume():
    """Two source instances into two window instances (two channels each, each ordered
    in event time): the watermark is their minimum, nothing is late, and the result is
    exact; a run stopped early resumes to the same result (open windows and channel
    watermarks restored from the state)."""
    ref = windows_reference(gen_rows(40000), "page", 1000, 500, ["ms"])
    for mode in ("snapshot", "dedup"):
        with Tmp() as d:
            yaml = os.path.join(d, "p.yaml")
            write(yaml, GEN_YAML % {"src": 2, "par": 2, "rate": 40000})
            st = os.path.join(d, "s.db")
            # --max-events stops the run part way (a clean stop, resumable).
            p = run(["run", yaml, "--mode", mode, "--state", st, "--max-events", "15000", "--json", "-q"])
            expect_rc(p, 0)
            s = json.loads(p.stdout)
            check(s["exit"] == "max-events", f"{mode}: first run stopped early: {s['exit']}")
            part = read_jsonl(os.path.join(d, "out.jsonl"))
            check(0 < len(part) < len(ref), f"{mode}: windows fired before the stop ({len(part)})")
            p = run(["run", yaml, "--mode", mode, "--state", st, "--json", "-q"])
            expect_rc(p, 0)
            s = json.loads(p.stdout)
            check(s["nodes"]["per_page"]["skipped"] == 0, f"{mode}: nothing late")
            got = read_jsonl(os.path.join(d, "out.jsonl"))
            check(len(got) == len(ref), f"{mode}: {len(got)} windows, want {len(ref)}")
            check(by_window(got, "page") == ref, f"{mode}: windows differ from the reference")


SPARSE_YAML = """pipeline: sparse
checkpoint: {interval: 100ms}
nodes:
  events:
    source: generate
    count: 100000
    parallelism: 2
    rate: 20000
    lua: 'return {ts = 1000000 + n * 5, page = "k" .. (n % 2)}'
  per_page:
    op: window
    input: events
    key: page
    time: ts
    size: 1s
    count: true
    parallelism: 2
  out: {sink: file, input: per_page, path: out.jsonl}
"""


@test
def in_band_watermarks_move_channels_without_records():
    """Source instance i produces only key k<i>, and the two keys hash to different window
    instances, so each window instance has a channel that never carries a record.
    In-band watermarks from that channel's sender still move its watermark: windows fire
    during the run, not only at the end of input (without them, none fires before this
    stopped run ends)."""
    for mode in ("snapshot", "dedup"):
        with Tmp() as d:
            yaml = os.path.join(d, "p.yaml")
            write(yaml, SPARSE_YAML)
            st = os.path.join(d, "s.db")
            p = run(["run", yaml, "--mode", mode, "--state", st, "--max-events", "20000", "-q"])
            expect_rc(p, 0)
            got = read_jsonl(os.path.join(d, "out.jsonl"))
            for k in ("k0", "k1"):
                n = sum(1 for r in got if r["page"] == k)
                # 10000 events of a key, 5 ms apart in event time, 1 s windows: ~99 fired.
                check(n >= 90, f"{mode}: {n} windows of {k} fired before the stop")


LATE_YAML = """pipeline: late
nodes:
  events: {source: file, path: events.jsonl, format: jsonl}
  w:
    op: window
    input: events
    key: k
    time: ts
    size: 10ms
    lateness: %(lateness)s
    count: true
%(on_error)s
  out: {sink: file, input: w, path: out.jsonl}
"""


@test
def late_records_are_counted_and_dead_lettered():
    ts = [1, 5, 12, 3, 25, 19, 11, 30, 29, 2, 41]
    with Tmp() as d:
        write(os.path.join(d, "events.jsonl"),
              "".join(json.dumps({"k": "a", "ts": t}) + "\n" for t in ts))

        def expected(lateness):
            # One channel: a record is late when the last window holding it (ending at
            # t // 10 * 10 + 10) ends at or before the watermark (max seen - lateness).
            seen, late, counts = None, [], defaultdict(int)
            for t in ts:
                wm = None if seen is None else seen - lateness
                if wm is not None and t // 10 * 10 + 10 <= wm:
                    late.append(t)
                    continue
                counts[t // 10 * 10] += 1
                seen = t if seen is None else max(seen, t)
            return late, dict(counts)

        for lateness, on_error in (("0ms", ""), ("8ms", ""), ("0ms", "    on_error: dead_letter\n    dead_letter: dl.jsonl\n")):
            yaml = os.path.join(d, "p.yaml")
            write(yaml, LATE_YAML % {"lateness": lateness, "on_error": on_error.rstrip("\n")})
            p = run(["run", yaml, "--state", os.path.join(d, "s.db"), "--fresh", "--json", "-q"])
            expect_rc(p, 0)  # late records are never an error, whatever on_error says
            late, counts = expected(int(lateness[:-2]))
            s = json.loads(p.stdout)
            check(s["nodes"]["w"]["skipped"] == len(late),
                  f"lateness {lateness}: skipped {s['nodes']['w']['skipped']}, want {len(late)}")
            got = {r["window_start"]: r["count"] for r in read_jsonl(os.path.join(d, "out.jsonl"))}
            check(got == counts, f"lateness {lateness}: windows {got}, want {counts}")
            if on_error:
                dl = read_jsonl(os.path.join(d, "dl.jsonl"))
                check([r["record"]["ts"] for r in dl] == late and
                      all(r["error"] == "late record" and r["node"] == "w" for r in dl),
                      f"dead letters {dl}")
        check(len(expected(0)[0]) >= 3, "the data has late records")


if __name__ == "__main__":
    sys.exit(harness.main("e2e_windows", ONLY))

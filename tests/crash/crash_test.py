#!/usr/bin/env python3
"""Crash test of onceflow's effectively-once snapshot guarantee (SPEC §1, §2, §6).

For each pipeline (pipelines/wordcount.yaml, orders.yaml, fanin.yaml) on generated input
large enough that one run lasts a few seconds:

  reference   one failure-free run under --semantics at-most-once, fresh state: the
              expected sink contents (SPEC §1 "judged against a failure-free run").
  clean       one failure-free run of the command under test, fresh state.
  kill -9     the command under test with a fresh state file, SIGKILLed from outside at a
              random instant (random.Random(seed) delay in [0.05, 0.8] s after start), then
              run again unchanged (no --fresh) until it exits 0 with the input consumed. At
              least --kills kills: when a run finishes before that, the outputs are
              compared and the cycle starts over with a fresh state file and outputs.
  chaos fail  --chaos seed=N,fail=NODE:P: in-process recovery, one run, exit 0 (under
              at-most-once the failed records are dropped instead: the summary's
              `dropped` of NODE must be > 0 and nothing recovers).
  crash-at    --chaos crash-at=POINT for before-barrier, after-barrier, after-sink-write,
              in-checkpoint-txn, after-checkpoint-complete: the process SIGKILLs itself
              (return code -9), then the same command again until exit 0.

After every completed run sequence the sinks are compared with the reference, as SPEC §1
defines it: for a sink fed by a keyed operator (and the sqlite sink with `key`), the last
value per key — lost = sum of max(0, reference - run), duplicated = sum of
max(0, run - reference) over the numeric fields; for the linear pipelines (one source, one
path), also the multiset of records written (lost = records missing, duplicated = records
extra). effectively-once must give 0 and 0 (at-least-once: 0 lost; at-most-once: 0
duplicated — see the hidden --semantics option).

Pipeline `windows` (not run by default; CTest `crash` and `crash_dedup` name it; its
YAML is written into the work dir): generate -> sliding event-time `window` -> file,
compared per (page, window_start) and as a multiset of window records.

Pipeline `joins` (not run by default nor by CTest, to keep CI short; its YAML is written
into the work dir): two generated streams -> interval `join` -> file, compared as a
multiset of pairs under every semantics.

Pipeline `passthrough` (not run by default; its YAML is written into the work dir):
generate -> map -> file with no keyed operator, compared as a multiset of records under
every semantics, so a record processed twice shows as an extra record even where a keyed
sink would hide a replay from a consistent checkpoint (at-most-once's CTest runs it).

Pipeline `plugin` (not run by default; written into the work dir like passthrough):
generate -> the example native plugin's moving_avg (keyed, parallelism 2, state through
the plugin ABI) -> file, compared as a multiset of records.

Usage:
  crash_test.py --binary build/cli/onceflow [--work DIR] [--kills N] [--seed N]
                [--pipelines wordcount,orders,fanin[,windows][,joins][,passthrough][,plugin]] [--quick]
                [--plugin LIB.so]
                [--mode snapshot|dedup]
  --mode         the effectively-once mode under test; dedup replaces the barrier and
                 checkpoint crash points by after-sink-write and in-dedup-commit
  --quick        smaller inputs and 5 kills per pipeline (about a minute)
Hidden, for developing the harness:
  --semantics S  the semantics under test (default effectively-once; other values drop
                 --mode snapshot and use that semantics' SPEC §1 rule)
  --dry          replace every kill and self-crash by a complete run (no kill, no --chaos
                 crash-at): exercises input generation, reference and comparison logic
  --scale F      multiply the input sizes by F
  --modes LIST   subset of clean,kill,fail,crash-at

Input: bench_gen_words / bench_gen_orders from the build directory of --binary
(BUILD/tests/bench/) when built, else generated in Python. Inputs are cached in
WORK/data/ by size. Prints one row per (pipeline, mode) and a summary per pipeline; exits
1 on any mismatch or unexpected exit (with a sample of the differences), 2 on bad usage.
"""
import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CRASH_POINTS = ["before-barrier", "after-barrier", "after-sink-write", "in-checkpoint-txn",
                "after-checkpoint-complete"]
# Dedup mode has no barriers or checkpoints: its hazards are a sink write not yet
# committed and a crash inside a task's commit transaction.
DEDUP_CRASH_POINTS = ["after-sink-write", "in-dedup-commit"]
RUN_TIMEOUT_S = 180        # one onceflow invocation
MAX_RUNS_PER_CYCLE = 150   # a run sequence that needs more makes no progress: failure
STALL_KILLS = 30           # consecutive kills without a new checkpoint (the last ones
                           # with delays stretched by up to 7 s): no progress
FLOAT_TOL = 1e-6           # relative tolerance for floating-point values (sums)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------
# Pipelines: node names and comparison rules, as in pipelines/*.yaml.

PIPELINES = {
    "wordcount": {
        "file": "wordcount.yaml",
        "source": "lines", "source_kind": "file",
        "sink": "out", "sink_kind": "file",
        "keyed": "counts", "key": ["word"],
        "linear": True,
        "fail_node": "counts",
        # Input sizes (words) by mode; one default run lasts a few seconds. A quick run
        # must outlast the first 200 ms barrier, or crash-at=before-barrier never fires.
        "size": 24_000_000, "quick_size": 8_000_000,
        "extra_set": [],
    },
    "orders": {
        "file": "orders.yaml",
        "source": "orders", "source_kind": "file",
        "sink": "db", "sink_kind": "sqlite", "table": "revenue",
        "keyed": "per_customer", "key": ["customer"],
        "linear": True,
        "fail_node": "per_customer",
        "size": 8_000_000, "quick_size": 2_500_000,
        "extra_set": [],
    },
    "fanin": {
        "file": "fanin.yaml",
        "source": "events", "source_kind": "generate",
        "sink": "out", "sink_kind": "file",
        "keyed": "per_user", "key": ["user", "kind"],
        "linear": False,   # two branches merge: only final values per key are comparable
        "fail_node": "per_user",
        "size": 1_200_000, "quick_size": 400_000,
        "extra_set": [],
    },
    # Not in the default list nor in CTest (run it by hand): an interval join of two
    # generated streams (JOINS_YAML), its pairs compared as a multiset.
    "joins": {
        "file": None,
        "source": "left", "source_kind": "generate",
        "sink": "out", "sink_kind": "file",
        "keyed": None, "key": ["left", "right"],
        "linear": True,
        "records_only": True,
        "fail_node": "matched",
        "size": 200_000, "quick_size": 100_000,
        "extra_set": [],
    },
    # Not in the default list: records that no keyed operator folds, so a replayed record
    # shows as an extra record in the multiset under every semantics (a keyed sink hides a
    # replay from a consistent checkpoint: the final values come out right). The file is
    # written into the work dir (PASSTHROUGH_YAML).
    "passthrough": {
        "file": None,
        "source": "events", "source_kind": "generate",
        "sink": "out", "sink_kind": "file",
        "keyed": None, "key": ["n"],
        "linear": True,
        "records_only": True,  # the multiset rule applies under every semantics
        "fail_node": "tag",
        "size": 1_000_000, "quick_size": 300_000,
        "extra_set": [],
    },
    # Not in the default list: the example native plugin (operators/plugin/example), whose
    # per-key state lives in host state through the C ABI. Every input record comes out
    # once with its key's moving average, so the multiset rule is exact under
    # effectively-once; a state restored wrongly shows as a wrong average. The file is
    # written into the work dir with the library's absolute path (--plugin).
    "plugin": {
        "file": None,
        "source": "events", "source_kind": "generate",
        "sink": "out", "sink_kind": "file",
        "keyed": "avg", "key": ["n"],
        "linear": True,
        "fail_node": "avg",
        "size": 200_000, "quick_size": 60_000,
        "extra_set": [],
    },
    # Event-time sliding windows (WINDOWS_YAML, written into the work dir): each window is
    # emitted once, when the watermark passes its end, so the output is a multiset of
    # window records (event times increase per channel: nothing is late, and the output
    # is the same however a recovery interleaves the instances).
    "windows": {
        "file": None,
        "source": "events", "source_kind": "generate",
        "sink": "out", "sink_kind": "file",
        "keyed": "per_page", "key": ["page", "window_start"],
        "linear": True,
        "fail_node": "per_page",
        "size": 400_000, "quick_size": 300_000,
        "extra_set": [],
    },
}

PLUGIN_YAML = """pipeline: plugin
description: Per-user moving averages by the example plugin (crash_test.py).
checkpoint: {interval: 1s}
nodes:
  events:
    source: generate
    count: 1000
    rate: 100000           # a run outlives a few barriers
    lua: 'return {n = n, user = "u" .. (n %% 37), v = (n * 7) %% 101}'
  avg:
    op: plugin
    input: events
    library: %s
    name: moving_avg
    key: user
    parallelism: 2
    config: {field: v, window: 4}
  out: {sink: file, input: avg, path: out.jsonl}
"""

PASSTHROUGH_YAML = """pipeline: passthrough
description: Every generated event tagged and written once (crash_test.py).
checkpoint: {interval: 1s}
nodes:
  events: {source: generate, count: 1000, rate: 500000}  # a run outlives a few barriers
  tag: {op: map, input: events, lua: 'return {n = e.n, tag = "t" .. (e.n % 7)}'}
  out: {sink: file, input: tag, path: out.jsonl}
"""

WINDOWS_YAML = """pipeline: windows
description: Sliding event-time windows per page (crash_test.py).
checkpoint: {interval: 1s}
nodes:
  events:
    source: generate
    count: 1000
    rate: 300000      # a run outlives a few barriers
    lua: 'return {ts = 1700000000000 + n * 3, page = "p" .. (n * 7919 % 41), ms = n % 997}'
  per_page:
    op: window
    input: events
    key: page
    time: ts
    size: 2s
    slide: 1s
    count: true
    sum: ms
    max: ms
    parallelism: 2
  out: {sink: file, input: per_page, path: out.jsonl}
"""

JOINS_YAML = """pipeline: joins
description: An interval join of two generated streams (crash_test.py).
checkpoint: {interval: 1s}
nodes:
  left:
    source: generate
    count: 1000
    rate: 100000
    lua: 'return {ts = 1700000000000 + n * 7, ad = "a" .. (n % 13), imp = n}'
  right:
    source: generate
    count: 60000
    rate: 60000
    lua: 'return {ts = 1700000000003 + n * 11, ad = "a" .. (n * 5 % 13), click = n}'
  matched:
    op: join
    input: [left, right]
    key: ad
    time: ts
    within: 40ms
    parallelism: 2
  out: {sink: file, input: matched, path: out.jsonl}
"""


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# Input generation

def find_tool(binary, name):
    build = os.path.dirname(os.path.dirname(os.path.abspath(binary)))
    for cand in (os.path.join(build, "tests", "bench", name),
                 os.path.join(ROOT, "tests", "bench", "data", "bin", name)):
        if os.access(cand, os.X_OK):
            return cand
    return None


def py_gen_words(path, n, seed=1):
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = set()
    while len(vocab) < 20000:
        vocab.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 12))))
    vocab = sorted(vocab)
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    with open(path, "w") as f:
        left = n
        while left > 0:
            k = min(left, 200_000)
            words = rng.choices(vocab, weights, k=k)
            lines = []
            i = 0
            while i < k:
                step = rng.randint(5, 15)
                lines.append(" ".join(words[i:i + step]))
                i += step
            f.write("\n".join(lines) + "\n")
            left -= k


def py_gen_orders(path, n, seed=2):
    rng = random.Random(seed)
    statuses = ["paid"] * 80 + ["cancelled"] * 12 + ["refunded"] * 5 + ["pending"] * 3
    with open(path, "w") as f:
        buf = []
        for i in range(1, n + 1):
            c = rng.randrange(500) if rng.random() < 0.25 else rng.randrange(10000)
            cents = rng.randint(50, 1000) if rng.random() < 0.2 else rng.randint(1001, 50000)
            buf.append('{"order_id":%d,"customer":"c%04d","amount":%d.%02d,"qty":%d,'
                       '"ts":%d,"status":"%s"}\n'
                       % (i, c, cents // 100, cents % 100, rng.randint(1, 5),
                          1700000000000 + i, rng.choice(statuses)))
            if len(buf) >= 100_000:
                f.write("".join(buf))
                buf.clear()
        f.write("".join(buf))


def ensure_input(args, name, n):
    """Returns the input path (None for a generated source)."""
    p = PIPELINES[name]
    if p["source_kind"] != "file":
        return None
    data = os.path.join(args.work, "data")
    os.makedirs(data, exist_ok=True)
    kind = "words" if name == "wordcount" else "orders"
    path = os.path.join(data, "%s-%d.%s" % (kind, n, "txt" if kind == "words" else "jsonl"))
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return path
    t0 = time.monotonic()
    tool = find_tool(args.binary, "bench_gen_" + kind)
    tmp = path + ".tmp"
    if tool:
        subprocess.run([tool, tmp, str(n)], check=True, stdout=subprocess.DEVNULL)
        how = os.path.basename(tool)
    else:
        (py_gen_words if kind == "words" else py_gen_orders)(tmp, n)
        how = "python"
    os.replace(tmp, path)
    log("  generated %s (%d %s, %.1f MiB, %s, %.1f s)" % (
        os.path.basename(path), n, kind, os.path.getsize(path) / 2**20, how,
        time.monotonic() - t0))
    return path


# ---------------------------------------------------------------------------
# Running onceflow

class Target:
    """One pipeline instance: its state file, outputs and the command line."""

    def __init__(self, args, name, n, input_path, tag, semantics, extra=()):
        self.args = args
        self.name = name
        self.p = PIPELINES[name]
        self.dir = os.path.join(args.work, name, tag)
        self.state = os.path.join(self.dir, "state.db")
        ext = ".db" if self.p["sink_kind"] == "sqlite" else ".jsonl"
        self.output = os.path.join(self.dir, "out" + ext)
        self.stderr_path = os.path.join(self.dir, "stderr-last.txt")
        self.stderr_all = os.path.join(self.dir, "stderr.txt")  # every run's, in order
        self.last_stderr = ""
        self.nrun = 0
        cmd = [args.binary, "run", os.path.join(args.pipelines_dir, self.p["file"]),
               "--semantics", semantics]
        if semantics == "effectively-once":
            cmd += ["--mode", args.mode]
        cmd += ["--state", self.state, "--checkpoint-interval", "200ms", "--quiet"]
        if input_path:
            cmd += ["--set", "nodes.%s.path=%s" % (self.p["source"], input_path)]
        else:
            cmd += ["--set", "nodes.%s.count=%d" % (self.p["source"], n)]
        cmd += ["--set", "nodes.%s.path=%s" % (self.p["sink"], self.output)]
        for s in self.p["extra_set"]:
            cmd += ["--set", s]
        cmd += list(extra)
        self.cmd = cmd

    def reset(self):
        """Fresh state file and outputs."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)

    def start(self):
        self.nrun += 1
        self._err = open(self.stderr_path, "wb")
        return subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=self._err,
                                stdin=subprocess.DEVNULL)

    def finish(self, proc, timeout=RUN_TIMEOUT_S):
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self._close()
            raise Failure("%s: run did not finish within %d s: %s" % (
                self.name, timeout, " ".join(self.cmd)))
        self._close()
        return rc

    def _close(self):
        self._err.close()
        with open(self.stderr_path, "rb") as f:
            self.last_stderr = f.read().decode("utf-8", "replace")
        with open(self.stderr_all, "a") as f:
            f.write("=== run %d\n%s" % (self.nrun, self.last_stderr))

    def run(self):
        """One complete run: (return code, wall seconds)."""
        t0 = time.monotonic()
        rc = self.finish(self.start())
        return rc, time.monotonic() - t0

    def checkpoints(self):
        """`onceflow checkpoints list --state S --json` (SPEC §2): a list of dicts, or None
        when the state file or the command is not there (yet)."""
        if not os.path.exists(self.state):
            return None
        try:
            p = subprocess.run([self.args.binary, "checkpoints", "list", "--state", self.state,
                                "--json"], capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                return None
            out = json.loads(p.stdout)
            return out if isinstance(out, list) else None
        except (ValueError, subprocess.TimeoutExpired, OSError):
            return None

    def check_consumed(self):
        """After an exit 0 under a checkpointing semantics: the newest checkpoint must be
        a `final` one with status `completed` (every source reached its end, SPEC §2).
        Skipped when the listing is unavailable."""
        cps = self.checkpoints()
        if not cps:
            return
        latest = [c for c in cps if c.get("latest")] or cps[-1:]
        c = latest[-1]
        if c.get("kind") != "final" or c.get("status") != "completed":
            raise Failure("%s: exit 0 but the latest checkpoint is %s/%s (id %s), not "
                          "final/completed: the input was not consumed\n    command: %s"
                          % (self.name, c.get("kind"), c.get("status"), c.get("id"),
                             " ".join(self.cmd)))

    def explain(self, rc):
        tail = "\n".join("    | " + l for l in self.last_stderr.strip().splitlines()[-8:])
        return "%s: exit %s (run %d of this state file; stderr of all runs: %s)\n" \
            "    command: %s\n%s" % (self.name, rc, self.nrun, self.stderr_all,
                                   " ".join(self.cmd), tail)


# ---------------------------------------------------------------------------
# Reading and comparing sinks

def read_sink(t):
    """The sink's records as a list of dicts."""
    p = t.p
    if p["sink_kind"] == "sqlite":
        if not os.path.exists(t.output):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % t.output, uri=True)
        try:
            con.row_factory = sqlite3.Row
            # The sink creates its table with its first rows: an at-most-once run that
            # lost everything (a crash whose lease covered the whole input) has none.
            if con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                           (p["table"],)).fetchone() is None:
                return []
            try:
                rows = con.execute('SELECT * FROM "%s"' % p["table"]).fetchall()
            except sqlite3.OperationalError as e:
                raise Failure("%s: reading table %s of %s: %s" % (t.name, p["table"], t.output, e))
            return [dict(r) for r in rows]
        finally:
            con.close()
    if not os.path.exists(t.output):
        return []
    out = []
    with open(t.output, "rb") as f:
        data = f.read()
    for i, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise Failure("%s: %s line %d is not JSON: %r" % (t.name, t.output, i + 1, line[:200]))
    if data and not data.endswith(b"\n"):
        raise Failure("%s: %s ends with a torn line: %r" % (t.name, t.output, data[-200:]))
    return out


def numeric_fields(rec, key):
    return {k: v for k, v in rec.items()
            if k not in key and isinstance(v, (int, float)) and not isinstance(v, bool)}


def close(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return abs(a - b) <= FLOAT_TOL * max(1.0, abs(a), abs(b))


def _hashable(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float):
        return round(v, 6)
    return v


def last_by_key(records, key):
    """{key tuple: last record with that key} (a later record of a key replaces an
    earlier one, as an upsert or an update stream does)."""
    d = {}
    for r in records:
        try:
            k = tuple(_hashable(r[f]) for f in key)
        except KeyError:
            k = ("<no key>", json.dumps(r, sort_keys=True))
        d[k] = r
    return d


def multiset(records):
    return Counter(tuple(sorted((f, _hashable(v)) for f, v in r.items())) for r in records)


class Reference:
    """The failure-free run's sink contents, indexed once."""

    def __init__(self, records, p):
        self.records = records
        self.by_key = last_by_key(records, p["key"])
        self.multiset = multiset(records) if p["linear"] else None


def compare(ref, run_records, p):
    """Returns a dict: records (keys compared), lost, duplicated (SPEC §1, numeric fields,
    last value per key), other (keys whose non-numeric fields differ), samples (list of
    str), and for linear pipelines the multiset view: ms_records, ms_lost, ms_duplicated."""
    key = p["key"]
    res = {"records": 0, "lost": 0, "duplicated": 0, "samples": [], "other": 0}
    run = last_by_key(run_records, key)
    res["records"] = len(ref.by_key)
    lost = dup = 0
    for k in sorted(set(ref.by_key) | set(run), key=repr):
        a, b = ref.by_key.get(k), run.get(k)
        if a is not None and b is not None and a == b:
            continue
        na = numeric_fields(a, key) if a else {}
        nb = numeric_fields(b, key) if b else {}
        bad = a is None or b is None
        for f in set(na) | set(nb):
            va, vb = na.get(f, 0), nb.get(f, 0)
            if close(va, vb):
                continue
            bad = True
            if va > vb:
                lost += va - vb
            else:
                dup += vb - va
        if not bad:
            # Non-numeric, non-key fields must agree too.
            oa = {f: v for f, v in a.items() if f not in na and f not in key}
            ob = {f: v for f, v in b.items() if f not in nb and f not in key}
            if oa != ob:
                bad = True
                res["other"] += 1
        if bad and len(res["samples"]) < 8:
            res["samples"].append("key %s: reference %s, run %s" % (
                ", ".join(str(x) for x in k), json.dumps(a, sort_keys=True) if a else "(missing)",
                json.dumps(b, sort_keys=True) if b else "(missing)"))
    res["lost"] = lost
    res["duplicated"] = dup

    if ref.multiset is not None:
        cb = multiset(run_records)
        missing = ref.multiset - cb
        extra = cb - ref.multiset
        res["ms_records"] = sum(ref.multiset.values())
        res["ms_lost"] = sum(missing.values())
        res["ms_duplicated"] = sum(extra.values())
        for r, c in list(missing.items())[:4]:
            res["samples"].append("record missing x%d: %s" % (c, dict(r)))
        for r, c in list(extra.items())[:4]:
            res["samples"].append("record extra x%d: %s" % (c, dict(r)))
    return res


def verdict(res, semantics, keyed_only):
    """True when the comparison satisfies the semantics' SPEC §1 rule."""
    lost = res["lost"] > 0 or res.get("other", 0) > 0
    dup = res["duplicated"] > 0
    if not keyed_only and "ms_lost" in res:
        lost = lost or res["ms_lost"] > 0
        dup = dup or res["ms_duplicated"] > 0
    if semantics == "effectively-once":
        return not lost and not dup
    if semantics == "at-least-once":
        return not lost
    return not dup


def fmt_num(x):
    if isinstance(x, float) and not x.is_integer():
        return "%.6g" % x
    return "%d" % x


# ---------------------------------------------------------------------------
# Modes

class Row:
    def __init__(self, pipeline, mode):
        self.pipeline = pipeline
        self.mode = mode
        self.kills = 0
        self.runs = 0
        self.cycles = 0
        self.stretched = 0  # kills whose delay was stretched after kills without progress
        self.records = 0
        self.lost = 0.0
        self.dup = 0.0
        self.ms = None   # (records, lost, dup) of the multiset view
        self.ok = True
        self.note = ""
        self.secs = 0.0


def check_outputs(args, t, ref, row):
    got = read_sink(t)
    res = compare(ref, got, t.p)
    row.records = res["records"]
    row.lost += res["lost"]
    row.dup += res["duplicated"]
    keyed_only = args.semantics != "effectively-once" and not t.p.get("records_only")
    if "ms_records" in res:
        prev = row.ms or (0, 0, 0)
        row.ms = (res["ms_records"], prev[1] + res["ms_lost"], prev[2] + res["ms_duplicated"])
    if not verdict(res, args.semantics, keyed_only):
        row.ok = False
        msg = ["%s / %s: outputs differ from the reference (%d keys; lost %s, duplicated %s%s)"
               % (t.name, row.mode, res["records"], fmt_num(res["lost"]),
                  fmt_num(res["duplicated"]),
                  "; multiset: %d missing, %d extra of %d" % (
                      res["ms_lost"], res["ms_duplicated"], res["ms_records"])
                  if "ms_records" in res else "")]
        msg += ["    " + s for s in res["samples"]]
        msg.append("    output: %s   state: %s" % (t.output, t.state))
        raise Failure("\n".join(msg))


def mode_clean(args, name, n, inp, ref, row):
    t = Target(args, name, n, inp, "clean", args.semantics)
    t.reset()
    rc, secs = t.run()
    row.runs = 1
    if rc != 0:
        raise Failure(t.explain(rc))
    t.check_consumed()
    check_outputs(args, t, ref, row)
    row.note = "%.2f s" % secs


def mode_kill(args, name, n, inp, ref, row, rng):
    t = Target(args, name, n, inp, "kill", args.semantics)
    while True:
        t.reset()
        row.cycles += 1
        runs_this_cycle = 0
        stalled, last_progress = 0, None
        while True:
            if runs_this_cycle >= MAX_RUNS_PER_CYCLE:
                raise Failure("%s: no completion after %d runs in one cycle (no progress "
                              "between kills?)\n%s" % (name, runs_this_cycle, t.explain("-9")))
            runs_this_cycle += 1
            row.runs += 1
            if args.dry:
                rc, _ = t.run()
                if rc != 0:
                    raise Failure(t.explain(rc))
                row.kills += 1  # a stand-in: one complete run per "kill"
                break
            # A run must live through start-up, restore and one checkpoint to make
            # progress; after kills without a new checkpoint, let the next one live longer
            # (still killed at a random instant) so that the cycle keeps moving.
            stretch = 0.25 * max(0, stalled - 2)
            if stretch:
                row.stretched += 1
            delay = rng.uniform(0.05, 0.8) + stretch
            proc = t.start()
            try:
                rc = proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                rc = None
            if rc is None:
                os.kill(proc.pid, signal.SIGKILL)
                t.finish(proc)
                row.kills += 1
                # Progress: every killed run that lived past start-up + one interval should
                # have completed a checkpoint; a long streak without one is a hang.
                cps = t.checkpoints()
                progress = (len(cps), max((c.get("id", 0) for c in cps), default=0)) \
                    if cps is not None else None
                if progress is not None and progress != last_progress:
                    stalled, last_progress = 0, progress
                elif progress is not None or last_progress is not None:
                    stalled += 1
                if stalled >= STALL_KILLS:
                    raise Failure("%s: %d kills in a row without a new complete checkpoint "
                                  "(no progress)\n%s" % (name, stalled, t.explain("-9")))
                continue
            t.finish(proc)
            if rc != 0:
                raise Failure(t.explain(rc))
            break
        t.check_consumed()
        check_outputs(args, t, ref, row)
        if row.cycles == 1 and not args.dry:
            # SPEC §2: running a completed pipeline again exits 0 and touches nothing.
            before = read_sink(t)
            rc, _ = t.run()
            row.runs += 1
            if rc != 0:
                raise Failure("%s: re-running a completed run: %s" % (name, t.explain(rc)))
            if read_sink(t) != before:
                raise Failure("%s: re-running a completed run changed the sink %s"
                              % (name, t.output))
        if row.kills >= args.kills:
            break
    row.note = "%d cycle%s" % (row.cycles, "" if row.cycles == 1 else "s")
    if row.stretched:
        row.note += ", %d delays stretched" % row.stretched


def mode_fail(args, name, n, inp, ref, row):
    p = PIPELINES[name]
    # A fail decision is a function of (seed, node, source position) and fires once per
    # place, so the expected failures are P x the source positions whose records reach the
    # node (wordcount: lines of ~10 words; orders: ~64% pass the filter; fanin: every
    # event). Aim at ~10: well below recovery.max_recoveries (100), where a run rightly
    # gives up with exit 1. (P = 0.001 flat would be thousands at these sizes.)
    positions = {"wordcount": n // 10, "orders": int(n * 0.64), "fanin": n, "passthrough": n,
                 "plugin": n, "windows": n, "joins": n}[name]
    prob = min(0.001, 10.0 / max(1, positions))
    spec = "seed=%d,fail=%s:%.3g" % (args.seed, p["fail_node"], prob)
    summary = os.path.join(args.work, name, "fail-summary.json")
    extra = ["--summary", summary] + ([] if args.dry else ["--chaos", spec])
    t = Target(args, name, n, inp, "fail", args.semantics, extra)
    t.reset()
    if os.path.exists(summary):
        os.unlink(summary)
    rc, secs = t.run()
    row.runs = 1
    if rc != 0:
        raise Failure(t.explain(rc))
    t.check_consumed()
    check_outputs(args, t, ref, row)
    # At-most-once drops a failed record (counted in the node's `dropped`, SPEC §6) where
    # the other guarantees recover.
    what = "dropped" if args.semantics == "at-most-once" else "recoveries"
    injected = None
    try:
        with open(summary) as f:
            s = json.load(f)
        injected = s["nodes"][p["fail_node"]]["dropped"] if what == "dropped" \
            else s["recoveries"]["count"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    row.note = "%s%s, %s %s" % ("(dry) " if args.dry else "", spec,
                                "?" if injected is None else injected, what)
    if not args.dry and injected == 0:
        raise Failure("%s: --chaos %s injected no failure (summary: 0 %s); the "
                      "mode tested nothing" % (name, spec, what))


def mode_crash_at(args, name, n, inp, ref, row, point):
    extra = [] if args.dry else ["--chaos", "seed=%d,crash-at=%s" % (args.seed, point)]
    t = Target(args, name, n, inp, "crash-" + point, args.semantics, extra)
    t.reset()
    for i in range(10):
        rc, _ = t.run()
        row.runs += 1
        if i == 0 and not args.dry and rc != -9:
            raise Failure("%s / crash-at=%s: first run exited %s, expected to be killed by "
                          "signal 9 (the point was never reached?)\n%s"
                          % (name, point, rc, t.explain(rc)))
        if rc == -9:
            row.kills += 1
            continue
        if rc != 0:
            raise Failure(t.explain(rc))
        break
    else:
        raise Failure("%s / crash-at=%s: still crashing after 10 runs\n%s"
                      % (name, point, t.explain(rc)))
    t.check_consumed()
    check_outputs(args, t, ref, row)


# ---------------------------------------------------------------------------

def print_row(r):
    ms = ""
    if r.ms:
        ms = "  multiset %d: -%d +%d" % r.ms
    status = "ok" if r.ok else "FAIL"
    log("  %-10s %-34s %5s %5d %9d %8s %10s  %-4s %6.1fs  %s%s" % (
        r.pipeline, r.mode, r.kills if r.kills or r.mode.startswith(("kill", "crash")) else "-",
        r.runs, r.records, fmt_num(r.lost), fmt_num(r.dup), status, r.secs, r.note, ms))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "cli", "onceflow"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--kills", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pipelines", default="wordcount,orders,fanin")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pipelines-dir", default=os.path.join(ROOT, "pipelines"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--semantics", default="effectively-once", help=argparse.SUPPRESS,
                    choices=["effectively-once", "at-least-once", "at-most-once"])
    ap.add_argument("--mode", default="snapshot", choices=["snapshot", "dedup"],
                    help="effectively-once mode under test (default snapshot)")
    ap.add_argument("--plugin", default=None,
                    help="the example plugin library for pipeline `plugin` (default: "
                         "BUILD/operators/plugin/example/example_plugin.so beside --binary)")
    ap.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--modes", default="clean,kill,fail,crash-at", help=argparse.SUPPRESS)
    ap.add_argument("--keep-going", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        ap.error("binary %s not found or not executable" % args.binary)
    names = [s for s in args.pipelines.split(",") if s]
    for s in names:
        if s not in PIPELINES:
            ap.error("unknown pipeline %r (known: %s)" % (s, ", ".join(PIPELINES)))
    modes = [s for s in args.modes.split(",") if s]
    for m in modes:
        if m not in ("clean", "kill", "fail", "crash-at"):
            ap.error("unknown mode %r" % m)
    if args.kills is None:
        args.kills = 5 if args.quick else 20
    if args.work is None:
        args.work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "onceflow-crash")
    args.work = os.path.abspath(args.work)
    os.makedirs(args.work, exist_ok=True)
    rng = random.Random(args.seed)
    passthrough = os.path.join(args.work, "passthrough.yaml")
    with open(passthrough, "w") as f:
        f.write(PASSTHROUGH_YAML)
    PIPELINES["passthrough"]["file"] = passthrough  # absolute: os.path.join keeps it
    windows = os.path.join(args.work, "windows.yaml")
    with open(windows, "w") as f:
        f.write(WINDOWS_YAML)
    PIPELINES["windows"]["file"] = windows
    joins = os.path.join(args.work, "joins.yaml")
    with open(joins, "w") as f:
        f.write(JOINS_YAML)
    PIPELINES["joins"]["file"] = joins
    if "plugin" in names:
        lib = args.plugin or os.path.join(os.path.dirname(os.path.dirname(args.binary)),
                                          "operators", "plugin", "example", "example_plugin.so")
        if not os.path.exists(lib):
            ap.error("example plugin %s not found (build it, or pass --plugin)" % lib)
        plugin_yaml = os.path.join(args.work, "plugin.yaml")
        with open(plugin_yaml, "w") as f:
            f.write(PLUGIN_YAML % json.dumps(os.path.abspath(lib)))
        PIPELINES["plugin"]["file"] = plugin_yaml

    log("onceflow crash test: %s, --semantics %s%s, %s kills per pipeline, seed %d%s" % (
        args.binary, args.semantics, " --mode " + args.mode if args.semantics == "effectively-once"
        else "", args.kills, args.seed, " (DRY: no kills, complete runs)" if args.dry else ""))
    log("  work dir %s" % args.work)
    t_all = time.monotonic()
    rows, failures = [], []
    for name in names:
        p = PIPELINES[name]
        n = int((p["quick_size"] if args.quick else p["size"]) * args.scale)
        log("")
        log("== %s (%s, %d %s) ==" % (name, p["file"], n,
                                        "events" if name != "wordcount" else "words"))
        inp = ensure_input(args, name, n)
        # Reference: failure-free, at-most-once (the established path), fresh state.
        ref_t = Target(args, name, n, inp, "reference", "at-most-once")
        ref_t.reset()
        rc, secs = ref_t.run()
        if rc != 0:
            failures.append("reference run failed: " + ref_t.explain(rc))
            log("  reference FAILED")
            continue
        ref_records = read_sink(ref_t)
        log("  reference: %d records in %.2f s" % (len(ref_records), secs))
        if not ref_records:
            failures.append("%s: the reference run wrote nothing to %s" % (name, ref_t.output))
            continue
        ref = Reference(ref_records, p)
        plan = []
        if "clean" in modes:
            plan.append(("clean run", lambda r: mode_clean(args, name, n, inp, ref, r)))
        if "kill" in modes:
            plan.append(("kill -9 at random instants",
                         lambda r: mode_kill(args, name, n, inp, ref, r, rng)))
        if "fail" in modes:
            plan.append(("chaos fail (in-process)", lambda r: mode_fail(args, name, n, inp, ref, r)))
        if "crash-at" in modes:
            points = DEDUP_CRASH_POINTS if (args.semantics == "effectively-once" and
                                            args.mode == "dedup") else CRASH_POINTS
            for point in points:
                plan.append(("crash-at=" + point,
                             lambda r, pt=point: mode_crash_at(args, name, n, inp, ref, r, pt)))
        log("  %-10s %-34s %5s %5s %9s %8s %10s  %-4s %7s" % (
            "pipeline", "mode", "kills", "runs", "records", "lost", "duplicated", "", "time"))
        for label, fn in plan:
            row = Row(name, label)
            t0 = time.monotonic()
            try:
                fn(row)
            except Failure as e:
                row.ok = False
                failures.append(str(e))
            row.secs = time.monotonic() - t0
            rows.append(row)
            print_row(row)
            if not row.ok and not args.keep_going and row.mode == "clean run":
                log("  (the failure-free run already differs; skipping the fault modes)")
                break
        prow = [r for r in rows if r.pipeline == name]
        log("  %s: %d kills (%d from outside, %d self-inflicted), %d runs, %d records "
            "compared, lost %s, duplicated %s: %s" % (
                name, sum(r.kills for r in prow),
                sum(r.kills for r in prow if r.mode.startswith("kill")),
                sum(r.kills for r in prow if r.mode.startswith("crash")),
                sum(r.runs for r in prow), sum(r.records for r in prow),
                fmt_num(sum(r.lost for r in prow)), fmt_num(sum(r.dup for r in prow)),
                "ok" if all(r.ok for r in prow) else "FAILED"))

    log("")
    log("total %.1f s" % (time.monotonic() - t_all))
    if failures:
        log("")
        log("%d FAILURE%s:" % (len(failures), "" if len(failures) == 1 else "S"))
        for f in failures:
            log("- " + f)
        return 1
    log("all outputs equal the reference")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

#!/usr/bin/env python3
"""Small helpers for guarantees_bench.sh (not meant to be run by hand).

  get SUMMARY KEY...            values at dotted keys of a run summary JSON, space-separated
                                ("nan" for a missing key)
  median V...                   median of the numbers (nan when none)
  latency RATE WARMUP_S OUT     reads onceflow's stdout sink (JSONL with a field `n`,
                                the generate number of the record that caused it) from
                                stdin, timestamps each chunk on arrival, writes percentiles
                                to OUT (JSON) and prints "count p50_ms p99_ms max_ms"
  logsample STATE PID           one sample of the dedup log: "outbox_rows outbox_bytes
                                changes_rows changes_bytes db_bytes wal_bytes rss_kib"
  jrow FILE KEY VALUE...        appends one JSON object (numbers where they parse) to FILE
  merge OUT META_JSON DIR       merges DIR/*.jsonl into one JSON document at OUT
"""
import json
import math
import os
import sqlite3
import statistics
import sys
import time


def cmd_get(args):
    j = json.load(open(args[0]))
    out = []
    for key in args[1:]:
        v = j
        try:
            for part in key.split("."):
                v = v[part]
        except (KeyError, TypeError):
            v = "nan"
        out.append(str(v))
    print(" ".join(out))


def cmd_median(args):
    vals = [float(a) for a in args if a not in ("", "nan")]
    if not vals:
        print("nan")
        return
    m = statistics.median(vals)
    print("%d" % m if m == int(m) and abs(m) >= 1000 else "%.4g" % m)


def cmd_latency(args):
    # Creation time of record n is estimated as t0 + n / rate: `generate` paces itself with
    # a token bucket started when the source opens, never runs ahead of that schedule by
    # more than one record, and can only fall behind it (backpressure). t0 is calibrated as
    # the smallest (arrival - n / rate) among the records of the first second, i.e. the
    # fastest early record is taken as ~0 ms. Latencies are therefore upper bounds.
    rate, warmup, out = float(args[0]), float(args[1]), args[2]
    fd = sys.stdin.buffer.fileno()
    arrivals = []  # (arrival, n)
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        now = time.monotonic()
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line:
                continue
            try:
                n = json.loads(line)["n"]
            except (ValueError, KeyError):
                continue
            arrivals.append((now, n))
    result = {"rate": rate, "records": len(arrivals)}
    if arrivals:
        first = [a - n / rate for a, n in arrivals if n < rate] or [a - n / rate for a, n in arrivals[:100]]
        t0 = min(first)
        lat = sorted((a - (t0 + n / rate)) * 1000.0 for a, n in arrivals if n >= warmup * rate)
        if lat:
            def pct(p):
                return lat[min(len(lat) - 1, int(math.ceil(p / 100.0 * len(lat))) - 1)]
            result.update({"measured": len(lat), "p50_ms": pct(50), "p90_ms": pct(90),
                           "p99_ms": pct(99), "max_ms": lat[-1], "min_ms": lat[0],
                           "negative": sum(1 for x in lat if x < 0)})
    json.dump(result, open(out, "w"))
    print(result.get("measured", 0), "%.2f" % result.get("p50_ms", float("nan")),
          "%.2f" % result.get("p99_ms", float("nan")), "%.2f" % result.get("max_ms", float("nan")))


def cmd_logsample(args):
    state, pid = args[0], args[1]
    vals = []
    try:
        db = sqlite3.connect("file:%s?mode=ro" % state, uri=True, timeout=5)
        for t in ("dedup_outbox", "dedup_changes"):
            rows, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM %s" % t).fetchone()
            vals += [rows, size]
        db.close()
    except sqlite3.Error:
        vals = ["nan"] * 4
    for path in (state, state + "-wal"):
        vals.append(os.path.getsize(path) if os.path.exists(path) else 0)
    rss = "nan"
    try:
        for line in open("/proc/%s/status" % pid):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    vals.append(rss)
    print(" ".join(str(v) for v in vals))


def parse(v):
    for f in (int, float):
        try:
            x = f(v)
            return None if isinstance(x, float) and math.isnan(x) else x
        except ValueError:
            pass
    return v


def cmd_jrow(args):
    row = {args[i]: parse(args[i + 1]) for i in range(1, len(args) - 1, 2)}
    with open(args[0], "a") as f:
        f.write(json.dumps(row) + "\n")


def cmd_merge(args):
    out, meta, folder = args
    doc = json.loads(meta)
    doc["benchmarks"] = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".jsonl"):
            doc["benchmarks"][name[:-6]] = [json.loads(l) for l in open(os.path.join(folder, name)) if l.strip()]
    json.dump(doc, open(out, "w"), indent=1)


if __name__ == "__main__":
    cmds = {"get": cmd_get, "median": cmd_median, "latency": cmd_latency,
            "logsample": cmd_logsample, "jrow": cmd_jrow, "merge": cmd_merge}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])

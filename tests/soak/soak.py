#!/usr/bin/env python3
"""Soak: an unbounded generate -> window -> sqlite pipeline (window_soak.yaml) for a long
time under each effectively-once mode, with crash-prob chaos killing the process
(SIGKILL) at random source events and this script restarting it at once. Not part of CI.

Every 10 s it samples the running process's RSS and the state file's size (database +
WAL); both must stay flat (retention, pruning and dedup log compaction work). At the end
it stops the run with SIGTERM and checks the outputs against the closed form of the
pipeline (see window_soak.yaml):
  - no loss: for every key the windows in the jsonl log are 0, 1, 2, ... with no gap;
  - no duplication: no (key, window) appears twice in the log;
  - exactness: every window's count and sum are the closed-form values;
  - the sqlite table holds the same rows as the log.

Usage:
  tests/soak/soak.py --binary build/cli/onceflow [--minutes 10] [--modes snapshot,dedup]
                     [--rate 5000] [--crash-prob 0.00001] [--work DIR] [--json OUT]
Exit 0 when every mode passed, 1 otherwise.
"""
import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = 50
PER_KEY = 10  # records per key and window


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def file_size(path):
    total = 0
    for p in (path, path + "-wal"):
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total


class Soak:
    def __init__(self, args, mode):
        self.args, self.mode = args, mode
        self.work = os.path.join(args.work, mode)
        os.makedirs(self.work, exist_ok=True)
        self.state = os.path.join(self.work, "state.db")
        self.proc = None
        self.samples = []  # (elapsed s, rss KiB, state bytes)
        self.restarts = 0
        self.lock = threading.Lock()

    def command(self, seed):
        return [self.args.binary, "run", os.path.join(HERE, "window_soak.yaml"), "-q",
                "--mode", self.mode, "--state", self.state,
                "--chaos", f"seed={seed},crash-prob={self.args.crash_prob}"]

    def sampler(self, start, stop):
        while not stop.wait(10):
            with self.lock:
                pid = self.proc.pid if self.proc and self.proc.poll() is None else None
            rss = rss_kib(pid) if pid else None
            self.samples.append((round(time.time() - start), rss, file_size(self.state)))
            if self.args.verbose:
                print(f"  {self.mode} t={self.samples[-1][0]:4d}s rss={rss} KiB "
                      f"state={self.samples[-1][2]} B restarts={self.restarts}", flush=True)

    def run(self):
        env = dict(os.environ, SOAK_OUT=self.work, SOAK_RATE=str(self.args.rate))
        start = time.time()
        deadline = start + self.args.minutes * 60
        stop = threading.Event()
        t = threading.Thread(target=self.sampler, args=(start, stop), daemon=True)
        t.start()
        seed = 1
        rc = None
        try:
            while True:
                with self.lock:
                    self.proc = subprocess.Popen(self.command(seed), env=env, stderr=subprocess.PIPE,
                                                 text=True, errors="replace")
                born = time.time()
                # At least a second of life before the final SIGTERM: the few ms between
                # exec and onceflow's signal handlers would turn it into a plain kill.
                while self.proc.poll() is None and (time.time() < deadline or time.time() < born + 1):
                    time.sleep(0.2)
                if self.proc.poll() is None:  # time is up: a clean stop
                    self.proc.send_signal(signal.SIGTERM)
                    _, err = self.proc.communicate(timeout=120)
                    rc = self.proc.returncode
                    if rc != 143:
                        return f"the stopped run exited {rc}: {err[-2000:]}"
                    break
                _, err = self.proc.communicate()
                if self.proc.returncode != -signal.SIGKILL:
                    return f"run exited {self.proc.returncode} (expected a chaos SIGKILL): {err[-2000:]}"
                self.restarts += 1
                # The fired crash places are remembered across restarts, so the same
                # seed makes progress; a new seed every 50 restarts keeps crashes coming.
                if self.restarts % 50 == 0:
                    seed += 1
        finally:
            stop.set()
            t.join()
        return self.verify()

    def verify(self):
        log = os.path.join(self.work, "soak.jsonl")
        seen = {}
        dups = 0
        with open(log) as f:
            for line in f:
                r = json.loads(line)
                key = (r["k"], r["window_start"])
                if key in seen:
                    dups += 1
                seen[key] = r
        wrong = 0
        for (k, ws), r in seen.items():
            w, j = ws // 1000, int(k[1:])
            if (r["count"] != PER_KEY or r["sum_n"] != 5000 * w + 10 * j + 2250
                    or r["window_end"] != ws + 1000):
                wrong += 1
        gaps = 0
        last = {}
        for k in {k for k, _ in seen}:
            wins = sorted(ws // 1000 for kk, ws in seen if kk == k)
            gaps += wins[-1] + 1 - len(wins)
            last[k] = wins[-1]
        db = sqlite3.connect(os.path.join(self.work, "soak.db"))
        rows = {(k, ws): (c, s) for k, ws, c, s in
                db.execute("SELECT k, window_start, count, sum_n FROM windows")}
        table_differs = rows != {key: (r["count"], r["sum_n"]) for key, r in seen.items()}
        self.result = {
            "mode": self.mode, "minutes": self.args.minutes, "restarts": self.restarts,
            "windows": len(seen), "keys": len(last), "duplicates": dups, "wrong": wrong,
            "gaps": gaps, "table_differs": table_differs,
            "windows_per_key": [min(last.values()) + 1, max(last.values()) + 1] if last else [0, 0],
            "samples": self.samples,
        }
        problems = []
        if len(last) != KEYS:
            problems.append(f"{len(last)} keys, expected {KEYS}")
        if dups or wrong or gaps or table_differs:
            problems.append(f"duplicates {dups}, wrong values {wrong}, missing windows {gaps}, "
                            f"sqlite differs from the log: {table_differs}")
        return "; ".join(problems) or None


def flatness(samples, idx):
    """(first-minute median, last-minute median, max) of column idx after a 1-minute warm-up."""
    vals = [(t, s[idx]) for s in samples for t in [s[0]] if s[idx] is not None]
    warm = [v for t, v in vals if t > 60]
    if len(warm) < 4:
        return None
    head, tail = warm[:6], warm[-6:]
    return statistics.median(head), statistics.median(tail), max(warm)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--modes", default="snapshot,dedup")
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--crash-prob", default="0.00001")
    ap.add_argument("--work", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    args.work = args.work or tempfile.mkdtemp(prefix="onceflow-soak-")
    print(f"soak: {args.minutes} min per mode, {args.rate} events/s, crash-prob {args.crash_prob}, "
          f"work {args.work}", flush=True)
    failed = False
    results = []
    for mode in args.modes.split(","):
        soak = Soak(args, mode)
        problem = soak.run()
        res = getattr(soak, "result", {"mode": mode})
        res["problem"] = problem
        results.append(res)
        rss = flatness(soak.samples, 1)
        size = flatness(soak.samples, 2)
        print(f"{mode}: {'FAIL ' + problem if problem else 'ok'}")
        if "windows" in res:
            print(f"  restarts {res['restarts']}, windows {res['windows']} "
                  f"({res['windows_per_key'][0]}-{res['windows_per_key'][1]} per key), "
                  f"duplicates {res['duplicates']}, wrong {res['wrong']}, missing {res['gaps']}")
        if rss:
            print(f"  RSS (KiB) after warm-up: first minute {rss[0]:.0f}, last minute {rss[1]:.0f}, max {rss[2]}")
        if size:
            print(f"  state file (bytes): first minute {size[0]:.0f}, last minute {size[1]:.0f}, max {size[2]}")
        failed |= problem is not None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

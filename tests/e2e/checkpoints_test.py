#!/usr/bin/env python3
"""End-to-end tests of `onceflow checkpoints list|show|delete|prune` and `onceflow state get`
against a deterministic state file written by make_state_fixture (see its header for the
contents): text and --json output, exit codes, refused files left untouched, locking.

Usage: checkpoints_test.py ONCEFLOW_BINARY REPO_ROOT MAKE_STATE_FIXTURE [TEST_NAME_SUBSTRING]
Prints one line per test and a final "N passed, N failed" line; exits 1 on any failure.
"""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tmp, check, expect_rc, run, test  # noqa: E402
import harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
FIXTURE = os.path.abspath(sys.argv[3])
ONLY = sys.argv[4] if len(sys.argv) > 4 else ""
harness.setup(BIN, ROOT)


def fixture(d, name="state.db"):
    path = os.path.join(d, name)
    p = subprocess.run([FIXTURE, path], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, f"make_state_fixture failed: {p.stderr}")
    return path


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def list_json(db):
    p = run(["checkpoints", "list", "--state", db, "--json"])
    expect_rc(p, 0)
    return json.loads(p.stdout)


def get_json(db, node, *extra):
    p = run(["state", "get", "--state", db, "--node", node, "--json"] + list(extra))
    expect_rc(p, 0)
    return json.loads(p.stdout)


def all_state(db):
    """{checkpoint id: {node: entries}} for every checkpoint and node of the fixture."""
    out = {}
    for c in list_json(db):
        out[c["id"]] = {n: get_json(db, n, "--checkpoint", str(c["id"]))
                        for n in ("count", "agg", "byn")}
    return out


# ---------------------------------------------------------------- list and show

@test
def list_text():
    with Tmp() as d:
        db = fixture(d)
        p = run(["checkpoints", "list", "--state", db])
        expect_rc(p, 0)
        check(p.stderr == "", f"nothing on stderr: {p.stderr}")
        lines = p.stdout.splitlines()
        check(lines[0].split() == ["id", "kind", "status", "created", "events", "bytes", "duration"],
              f"header: {lines[0]!r}")
        rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
        check([r[0] for r in rows] == ["1", "2", "3", "4", "5"],
              f"complete checkpoints only (6 is pending):\n{p.stdout}")
        check([r[1] for r in rows] == ["checkpoint", "savepoint", "checkpoint", "checkpoint", "final"],
              f"kinds:\n{p.stdout}")
        check(all(r[2] == "completed" for r in rows), f"statuses:\n{p.stdout}")
        check(all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[3]) for r in rows),
              f"created as local time:\n{p.stdout}")
        check([r[4] for r in rows] == ["2", "4", "6", "8", "10"], f"events:\n{p.stdout}")
        check(all(re.fullmatch(r"\d+ B", r[5]) for r in rows), f"bytes:\n{p.stdout}")
        check([r[6] for r in rows] == ["41 ms", "42 ms", "43 ms", "44 ms", "45 ms"],
              f"durations:\n{p.stdout}")
        widths = {len(line) for line in lines}
        check(len(widths) == 1, f"an aligned table:\n{p.stdout}")


@test
def list_json_fields():
    with Tmp() as d:
        db = fixture(d)
        j = list_json(db)
        check([c["id"] for c in j] == [1, 2, 3, 4, 5], f"ids: {j}")
        check([c["kind"] for c in j] == ["checkpoint", "savepoint", "checkpoint", "checkpoint", "final"],
              "kinds")
        check([c["latest"] for c in j] == [False] * 4 + [True], "only the head is latest")
        check([c["parent"] for c in j] == [None, 1, 2, 3, 4], "parents")
        check([c["duration_ms"] for c in j] == [41, 42, 43, 44, 45], "raw durations")
        check([c["alignment_ms"] for c in j] == [1, 2, 3, 4, 5], "alignment")
        check(all(isinstance(c["bytes"], int) and c["bytes"] > 0 for c in j), "raw bytes")
        check(all(isinstance(c["created_ms"], int) and c["created"].endswith("Z") for c in j),
              "created")


@test
def show_text_and_json():
    with Tmp() as d:
        db = fixture(d)
        p = run(["checkpoints", "show", "3", "--state", db])
        expect_rc(p, 0)
        for want in ("checkpoint 3", "pipeline   wordcount", "kind       checkpoint",
                     "parent     2", "latest     no", "state:", "sources:", "sinks:",
                     "data/words.txt", "out/counts.jsonl"):
            check(want in p.stdout, f"show text lacks {want!r}:\n{p.stdout}")
        state = {line.split()[0]: line.split()[1] for line in
                 p.stdout.split("state:\n")[1].split("sources:")[0].splitlines()[1:]}
        check(state == {"agg": "2", "byn": "1", "count": "2"}, f"keys per node: {state}")

        j = json.loads(run(["checkpoints", "show", "3", "--state", db, "--json"]).stdout)
        check(j["id"] == 3 and j["kind"] == "checkpoint" and j["pipeline"] == "wordcount", f"{j}")
        check({n["node"]: n["keys"] for n in j["state"]} == {"agg": 2, "byn": 1, "count": 2},
              f"state: {j['state']}")
        check(j["sources"] == [{"node": "lines", "instance": 0, "name": "data/words.txt",
                                "offset": 30, "count": 6}], f"sources: {j['sources']}")
        check(j["sinks"] == [{"node": "out", "instance": 0, "path": "out/counts.jsonl",
                              "length": 60, "epoch": 3}], f"sinks: {j['sinks']}")

        latest = json.loads(run(["checkpoints", "show", "latest", "--state", db, "--json"]).stdout)
        check(latest["id"] == 5 and latest["latest"] and latest["status"] == "completed",
              f"latest: {latest}")


@test
def show_unknown_ids():
    with Tmp() as d:
        db = fixture(d)
        before = read_bytes(db)
        for cid in ("99", "6"):  # 6 began but never committed
            p = run(["checkpoints", "show", cid, "--state", db])
            expect_rc(p, 3)
            check(f"no checkpoint {cid} in {db}" in p.stderr, f"message: {p.stderr}")
            check(p.stdout == "", "no data on a failure")
        expect_rc(run(["checkpoints", "show", "abc", "--state", db]), 2)
        expect_rc(run(["checkpoints", "show", "3"]), 2)  # --state is required
        check(read_bytes(db) == before, "read-only commands never write")


# ---------------------------------------------------------------- state get

@test
def state_get_all_keys_at_checkpoints():
    with Tmp() as d:
        db = fixture(d)
        want = {None: "a -> 4\nc -> 2\n", "1": "a -> 1\nb -> 1\n",
                "2": "a -> 2\nb -> 1\nc -> 1\n", "3": "a -> 3\nc -> 1\n",
                "latest": "a -> 4\nc -> 2\n"}
        for cid, text in want.items():
            extra = ["--checkpoint", cid] if cid else []
            p = run(["state", "get", "--state", db, "--node", "count"] + extra)
            expect_rc(p, 0)
            check(p.stdout == text, f"count at {cid}: {p.stdout!r} != {text!r}")
        check(get_json(db, "count", "--checkpoint", "2") ==
              [{"key": ["a"], "value": [2]}, {"key": ["b"], "value": [1]},
               {"key": ["c"], "value": [1]}], "json at 2")
        p = run(["state", "get", "--state", db, "--node", "agg"])
        check(p.stdout == "alice 2026 -> 12.5 3\nbob 2026 -> 1.5 1\n", f"agg: {p.stdout!r}")


@test
def state_get_keys():
    with Tmp() as d:
        db = fixture(d)
        check(get_json(db, "count", "--key", "a", "--checkpoint", "2") ==
              [{"key": ["a"], "value": [2]}], "one string key")
        check(get_json(db, "agg", "--key", "alice", "--key", "2026") ==
              [{"key": ["alice", 2026], "value": [12.5, 3]}], "a (string, integer) key")
        check(get_json(db, "agg", "--key", "bob") ==
              [{"key": ["bob", 2026], "value": [1.5, 1]}], "a prefix of the key fields")
        check(get_json(db, "byn", "--key", "42") == [{"key": [42], "value": [7]}],
              "an all-digit --key falls back to the integer")
        p = run(["state", "get", "--state", db, "--node", "byn", "--key", "42"])
        check(p.stdout == "42 -> 7\n", f"text: {p.stdout!r}")

        # An absent or erased key is an answer, not an error: empty data, a note on stderr.
        for node, key in (("count", "b"), ("count", "zzz"), ("agg", "carol")):
            p = run(["state", "get", "--state", db, "--node", node, "--key", key, "--json"])
            expect_rc(p, 0)
            check(json.loads(p.stdout) == [], f"{node} {key}: {p.stdout}")
            check("no key" in p.stderr, f"note: {p.stderr}")
        p = run(["state", "get", "--state", db, "--node", "cuonts"])
        expect_rc(p, 0)
        check(p.stdout == "", "no data for a node without state")
        check("agg, byn, count" in p.stderr, f"names the nodes that have state: {p.stderr}")
        p = run(["-q", "state", "get", "--state", db, "--node", "cuonts"])
        check(p.stderr == "", f"-q silences the note: {p.stderr}")

        p = run(["state", "get", "--state", db, "--node", "count", "--checkpoint", "99"])
        expect_rc(p, 3)
        check("no checkpoint 99" in p.stderr, p.stderr)
        expect_rc(run(["state", "get", "--state", db, "--node", "count", "--checkpoint", "x"]), 2)
        expect_rc(run(["state", "get", "--state", db]), 2)  # --node is required


# ---------------------------------------------------------------- refused files

@test
def missing_file():
    with Tmp() as d:
        db = os.path.join(d, "missing.db")
        for args in (["checkpoints", "list"], ["checkpoints", "show", "1"],
                     ["checkpoints", "delete", "1"], ["checkpoints", "prune", "--keep", "1"],
                     ["state", "get", "--node", "count"]):
            p = run(args + ["--state", db])
            expect_rc(p, 3)
            check("does not exist" in p.stderr, f"{args}: {p.stderr}")
            check(p.stdout == "", "no data")
        check(os.listdir(d) == [], f"nothing created: {os.listdir(d)}")


@test
def refused_files_untouched():
    with Tmp() as d:
        garbage = os.path.join(d, "garbage.db")
        with open(garbage, "wb") as f:
            f.write(bytes((i * 37 + 11) % 256 for i in range(8192)))
        other = os.path.join(d, "other.db")
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        con.close()
        empty = os.path.join(d, "empty.db")
        open(empty, "w").close()
        for db in (garbage, other, empty):
            before = read_bytes(db)
            listing = sorted(os.listdir(d))
            for args in (["checkpoints", "list"], ["checkpoints", "show", "1"],
                         ["checkpoints", "delete", "1"], ["checkpoints", "prune", "--keep", "1"],
                         ["state", "get", "--node", "count"]):
                p = run(args + ["--state", db])
                expect_rc(p, 3)
                check(db in p.stderr, f"{args}: the message names the file: {p.stderr}")
            check(read_bytes(db) == before, f"{db} unchanged byte for byte")
            check(sorted(os.listdir(d)) == listing, f"no lock or journal files: {os.listdir(d)}")


# ---------------------------------------------------------------- delete and prune

@test
def delete_checkpoints():
    with Tmp() as d:
        db = fixture(d)
        state = all_state(db)
        p = run(["checkpoints", "delete", "5", "--state", db])
        expect_rc(p, 3)
        check("latest" in p.stderr, f"the head is refused: {p.stderr}")
        p = run(["checkpoints", "delete", "99", "--state", db])
        expect_rc(p, 3)
        check(f"no checkpoint 99 in {db}" in p.stderr, p.stderr)
        expect_rc(run(["checkpoints", "delete", "0", "--state", db]), 2)
        expect_rc(run(["checkpoints", "delete", "x", "--state", db]), 2)

        p = run(["checkpoints", "delete", "2", "--state", db])
        expect_rc(p, 0)
        check(p.stdout == "", "confirmation goes to stderr")
        check("deleted checkpoint 2" in p.stderr, p.stderr)
        check([c["id"] for c in list_json(db)] == [1, 3, 4, 5], "2 is gone")
        del state[2]
        check(all_state(db) == state, "every other checkpoint restores exactly as before")
        expect_rc(run(["checkpoints", "show", "2", "--state", db]), 3)
        p = run(["-q", "checkpoints", "delete", "1", "--state", db])
        expect_rc(p, 0)
        check(p.stderr == "", f"-q: {p.stderr}")


@test
def prune_checkpoints():
    with Tmp() as d:
        db = fixture(d)
        state = all_state(db)
        os.unlink(db + ".lock")  # left by the fixture's writer
        before = read_bytes(db)
        p = run(["checkpoints", "prune", "--keep", "0", "--state", db])
        expect_rc(p, 2)
        check(read_bytes(db) == before, "a usage error touches nothing")
        check(not os.path.exists(db + ".lock"), "not even the lock file")
        expect_rc(run(["checkpoints", "prune", "--state", db]), 2)  # --keep is required

        p = run(["checkpoints", "prune", "--keep", "2", "--state", db])
        expect_rc(p, 0)
        check("pruned 2 checkpoints (1, 3); kept 2, 4, 5" in p.stderr, p.stderr)
        check([c["id"] for c in list_json(db)] == [2, 4, 5],
              "keeps the 2 newest, and every savepoint")
        check(all_state(db) == {k: v for k, v in state.items() if k in (2, 4, 5)},
              "the kept checkpoints restore exactly as before")
        p = run(["checkpoints", "prune", "--keep", "1", "--state", db])
        expect_rc(p, 0)
        check([c["id"] for c in list_json(db)] == [2, 5], "savepoint and head stay")
        check(run(["state", "get", "--state", db, "--node", "count"]).stdout == "a -> 4\nc -> 2\n",
              "head state")
        check(run(["state", "get", "--state", db, "--node", "count", "--checkpoint", "2"]).stdout
              == "a -> 2\nb -> 1\nc -> 1\n", "savepoint state")


@test
def locked_by_running_process():
    with Tmp() as d:
        db = fixture(d)
        # A stand-in for a running pipeline: holds the fcntl lock on <state>.lock.
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, os, sys, time\n"
             "f = open(sys.argv[1], 'a+')\n"
             "fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "print('locked', flush=True)\n"
             "time.sleep(60)\n",
             db + ".lock"], stdout=subprocess.PIPE, text=True)
        try:
            check(holder.stdout.readline().strip() == "locked", "lock holder started")
            before = read_bytes(db)
            for args in (["checkpoints", "delete", "1"], ["checkpoints", "prune", "--keep", "1"]):
                p = run(args + ["--state", db])
                expect_rc(p, 3)
                check(f"in use by process {holder.pid}" in p.stderr, f"names the pid: {p.stderr}")
            check(read_bytes(db) == before, "a locked file is not modified")
            # Readers take no lock: they work while a run holds it.
            check(len(list_json(db)) == 5, "list works during a run")
            check(get_json(db, "count") == [{"key": ["a"], "value": [4]},
                                            {"key": ["c"], "value": [2]}], "state get too")
        finally:
            holder.kill()
            holder.wait()
        expect_rc(run(["checkpoints", "delete", "1", "--state", db]), 0)


if __name__ == "__main__":
    sys.exit(harness.main("checkpoints e2e", ONLY))

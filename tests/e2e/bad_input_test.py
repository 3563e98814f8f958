#!/usr/bin/env python3
"""Bad input, case by case, each with its expected exit code and message.

- Malformed records (tests/bad_input/records/) of every format under each `on_error`,
  under at-most-once and effectively-once: `fail` exits 1 naming the node, the position
  and the message; `skip` passes the good records and counts the bad ones; `dead_letter`
  also writes each bad one to the dead-letter file with node, error and position. A
  broken csv header is not a record error: exit 1 whatever the policy.
- State files that are not ours or not usable: truncated, random bytes, empty of our
  tables but another application's SQLite database, a newer schema version, a folder:
  every command that opens them exits 3 and leaves the file byte for byte as it was, and
  creates nothing beside it.
- Paths that cannot be used: a missing input, an output or dead-letter path under a
  regular file, a state path under a regular file.

Broken pipeline files are in tests/golden/broken (broken_pipelines_test.sh).

Usage: bad_input_test.py BINARY REPO_ROOT [NAME_FILTER]
"""
import json
import os
import random
import sqlite3
import sys

from harness import Tmp, check, expect_rc, main, read_jsonl, run, setup, test, write

RECORDS = ""  # tests/bad_input/records, set in __main__

GOOD_KV = [{"k": "a", "v": 1}, {"k": "b", "v": 2}]

# file -> (format, node whose on_error applies, good records out, bad positions, message).
# The pipeline is src -> [op] -> out (jsonl file). Positions are 1-based lines (jsonl,
# lines) or data rows (csv).
RECORD_CASES = {
    "jsonl-not-json.jsonl": ("jsonl", "src", GOOD_KV, [2], "not a JSON object"),
    "jsonl-not-an-object.jsonl": ("jsonl", "src", GOOD_KV, [2, 3, 4], "not a JSON object"),
    "jsonl-cut-off.jsonl": ("jsonl", "src", GOOD_KV, [3], "invalid JSON"),
    "jsonl-invalid-utf8.jsonl": ("jsonl", "src", GOOD_KV, [2], "not valid UTF-8"),
    "jsonl-trailing-garbage.jsonl": ("jsonl", "src", [{"k": "b", "v": 2}], [1, 3], "invalid JSON"),
    "csv-wrong-cell-count.csv": ("csv", "src", [{"k": "a", "v": 1}, {"k": "d", "v": 4}], [2, 3],
                                 "the header has 2"),
    "csv-unterminated-quote.csv": ("csv", "src", GOOD_KV, [3], "unterminated quoted cell"),
    # An operator's data errors: a Lua error on a record, a missing key field.
    "lines-lua-error.txt": ("lines", "m", [{"n": 2}, {"n": 3}, {"n": 5}, {"n": 7}], [3, 5],
                            "attempt to perform arithmetic"),
    "jsonl-missing-key.jsonl": ("jsonl", "c", [{"k": "a", "count": 1}, {"k": "b", "count": 1}], [2],
                                "key field 'k' is missing"),
}

# A csv header that cannot be read stops the source whatever on_error says.
HEADER_CASES = {
    "csv-duplicate-column.csv": "duplicate column 'k'",
    "csv-unnamed-column.csv": "column 2 has no name",
}

OPS = {
    "m": '  m: {op: map, input: src, lua: "return {n = tonumber(e.line) + 1}"ON_ERROR}\n',
    "c": '  c: {op: count, input: src, key: k, emit: final ON_ERROR}\n',
}


def record_pipeline(d, name, fmt, node, policy, semantics):
    """src (file) -> [op] -> out (jsonl); `policy` set on `node`."""
    on_error = f", on_error: {policy}" + (", dead_letter: dead.jsonl" if policy == "dead_letter" else "")
    src_extra = on_error if node == "src" else ""
    text = (f"pipeline: bad\nsemantics: {semantics}\nstate: state.db\nnodes:\n"
            f"  src: {{source: file, path: {os.path.join(RECORDS, name)}, format: {fmt}{src_extra}}}\n")
    tail = "src"
    if node != "src":
        # emit: final takes no comma when it is the last option
        text += OPS[node].replace(" ON_ERROR", on_error).replace("ON_ERROR", on_error)
        tail = node
    text += f"  out: {{sink: file, input: {tail}, path: out.jsonl}}\n"
    return write(os.path.join(d, "p.yaml"), text)


def canon(records):
    return sorted(json.dumps(r, sort_keys=True) for r in records)


@test
def malformed_records_under_each_on_error():
    for semantics in ("at-most-once", "effectively-once"):
        for name, (fmt, node, good, bad, msg) in RECORD_CASES.items():
            for policy in ("fail", "skip", "dead_letter"):
                what = f"{name} {policy} {semantics}"
                with Tmp() as d:
                    y = record_pipeline(d, name, fmt, node, policy, semantics)
                    p = run(["run", y, "--json", "-q"])
                    if policy == "fail":
                        expect_rc(p, 1)
                        check(f"node '{node}'" in p.stderr and msg in p.stderr,
                              f"{what}: names node and error: {p.stderr}")
                        check(f":{bad[0]}" in p.stderr, f"{what}: names position {bad[0]}: {p.stderr}")
                        continue
                    expect_rc(p, 0)
                    out = read_jsonl(os.path.join(d, "out.jsonl"))
                    check(canon(out) == canon(good), f"{what}: good records pass: {out}")
                    summary = json.loads(p.stdout)
                    stats = summary["sources"].get(node) or summary["nodes"][node]
                    check(stats["skipped"] == len(bad), f"{what}: {len(bad)} skipped: {stats}")
                    dead = os.path.join(d, "dead.jsonl")
                    if policy == "skip":
                        check(not os.path.exists(dead), f"{what}: no dead-letter file")
                        continue
                    letters = read_jsonl(dead)
                    check(sorted(x["position"] for x in letters) == bad,
                          f"{what}: one dead letter per bad record at {bad}: {letters}")
                    check(all(x["node"] == node and msg in x["error"] and "record" in x for x in letters),
                          f"{what}: dead letters name node, error, record: {letters}")


@test
def broken_csv_header_fails_whatever_on_error():
    for name, msg in HEADER_CASES.items():
        for policy in ("fail", "skip", "dead_letter"):
            with Tmp() as d:
                y = record_pipeline(d, name, "csv", "src", policy, "at-most-once")
                p = run(["run", y, "-q"])
                expect_rc(p, 1)
                check(msg in p.stderr and "node 'src'" in p.stderr, f"{name} {policy}: {p.stderr}")


# ---- state files ----

PIPE = """pipeline: bad
semantics: effectively-once
state: state.db
nodes:
  gen: {source: generate, count: 200, lua: "return {k = 'k' .. (n % 7)}"}
  c: {op: count, input: gen, key: k}
  out: {sink: file, input: c, path: out.jsonl}
"""


def good_state(d):
    """A real state file of PIPE (WAL checkpointed into the main file)."""
    y = write(os.path.join(d, "p.yaml"), PIPE)
    expect_rc(run(["run", y, "-q"]), 0)
    return y, os.path.join(d, "state.db")


def snapshot_dir(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))
            if os.path.isfile(os.path.join(d, n))}


def commands(y, state):
    return [
        ["run", y, "--state", state, "-q"],
        ["run", y, "--state", state, "-q", "--fresh"],
        ["checkpoints", "list", "--state", state],
        ["checkpoints", "show", "1", "--state", state],
        ["checkpoints", "prune", "--keep", "1", "--state", state],
        ["state", "get", "--state", state, "--node", "c"],
    ]


def refused_path(d, name):
    """d/bad/NAME: a folder of its own, so refuses_untouched sees only that file."""
    os.makedirs(os.path.join(d, "bad"), exist_ok=True)
    return os.path.join(d, "bad", name)


def refuses_untouched(y, state, why, want):
    folder = os.path.dirname(state)
    for cmd in commands(y, state):
        before = snapshot_dir(folder)
        p = run(cmd)
        expect_rc(p, 3)
        check(want in p.stderr, f"{why}: `{' '.join(cmd[:2])}` says {want!r}: {p.stderr}")
        check(state in p.stderr or os.path.basename(state) in p.stderr, f"{why}: names the file: {p.stderr}")
        after = snapshot_dir(folder)
        check(after == before, f"{why}: `{' '.join(cmd[:2])}` left the folder as it was: "
                               f"{sorted(before)} -> {sorted(after)}")


@test
def truncated_state_file():
    with Tmp() as d:
        y, good = good_state(d)
        data = open(good, "rb").read()
        bad_dir = os.path.join(d, "bad")
        os.mkdir(bad_dir)
        for cut in (100, len(data) // 2, len(data) - 1):
            bad = os.path.join(bad_dir, f"cut{cut}.db")
            with open(bad, "wb") as f:
                f.write(data[:cut])
            refuses_untouched(y, bad, f"truncated to {cut} bytes", "state file")
            os.unlink(bad)


@test
def random_bytes_state_file():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), PIPE)
        bad = refused_path(d, "random.db")
        rng = random.Random(7)
        with open(bad, "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(8192)))
        refuses_untouched(y, bad, "random bytes", "not an onceflow state file")


@test
def another_applications_sqlite_database():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), PIPE)
        bad = refused_path(d, "app.db")
        db = sqlite3.connect(bad)
        db.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices VALUES (1, 9.5)")
        db.commit()
        db.close()
        refuses_untouched(y, bad, "another application's database", "not an onceflow state file")


@test
def newer_schema_version():
    with Tmp() as d:
        y, good = good_state(d)
        db = sqlite3.connect(good)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        bad = refused_path(d, "newer.db")
        os.rename(good, bad)
        refuses_untouched(y, bad, "schema 99", "newer")


@test
def state_path_is_a_folder_or_under_a_file():
    with Tmp() as d:
        y = write(os.path.join(d, "p.yaml"), PIPE)
        folder = os.path.join(d, "adir")
        os.mkdir(folder)
        p = run(["run", y, "--state", folder, "-q"])
        expect_rc(p, 3)
        check("adir" in p.stderr, p.stderr)
        check(os.listdir(folder) == [], "nothing created in the folder")
        afile = write(os.path.join(d, "afile"), "x")
        p = run(["run", y, "--state", os.path.join(afile, "s.db"), "-q"])
        expect_rc(p, 3)
        check("afile" in p.stderr, p.stderr)
        check(not os.path.exists(os.path.join(d, "out.jsonl")), "no output before the state opened")


# ---- paths ----

@test
def unusable_paths_fail_naming_the_path():
    with Tmp() as d:
        blocker = write(os.path.join(d, "blocker"), "a regular file, not a folder")
        cases = [
            ("input", "  src: {source: file, path: missing.jsonl, format: jsonl}\n"
                      "  out: {sink: file, input: src, path: out.jsonl}\n", "missing.jsonl"),
            ("output", "  src: {source: generate, count: 5}\n"
                       "  out: {sink: file, input: src, path: blocker/out.jsonl}\n", "blocker/out.jsonl"),
            ("sqlite output", "  src: {source: generate, count: 5}\n"
                              "  out: {sink: sqlite, input: src, path: blocker/out.db, table: t, key: n}\n",
             "blocker/out.db"),
            ("dead letter", "  src: {source: generate, count: 5}\n"
                            "  m: {op: map, input: src, lua: 'error(\"no\")', on_error: dead_letter,"
                            " dead_letter: blocker/dead.jsonl}\n"
                            "  out: {sink: file, input: m, path: out.jsonl}\n", "blocker/dead.jsonl"),
        ]
        for what, nodes, path in cases:
            for semantics in ("at-most-once", "effectively-once"):
                y = write(os.path.join(d, "p.yaml"),
                          f"pipeline: bad\nsemantics: {semantics}\nstate: state.db\nnodes:\n" + nodes)
                p = run(["run", y, "-q", "--fresh"])
                expect_rc(p, 1)
                check(path in p.stderr, f"{what} ({semantics}): names {path}: {p.stderr}")
        check(open(blocker).read() == "a regular file, not a folder", "the blocking file is untouched")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    setup(sys.argv[1], sys.argv[2])
    RECORDS = os.path.join(os.path.abspath(sys.argv[2]), "tests", "bad_input", "records")
    sys.exit(main("bad_input", sys.argv[3] if len(sys.argv) > 3 else ""))

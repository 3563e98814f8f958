#!/usr/bin/env python3
"""End-to-end tests of `onceflow test` (SPEC §3 "Pipeline tests"): a right expectation
passes (exit 0), a deliberately wrong one fails with a readable diff (exit 4), --json,
ordered, expect_exit/expect_error, stdout sinks, outputs kept out of the pipeline's own
paths, and broken test files refused with file:line:col (exit 2) before anything runs.

Usage: test_command_test.py ONCEFLOW_BINARY REPO_ROOT [TEST_NAME_SUBSTRING]
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tmp, check, expect_rc, run, test, write  # noqa: E402
import harness  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.abspath(sys.argv[2])
ONLY = sys.argv[3] if len(sys.argv) > 3 else ""
harness.setup(BIN, ROOT)

# Two sources (one replaced by the cases, one kept), a keyed count into a file sink, and
# a stdout sink of the filtered records.
PIPELINE = """pipeline: shop
nodes:
  orders:
    source: file
    path: data/orders.jsonl
    format: jsonl
  extra:
    source: file
    path: data/extra.jsonl
    format: jsonl
  big:
    op: filter
    input: [orders, extra]
    where: e.amount > 10
  per_item:
    op: count
    input: big
    key: item
    emit: final
  totals:
    sink: file
    input: per_item
    path: out/totals.jsonl
  shown:
    sink: stdout
    input: big
"""

# The records the cases give the `orders` source.
ORDERS = """    inputs:
      orders:
        - {item: pen, amount: 20}
        - {item: pen, amount: 5}
        - {item: ink, amount: 11}
"""

GOOD = """pipeline: shop.yaml
cases:
  - name: counts big orders per item
""" + ORDERS + """    expect:
      totals:
        - {item: pen, count: 1}
        - {item: ink, count: 2}   # one from data/extra.jsonl, kept as the pipeline reads it
      shown:
        - {item: ink, amount: 12}
        - {item: pen, amount: 20}
        - {item: ink, amount: 11}
"""

# The same case with a deliberately wrong expectation: pen counted 2 (changed), an item
# that never comes (missing), and the stdout sink lacking the record of data/extra.jsonl
# (unexpected).
WRONG = """pipeline: shop.yaml
cases:
  - name: wrong on purpose
""" + ORDERS + """    expect:
      totals:
        - {item: pen, count: 2}
        - {item: ink, count: 2}
        - {item: cap, count: 1}
      shown:
        - {item: pen, amount: 20}
        - {item: ink, amount: 11}
  - name: right
    inputs:
      orders: []
    expect:
      totals:
        - {item: ink, count: 1}
"""


def shop(d):
    write(os.path.join(d, "shop.yaml"), PIPELINE)
    write(os.path.join(d, "data/orders.jsonl"), '{"item":"zzz","amount":99}\n')
    write(os.path.join(d, "data/extra.jsonl"), '{"item":"ink","amount":12}\n')
    return os.path.join(d, "shop.yaml")


def env_with_tmpdir(d):
    env = dict(os.environ)
    env["TMPDIR"] = d
    return env


@test
def right_expectation_passes():
    with Tmp() as d:
        shop(d)
        t = write(os.path.join(d, "shop.test.yaml"), GOOD)
        tmp = os.path.join(d, "tmp")
        os.makedirs(tmp)
        p = run(["test", t], env=env_with_tmpdir(tmp))
        expect_rc(p, 0)
        lines = p.stdout.splitlines()
        check(lines[0].startswith("ok    counts big orders per item ("), p.stdout)
        check(lines[-1].startswith(t + ": 1 case: 1 passed, 0 failed ("), p.stdout)
        check(not os.path.exists(os.path.join(d, "out")),
              "outputs go to the case folder, never to the pipeline's own paths")
        check(os.listdir(tmp) == [], f"case folders are removed: {os.listdir(tmp)}")
        # --quiet leaves only the summary line.
        q = run(["--quiet", "test", t])
        expect_rc(q, 0)
        check(len(q.stdout.splitlines()) == 1 and "1 passed" in q.stdout, q.stdout)


@test
def wrong_expectation_fails_with_a_diff():
    with Tmp() as d:
        shop(d)
        t = write(os.path.join(d, "shop.test.yaml"), WRONG)
        p = run(["test", t])
        expect_rc(p, 4)
        out = p.stdout
        want = [
            "  sink 'totals': 3 records expected, 2 written",
            "    missing (1):",
            '      - {"item":"cap","count":1}',
            "    changed (1):",
            '      ~ {"item":"pen"}: count 2 -> 1',
            "  sink 'shown': 2 records expected, 3 written",
            "    unexpected (1):",
            '      + {"amount":12,"item":"ink"}',
        ]
        lines = out.splitlines()
        check(lines[0].startswith("FAIL  wrong on purpose ("), out)
        got = [l for l in lines[1:] if l.startswith("  ")]
        check(got == want, "diff:\n" + out)
        check(any(l.startswith("ok    right (") for l in lines), out)
        check(lines[-1].startswith(t + ": 2 cases: 1 passed, 1 failed"), out)


@test
def json_document():
    with Tmp() as d:
        shop(d)
        t = write(os.path.join(d, "shop.test.yaml"), WRONG)
        p = run(["test", t, "--json"])
        expect_rc(p, 4)
        doc = json.loads(p.stdout)
        check((doc["passed"], doc["failed"], doc["errors"]) == (1, 1, 0), doc)
        c = doc["cases"][0]
        check(c["name"] == "wrong on purpose" and c["status"] == "fail", c)
        totals = {s["sink"]: s for s in c["sinks"]}["totals"]
        check(totals["ok"] is False and totals["key"] == ["item"], totals)
        check(totals["missing"] == [{"item": "cap", "count": 1}], totals)
        check(totals["unexpected"] == [], totals)
        check(totals["changed"] == [{"expected": {"item": "pen", "count": 2},
                                     "written": {"item": "pen", "count": 1}}], totals)
        shown = {s["sink"]: s for s in c["sinks"]}["shown"]
        check(shown["unexpected"] == [{"item": "ink", "amount": 12}], shown)
        check(doc["cases"][1]["status"] == "ok" and doc["cases"][1]["sinks"][0]["ok"], doc)


@test
def ordered_compares_sequences():
    with Tmp() as d:
        shop(d)
        t = write(os.path.join(d, "o.test.yaml"), """pipeline: shop.yaml
cases:
  - name: in order
    inputs:
      orders: [{item: a, amount: 11}, {item: b, amount: 12}]
      extra: []
    expect:
      shown: {ordered: true, records: [{item: a, amount: 11}, {item: b, amount: 12}]}
  - name: out of order
    ordered: true
    inputs:
      orders: [{item: a, amount: 11}, {item: b, amount: 12}]
      extra: []
    expect:
      shown: [{item: b, amount: 12}, {item: a, amount: 11}]
""")
        p = run(["test", t])
        expect_rc(p, 4)
        check("ok    in order (" in p.stdout, p.stdout)
        check("FAIL  out of order (" in p.stdout, p.stdout)
        check("same records in another order; first difference at record 1" in p.stdout,
              p.stdout)


@test
def expected_exit_and_error():
    with Tmp() as d:
        write(os.path.join(d, "f.yaml"), """pipeline: f
nodes:
  src:
    source: generate
    count: 3
  f:
    op: filter
    input: src
    where: e.x.y > 1
  out:
    sink: file
    input: f
    path: out.jsonl
""")
        t = write(os.path.join(d, "f.test.yaml"), """pipeline: f.yaml
cases:
  - name: fails as it should
    expect_exit: 1
    expect_error: "node 'f'"
  - name: fails with another message
    expect_exit: 1
    expect_error: "no such text"
""")
        p = run(["test", t])
        expect_rc(p, 4)
        check("ok    fails as it should (" in p.stdout, p.stdout)
        check("FAIL  fails with another message (" in p.stdout, p.stdout)
        check('stderr does not contain "no such text"' in p.stdout, p.stdout)
        # A case that does not expect the failure is a run failure: exit 1.
        t2 = write(os.path.join(d, "f2.test.yaml"), """pipeline: f.yaml
cases:
  - name: unexpected failure
    expect:
      out: []
""")
        p = run(["test", t2])
        expect_rc(p, 1)
        check("ERROR unexpected failure (" in p.stdout, p.stdout)
        check("the run exited with status 1" in p.stdout, p.stdout)
        check("1 case: 0 passed, 0 failed, 1 error (" in p.stdout, p.stdout)


@test
def a_case_that_never_ends_is_killed_at_its_timeout():
    with Tmp() as d:
        write(os.path.join(d, "h.yaml"), """pipeline: h
nodes:
  src: {source: generate, rate: 10}
  out: {sink: file, input: src, path: out.jsonl}
""")
        t = write(os.path.join(d, "h.test.yaml"), """pipeline: h.yaml
cases:
  - name: never ends
    timeout: 300ms
    expect: {out: []}
  - name: bounded
    inputs: {src: [{n: 1}]}
    expect: {out: [{n: 1}]}
""")
        p = run(["test", t], timeout=60)
        expect_rc(p, 1)
        check("ERROR never ends (" in p.stdout, p.stdout)
        check("still running after 300 ms: killed" in p.stdout, p.stdout)
        check("ok    bounded (" in p.stdout, p.stdout)
        # --timeout applies to every case without its own.
        t2 = write(os.path.join(d, "h2.test.yaml"),
                   "pipeline: h.yaml\ncases:\n  - name: never ends\n    expect: {out: []}\n")
        p = run(["test", t2, "--timeout", "200ms"], timeout=60)
        expect_rc(p, 1)
        check("still running after 200 ms: killed" in p.stdout, p.stdout)
        expect_rc(run(["test", t2, "--timeout", "soon"]), 2)


@test
def crash_chaos_restarts_until_done():
    with Tmp() as d:
        shop(d)
        # 40 records from the replaced source, a crash after 10 source events: the case
        # runs in a child process that is restarted and still passes.
        recs = "\n".join(f"        - {{item: i{k % 4}, amount: {20 + k}}}" for k in range(40))
        expect = "\n".join(f"        - {{item: i{k}, count: 10}}" for k in range(4))
        t = write(os.path.join(d, "c.test.yaml"), f"""pipeline: shop.yaml
cases:
  - name: crash once
    semantics: effectively-once
    chaos: "seed=1,crash=10"
    set:
      checkpoint.interval: 5ms
    inputs:
      extra: []
      orders:
{recs}
    expect:
      totals:
{expect}
""")
        p = run(["test", t, "--json"])
        expect_rc(p, 0)
        c = json.loads(p.stdout)["cases"][0]
        check(c["status"] == "ok" and c["restarts"] >= 1 and c["runs"] == c["restarts"] + 1, c)


BROKEN = [
    # (test file text, expected stderr fragments)
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    inputz: {}\n    expect: {totals: []}\n",
     ["t.test.yaml:4:5: error: unknown key 'inputz' in a case", "did you mean 'inputs'?"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    inputs:\n      big: []\n    expect:\n"
     "      orders: []\n",
     ["t.test.yaml:5:7: error: case 'a': 'big' is an operator, not a source",
      "t.test.yaml:7:7: error: case 'a': 'orders' is a source, not a sink"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    expect:\n      totals:\n        - [1, 2]\n",
     ["t.test.yaml:6:11: error: case 'a': 'expect' of 'totals': a record must be a map"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    chaos: fail=nope:0.1\n    expect: {totals: []}\n",
     ["t.test.yaml:4:12: error: case 'a': 'chaos': fail=nope: no node 'nope' in the pipeline"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    semantics: at-least-once\n    mode: dedup\n"
     "    expect: {totals: []}\n",
     ["t.test.yaml:5:11: error: case 'a': 'mode' applies to effectively-once only"]),
    ("pipeline: nothere.yaml\ncases:\n  - name: a\n    expect: {totals: []}\n",
     ["nothere.yaml: error: cannot read the pipeline file"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    timeout: soon\n    expect: {totals: []}\n",
     ["t.test.yaml:4:14: error: case 'a': 'timeout' must be a duration such as 30s or 2m"]),
    ("pipeline: shop.yaml\ncases: []\n",
     ["t.test.yaml:2:8: error: 'cases' must be a non-empty list of cases"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    set: {nodes.per_item.keyy: item}\n"
     "    expect: {totals: []}\n",
     ["error: case 'a': the pipeline refuses this case's settings",
      "node 'per_item': unknown option 'keyy'"]),
    ("pipeline: shop.yaml\ncases:\n  - name: a\n    expect:\n      totals: [{a: 1}\n",
     ["t.test.yaml:6:1: error: invalid YAML"]),
]


@test
def broken_test_files_exit_2_before_running():
    with Tmp() as d:
        shop(d)
        tmp = os.path.join(d, "tmp")
        os.makedirs(tmp)
        for text, fragments in BROKEN:
            t = write(os.path.join(d, "t.test.yaml"), text)
            p = run(["test", t], env=env_with_tmpdir(tmp))
            expect_rc(p, 2)
            for f in fragments:
                check(f in p.stderr, f"{f!r} not in stderr for\n{text}\nstderr:\n{p.stderr}")
            check(p.stdout == "", f"nothing on stdout: {p.stdout}")
            check(os.listdir(tmp) == [], f"nothing left behind: {os.listdir(tmp)}")
        check(not os.path.exists(os.path.join(d, "out")), "nothing ran")
        # A broken pipeline: its own diagnostics, exit 2.
        write(os.path.join(d, "bad.yaml"), "pipeline: bad\nnodes:\n  a:\n    source: nope\n")
        t = write(os.path.join(d, "b.test.yaml"),
                  "pipeline: bad.yaml\ncases:\n  - name: a\n    expect_exit: 0\n")
        p = run(["test", t])
        expect_rc(p, 2)
        check("bad.yaml:4:13: error:" in p.stderr, p.stderr)


if __name__ == "__main__":
    sys.exit(harness.main("test", ONLY))

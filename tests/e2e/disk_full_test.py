#!/usr/bin/env python3
"""A full disk, for real: small tmpfs file systems filled up on purpose.

- During a sink write: the output is on a full file system. The run fails (exit 1)
  naming the output file; the last complete checkpoint is intact; once space is freed a
  plain rerun resumes from it and the output is exactly the failure-free one (the file
  is cut back to the checkpointed length, so a half-written line does not survive).
- During a checkpoint: the state file is on a full file system (after a first part of
  the input committed while there was room). The run fails naming the state file; the
  file still opens, its complete checkpoints are still listed; once space is freed a
  rerun resumes and the output is exact.

Both under effectively-once, in snapshot and in dedup mode.

Mounting needs root (or CAP_SYS_ADMIN): without it the test exits 77, which CTest
reports as skipped (SKIP_RETURN_CODE), never as passed.

Usage: disk_full_test.py BINARY REPO_ROOT [NAME_FILTER]
"""
import json
import os
import subprocess
import sys

from harness import Tmp, check, expect_rc, main, read_jsonl, run, setup, test

SKIPPED = 77


class Tmpfs:
    """A tmpfs of `size` bytes mounted at `path`, unmounted on exit."""

    def __init__(self, path, size):
        self.path, self.size = path, size

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.path],
                       check=True, capture_output=True)
        return self.path

    def __exit__(self, *a):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def can_mount():
    with Tmp() as d:
        try:
            with Tmpfs(os.path.join(d, "m"), 64 * 1024):
                return True
        except (subprocess.CalledProcessError, FileNotFoundError):
            return False


def fill(folder, leave):
    """Creates folder/filler so that about `leave` bytes stay free; returns its path."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    path = os.path.join(folder, "filler")
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return path


# 200,000 records of ~80 bytes: ~16 MB of output.
SINK_PIPE = """pipeline: full
semantics: effectively-once
nodes:
  gen: {source: generate, count: 200000, lua: "return {n = n, pad = string.rep('x', 60)}"}
  m: {op: map, input: gen, lua: "return {n = e.n, pad = e.pad, odd = e.n % 2}"}
  out: {sink: file, input: m, path: OUT}
"""

# 150,000 distinct keys: checkpoints of several MB.
STATE_PIPE = """pipeline: full
semantics: effectively-once
nodes:
  gen: {source: generate, count: 150000, lua: "return {k = 'key-' .. n .. string.rep('y', 40)}"}
  c: {op: count, input: gen, key: k, emit: final}
  out: {sink: file, input: c, path: OUT}
"""


def pipeline(d, text, out):
    path = os.path.join(d, "p.yaml")
    with open(path, "w") as f:
        f.write(text.replace("OUT", out))
    return path


def reference(d, text):
    out = os.path.join(d, "ref.jsonl")
    y = pipeline(d, text, out)
    expect_rc(run(["run", y, "-q", "--state", os.path.join(d, "ref.db")]), 0)
    os.unlink(y)
    return open(out, "rb").read()


def checkpoints(state):
    p = run(["checkpoints", "list", "--state", state])
    expect_rc(p, 0)
    return [line.split()[0] for line in p.stdout.splitlines()[1:] if line.strip()]


def fill_fail_resume(text, what, tmpfs_size, leave, state_on_small, interval, on_failure,
                     after_freeing, same_output):
    """Under each effectively-once mode: a first part commits while there is room (so a
    complete checkpoint or dedup commit always exists for the full disk to threaten),
    the small file system is filled but for `leave` bytes, the run fails
    (on_failure(mode, p, state, out)), space is freed (after_freeing(mode, state, before)),
    and a rerun's output is the failure-free one (same_output(out, want))."""
    for mode in ("snapshot", "dedup"):
        with Tmp() as d:
            want = reference(d, text)
            with Tmpfs(os.path.join(d, "small"), tmpfs_size) as small:
                state = os.path.join(small if state_on_small else d, "state.db")
                out = os.path.join(d if state_on_small else small, "out.jsonl")
                y = pipeline(d, text, out)
                cmd = ["run", y, "-q", "--mode", mode, "--state", state, "--checkpoint-interval", interval]
                expect_rc(run(cmd + ["--max-events", "20000"]), 0)
                before = checkpoints(state) if mode == "snapshot" else None
                filler = fill(small, leave)
                p = run(cmd)
                if os.environ.get("VERBOSE"):
                    print(f"  {mode} {what}: exit {p.returncode}: {p.stderr.strip()}")
                on_failure(mode, p, state, out)
                os.unlink(filler)
                after_freeing(mode, state, before)
                p = run(cmd)
                expect_rc(p, 0)
                check(same_output(out, want), f"{mode}: output after resuming is exact")


@test
def disk_full_during_sink_write():
    def on_failure(mode, p, state, out):
        expect_rc(p, 1)
        check(out in p.stderr and "No space left" in p.stderr, f"{mode}: names the file: {p.stderr}")
        if mode == "snapshot":
            check(len(checkpoints(state)) >= 1, f"{mode}: a complete checkpoint survived")

    fill_fail_resume(SINK_PIPE, "sink", 24 * 1024 * 1024, 4 * 1024 * 1024, False, "50ms",
                     on_failure, lambda *a: None,
                     lambda out, want: open(out, "rb").read() == want)


@test
def disk_full_during_checkpoint():
    def on_failure(mode, p, state, out):
        check(p.returncode in (1, 3), f"{mode}: fails, got {p.returncode}: {p.stderr}")
        check(state in p.stderr and ("full" in p.stderr or "No space" in p.stderr),
              f"{mode}: names the state file and the cause: {p.stderr}")

    def after_freeing(mode, state, before):
        if mode == "snapshot":
            # Checkpoints that completed before the disk filled may have pruned the
            # older ones (retain), never the other way round.
            after = checkpoints(state)
            check(after and max(map(int, after)) >= max(map(int, before)),
                  f"{mode}: the file opens, its newest checkpoint is listed: {before} -> {after}")

    def same_records(out, want):
        return sorted(map(repr, read_jsonl(out))) == \
            sorted(map(repr, [json.loads(x) for x in want.splitlines()]))

    fill_fail_resume(STATE_PIPE, "checkpoint", 64 * 1024 * 1024, 3 * 1024 * 1024, True, "20ms",
                     on_failure, after_freeing, same_records)

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    setup(sys.argv[1], sys.argv[2])
    if not can_mount():
        print("disk_full: skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
        sys.exit(SKIPPED)
    sys.exit(main("disk_full", sys.argv[3] if len(sys.argv) > 3 else ""))

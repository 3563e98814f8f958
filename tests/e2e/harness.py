"""The small runner shared by the end-to-end test files: a registry of test functions,
checks that raise AssertionError with a message, helpers to run the binary and read
outputs, and main() printing one line per test and a total.

A test file calls setup(BINARY, REPO_ROOT) once, decorates its tests with @test and ends
with sys.exit(main(LABEL, ONLY)).
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import traceback

TESTS = []
BIN = ""
ROOT = ""


def setup(binary, root):
    global BIN, ROOT
    BIN = os.path.abspath(binary)
    ROOT = os.path.abspath(root)


def test(fn):
    TESTS.append(fn)
    return fn


def run(args, cwd=None, input=None, timeout=120, env=None):
    # errors="replace": an error message may quote an input line that is not UTF-8.
    return subprocess.run([BIN] + args, cwd=cwd or ROOT, input=input, capture_output=True,
                          text=True, errors="replace", timeout=timeout, env=env)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_rc(p, rc):
    check(p.returncode == rc,
          f"exit {p.returncode}, expected {rc}\nstdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-2000:]}")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def canon(records):
    return sorted(json.dumps(r, sort_keys=True) for r in records)


class Tmp:
    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="onceflow-e2e-")
        return self.dir

    def __exit__(self, *a):
        shutil.rmtree(self.dir, ignore_errors=True)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def main(label, only=""):
    passed = failed = 0
    for fn in TESTS:
        if only and only not in fn.__name__:
            continue
        t = time.time()
        try:
            fn()
            passed += 1
            print(f"ok   {fn.__name__} ({time.time() - t:.1f}s)", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL {fn.__name__}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0

#!/usr/bin/env bash
# Broken-pipeline corpus: every tests/golden/broken/NN-name.yaml must be rejected by
# `onceflow validate` with exit 2 and exactly the stderr in NN-name.stderr, and validating
# must not create or modify any file (SPEC §2: exit 2 means nothing was touched).
#
# Usage: broken_pipelines_test.sh ONCEFLOW_BINARY REPO_ROOT
# Runs from REPO_ROOT so that the paths in messages read tests/golden/broken/NN-name.yaml.
# To regenerate a golden after an intended change of wording:
#   (cd REPO_ROOT && onceflow validate tests/golden/broken/X.yaml 2> tests/golden/broken/X.stderr)
set -u

if [[ $# -ne 2 ]]; then
  echo "usage: $0 ONCEFLOW_BINARY REPO_ROOT" >&2
  exit 2
fi
binary=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$2
corpus=tests/golden/broken
cd "$root" || exit 2

# The corpus relies on these being unset (28-unset-env-var) and on a fixed environment.
unset ONCEFLOW_BROKEN_TEST_UNSET_VAR ONCEFLOW_BROKEN_TEST_UNSET_OUT
export LC_ALL=C

# What validate could plausibly touch: the corpus folder (relative paths in the pipelines
# resolve there; listed with size and mtime) and the working folder's entries (the default
# state file is ./NAME.state.db; names only, as other files there may legitimately change).
snapshot() {
  find "$corpus" -printf '%p %s %T@\n' | sort
  find . -mindepth 1 -maxdepth 1 -printf '%p\n' | sort
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
shopt -s nullglob
for yaml in "$corpus"/*.yaml; do
  name=${yaml%.yaml}
  golden=$name.stderr
  if [[ ! -f $golden ]]; then
    echo "FAIL $yaml: no golden $golden"
    failed=$((failed + 1))
    continue
  fi
  snapshot > "$tmp/before"
  "$binary" validate "$yaml" > "$tmp/stdout" 2> "$tmp/stderr"
  rc=$?
  snapshot > "$tmp/after"
  ok=1
  if [[ $rc -ne 2 ]]; then
    echo "FAIL $yaml: exit $rc, expected 2"
    ok=0
  fi
  if ! diff -u "$golden" "$tmp/stderr" > "$tmp/diff"; then
    echo "FAIL $yaml: stderr differs from $golden:"
    cat "$tmp/diff"
    ok=0
  fi
  if [[ -s $tmp/stdout ]]; then
    echo "FAIL $yaml: unexpected output on stdout:"
    cat "$tmp/stdout"
    ok=0
  fi
  if ! diff "$tmp/before" "$tmp/after" > "$tmp/touched"; then
    echo "FAIL $yaml: validate touched files:"
    cat "$tmp/touched"
    ok=0
  fi
  if [[ $ok -eq 1 ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done

echo "broken pipelines: $passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]

#!/usr/bin/env bash
# Runs `onceflow test` on every pipelines/*.test.yaml (found now, so a test file added
# later is run without touching CMake), and fails when an example pipeline of
# pipelines/ has no test file beside it: every example ships its tests.
#
# Usage: pipeline_tests.sh ONCEFLOW_BINARY REPO_ROOT
set -u

if [[ $# -ne 2 ]]; then
  echo "usage: $0 ONCEFLOW_BINARY REPO_ROOT" >&2
  exit 2
fi
binary=$1
cd "$2" || exit 2

status=0
shopt -s nullglob
tests=(pipelines/*.test.yaml)
if [[ ${#tests[@]} -eq 0 ]]; then
  echo "FAIL no pipelines/*.test.yaml found" >&2
  exit 1
fi
for pipeline in pipelines/*.yaml; do
  [[ $pipeline == *.test.yaml ]] && continue
  if [[ ! -f ${pipeline%.yaml}.test.yaml ]]; then
    echo "FAIL $pipeline has no test file ${pipeline%.yaml}.test.yaml"
    status=1
  fi
done
for t in "${tests[@]}"; do
  # A bound, so a case that stops ending fails here instead of hanging CTest.
  "$binary" test --timeout 60s "$t"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL $t: onceflow test exited with status $rc"
    status=1
  fi
done
exit $status

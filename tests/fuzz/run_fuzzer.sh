#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time: first every seed (and every regression
# input) once, then mutations for SECONDS. A crash, a sanitizer report, a leak or an
# input slower than 10 s fails the run; libFuzzer writes the input that did it into WORK
# as crash-*/leak-*/timeout-* — copy it into the seed corpus as a regression case when
# fixing the bug.
#
#   run_fuzzer.sh FUZZER SEED_DIR WORK_DIR [SECONDS]
set -euo pipefail
fuzzer=$(realpath "$1") seeds=$(realpath "$2") work=$3 seconds=${4:-20}
rm -rf "$work"
mkdir -p "$work/corpus"
cd "$work"
# New inputs go into the scratch corpus; the seed folder is only read.
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds"

#!/usr/bin/env bash
# tests/bench/run.sh: measures onceflow side by side with hand-written baselines.
#
# Usage: tests/bench/run.sh [--words N] [--orders N] [--runs K] [--build DIR]
#                           [--semantics S]
#   --words N      words in the word-count input (default 20000000; 0 skips it)
#   --orders N     events in the orders input (default 5000000; 0 skips it)
#   --runs K       timed runs of every program (default 3); medians are reported
#   --build DIR    CMake build directory (default build/): DIR/cli/onceflow and
#                  DIR/tests/bench/{bench_gen_words,bench_gen_orders,wc_baseline,
#                  orders_baseline}; tools missing there are compiled with g++
#                  into tests/bench/data/bin/ instead
#   --semantics S  onceflow's --semantics (default at-most-once)
#   --pipelines D  folder holding wordcount.yaml and orders.yaml (default
#                  pipelines/ of this repository)
#   --state-keys N keys in the state-store benchmark (default 1000000; 0 skips
#                  it); needs DIR/tests/bench/state_bench (links the runtime, so
#                  it is never compiled by this script)
# N accepts a k/M suffix (200k, 20M).
#
# Input data is generated once into tests/bench/data/ (git-ignored) and reused
# while N is unchanged. Runs are interleaved (onceflow, baseline, reference,
# then again) so that load from other processes spreads over all programs.
# Each onceflow run gets a fresh state file and output folder. The outputs of
# the last run are checked against the C++ baseline. Exit status: 0 when every
# program that ran succeeded and all outputs agree (a missing onceflow binary or
# pipeline is reported and skipped, not an error), 1 otherwise.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/tests/bench"
DATA="$BENCH/data"

N_WORDS=20000000
N_ORDERS=5000000
RUNS=3
BUILD="$ROOT/build"
SEMANTICS=at-most-once
PIPELINES="$ROOT/pipelines"
N_STATE_KEYS=1000000

# shellcheck source=tests/bench/bench_lib.sh
source "$BENCH/bench_lib.sh"

while (($#)); do
  case "$1" in
    --words) N_WORDS=$(to_count "${2:?--words needs a value}"); shift 2 ;;
    --orders) N_ORDERS=$(to_count "${2:?--orders needs a value}"); shift 2 ;;
    --runs) RUNS=$(to_count "${2:?--runs needs a value}"); shift 2 ;;
    --build) BUILD="${2:?--build needs a value}"; shift 2 ;;
    --semantics) SEMANTICS="${2:?--semantics needs a value}"; shift 2 ;;
    --pipelines) PIPELINES="${2:?--pipelines needs a value}"; shift 2 ;;
    --state-keys) N_STATE_KEYS=$(to_count "${2:?--state-keys needs a value}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
((RUNS >= 1)) || die "--runs must be at least 1"
BUILD="$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")"
PIPELINES="$(cd "$PIPELINES" 2>/dev/null && pwd || echo "$PIPELINES")"
BIN_DIR="$BUILD/tests/bench"
ONCEFLOW="$BUILD/cli/onceflow"

GNU_TIME=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -f '%M' -o /dev/null true 2>/dev/null; then
  GNU_TIME=/usr/bin/time
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/onceflow-bench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$DATA"
STATUS=0

# ---------------------------------------------------------------------------
# Tools

# tool NAME SOURCE [LIBS...]: prints the path of a bench tool, preferring the
# CMake-built one and otherwise compiling SOURCE with g++ into data/bin/.
tool() {
  local name=$1 src=$2
  shift 2
  if [[ -x "$BIN_DIR/$name" ]]; then
    if [[ "$BENCH/$src" -nt "$BIN_DIR/$name" ]]; then
      echo "warning: $BIN_DIR/$name is older than $src; rebuild it (cmake --build)" >&2
    fi
    echo "$BIN_DIR/$name"
    return
  fi
  local out="$DATA/bin/$name"
  if [[ ! -x "$out" || "$BENCH/$src" -nt "$out" || "$BENCH/bench_util.h" -nt "$out" ]]; then
    echo "note: $BIN_DIR/$name not found; compiling $src with g++ -O2 into $out" >&2
    mkdir -p "$DATA/bin"
    g++ -O2 -DNDEBUG -std=c++20 -o "$out.tmp" "$BENCH/$src" "$@" >&2
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

# Link flags for absl's flat_hash_map, as an array (used by the g++ fallback).
read -ra ABSL_LIBS <<<"$(pkg-config --libs absl_flat_hash_map absl_strings 2>/dev/null ||
  echo "-labsl_raw_hash_set -labsl_hash -labsl_city -labsl_low_level_hash -labsl_strings")"

# ---------------------------------------------------------------------------
# Timing

declare -A WALL=() RSS=() FAILED=()

# run_timed TAG CMD...: runs CMD (stdout to $TMP/TAG.out, stderr to
# $TMP/TAG.err), appends its wall seconds to WALL[TAG] and its peak RSS in KiB
# to RSS[TAG]. On failure marks FAILED[TAG], prints the tail of its stderr and
# returns 1.
run_timed() {
  local tag=$1
  shift
  local rc=0 t0 t1
  t0=$EPOCHREALTIME
  if [[ -n "$GNU_TIME" ]]; then
    "$GNU_TIME" -f '%M' -o "$TMP/$tag.rss" "$@" >"$TMP/$tag.out" 2>"$TMP/$tag.err" || rc=$?
  else
    "$@" >"$TMP/$tag.out" 2>"$TMP/$tag.err" || rc=$?
  fi
  t1=$EPOCHREALTIME
  if ((rc != 0)); then
    FAILED[$tag]=1
    STATUS=1
    echo "  $tag FAILED (exit $rc): $*" >&2
    tail -n 5 "$TMP/$tag.err" | sed 's/^/    | /' >&2
    return 1
  fi
  WALL[$tag]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
  if [[ -n "$GNU_TIME" ]]; then
    RSS[$tag]+="$(tail -n 1 "$TMP/$tag.rss") "
  fi
  printf '.' >&2
}

median() {
  printf '%s\n' "$@" | sort -g | awk '
    { a[NR] = $1 }
    END {
      if (NR == 0) { print "nan"; exit }
      if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2
    }'
}

# report_row TAG N: one line of the results table.
report_row() {
  local tag=$1 n=$2
  if [[ -n "${FAILED[$tag]:-}" ]]; then
    printf '  %-18s %s\n' "$tag" "FAILED (see above)"
    return
  fi
  if [[ -z "${WALL[$tag]:-}" ]]; then
    printf '  %-18s %s\n' "$tag" "skipped"
    return
  fi
  local -a walls rsss=()
  read -ra walls <<<"${WALL[$tag]}"
  [[ -n "${RSS[$tag]:-}" ]] && read -ra rsss <<<"${RSS[$tag]}"
  local wall rss=nan
  wall=$(median "${walls[@]}")
  ((${#rsss[@]} == 0)) || rss=$(median "${rsss[@]}")
  awk -v tag="$tag" -v w="$wall" -v n="$n" -v rss="$rss" -v runs="${WALL[$tag]}" '
    BEGIN {
      rate = w > 0 ? n / w / 1e6 : 0
      mib = rss == "nan" ? "n/a" : sprintf("%.1f", rss / 1024)
      printf "  %-18s %9.3f %12.2f %12s    %s\n", tag, w, rate, mib, runs
    }'
}

# ratio A B: "A/B = X.XXx" from the median wall times, or why it is missing.
ratio() {
  local a=$1 b=$2
  if [[ -z "${WALL[$a]:-}" || -n "${FAILED[$a]:-}" || -z "${WALL[$b]:-}" || -n "${FAILED[$b]:-}" ]]; then
    echo "$a/$b = n/a"
    return
  fi
  local -a wa wb
  read -ra wa <<<"${WALL[$a]}"
  read -ra wb <<<"${WALL[$b]}"
  awk -v a="$(median "${wa[@]}")" -v b="$(median "${wb[@]}")" -v na="$a" -v nb="$b" \
    'BEGIN { if (b > 0) printf "%s/%s = %.2fx\n", na, nb, a / b; else printf "%s/%s = n/a\n", na, nb }'
}

table_header() {
  printf '  %-18s %9s %12s %12s    %s\n' program "wall s" "$1" "peak RSS MiB" "all runs (s)"
}

# check LABEL CMD...: runs an output comparison and prints its verdict.
check() {
  local label=$1
  shift
  local verdict
  if verdict=$("$@"); then
    printf '  %-30s outputs agree (%s)\n' "$label:" "${verdict#agree: }"
  else
    printf '  %-30s %s\n' "$label:" "$verdict"
    STATUS=1
  fi
}

# onceflow_ready PIPELINE_FILE: true when the binary and the pipeline exist;
# else explains what is missing.
onceflow_ready() {
  local pipeline=$1
  if [[ ! -x "$ONCEFLOW" ]]; then
    echo "  onceflow: SKIPPED, binary $ONCEFLOW not found (cmake --build $BUILD -j2)"
    return 1
  fi
  if [[ ! -f "$pipeline" ]]; then
    echo "  onceflow: SKIPPED, pipeline $pipeline not found"
    return 1
  fi
}

# ensure_data FILE GENERATOR N: generates FILE unless it already exists.
ensure_data() {
  local file=$1 gen=$2 n=$3
  if [[ ! -s "$file" ]]; then
    echo "  generating $(basename "$file") ..." >&2
    "$gen" "$file.tmp" "$n"
    mv "$file.tmp" "$file"
  fi
  cat "$file" >/dev/null  # Warm the page cache so that no run pays for the disk.
}

# ---------------------------------------------------------------------------

echo "onceflow benchmark  $(date -u '+%Y-%m-%d %H:%M:%SZ')  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
echo "  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $RUNS runs each (median reported), onceflow --semantics $SEMANTICS"
[[ -n "$GNU_TIME" ]] || echo "  note: /usr/bin/time (GNU time) not found; peak RSS not reported"

cd "$TMP"  # Anything a program drops in its working directory goes away with $TMP.

if ((N_WORDS > 0)); then
  echo
  echo "== word count: $N_WORDS words =="
  GEN_WORDS=$(tool bench_gen_words gen_words.cc)
  WC=$(tool wc_baseline wc_baseline.cc "${ABSL_LIBS[@]}")
  WORDS_FILE="$DATA/words-$N_WORDS.txt"
  ensure_data "$WORDS_FILE" "$GEN_WORDS" "$N_WORDS"
  echo "  input: $WORDS_FILE ($(($(stat -c %s "$WORDS_FILE") / 1048576)) MiB)"
  OW_WORDS=0
  onceflow_ready "$PIPELINES/wordcount.yaml" && OW_WORDS=1
  # shellcheck disable=SC2016  # an awk program, not shell
  MAWK_PROG='{for(i=1;i<=NF;i++)c[$i]++} END{for(w in c) print w, c[w]}'
  for ((r = 1; r <= RUNS; r++)); do
    if ((OW_WORDS)) && [[ -z "${FAILED[onceflow]:-}" ]]; then
      rm -rf "$TMP/ow" && mkdir "$TMP/ow"
      run_timed onceflow "$ONCEFLOW" run "$PIPELINES/wordcount.yaml" \
        --semantics "$SEMANTICS" --state "$TMP/ow/state.db" \
        --set "nodes.lines.path=$WORDS_FILE" --set "nodes.out.path=$TMP/ow/counts.jsonl" \
        --set nodes.counts.emit=final --quiet || true
    fi
    [[ -n "${FAILED[wc_baseline]:-}" ]] ||
      run_timed wc_baseline "$WC" "$WORDS_FILE" "$TMP/wc.jsonl" || true
    [[ -n "${FAILED[mawk]:-}" ]] || run_timed mawk mawk "$MAWK_PROG" "$WORDS_FILE" || true
  done
  echo >&2
  table_header "M words/s"
  for tag in onceflow wc_baseline mawk; do report_row "$tag" "$N_WORDS"; done
  echo "  time ratios (lower is better for onceflow): $(ratio onceflow wc_baseline), $(ratio onceflow mawk)"
  if [[ -z "${FAILED[wc_baseline]:-}" ]]; then
    if [[ -n "${WALL[onceflow]:-}" && -z "${FAILED[onceflow]:-}" ]]; then
      check "onceflow vs wc_baseline" python3 "$BENCH/check_outputs.py" words "$TMP/wc.jsonl" "$TMP/ow/counts.jsonl"
    fi
    if [[ -z "${FAILED[mawk]:-}" ]]; then
      check "mawk vs wc_baseline" python3 "$BENCH/check_outputs.py" words "$TMP/wc.jsonl" "$TMP/mawk.out" --format mawk
    fi
  fi
fi

if ((N_ORDERS > 0)); then
  echo
  echo "== orders: $N_ORDERS events (filter status == \"paid\" and amount > 10, sum/count per customer, SQLite upsert) =="
  GEN_ORDERS=$(tool bench_gen_orders gen_orders.cc)
  OB=$(tool orders_baseline orders_baseline.cc "${ABSL_LIBS[@]}" -lsimdjson -lsqlite3)
  ORDERS_FILE="$DATA/orders-$N_ORDERS.jsonl"
  ensure_data "$ORDERS_FILE" "$GEN_ORDERS" "$N_ORDERS"
  echo "  input: $ORDERS_FILE ($(($(stat -c %s "$ORDERS_FILE") / 1048576)) MiB)"
  OW_ORDERS=0
  onceflow_ready "$PIPELINES/orders.yaml" && OW_ORDERS=1
  for ((r = 1; r <= RUNS; r++)); do
    if ((OW_ORDERS)) && [[ -z "${FAILED[onceflow_orders]:-}" ]]; then
      rm -rf "$TMP/oo" && mkdir "$TMP/oo"
      run_timed onceflow_orders "$ONCEFLOW" run "$PIPELINES/orders.yaml" \
        --semantics "$SEMANTICS" --state "$TMP/oo/state.db" \
        --set "nodes.orders.path=$ORDERS_FILE" --set "nodes.db.path=$TMP/oo/orders.db" \
        --quiet || true
    fi
    # The same pipeline in one chain (one thread): per_customer fed by a plain forward
    # edge. The example runs it in two tasks, behind an explicit hash edge.
    if ((OW_ORDERS)) && [[ -z "${FAILED[onceflow_orders_1c]:-}" ]]; then
      rm -rf "$TMP/o1" && mkdir "$TMP/o1"
      run_timed onceflow_orders_1c "$ONCEFLOW" run "$PIPELINES/orders.yaml" \
        --semantics "$SEMANTICS" --state "$TMP/o1/state.db" \
        --set "nodes.orders.path=$ORDERS_FILE" --set "nodes.db.path=$TMP/o1/orders.db" \
        --set 'nodes.per_customer.input=paid' \
        --quiet || true
    fi
    if [[ -z "${FAILED[orders_cpp]:-}" ]]; then
      rm -f "$TMP/cpp.db"
      run_timed orders_cpp "$OB" "$ORDERS_FILE" "$TMP/cpp.db" || true
    fi
    if [[ -z "${FAILED[orders_python]:-}" ]]; then
      rm -f "$TMP/py.db"
      run_timed orders_python python3 "$BENCH/orders_baseline.py" "$ORDERS_FILE" "$TMP/py.db" || true
    fi
  done
  echo >&2
  table_header "M events/s"
  for tag in onceflow_orders onceflow_orders_1c orders_cpp orders_python; do report_row "$tag" "$N_ORDERS"; done
  echo "  time ratios (lower is better for onceflow): $(ratio onceflow_orders orders_cpp), $(ratio onceflow_orders orders_python)"
  echo "  one chain (onceflow_orders_1c: per_customer chained to its input): $(ratio onceflow_orders_1c orders_cpp), $(ratio onceflow_orders_1c orders_python)"
  if [[ -z "${FAILED[orders_cpp]:-}" ]]; then
    if [[ -n "${WALL[onceflow_orders]:-}" && -z "${FAILED[onceflow_orders]:-}" ]]; then
      check "onceflow vs orders_cpp" python3 "$BENCH/check_outputs.py" orders "$TMP/cpp.db" "$TMP/oo/orders.db"
    fi
    if [[ -n "${WALL[onceflow_orders_1c]:-}" && -z "${FAILED[onceflow_orders_1c]:-}" ]]; then
      check "onceflow (one chain) vs orders_cpp" python3 "$BENCH/check_outputs.py" orders "$TMP/cpp.db" "$TMP/o1/orders.db"
    fi
    if [[ -z "${FAILED[orders_python]:-}" ]]; then
      check "orders_python vs orders_cpp" python3 "$BENCH/check_outputs.py" orders "$TMP/cpp.db" "$TMP/py.db"
    fi
  fi
fi

if ((N_STATE_KEYS > 0)); then
  echo
  echo "== state store: $N_STATE_KEYS keys, full / incremental (1% changed) checkpoint and restore =="
  if [[ ! -x "$BIN_DIR/state_bench" ]]; then
    echo "  state_bench: SKIPPED, $BIN_DIR/state_bench not found (cmake --build $BUILD --target state_bench)"
  else
    if [[ "$BENCH/state_bench.cc" -nt "$BIN_DIR/state_bench" ]]; then
      echo "warning: $BIN_DIR/state_bench is older than state_bench.cc; rebuild it (cmake --build)" >&2
    fi
    # One process does every step (its table is the report); the state file goes to $TMP.
    SB_RC=0
    "$BIN_DIR/state_bench" --keys "$N_STATE_KEYS" --dir "$TMP" >"$TMP/state_bench.out" 2>"$TMP/state_bench.err" || SB_RC=$?
    if ((SB_RC == 0)); then
      sed -n '3,$p' "$TMP/state_bench.out"
    else
      STATUS=1
      echo "  state_bench FAILED (exit $SB_RC)" >&2
      cat "$TMP/state_bench.out"
      tail -n 5 "$TMP/state_bench.err" | sed 's/^/    | /' >&2
    fi
  fi
fi

exit "$STATUS"

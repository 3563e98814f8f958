#!/usr/bin/env bash
# tests/bench/guarantees_bench.sh: what each guarantee costs, measured side by side in one
# run (ratios between runs of the same binary on the same data, interleaved).
#
# Usage: tests/bench/guarantees_bench.sh [SUB-BENCHMARKS] [OPTIONS]
# Sub-benchmarks (default: all five, in this order):
#   --throughput   wordcount and orders under at-least-once, effectively-once/snapshot and
#                  effectively-once/dedup, throughput relative to at-most-once (medians
#                  of --runs interleaved runs; outputs checked against at-most-once's)
#   --recovery     tests/bench/pipelines/two_branches.yaml: faults in branch A only; how
#                  much of healthy branch B's failure-free throughput survives, dedup vs
#                  snapshot (checkpoint interval 1s and 200ms)
#   --topology     chains generate -> op1 -> ... -> opN -> file (one task per op, N from
#                  --sizes) with faults in the middle op: throughput relative to
#                  failure-free, snapshot vs dedup
#   --latency      tests/bench/pipelines/latency.yaml paced at --rate events/s to a stdout
#                  sink read by a timestamping reader: p50/p99 latency per guarantee
#   --log          tests/bench/pipelines/dedup_log.yaml under dedup for --minutes: dedup
#                  log rows/bytes, state file size and RSS sampled every 10 s
# Options:
#   --build DIR          CMake build directory (default build/)
#   --runs K             throughput runs per configuration (default 3)
#   --words N            wordcount input words (default 20000000; 0 skips wordcount)
#   --orders N           orders input events (default 5000000; 0 skips orders)
#   --rec-runs K         runs per configuration of --recovery and --topology (default 1)
#   --duration D         measured window of --recovery runs, seconds (default 15)
#   --topo-duration D    measured window of --topology runs, seconds (default 8)
#   --warmup W           seconds before the measured window starts (default 2)
#   --fail P             fault probability per record (default 0.0001 = 1 per 10,000)
#   --sizes "2 4 8 16"   chain lengths of --topology
#   --rate R             events/s of --latency (default 20000)
#   --lat-duration D     seconds per --latency run (default 10; the first 1 s is warm-up)
#   --lat-runs K         runs per guarantee of --latency, interleaved (default 3)
#   --minutes M          length of the --log run (default 2)
#   --log-rate R         events/s of the --log source (default 100000; 0 = unpaced; the
#                        output file grows by ~20 bytes per event)
#   --json FILE          also write every result row as JSON to FILE
#   --keep               keep the temporary folder (printed) instead of deleting it
# N accepts a k/M suffix (200k, 20M). Throughput inputs are the files tests/bench/run.sh
# generates into tests/bench/data/ (generated here too when missing).
#
# Throughput of a recovery/topology run = lines its sink wrote during the measured
# window (wc -l sampled at --warmup and at --warmup + window) / window. Under snapshot a
# sampled file may hold lines written since the last checkpoint that a later recovery
# cuts back, so a sample can be off by up to one checkpoint interval of output.
# Exit status: 0 when every run succeeded and all checked outputs agree, 1 otherwise,
# 2 on bad arguments.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/tests/bench"
DATA="$BENCH/data"
HELPER="$BENCH/guarantees_helper.py"

# shellcheck source=tests/bench/bench_lib.sh
source "$BENCH/bench_lib.sh"

BUILD="$ROOT/build"
RUNS=3
N_WORDS=20000000
N_ORDERS=5000000
REC_RUNS=1
REC_DURATION=15
TOPO_DURATION=8
WARMUP=2
FAIL_P=0.0001
SIZES="2 4 8 16"
LAT_RATE=20000
LAT_DURATION=10
LAT_RUNS=3
MINUTES=2
LOG_RATE=100000
JSON_OUT=""
KEEP=0
declare -a WANT=()

while (($#)); do
  case "$1" in
    --throughput | --recovery | --topology | --latency | --log) WANT+=("${1#--}"); shift ;;
    --build) BUILD="${2:?--build needs a value}"; shift 2 ;;
    --runs) RUNS=$(to_count "${2:?--runs needs a value}"); shift 2 ;;
    --words) N_WORDS=$(to_count "${2:?--words needs a value}"); shift 2 ;;
    --orders) N_ORDERS=$(to_count "${2:?--orders needs a value}"); shift 2 ;;
    --rec-runs) REC_RUNS=$(to_count "${2:?--rec-runs needs a value}"); shift 2 ;;
    --duration) REC_DURATION=$(to_count "${2:?--duration needs a value}"); shift 2 ;;
    --topo-duration) TOPO_DURATION=$(to_count "${2:?--topo-duration needs a value}"); shift 2 ;;
    --warmup) WARMUP=$(to_count "${2:?--warmup needs a value}"); shift 2 ;;
    --fail) FAIL_P="${2:?--fail needs a value}"; shift 2 ;;
    --sizes) SIZES="${2:?--sizes needs a value}"; shift 2 ;;
    --rate) LAT_RATE=$(to_count "${2:?--rate needs a value}"); shift 2 ;;
    --lat-duration) LAT_DURATION=$(to_count "${2:?--lat-duration needs a value}"); shift 2 ;;
    --lat-runs) LAT_RUNS=$(to_count "${2:?--lat-runs needs a value}"); shift 2 ;;
    --minutes) MINUTES=$(to_count "${2:?--minutes needs a value}"); shift 2 ;;
    --log-rate) LOG_RATE=$(to_count "${2:?--log-rate needs a value}"); shift 2 ;;
    --json) JSON_OUT="${2:?--json needs a value}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
((${#WANT[@]})) || WANT=(throughput recovery topology latency log)
((RUNS >= 1 && REC_RUNS >= 1 && LAT_RUNS >= 1)) || die "--runs, --rec-runs and --lat-runs must be at least 1"
((REC_DURATION >= 1 && TOPO_DURATION >= 1 && LAT_DURATION >= 2 && MINUTES >= 1)) ||
  die "durations must be at least 1 (--lat-duration at least 2)"
((LAT_RATE >= 1)) || die "--rate must be at least 1"
[[ "$FAIL_P" =~ ^[0-9]*\.?[0-9]+([eE]-?[0-9]+)?$ ]] || die "--fail: not a probability: $FAIL_P"
for s in $SIZES; do [[ "$s" =~ ^[0-9]+$ ]] && ((s >= 1)) || die "--sizes: not a size: $s"; done
[[ -z "$JSON_OUT" ]] || JSON_OUT="$(cd "$(dirname "$JSON_OUT")" && pwd)/$(basename "$JSON_OUT")"
BUILD="$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")"
ONCEFLOW="$BUILD/cli/onceflow"
[[ -x "$ONCEFLOW" ]] || die "no binary at $ONCEFLOW (cmake --build $BUILD -j2)"
command -v python3 >/dev/null || die "python3 is needed"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/onceflow-gbench.XXXXXX")"
CHILD=""
cleanup() {
  if [[ -n "$CHILD" ]] && kill -0 "$CHILD" 2>/dev/null; then kill "$CHILD" 2>/dev/null || true; fi
  if ((KEEP)); then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$TMP/json"
STATUS=0

jrow() { python3 "$HELPER" jrow "$TMP/json/$1.jsonl" "${@:2}"; }
get() { python3 "$HELPER" get "$@"; }
med() { python3 "$HELPER" median "$@"; }
lines_of() { if [[ -f "$1" ]]; then wc -l <"$1"; else echo 0; fi; }
# ratio A B [FORMAT]: A / B, "n/a" when either is missing or B is 0.
ratio() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "n/a"; else printf f "\n", a / b }'; }
# verdict VALUE TARGET: "ok" or "MISSED" (VALUE >= TARGET).
verdict() { awk -v a="$1" -v t="$2" 'BEGIN { if (a == "n/a") print "n/a"; else print (a + 0 >= t ? "ok" : "MISSED") }'; }
fail_run() {
  STATUS=1
  echo "  FAILED (exit $1): ${*:2}" >&2
  [[ -f "$TMP/last.err" ]] && tail -n 5 "$TMP/last.err" | sed 's/^/    | /' >&2
  return 0
}

echo "onceflow guarantees benchmark  $(date -u '+%Y-%m-%d %H:%M:%SZ')  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)"
echo "  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); benchmarks: ${WANT[*]}"
cd "$TMP"

# ---------------------------------------------------------------------------------------
# 1. Throughput relative to at-most-once

# ensure_input KIND N: prints the input file, generating it like run.sh when missing.
ensure_input() {
  local kind=$1 n=$2 file gen
  if [[ $kind == words ]]; then file="$DATA/words-$n.txt"; gen=bench_gen_words; else file="$DATA/orders-$n.jsonl"; gen=bench_gen_orders; fi
  if [[ ! -s "$file" ]]; then
    [[ -x "$BUILD/tests/bench/$gen" ]] || die "no $file and no $BUILD/tests/bench/$gen: run tests/bench/run.sh once"
    mkdir -p "$DATA"
    echo "  generating $(basename "$file") ..." >&2
    "$BUILD/tests/bench/$gen" "$file.tmp" "$n" && mv "$file.tmp" "$file"
  fi
  cat "$file" >/dev/null  # page cache
  echo "$file"
}

THR_CONFIGS=(at-most-once at-least-once snapshot dedup)
cfg_args() {
  case "$1" in
    at-most-once | at-least-once) echo "--semantics $1" ;;
    snapshot | dedup) echo "--semantics effectively-once --mode $1" ;;
  esac
}

# throughput_one NAME PIPELINE N TARGET_DEDUP SET...: one workload, all configurations.
throughput_one() {
  local name=$1 pipe=$2 n=$3 target_dedup=$4
  shift 4
  local -a sets=("$@")
  declare -A walls=() eps=()
  local r c dir rc
  for ((r = 1; r <= RUNS; r++)); do
    for c in "${THR_CONFIGS[@]}"; do
      dir="$TMP/thr/$name-$c"
      rm -rf "$dir" && mkdir -p "$dir"
      local -a set_args=()
      for s in "${sets[@]}"; do set_args+=(--set "${s//@DIR@/$dir}"); done
      rc=0
      # shellcheck disable=SC2046  # cfg_args prints words to split
      "$ONCEFLOW" run "$pipe" $(cfg_args "$c") --state "$dir/state.db" "${set_args[@]}" \
        --summary "$dir/summary.json" --quiet >"$TMP/last.out" 2>"$TMP/last.err" || rc=$?
      if ((rc != 0)); then fail_run "$rc" "$name $c run $r"; continue; fi
      read -r w e <<<"$(get "$dir/summary.json" wall_s events_per_s)"
      walls[$c]+="$(printf '%.3f' "$w") "
      eps[$c]+="$e "
      printf '.' >&2
    done
  done
  echo >&2
  local amo_wall
  # shellcheck disable=SC2086
  amo_wall=$(med ${walls[at-most-once]:-})
  printf '  %-16s %9s %12s %8s %15s  %s\n' guarantee "wall s" "M events/s" "vs AMO" target "all runs (wall s)"
  for c in "${THR_CONFIGS[@]}"; do
    local w e rt target="" v=""
    # shellcheck disable=SC2086
    w=$(med ${walls[$c]:-})
    # shellcheck disable=SC2086
    e=$(med ${eps[$c]:-})
    rt=$(ratio "$amo_wall" "$w")
    case "$c" in
      at-least-once) target=0.8 ;;
      dedup) target=$target_dedup ;;
    esac
    [[ -z "$target" ]] || v=$(verdict "$rt" "$target")
    printf '  %-16s %9.3f %12s %8s %15s  %s\n' "$c" "$w" "$(awk -v e="$e" 'BEGIN { if (e == "nan") print "n/a"; else printf "%.2f", e / 1e6 }')" \
      "$rt" "${target:+>= $target $v}" "${walls[$c]:-FAILED}"
    jrow throughput workload "$name" guarantee "$c" wall_s_median "$w" events_per_s_median "$e" \
      ratio_vs_at_most_once "$rt" target "${target:-nan}" runs "${walls[$c]:-}"
  done
  # Outputs of the last runs against at-most-once's (a guarantee must not change the result).
  local ref="$TMP/thr/$name-at-most-once"
  for c in at-least-once snapshot dedup; do
    [[ -f "$TMP/thr/$name-$c/summary.json" && -f "$ref/summary.json" ]] || continue
    local verdict_line
    if [[ $name == wordcount ]]; then
      verdict_line=$(python3 "$BENCH/check_outputs.py" words "$ref/out.jsonl" "$TMP/thr/$name-$c/out.jsonl") || STATUS=1
    else
      verdict_line=$(python3 "$BENCH/check_outputs.py" orders "$ref/orders.db" "$TMP/thr/$name-$c/orders.db") || STATUS=1
    fi
    printf '  output %-14s vs at-most-once: %s\n' "$c" "$verdict_line"
  done
  local dd
  if [[ -f "$TMP/thr/$name-dedup/summary.json" ]]; then
    dd=$(get "$TMP/thr/$name-dedup/summary.json" dedup.commits dedup.commit_bytes dedup.log_rows_max dedup.log_bytes_max)
    echo "  dedup (last run): commits, commit bytes, log rows max, log bytes max = $dd"
  fi
}

bench_throughput() {
  echo
  echo "== 1. throughput vs at-most-once ($RUNS interleaved runs each, medians; ratio = AMO wall / wall) =="
  if ((N_WORDS > 0)); then
    local words
    words=$(ensure_input words "$N_WORDS")
    echo "-- wordcount: $N_WORDS words (pipelines/wordcount.yaml, emit: final)"
    throughput_one wordcount "$ROOT/pipelines/wordcount.yaml" "$N_WORDS" 0.3 \
      "nodes.lines.path=$words" "nodes.out.path=@DIR@/out.jsonl"
    echo "  (dedup target on wordcount: >= 0.3, aim 0.5)"
  fi
  if ((N_ORDERS > 0)); then
    local orders
    orders=$(ensure_input orders "$N_ORDERS")
    echo "-- orders: $N_ORDERS events (pipelines/orders.yaml)"
    throughput_one orders "$ROOT/pipelines/orders.yaml" "$N_ORDERS" 0.5 \
      "nodes.orders.path=$orders" "nodes.db.path=@DIR@/orders.db"
  fi
}

# ---------------------------------------------------------------------------------------
# Windowed runs: sink lines per second over [WARMUP, WARMUP + D] of an endless pipeline.

# windowed_run DIR WINDOW SINKFILES -- ONCEFLOW_ARGS...: runs onceflow with --duration
# (WARMUP + WINDOW + 1) s and sets, per sink file in order, W_END (lines/s: lines in the
# file at the end / that duration; the end includes the drain after the stop, and what a
# file holds at the end is what its sink committed) and W_RATES (lines/s during the window
# [WARMUP, WARMUP + WINDOW], from `wc -l` samples taken while the run goes on; under
# snapshot a sample may hold lines a later recovery cuts back, so it is approximate).
windowed_run() {
  local dir=$1 window=$2
  shift 2
  local -a files=()
  while [[ $1 != -- ]]; do files+=("$1"); shift; done
  shift
  local total=$((WARMUP + window + 1)) rc=0 t_start
  t_start=$EPOCHREALTIME
  "$ONCEFLOW" run "$@" --duration "${total}s" --summary "$dir/summary.json" --quiet \
    >"$TMP/last.out" 2>"$TMP/last.err" &
  CHILD=$!
  local -a first=() second=()
  sleep_until() { local s; s=$(awk -v t0="$t_start" -v now="$EPOCHREALTIME" -v at="$1" 'BEGIN { d = t0 + at - now; print (d > 0 ? d : 0) }'); sleep "$s"; }
  sleep_until "$WARMUP"
  local t1=$EPOCHREALTIME f
  for f in "${files[@]}"; do first+=("$(lines_of "$f")"); done
  sleep_until "$((WARMUP + window))"
  local t2=$EPOCHREALTIME
  for f in "${files[@]}"; do second+=("$(lines_of "$f")"); done
  wait "$CHILD" || rc=$?
  CHILD=""
  W_RATES=()
  W_END=()
  local i
  for i in "${!files[@]}"; do
    W_RATES+=("$(awk -v a="${first[$i]}" -v b="${second[$i]}" -v t1="$t1" -v t2="$t2" 'BEGIN { printf "%.0f", (b - a) / (t2 - t1) }')")
    W_END+=("$(awk -v n="$(lines_of "${files[$i]}")" -v d="$total" 'BEGIN { printf "%.0f", n / d }')")
  done
  if ((rc != 0)); then fail_run "$rc" "onceflow run $*"; return 1; fi
  printf '.' >&2
}

# ---------------------------------------------------------------------------------------
# 2. Localized recovery

bench_recovery() {
  local pipe="$BENCH/pipelines/two_branches.yaml"
  echo
  echo "== 2. localized recovery: $(basename "$pipe"), fail=a_map:$FAIL_P in branch A only; runs of $((WARMUP + REC_DURATION + 1)) s, window ${REC_DURATION}s after ${WARMUP}s ($REC_RUNS run(s) each, medians) =="
  "$ONCEFLOW" validate "$pipe" 2>/dev/null | sed -n '/^tasks:/,/^edges:/{/^edges:/d;s/^/  /;p}'
  local -a configs=(dedup snapshot-1s snapshot-200ms)
  declare -A end_b=() end_a=() win_b=() win_a=() recov=()
  local r c f dir
  for ((r = 1; r <= REC_RUNS; r++)); do
    for c in "${configs[@]}"; do
      for f in clean faults; do
        dir="$TMP/rec/$c-$f-$r"
        mkdir -p "$dir"
        local -a args=("$pipe" --state "$dir/state.db" --set "nodes.a_out.path=$dir/a.jsonl" --set "nodes.b_out.path=$dir/b.jsonl")
        case "$c" in
          dedup) args+=(--mode dedup) ;;
          snapshot-1s) args+=(--mode snapshot --checkpoint-interval 1s) ;;
          snapshot-200ms) args+=(--mode snapshot --checkpoint-interval 200ms) ;;
        esac
        [[ $f == clean ]] || args+=(--chaos "seed=1,fail=a_map:$FAIL_P")
        windowed_run "$dir" "$REC_DURATION" "$dir/a.jsonl" "$dir/b.jsonl" -- "${args[@]}" || continue
        win_a[$c-$f]+="${W_RATES[0]} "
        win_b[$c-$f]+="${W_RATES[1]} "
        end_a[$c-$f]+="${W_END[0]} "
        end_b[$c-$f]+="${W_END[1]} "
        recov[$c-$f]+="$(get "$dir/summary.json" recoveries.count) "
        rm -f "$dir"/*.jsonl
      done
    done
  done
  echo >&2
  printf '  %-15s %11s %11s %8s %8s | %11s %11s %8s | %11s %6s\n' mode "B clean/s" "B fault/s" "B kept" target "win clean/s" "win fault/s" "kept" "A fault/s" recov
  for c in "${configs[@]}"; do
    local bc bf wc wf af rc kept wkept target="" v=""
    # shellcheck disable=SC2086
    { bc=$(med ${end_b[$c-clean]:-}); bf=$(med ${end_b[$c-faults]:-}); wc=$(med ${win_b[$c-clean]:-}); wf=$(med ${win_b[$c-faults]:-})
      af=$(med ${end_a[$c-faults]:-}); rc=$(med ${recov[$c-faults]:-}); }
    kept=$(ratio "$bf" "$bc" "%.3f")
    wkept=$(ratio "$wf" "$wc" "%.3f")
    if [[ $c == dedup ]]; then target=0.7; v=$(verdict "$kept" 0.7); fi
    pct() { awk -v k="$1" 'BEGIN { if (k == "n/a") print k; else printf "%.1f%%", 100 * k }'; }
    printf '  %-15s %11s %11s %8s %8s | %11s %11s %8s | %11s %6s\n' "$c" "$bc" "$bf" "$(pct "$kept")" "${target:+$v}" \
      "$wc" "$wf" "$(pct "$wkept")" "$af" "$rc"
    jrow recovery mode "$c" fail_p "$FAIL_P" run_s "$((WARMUP + REC_DURATION + 1))" b_clean_per_s "$bc" \
      b_faults_per_s "$bf" b_kept "$kept" window_b_clean_per_s "$wc" window_b_faults_per_s "$wf" window_b_kept "$wkept" \
      a_faults_per_s "$af" recoveries "$rc" target "${target:-nan}"
  done
  echo "  B clean/s, B fault/s = lines in branch B's file at the end / run length, without and with faults in A;"
  echo "  B kept = their ratio (target for dedup >= 70%, aim 90%); win = the same from wc -l samples during the"
  echo "  window (approximate under snapshot); A fault/s = branch A's end lines/s with faults; recov = recoveries."
}

# ---------------------------------------------------------------------------------------
# 3. Recovery cost vs topology size

# chain_pipeline N FILE: generate -> op1 -> ... -> opN -> out, every hop round-robin (so
# each op is its own task, never chained into its upstream's thread).
chain_pipeline() {
  local n=$1 file=$2 i prev=events
  {
    echo "pipeline: chain$n"
    echo "semantics: effectively-once"
    echo "mode: snapshot"
    echo "checkpoint: {interval: 1s, retain: 3}"
    echo "recovery: {max_recoveries: 100000}"
    echo "nodes:"
    echo "  events: {source: generate, lua: \"return {k = n % 1000, n = n}\"}"
    for ((i = 1; i <= n; i++)); do
      echo "  op$i: {op: map, input: {from: $prev, partition: round_robin}, lua: \"return e\"}"
      prev=op$i
    done
    echo "  out: {sink: file, input: {from: $prev, partition: round_robin}, path: out.jsonl}"
  } >"$file"
}

bench_topology() {
  echo
  echo "== 3. recovery cost vs topology size: generate -> op1..opN (map, one task each) -> file; fail=op(N/2):$FAIL_P; runs of $((WARMUP + TOPO_DURATION + 1)) s ($REC_RUNS run(s) each, medians) =="
  local -a modes=(snapshot dedup)
  declare -A rate=() wrate=() recov=() tasks=()
  local n r m f dir pipe failop
  for n in $SIZES; do
    pipe="$TMP/topo/chain$n.yaml"
    mkdir -p "$TMP/topo"
    chain_pipeline "$n" "$pipe"
    tasks[$n]=$("$ONCEFLOW" validate "$pipe" 2>/dev/null | sed -n '1s/.*: \(.*tasks (threads)\).*/\1/p')
  done
  for ((r = 1; r <= REC_RUNS; r++)); do
    for n in $SIZES; do
      pipe="$TMP/topo/chain$n.yaml"
      failop="op$(((n + 1) / 2))"
      for m in "${modes[@]}"; do
        for f in clean faults; do
          dir="$TMP/topo/$n-$m-$f-$r"
          mkdir -p "$dir"
          local -a args=("$pipe" --mode "$m" --state "$dir/state.db" --set "nodes.out.path=$dir/out.jsonl")
          [[ $f == clean ]] || args+=(--chaos "seed=1,fail=$failop:$FAIL_P")
          windowed_run "$dir" "$TOPO_DURATION" "$dir/out.jsonl" -- "${args[@]}" || continue
          rate[$n-$m-$f]+="${W_END[0]} "
          wrate[$n-$m-$f]+="${W_RATES[0]} "
          recov[$n-$m-$f]+="$(get "$dir/summary.json" recoveries.count) "
          rm -f "$dir"/*.jsonl
        done
      done
    done
  done
  echo >&2
  printf '  %-4s %-26s %-6s %12s %12s %8s %6s   %12s %12s %8s %6s\n' ops plan "fails" "snap clean/s" "snap fault/s" "kept" "recov" "dedup clean/s" "dedup fault/s" "kept" "recov"
  for n in $SIZES; do
    local sc sf sr dc df dr sk dk
    # shellcheck disable=SC2086
    { sc=$(med ${rate[$n-snapshot-clean]:-}); sf=$(med ${rate[$n-snapshot-faults]:-}); sr=$(med ${recov[$n-snapshot-faults]:-})
      dc=$(med ${rate[$n-dedup-clean]:-}); df=$(med ${rate[$n-dedup-faults]:-}); dr=$(med ${recov[$n-dedup-faults]:-}); }
    sk=$(ratio "$sf" "$sc" "%.3f")
    dk=$(ratio "$df" "$dc" "%.3f")
    printf '  %-4s %-26s %-6s %12s %12s %8s %6s   %12s %12s %8s %6s\n' "$n" "${tasks[$n]}" "op$(((n + 1) / 2))" "$sc" "$sf" "$sk" "$sr" "$dc" "$df" "$dk" "$dr"
    jrow topology ops "$n" plan "${tasks[$n]}" fail_op "op$(((n + 1) / 2))" fail_p "$FAIL_P" \
      snapshot_clean_per_s "$sc" snapshot_faults_per_s "$sf" snapshot_kept "$sk" snapshot_recoveries "$sr" \
      window_snapshot_kept "$(ratio "$(med ${wrate[$n-snapshot-faults]:-})" "$(med ${wrate[$n-snapshot-clean]:-})" "%.3f")" \
      window_dedup_kept "$(ratio "$(med ${wrate[$n-dedup-faults]:-})" "$(med ${wrate[$n-dedup-clean]:-})" "%.3f")" \
      dedup_clean_per_s "$dc" dedup_faults_per_s "$df" dedup_kept "$dk" dedup_recoveries "$dr"
  done
  echo "  (lines/s = lines in the sink's file at the end / run length; kept = with faults / without, same mode;"
  echo "   snapshot checkpoint interval 1s; recov = recoveries in the faulty run)"
}

# ---------------------------------------------------------------------------------------
# 4. Latency per guarantee

bench_latency() {
  local pipe="$BENCH/pipelines/latency.yaml"
  echo
  echo "== 4. latency at $LAT_RATE events/s: $(basename "$pipe") (generate -> map -> count x2 keyed by n -> stdout), ${LAT_DURATION}s per run, first 1 s not measured, medians of $LAT_RUNS runs =="
  echo "  creation time of record n ~ t0 + n/rate (generate has no clock; t0 = earliest arrival - n/rate"
  echo "  among the first second's records), so figures are upper bounds incl. the reader's pipe"
  local -a configs=(at-most-once at-least-once snapshot dedup)
  declare -A p50=() p99=() mx=() cnt=()
  local r c dir rc
  for ((r = 1; r <= LAT_RUNS; r++)); do
    for c in "${configs[@]}"; do
      dir="$TMP/lat/$c-$r"
      mkdir -p "$dir"
      rc=0
      # shellcheck disable=SC2046
      "$ONCEFLOW" run "$pipe" $(cfg_args "$c") --state "$dir/state.db" --set "nodes.events.rate=$LAT_RATE" \
        --duration "${LAT_DURATION}s" --summary "$dir/summary.json" --quiet 2>"$TMP/last.err" |
        python3 "$HELPER" latency "$LAT_RATE" 1 "$dir/latency.json" >"$dir/latency.txt" || rc=$?
      if ((rc != 0)); then fail_run "$rc" "latency $c"; continue; fi
      read -r n a b m <"$dir/latency.txt"
      cnt[$c]+="$n "
      p50[$c]+="$a "
      p99[$c]+="$b "
      mx[$c]+="$m "
      printf '.' >&2
    done
  done
  echo >&2
  printf '  %-16s %10s %10s %10s %10s %10s\n' guarantee records "p50 ms" "p99 ms" "max ms" "p99/AMO"
  local amo99
  # shellcheck disable=SC2086
  amo99=$(med ${p99[at-most-once]:-})
  for c in "${configs[@]}"; do
    local a b m n
    # shellcheck disable=SC2086
    { n=$(med ${cnt[$c]:-}); a=$(med ${p50[$c]:-}); b=$(med ${p99[$c]:-}); m=$(med ${mx[$c]:-}); }
    printf '  %-16s %10s %10s %10s %10s %10s\n' "$c" "$n" "$a" "$b" "$m" "$(ratio "$b" "$amo99")"
    jrow latency guarantee "$c" rate "$LAT_RATE" records "$n" p50_ms "$a" p99_ms "$b" max_ms "$m"
  done
}

# ---------------------------------------------------------------------------------------
# 5. Dedup log size over a long run

bench_log() {
  local pipe="$BENCH/pipelines/dedup_log.yaml" dir="$TMP/log"
  local secs=$((MINUTES * 60))
  mkdir -p "$dir"
  echo
  echo "== 5. dedup log size: $(basename "$pipe") under dedup for $MINUTES min, source rate $([[ $LOG_RATE == 0 ]] && echo unpaced || echo "$LOG_RATE/s"), sampled every 10 s =="
  local -a args=("$pipe" --mode dedup --state "$dir/state.db" --set "nodes.out.path=$dir/out.jsonl" --duration "${secs}s" --summary "$dir/summary.json" --quiet)
  ((LOG_RATE == 0)) || args+=(--set "nodes.events.rate=$LOG_RATE")
  "$ONCEFLOW" run "${args[@]}" >"$TMP/last.out" 2>"$TMP/last.err" &
  CHILD=$!
  local t0=$EPOCHREALTIME t rc=0
  printf '  %6s %12s %12s %12s %12s %12s %12s %10s %12s\n' "t s" "outbox rows" "outbox B" "changes rows" "changes B" "state B" "wal B" "RSS MiB" "out lines"
  local k=1 sample
  while kill -0 "$CHILD" 2>/dev/null; do
    sleep "$(awk -v t0="$t0" -v now="$EPOCHREALTIME" -v at="$((k * 10))" 'BEGIN { d = t0 + at - now; print (d > 0 ? d : 0) }')"
    kill -0 "$CHILD" 2>/dev/null || break
    sample=$(python3 "$HELPER" logsample "$dir/state.db" "$CHILD")
    t=$(awk -v t0="$t0" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.0f", now - t0 }')
    local ob obb cr crb db wal rss lines
    read -r ob obb cr crb db wal rss <<<"$sample"
    [[ $rss != nan ]] || break  # the process ended while sampling: not a running sample
    lines=$(lines_of "$dir/out.jsonl")
    printf '  %6s %12s %12s %12s %12s %12s %12s %10s %12s\n' "$t" "$ob" "$obb" "$cr" "$crb" "$db" "$wal" \
      "$(awk -v r="$rss" 'BEGIN { if (r == "nan") print r; else printf "%.1f", r / 1024 }')" "$lines"
    jrow log_samples t_s "$t" outbox_rows "$ob" outbox_bytes "$obb" changes_rows "$cr" changes_bytes "$crb" \
      state_bytes "$db" wal_bytes "$wal" rss_kib "$rss" out_lines "$lines"
    echo "$t $ob $obb $cr $crb $db $wal $rss" >>"$dir/samples"
    k=$((k + 1))
  done
  wait "$CHILD" || rc=$?
  CHILD=""
  if ((rc != 0)); then fail_run "$rc" "dedup log run"; return 0; fi
  echo "  end: $(get "$dir/summary.json" exit wall_s events_per_s) (exit, wall s, events/s); summary dedup: $(get "$dir/summary.json" dedup.commits dedup.log_rows_max dedup.log_bytes_max dedup.log_rows_end dedup.compactions) (commits, log rows max, log bytes max, log rows end, compactions)"
  [[ -s "$dir/samples" ]] || { echo "  no samples (run shorter than 10 s?)"; return 0; }
  # Flat: the second half's maxima are at most 1.5x the first half's (+ slack for tiny
  # logs); growth rates per minute over the second half for the state file and RSS.
  awk '
    { t[NR] = $1; log_rows[NR] = $2 + $4; log_bytes[NR] = $3 + $5; file[NR] = $6 + $7; rss[NR] = $8 }
    END {
      h = int(NR / 2); if (h < 1) h = 1
      for (i = 1; i <= NR; i++) {
        if (i <= h) { if (log_rows[i] > r1) r1 = log_rows[i]; if (log_bytes[i] > b1) b1 = log_bytes[i] }
        else { if (log_rows[i] > r2) r2 = log_rows[i]; if (log_bytes[i] > b2) b2 = log_bytes[i] }
      }
      flat = (r2 <= 1.5 * r1 + 1000 && b2 <= 1.5 * b1 + 1048576)
      dt = (t[NR] - t[h]) / 60
      fg = dt > 0 ? (file[NR] - file[h]) / 1048576 / dt : 0
      rg = dt > 0 ? (rss[NR] - rss[h]) / 1024 / dt : 0
      printf "  log rows max first half %d, second half %d; log bytes max %d / %d -> %s\n", r1, r2, b1, b2, flat ? "FLAT" : "GROWING"
      printf "  second half: state file (+wal) %+.2f MiB/min, RSS %+.2f MiB/min\n", fg, rg
      printf "%s %d %d %d %d %.3f %.3f\n", flat ? "flat" : "growing", r1, r2, b1, b2, fg, rg > "/dev/stderr"
    }' "$dir/samples" 2>"$dir/verdict"
  local v r1 r2 b1 b2 fg rg
  read -r v r1 r2 b1 b2 fg rg <"$dir/verdict"
  jrow log minutes "$MINUTES" rate "$LOG_RATE" verdict "$v" log_rows_max_first_half "$r1" log_rows_max_second_half "$r2" \
    log_bytes_max_first_half "$b1" log_bytes_max_second_half "$b2" state_growth_mib_per_min "$fg" rss_growth_mib_per_min "$rg"
}

for b in "${WANT[@]}"; do "bench_$b"; done

if [[ -n "$JSON_OUT" ]]; then
  python3 "$HELPER" merge "$JSON_OUT" "$(printf '{"date": "%s", "rev": "%s", "cores": %s, "runs": %s, "fail_p": %s}' \
    "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)" "$(nproc)" "$RUNS" "$FAIL_P")" "$TMP/json"
  echo
  echo "results written to $JSON_OUT"
fi
exit "$STATUS"

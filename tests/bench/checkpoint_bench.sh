#!/usr/bin/env bash
# tests/bench/checkpoint_bench.sh: what checkpoints cost on wordcount, measured side by
# side in one run (ratios against at-most-once, the same binary and data).
#
# Usage: tests/bench/checkpoint_bench.sh [--build DIR] [--words N] [--runs K]
#   --build DIR  CMake build directory (default build/)
#   --words N    words of the input (default 20000000, k/M suffixes; the data is the
#                same file tests/bench/run.sh generates)
#   --runs K     timed runs per configuration, interleaved; medians (default 3)
#
# Prints:
#   1. wordcount throughput under at-most-once, and effectively-once/snapshot with a 1 s
#      and a 100 ms checkpoint interval, with the ratio to at-most-once and the mean
#      checkpoint duration and bytes from the run summary;
#   2. time from process start after a kill -9 to the first record processed again:
#      a run is killed after ~1 s, then `run --max-events 1` on a copy of its state
#      file is timed (restore + open + the first batch + a tiny final checkpoint, so
#      it is an upper bound);
#   3. mean alignment time of checkpoints on pipelines/fanin.yaml (a keyed count with
#      two inputs, parallelism 2), from its run summary.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/tests/bench"
DATA="$BENCH/data"
BUILD="$ROOT/build"
N_WORDS=20000000
RUNS=3

# shellcheck source=tests/bench/bench_lib.sh
source "$BENCH/bench_lib.sh"

while (($#)); do
  case "$1" in
    --build) BUILD="${2:?}"; shift 2 ;;
    --words) N_WORDS=$(to_count "${2:?}"); shift 2 ;;
    --runs) RUNS=$(to_count "${2:?}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
ONCEFLOW="$BUILD/cli/onceflow"
[[ -x "$ONCEFLOW" ]] || die "no binary at $ONCEFLOW (build first)"
WORDS="$DATA/words-$N_WORDS.txt"
if [[ ! -f "$WORDS" ]]; then
  GEN="$BUILD/tests/bench/bench_gen_words"
  [[ -x "$GEN" ]] || die "no $WORDS and no $GEN: run tests/bench/run.sh once, or build with -DONCEFLOW_BENCH=ON"
  mkdir -p "$DATA"
  "$GEN" "$WORDS.tmp" "$N_WORDS" && mv "$WORDS.tmp" "$WORDS"
fi
TMP="$(mktemp -d "${TMPDIR:-/tmp}/onceflow-ckbench.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# summary FILE KEY...: prints the summary's values at the dotted keys, space-separated.
summary() {
  python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
out = []
for key in sys.argv[2:]:
    v = j
    for part in key.split("."):
        v = v[part]
    out.append(str(v))
print(" ".join(out))
PY
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# 1. throughput
declare -A EPS=() CKMS=() CKBYTES=() CKN=()
CONFIGS=("at-most-once" "snapshot-1s" "snapshot-100ms")
for ((r = 1; r <= RUNS; r++)); do
  for c in "${CONFIGS[@]}"; do
    args=(--set "nodes.lines.path=$WORDS" --set "nodes.out.path=$TMP/out.jsonl" --state "$TMP/s.db" --fresh)
    case "$c" in
      at-most-once) args+=(--semantics at-most-once) ;;
      snapshot-1s) args+=(--checkpoint-interval 1s) ;;
      snapshot-100ms) args+=(--checkpoint-interval 100ms) ;;
    esac
    rm -f "$TMP"/s.db*
    "$ONCEFLOW" run "$ROOT/pipelines/wordcount.yaml" "${args[@]}" -q --summary "$TMP/sum.json"
    read -r eps ms bytes n < <(summary "$TMP/sum.json" events_per_s checkpoints.mean_ms \
      checkpoints.mean_bytes checkpoints.count)
    EPS[$c]+="$eps "
    CKMS[$c]+="$ms "
    CKBYTES[$c]+="$bytes "
    CKN[$c]+="$n "
  done
done
words_per_line=$(awk -v w="$N_WORDS" 'END {printf "%.1f", w / NR}' "$WORDS")
echo "== wordcount, $N_WORDS words, medians of $RUNS interleaved runs"
printf '%-16s %14s %8s %12s %14s %12s\n' config "lines/s" ratio checkpoints "ckpt mean ms" "ckpt bytes"
base=$(tr ' ' '\n' <<<"${EPS[at-most-once]}" | grep . | median)
for c in "${CONFIGS[@]}"; do
  m=$(tr ' ' '\n' <<<"${EPS[$c]}" | grep . | median)
  printf '%-16s %14.0f %8.2f %12s %14.1f %12.0f\n' "$c" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{print a/b}')" \
    "$(tr ' ' '\n' <<<"${CKN[$c]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${CKMS[$c]}" | grep . | median)" \
    "$(tr ' ' '\n' <<<"${CKBYTES[$c]}" | grep . | median)"
done
echo "(events are lines of $words_per_line words on average)"

# 2. kill -9 -> first record processed again
echo
echo "== kill -9 -> first record processed again (wordcount, state of ~1 s of input)"
rm -f "$TMP"/k.db*
"$ONCEFLOW" run "$ROOT/pipelines/wordcount.yaml" --set "nodes.lines.path=$WORDS" \
  --set "nodes.out.path=$TMP/k.jsonl" --state "$TMP/k.db" --checkpoint-interval 300ms -q &
pid=$!
sleep 1.0
kill -9 "$pid" 2>/dev/null || echo "note: the run ended before the kill; use more --words" >&2
wait "$pid" 2>/dev/null || true
keys=$("$ONCEFLOW" checkpoints show latest --state "$TMP/k.db" --json 2>/dev/null |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(sum(n["keys"] for n in j["state"]))' || echo "?")
times=""
for ((r = 1; r <= RUNS; r++)); do
  rm -f "$TMP"/k2.db*
  cp "$TMP/k.db" "$TMP/k2.db"
  [[ -f "$TMP/k.db-wal" ]] && cp "$TMP/k.db-wal" "$TMP/k2.db-wal"
  cp "$TMP/k.jsonl" "$TMP/k2.jsonl" 2>/dev/null || true
  t0=$(date +%s.%N)
  "$ONCEFLOW" run "$ROOT/pipelines/wordcount.yaml" --set "nodes.lines.path=$WORDS" \
    --set "nodes.out.path=$TMP/k2.jsonl" --state "$TMP/k2.db" --max-events 1 -q
  t1=$(date +%s.%N)
  times+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') "
done
printf 'restored keys: %s   process start -> first record (upper bound), median: %.3f s  (target <= 0.5 s)\n' \
  "$keys" "$(tr ' ' '\n' <<<"$times" | grep . | median)"

# 3. alignment on fanin
echo
echo "== alignment on pipelines/fanin.yaml (2M generated events, interval 100ms)"
rm -f "$TMP"/f.db*
"$ONCEFLOW" run "$ROOT/pipelines/fanin.yaml" --set nodes.events.count=2000000 \
  --set "nodes.out.path=$TMP/f.jsonl" --state "$TMP/f.db" --checkpoint-interval 100ms -q \
  --summary "$TMP/f.json"
read -r n al ms < <(summary "$TMP/f.json" checkpoints.count checkpoints.mean_alignment_ms checkpoints.mean_ms)
printf 'checkpoints: %s   mean alignment: %.2f ms   mean checkpoint: %.1f ms\n' "$n" "$al" "$ms"

# Shell helpers shared by the benchmark scripts (sourced, not run).

# die MESSAGE: prints "SCRIPT: MESSAGE" on stderr and exits 2 (bad usage).
die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# to_count 20M -> 20000000 (also k/K); rejects anything else.
to_count() {
  local v=$1
  case "$v" in
    *[kK]) v=$((${v%[kK]} * 1000)) ;;
    *[mM]) v=$((${v%[mM]} * 1000000)) ;;
  esac
  [[ "$v" =~ ^[0-9]+$ ]] || die "not a count: $1"
  echo "$((10#$v))"
}

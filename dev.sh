#!/usr/bin/env bash
# onceflow developer entry point. On a fresh Debian 12 machine:
#
#   ./dev.sh demo    install what is missing, build, run pipelines/wordcount.yaml
#   ./dev.sh test      install what is missing, build, run every test, then `sanitize`
#                      (what CI runs)
#   ./dev.sh build     install what is missing and build
#   ./dev.sh sanitize  install what is missing, build with clang under sanitizers in
#                      build-asan (ASan+UBSan) and build-tsan (TSan), run the unit and
#                      e2e suites and short libFuzzer runs (tests/fuzz) under ASan+UBSan
#                      and the threaded ones under TSan
#
# Environment: BUILD_DIR (default build), JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")"

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

# Everything the build and the tests use, from Debian's archive.
PACKAGES=(
  g++ cmake make pkg-config
  libyaml-cpp-dev libcli11-dev libsqlite3-dev libspdlog-dev doctest-dev
  libluajit2-5.1-dev libsimdjson-dev nlohmann-json3-dev libabsl-dev
  python3 mandoc sqlite3 mawk
  clang libclang-rt-14-dev ccache
)

install_missing() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ccache (when installed) makes a rebuild of an unchanged file, in any of the build
# folders or a fresh clone, a cache hit: paths are hashed relative to the checkout.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
launcher() {
  if command -v ccache >/dev/null; then
    echo "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache"
  fi
}

build() {
  # shellcheck disable=SC2046
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo $(launcher) >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

# Every sanitizer report fails the test that triggered it: ASan and TSan halt on the
# first report with a non-zero exit code, UBSan does not recover (-fno-sanitize-recover,
# CMakeLists.txt) and prints the stack. LeakSanitizer runs with ASan: the tests end
# their processes normally, so a leak in our code is a finding like any other.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:exitcode=86:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:exitcode=86}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:exitcode=86:second_deadlock_stack=1}

# Configures and builds one sanitizer folder with clang: $1 folder, $2 sanitizers,
# remaining arguments: the targets to build.
sanitizer_build() {
  local dir=$1 san=$2 fuzz=$3
  shift 3
  # shellcheck disable=SC2046
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
    -DONCEFLOW_SANITIZE="$san" -DONCEFLOW_FUZZ="$fuzz" -DONCEFLOW_BENCH=OFF $(launcher) >/dev/null
  cmake --build "$dir" -j "$JOBS" --target "$@"
}

# ASan+UBSan: every unit and e2e suite (not the crash suites, label `crash`: they kill
# the binary on purpose for minutes and add nothing the e2e suites do not reach), and
# the libFuzzer targets (tests/fuzz, label `fuzz`) for ONCEFLOW_FUZZ_SECONDS each.
# TSan: the tests that run threads against each other (label `threads`): channels and the
# executor (unit_exec), barriers and at-most-once leases (unit_guarantees), the state
# store (unit_state), sequenced channels, local recovery and savepoints (e2e_dedup),
# every guarantee under injected faults (e2e_compare).
sanitize() {
  sanitizer_build build-asan address,undefined ON all
  ctest --test-dir build-asan --output-on-failure -j "$JOBS" -LE crash
  sanitizer_build build-tsan thread OFF onceflow unit_exec unit_guarantees unit_state
  ctest --test-dir build-tsan --output-on-failure -j "$JOBS" -L threads
}

demo() {
  local bin="$BUILD_DIR/cli/onceflow"
  echo "== onceflow validate pipelines/wordcount.yaml"
  "$bin" validate pipelines/wordcount.yaml
  echo
  echo "== onceflow run pipelines/wordcount.yaml --fresh  (effectively-once, snapshot mode)"
  "$bin" run pipelines/wordcount.yaml --fresh
  echo
  echo "== onceflow checkpoints list --state pipelines/out/wordcount.state.db"
  "$bin" checkpoints list --state pipelines/out/wordcount.state.db
  echo
  echo "== the 15 most frequent words (pipelines/out/wordcount.jsonl)"
  python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("pipelines/out/wordcount.jsonl")]
rows.sort(key=lambda r: (-r["count"], r["word"]))
for r in rows[:15]:
    print(f'{r["count"]:5d}  {r["word"]}')
print(f"... {len(rows)} distinct words")
PY
}

case "${1:-}" in
  demo) install_missing; build; demo ;;
  test)
    install_missing; build
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
    sanitize ;;
  build) install_missing; build ;;
  sanitize) install_missing; sanitize ;;
  *) echo "usage: ./dev.sh demo|test|build|sanitize" >&2; exit 2 ;;
esac

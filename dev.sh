#!/usr/bin/env bash
# onceflow developer entry point. On a fresh Debian 12 machine:
#
#   ./dev.sh demo    install what is missing, build, run pipelines/wordcount.yaml
#   ./dev.sh test    install what is missing, build, run every test (what CI runs)
#   ./dev.sh build   install what is missing and build
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

build() {
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS"
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
  test) install_missing; build; ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" ;;
  build) install_missing; build ;;
  *) echo "usage: ./dev.sh demo|test|build" >&2; exit 2 ;;
esac

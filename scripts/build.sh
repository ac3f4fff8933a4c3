#!/usr/bin/env bash
# Installs the dependencies (Debian, idempotent) and builds rhead into build/ (or $RHEAD_BUILD_DIR).
#   scripts/build.sh [extra cmake -D options]
#   RHEAD_BUILD_TARGET=rhead scripts/build.sh     only the rhead executable (what scripts/quickstart.sh needs)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RHEAD_BUILD_DIR:-$root/build}"
jobs="${RHEAD_JOBS:-$(nproc)}"

"$root/scripts/install-deps.sh"

werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
start=$(date +%s)
generator=()
if command -v ninja > /dev/null; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRHEAD_WERROR=$werror "$@"
else
  cmake -S "$root" -B "$build" -DRHEAD_WERROR=$werror "$@" > /dev/null
fi
target=()
if [ -n "${RHEAD_BUILD_TARGET:-}" ]; then target=(--target "$RHEAD_BUILD_TARGET"); fi
cmake --build "$build" -j "$jobs" "${target[@]}"
echo "build: done in $(( $(date +%s) - start )) s -> $build/rhead"

#!/usr/bin/env bash
# The one test command (README, .ci/run): install dependencies, build, run every test.
#   scripts/test.sh              all tests
#   scripts/test.sh -L unit      any ctest arguments (labels: unit, mpi, e2e, models, tokenizers, stages)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RHEAD_BUILD_DIR:-$root/build}"

"$root/scripts/build.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # tests set their own LibTorch thread counts
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
echo "tests: done in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# The one test command (README, .ci/run): install dependencies, build, run every test.
#   scripts/test.sh              every test but the slow ones (retraining the toy zoo: label slow)
#   scripts/test.sh --slow       every test, the slow ones too
#   scripts/test.sh -L unit      any ctest arguments (labels: unit, mpi, e2e, models, tokenizers, stages, slow)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RHEAD_BUILD_DIR:-$root/build}"

select=(-LE slow)
if [ "${1:-}" = "--slow" ]; then select=(); shift; fi

"$root/scripts/build.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # tests set their own LibTorch thread counts
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "${select[@]}" "$@"
echo "tests: done in $(( $(date +%s) - start )) s"

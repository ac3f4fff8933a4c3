#!/usr/bin/env bash
# The main job on the embedded default (README): install dependencies, build, run the whole paper under MPI
# on the toy model zoo shipped in zoo/, draw every figure and print the zoo's paper properties.
#   scripts/quickstart.sh                    2 ranks (RHEAD_RANKS=N to change), job jobs/quickstart.ini
#   scripts/quickstart.sh jobs/zoo_train.ini retrain the zoo first (about 6.5 minutes more on 2 cores)
#   scripts/quickstart.sh JOB.ini            another job
# Rerunning resumes: finished stages and trained models are kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RHEAD_BUILD_DIR:-$root/build}"
job="${1:-jobs/quickstart.ini}"
ranks="${RHEAD_RANKS:-2}"
cd "$root"

t0=$(date +%s)
RHEAD_BUILD_TARGET="${RHEAD_BUILD_TARGET:-rhead}" "$root/scripts/build.sh"   # installs missing packages first
t1=$(date +%s)
mpi_flags=(-np "$ranks")
[ "$(id -u)" = 0 ] && mpi_flags+=(--allow-run-as-root --oversubscribe)
run_dir=$(awk -F' *= *' '/^\[job\]/{j=1;next} /^\[/{j=0} j&&$1=="name"{n=$2} j&&$1=="run_dir"{d=$2} END{print (d!=""?d:"runs/" n)}' "$job")
mkdir -p "$run_dir"
mpirun "${mpi_flags[@]}" "$build/rhead" run "$job" 2>&1 | tee "$run_dir/quickstart.log"
t2=$(date +%s)
"$build/rhead" figures "$job"
t3=$(date +%s)
if grep -qE "^path *= *(.*/)?zoo/" "$job"; then   # a job on a toy zoo: the paper's properties, measured
  echo
  /usr/bin/python3 "$root/analysis/zoo_properties.py" "$run_dir" || true
fi
echo
echo "quickstart: install + build $((t1 - t0)) s, pipeline $((t2 - t1)) s, figures $((t3 - t2)) s; per stage:"
grep -oE "stage [a-z]+: (complete in [0-9.]+ s|store .* is complete, skipping)" "$run_dir/quickstart.log" \
  | sed -E 's/complete in ([0-9]+)\.?[0-9]* s/\1 s/; s/: store .* is complete, skipping/: already complete/; s/^/  /'
echo "quickstart: report at $run_dir/figures/report.md (figures beside it)"

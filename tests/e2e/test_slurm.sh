#!/usr/bin/env bash
# e2e: bring up a single-node Slurm (scripts/slurm-local.sh), submit slurm/full_sweep.sh with 2 tasks
# on the selftest job, wait for it, and check the store equals a plain local run.
#   test_slurm.sh SOURCE_DIR RHEAD_EXE       exit 0 pass, 1 fail, 77 skip (no root / no Slurm here)
set -uo pipefail
src="$1"
rhead="$2"
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the local Slurm needs root"; exit 77; fi
work="$(mktemp -d /tmp/rhead-slurm-test.XXXXXX)"
cleanup() { "$src/scripts/slurm-local.sh" down > /dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
if ! timeout 120 "$src/scripts/slurm-local.sh" up; then
  echo "SKIP: could not bring up a local Slurm (logs in ${RHEAD_SLURM_STATE:-/tmp/rhead-slurm})"
  exit 77
fi

cat > "$work/job.ini" <<JOB
[job]
name = slurm-selftest
stages = selftest
run_dir = $work/runs/slurm
[selftest]
groups = m0, m1
lengths = linspace(1000, 8000, 4)
JOB
cd "$work"
id=$(sbatch --parsable --ntasks=2 --time=00:05:00 --output="$work/sweep-%j.out" \
  --export=ALL,RHEAD="$rhead" "$src/slurm/full_sweep.sh" "$work/job.ini") || { echo "FAIL: sbatch refused the job"; exit 1; }
echo "submitted Slurm job $id"
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$id" 2>/dev/null)" ] && break
  sleep 0.2
done
state=$(scontrol show job "$id" 2>/dev/null | grep -oE 'JobState=[A-Z]+' | head -1)
code=$(scontrol show job "$id" 2>/dev/null | grep -oE ' ExitCode=[0-9:]+' | head -1)
cat "$work/sweep-$id.out" 2>/dev/null
echo "job $id: $state$code"
[ "$state" = "JobState=COMPLETED" ] && [ "$code" = " ExitCode=0:0" ] || { echo "FAIL: job did not complete cleanly"; exit 1; }
grep -q "\[r0/2 " "$work/sweep-$id.out" || { echo "FAIL: expected a 2-rank run in the job log"; exit 1; }

"$rhead" inspect "$work/runs/slurm/selftest.h5" | grep -q "status:  complete" || { echo "FAIL: store not complete"; exit 1; }
"$rhead" run "$work/job.ini" --set "job.run_dir=$work/runs/local" > /dev/null 2>&1 || { echo "FAIL: local run"; exit 1; }
a=$("$rhead" inspect --digest "$work/runs/slurm/selftest.h5")
b=$("$rhead" inspect --digest "$work/runs/local/selftest.h5")
[ "$a" = "$b" ] || { echo "FAIL: Slurm store digest $a differs from local $b"; exit 1; }
echo "PASS: sbatch slurm/full_sweep.sh on 2 tasks == local run ($a)"

#!/usr/bin/env bash
# e2e: the ready-to-run job files (quick-start on the shipped zoo, retraining the zoo, one toy member,
# selftest) pass `rhead run --dry-run` from the repository root with exit 0: every key type-checks and every
# stage's checks pass (zoo_train and toy_base before their zoo exists: it is their train stage's output).
# Writes nothing. jobs/paper.ini (placeholders)
# and jobs/published.ini (needs ../shared/reference) have their own tests.
#   test_job_dry_runs.sh SOURCE_DIR RHEAD_EXE      exit 0 pass, 1 fail
set -uo pipefail
src="$1"
rhead="$2"
cd "$src"
fail() { echo "FAIL: $*"; exit 1; }
for job in quickstart zoo_train toy_base selftest; do
  existed=0
  [ -e "runs/$job" ] && existed=1
  out="$("$rhead" run "jobs/$job.ini" --dry-run 2>&1)"
  rc=$?
  echo "$out"
  [ "$rc" -eq 0 ] || fail "jobs/$job.ini: dry run exit status $rc (1: the job file is invalid, 3: a stage check fails)"
  [ "$existed" -eq 0 ] && [ -e "runs/$job" ] && fail "jobs/$job.ini: the dry run created runs/$job"
  grep -q "^\[" <<< "$out" || fail "jobs/$job.ini: no stage in the plan"
done
echo "PASS: the job files are well-formed"

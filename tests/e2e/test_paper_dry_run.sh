#!/usr/bin/env bash
# e2e: jobs/paper.ini (the paper's full sweep, model paths as placeholders) passes `rhead run --dry-run`:
# every key type-checks, the plan shows the paper's grid (600 detection tests per model, docs/PAPER_NOTES.md,
# "The NIAH grid") and
# the only failing checks are the placeholder paths a user fills in. Writes nothing.
#   test_paper_dry_run.sh SOURCE_DIR RHEAD_EXE      exit 0 pass, 1 fail
set -uo pipefail
src="$1"
rhead="$2"
cd "$src"
out="$("$rhead" run jobs/paper.ini --dry-run 2>&1)"
rc=$?
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || fail "dry run exit status $rc (1 = the job file itself is invalid)"
[ -e runs/paper ] && fail "the dry run created runs/paper"
grep -q "^\[generate\]" <<< "$out" && grep -q "^\[ablate\]" <<< "$out" || fail "stages missing from the plan"
[ "$(grep -c "^  model " <<< "$out")" -eq 22 ] || fail "expected the 11 Table-1 models in generate and ablate"
while IFS= read -r line; do
  grep -q "/path/to/" <<< "$line" || fail "a check fails for another reason than a placeholder path: $line"
done < <(grep "checks: FAIL" <<< "$out")
if [ -f ../shared/reference/retrieval_head/haystack_for_detect/needles.jsonl ]; then
  grep -q "= 600 cells per model, 6600 in all" <<< "$out" || fail "expected the paper's 600 tests per model"
else
  echo "note: ../shared/reference absent: the detection grid size is not checked"
fi
echo "PASS: jobs/paper.ini is well-formed; only placeholder paths remain to fill in"

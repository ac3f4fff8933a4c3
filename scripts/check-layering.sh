#!/usr/bin/env bash
# The layering rule (docs/ARCHITECTURE.md), checked on every #include of the C++ sources; run by ctest
# (lint.layering) and so by CI. Dependencies point down:
#   pipeline/core   knows nothing else of the project
#   pipeline/comm   the only includer of mpi.h and nccl.h;  pipeline/store  the only includer of hdf5.h
#   models/         knows pipeline/core only: no MPI, no HDF5, no runner, no stages
#   pipeline/       knows no models and no stages (pipeline/main.cpp, the executable, wires them together)
#   stages/<s>/     includes another stage's folder only for its pure *_ops.h (and the shared stages/common/ and
#                   stages/niah/, the NIAH machinery of generate and ablate)
#   scripts/check-layering.sh [SOURCE_DIR]     exit 0 clean, 1 with one line per forbidden include
set -uo pipefail
root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root" || exit 2

# Exceptions, each with its reason; a new one needs a line here and in review. None at present.
allowed=()

# Every #include line of the C++ sources (grep -rn output: file:line:text; -l: the files).
include_lines() { grep -rnE '^[[:space:]]*#[[:space:]]*include' pipeline models stages --include='*.cpp' --include='*.h' "$@"; }

violations=0
report() {  # file, included header, rule
  local key="$1: $2"
  for a in "${allowed[@]+"${allowed[@]}"}"; do [ "$a" = "$key" ] && return; done
  echo "layering: $1 includes $2 ($3)"
  violations=$((violations + 1))
}

while IFS=: read -r file _ line; do
  header=$(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/p' <<< "$line")
  [ -n "$header" ] || continue
  case "$header" in
    mpi.h|nccl.h) [[ "$file" == pipeline/comm/* ]] || report "$file" "$header" "only pipeline/comm talks MPI/NCCL" ;;
    hdf5.h|H5*.h) [[ "$file" == pipeline/store/* ]] || report "$file" "$header" "only pipeline/store talks HDF5" ;;
  esac
  case "$file" in
    pipeline/core/*)
      if [[ ( "$header" == pipeline/* && "$header" != pipeline/core/* ) || "$header" == models/* \
            || "$header" == stages/* ]]; then
        report "$file" "$header" "pipeline/core is the bottom layer"
      fi ;;
    pipeline/main.cpp) ;;
    pipeline/*)
      if [[ "$header" == models/* || "$header" == stages/* ]]; then
        report "$file" "$header" "pipeline knows no models or stages"
      fi ;;
    models/*)
      if [[ "$header" == stages/* || ( "$header" == pipeline/* && "$header" != pipeline/core/* ) ]]; then
        report "$file" "$header" "models know only pipeline/core"
      fi ;;
    stages/*/*)
      own="${file#stages/}"; own="${own%%/*}"
      if [[ "$header" == stages/*/* ]]; then
        other="${header#stages/}"; other="${other%%/*}"
        [[ "$other" == "$own" || "$other" == common || "$other" == niah || "$header" == *_ops.h ]] \
          || report "$file" "$header" "a stage includes another stage only for its *_ops.h"
      fi ;;
  esac
done < <(include_lines --include='*.cu')

if [ "$violations" -gt 0 ]; then
  echo "layering: $violations forbidden include(s); see the rule at the top of scripts/check-layering.sh"
  exit 1
fi
echo "layering: clean ($(include_lines -l | wc -l) files)"

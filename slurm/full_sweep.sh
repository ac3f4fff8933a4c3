#!/usr/bin/env bash
# Runs every stage of a job file on a Slurm allocation, then draws the figures.
#   sbatch slurm/full_sweep.sh jobs/published.ini
#   sbatch --ntasks=8 --gres=gpu:8 slurm/full_sweep.sh jobs/paper.ini --set job.threads=4
# Submit from the checkout (or set RHEAD=/path/to/rhead). Requeue-safe: a requeued or resubmitted
# job skips complete stages and, inside a stage, every finished cell (per-rank shard stores).
#SBATCH --job-name=rhead          # name shown by squeue
#SBATCH --ntasks=2                # MPI ranks: one per GPU on GPU nodes, a few per node on CPUs
#SBATCH --cpus-per-task=1         # LibTorch threads per rank (exported as OMP_NUM_THREADS below)
#SBATCH --time=04:00:00           # wall-clock limit; an interrupted run resumes on resubmission
#SBATCH --requeue                 # let Slurm requeue the job after preemption or node failure
#SBATCH --output=%x-%j.out        # log: <job-name>-<job-id>.out in the submit directory
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: sbatch slurm/full_sweep.sh JOB.ini [rhead run options]" >&2
  exit 2
fi
job="$1"
shift
cd "${SLURM_SUBMIT_DIR:-$(pwd)}"
rhead="${RHEAD:-$(pwd)/build/rhead}"
if [ ! -x "$rhead" ]; then
  echo "full_sweep.sh: no rhead at $rhead; build it first (scripts/build.sh) or set RHEAD" >&2
  exit 2
fi

threads="${SLURM_CPUS_PER_TASK:-1}"
export OMP_NUM_THREADS="$threads"
echo "full_sweep.sh: $job on ${SLURM_NTASKS:-1} rank(s) x $threads thread(s), job ${SLURM_JOB_ID:-local}"

# srun starts one rank per task; Debian's Open MPI needs the PMIx plugin (MpiDefault=pmix also works).
launcher=(srun --mpi=pmix)
if [ -z "${SLURM_JOB_ID:-}" ]; then launcher=(); fi
"${launcher[@]}" "$rhead" run "$job" --set "job.threads=$threads" "$@"

# One process draws the figures from the finished stores.
"$rhead" figures "$job"

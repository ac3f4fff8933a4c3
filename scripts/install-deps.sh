#!/usr/bin/env bash
# Idempotent install of everything rhead needs on Debian bookworm (run as root, or with sudo).
# Safe to re-run: apt skips what is present; the BLAS alternative is re-pointed every time.
#   scripts/install-deps.sh            build, test and local-Slurm dependencies
set -euo pipefail

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (expected --help)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=(
  build-essential cmake pkg-config ninja-build
  libtorch-dev libopenblas0-openmp            # LibTorch 1.13 (CPU); OpenBLAS or GEMM runs 30x slower
  libopenmpi-dev openmpi-bin libpmix2         # MPI (libpmix2 so srun --mpi=pmix works)
  libhdf5-dev hdf5-tools                      # serial HDF5 + h5dump for tests
  libboost-program-options-dev nlohmann-json3-dev libsentencepiece-dev sentencepiece libpcre2-dev
  libgtest-dev googletest
  python3-dev python3-h5py python3-matplotlib python3-numpy python3-nltk
  python3-torch                               # analysis/baselines/eager_reference.py (eager baseline)
  slurmctld slurmd slurm-client munge         # single-node Slurm for the sbatch e2e test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all ${#packages[@]} packages already installed"
fi

# Route libblas/liblapack to OpenBLAS-openmp so at::set_num_threads controls BLAS threads too.
arch_dir=/usr/lib/x86_64-linux-gnu
if [ -e "$arch_dir/openblas-openmp/libblas.so.3" ]; then
  $SUDO update-alternatives --quiet --set libblas.so.3-x86_64-linux-gnu   "$arch_dir/openblas-openmp/libblas.so.3"
  $SUDO update-alternatives --quiet --set liblapack.so.3-x86_64-linux-gnu "$arch_dir/openblas-openmp/liblapack.so.3"
fi

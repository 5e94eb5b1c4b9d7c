# Environment for building with `--features cuda` on a machine without a GPU or a system CUDA (sourced by
# the justfile's CUDA recipes after scripts/cuda-toolchain.sh). Candle's kernels are built as sm_80 PTX
# (A100 and newer: the driver compiles them for the card at hand); set CUDA_COMPUTE_CAP=90 for H100-only
# machine code. Our own kernels are compiled at run time by NVRTC for the card at hand.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CUDA_HOME="$root/.cuda/home"
export PATH="$CUDA_HOME/bin:$PATH"
export LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
export CARGO_TARGET_DIR="${CUDA_TARGET_DIR:-$root/target-cuda}"

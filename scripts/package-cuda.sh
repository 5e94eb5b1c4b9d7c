#!/usr/bin/env bash
# Packs the CUDA `sparsevlm` binary and the CUDA test binary into target-cuda/gpu/ (stripped, xz), small
# enough to copy to a GPU machine that has no Rust toolchain; bench/gpu-run.sh unpacks and runs them there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CUDA_TARGET_DIR:-$root/target-cuda}"
dest="${1:-$target/gpu}"
mkdir -p "$dest"
test_bin="$(ls -t "$target"/release/deps/backend_cuda-* | grep -v '\.d$' | head -n1)"
strip -o "$dest/sparsevlm" "$target/release/sparsevlm"
strip -o "$dest/backend_cuda" "$test_bin"
xz -T2 -6 -f "$dest/sparsevlm" "$dest/backend_cuda"
ls -l "$dest"

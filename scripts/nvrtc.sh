#!/usr/bin/env bash
# Installs NVIDIA's NVRTC (CUDA 13.0, the pinned PyPI wheel) into .cuda/nvrtc for the CPU suite's compile check
# of the CUDA kernels, and prints the folder holding libnvrtc. Quiet when already installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.cuda/nvrtc"
lib="$dir/nvidia/cu13/lib"
if ! ls "$lib"/libnvrtc.so.13 >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$dir" nvidia-cuda-nvrtc==13.0.88 >&2
fi
echo "$lib"

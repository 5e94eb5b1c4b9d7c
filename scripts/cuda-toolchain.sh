#!/usr/bin/env bash
# Builds a CUDA toolchain that needs no GPU and no system CUDA, for `just build-cuda`:
#  - nvcc, NVRTC, cuBLAS, cuRAND and the runtime from NVIDIA's PyPI wheels, pinned to CUDA 13.0 (a newer
#    nvcc would emit PTX that a CUDA 13.0 driver rejects);
#  - a CUDA_HOME made of links into those wheels, with the unversioned `lib*.so` names the linker wants;
#  - a libcuda stub for linking: one function per driver entry point that cudarc binds, each returning
#    CUDA_ERROR_STUB_LIBRARY (34). The real driver replaces it at run time on a GPU machine.
# Usage: scripts/cuda-toolchain.sh [DIR]   (default .cuda); prints nothing but errors when already built.
set -euo pipefail
dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cuda}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
home="$dir/home"
if [ -x "$home/bin/nvcc" ] && [ -e "$home/lib64/stubs/libcuda.so" ]; then
    exit 0
fi
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$dir/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.1.0.3 \
    nvidia-curand==10.4.0.35 nvidia-cuda-cccl==13.0.85
wheels="$dir/wheels/nvidia/cu13"
rm -rf "$home"
mkdir -p "$home/lib64/stubs"
ln -s "$wheels/bin" "$home/bin"
ln -s "$wheels/include" "$home/include"
ln -s "$wheels/nvvm" "$home/nvvm"
for f in "$wheels"/lib/*; do ln -s "$f" "$home/lib64/"; done
for l in cublas:13 cublasLt:13 cudart:13 curand:10 nvrtc:13; do
    ln -sf "lib${l%:*}.so.${l#*:}" "$home/lib64/lib${l%:*}.so"
done
cudarc_src() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 2>/dev/null | head -n1; }
if [ -z "$(cudarc_src)" ]; then
    cargo fetch --manifest-path "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/Cargo.toml" >&2
fi
cudarc_src="$(cudarc_src)"
grep -ohE '^\s*pub (unsafe )?fn cu[A-Za-z0-9_]+' "$cudarc_src"/src/driver/sys/*.rs \
    | awk '{print $NF}' | sort -u | sed 's/.*/int &(void){return 34;}/' >"$dir/libcuda-stub.c"
test -s "$dir/libcuda-stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib64/stubs/libcuda.so" "$dir/libcuda-stub.c"
ln -sf libcuda.so "$home/lib64/stubs/libcuda.so.1"
echo "CUDA toolchain ready in $home ($(wc -l <"$dir/libcuda-stub.c") driver entry points stubbed)"

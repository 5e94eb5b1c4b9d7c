#!/usr/bin/env bash
# The GPU half of `just test-cuda` and `just bench`, for a machine with an NVIDIA GPU and no Rust toolchain:
# runs the CUDA consistency suite, then `sparsevlm bench` and the PyTorch reference in the same call, on the
# same card. BIN_DIR holds `sparsevlm` and `backend_cuda` (or their `.xz`), as `just package-cuda` leaves them
# in target-cuda/gpu. Results go to OUT_DIR: test log, JSON and text of both benchmarks, the card.
# Usage: bench/gpu-run.sh BIN_DIR OUT_DIR [tests|bench|profile|all]   (all = tests and bench)
set -uo pipefail
bin="${1:?usage: bench/gpu-run.sh BIN_DIR OUT_DIR [tests|bench|all]}"
out="${2:?usage: bench/gpu-run.sh BIN_DIR OUT_DIR [tests|bench|all]}"
what="${3:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$out"
for name in sparsevlm backend_cuda; do
    if [ ! -x "$bin/$name" ] && [ -f "$bin/$name.xz" ]; then
        python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$bin/$name.xz" "$bin/$name"
        chmod +x "$bin/$name"
    fi
done
# The driver's libcuda and the toolkit's cuBLAS, cuRAND, NVRTC and runtime.
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
status=0
if [ "$what" = profile ] || [ "$what" = all ]; then
    # Per-stage device time (synchronised stages, so slower overall) for dense and SparseVLM-64.
    SPARSEVLM_PROFILE=1 timeout 200 "$bin/sparsevlm" bench --preset llava-1.5-7b --random-weights --device cuda \
        --methods dense,sparsevlm-v1.5 --budgets 64 --pre-tokens 35 --text-tokens 25 --decode-tokens 16 \
        --warmup 1 --repeats 5 2>&1 | tee "$out/profile.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if [ "$what" = tests ] || [ "$what" = all ]; then
    SPARSEVLM_FIXTURES="$root/tests/fixtures" timeout 300 "$bin/backend_cuda" --test-threads=1 --nocapture 2>&1 \
        | tee "$out/test-cuda.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    timeout 300 "$bin/sparsevlm" bench --preset llava-1.5-7b --random-weights --device cuda \
        --methods dense,sparsevlm-v1.5,sparsevlm-v2,fastv --budgets 192,128,64 \
        --pre-tokens 35 --text-tokens 25 --decode-tokens 16 --warmup 3 --repeats 20 \
        --json-out "$out/ours.json" 2>&1 | tee "$out/ours.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    # The same engine with plain candle ops (eager attention, unfused selection): what our kernels bring.
    timeout 200 "$bin/sparsevlm" bench --kernels candle --preset llava-1.5-7b --random-weights \
        --device cuda --methods dense,sparsevlm-v1.5 --budgets 64 --pre-tokens 35 --text-tokens 25 \
        --decode-tokens 16 --warmup 3 --repeats 10 --json-out "$out/ours-candle.json" 2>&1 | tee "$out/ours-candle.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    PYTHONUNBUFFERED=1 timeout 300 python3 "$root/bench/torch_reference.py" --json "$out/torch.json" 2>&1 \
        | tee "$out/torch.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
exit $status

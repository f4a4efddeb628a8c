#!/usr/bin/env bash
# The GPU benchmark of experiments/RESULTS.md, as one script for a machine with an NVIDIA
# GPU, CUDA and PyTorch but no Rust toolchain and no network.
#
# Prepare on the build machine (x86-64), from the repository root:
#   experiments/gpu/run.sh --prepare
# which builds the cuda and wgpu binaries of `gpt` into device-bin/ (git-ignored; stripped
# and gzipped, ~10 MB each, so that they travel) and copies Tiny Shakespeare beside them
# (from $BURNGPT_DATA_DIR, ../shared/datasets or gpt's download cache). The PyTorch
# reference is the checkout's own experiments/torch_gpt.py. Then, on the GPU machine, from
# the repository root with device-bin/ carried along:
#   experiments/gpu/run.sh [OUT_DIR]          # FULL=1 also runs all 5000 iterations
# It writes to OUT_DIR (default gpu-out/): gpu.txt, bench-cuda.json, bench-wgpu.json,
# torch-cuda.txt, train-cuda.log, mem-*.txt (GPU memory used, sampled every 200 ms).
#
# MFU is against PEAK_FLOPS (default 989e12: an H100 SXM's dense bf16 peak, the figure
# nanoGPT's estimate_mfu uses for its GPU; we train in f32, so it reads low by design).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=device-bin

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$BIN/datasets/tinyshakespeare"
    for backend in cuda wgpu; do
        cargo build --release -p cli --no-default-features --features "$backend"
        strip -o "$BIN/gpt-$backend" target/release/gpt
        gzip -9f "$BIN/gpt-$backend"
    done
    src=""
    for dir in "${BURNGPT_DATA_DIR:-}" ../shared/datasets "${BURNGPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/burngpt}"; do
        if [[ -n "$dir" && -f "$dir/tinyshakespeare/input.txt" ]]; then
            src="$dir/tinyshakespeare/input.txt"
            break
        fi
    done
    if [[ -z "$src" ]]; then
        echo "no Tiny Shakespeare found: run \`cargo xtask train\` once (it downloads it) or set BURNGPT_DATA_DIR" >&2
        exit 1
    fi
    cp "$src" "$BIN/datasets/tinyshakespeare/"
    echo "prepared $BIN/: $(ls "$BIN" | tr '\n' ' ')"
    exit 0
fi

OUT_DIR=${1:-gpu-out}
PEAK_FLOPS=${PEAK_FLOPS:-989e12}
mkdir -p "$OUT_DIR"
for backend in cuda wgpu; do
    gunzip -c "$BIN/gpt-$backend.gz" >"/tmp/gpt-$backend"
    chmod +x "/tmp/gpt-$backend"
done
export BURNGPT_DATA_DIR="$PWD/$BIN/datasets"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"

# Runs "$@" while sampling the GPU's used memory into $OUT_DIR/mem-$1.txt; prints the peak.
with_memory() {
    local name=$1
    shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$OUT_DIR/mem-$name.txt" &
    local monitor=$!
    "$@"
    kill "$monitor"
    echo "$name: peak GPU memory $(sort -n "$OUT_DIR/mem-$name.txt" | tail -1) MiB"
}

full=experiments/shakespeare_char.toml # the lecture's model: 6L/6H/384, T 256, B 64
# wgpu needs a Vulkan loader (libvulkan1) on the machine: its failure does not stop the rest.
for backend in cuda wgpu; do
    with_memory "bench-$backend" "/tmp/gpt-$backend" bench --config "$full" --steps 20 --warmup 5 \
        --peak-flops "$PEAK_FLOPS" --sample-tokens 500 --json | tee "$OUT_DIR/bench-$backend.json" ||
        echo "bench on $backend failed"
done

# The same model and batch in PyTorch eager on the same card (timings synchronised).
with_memory torch-cuda python3 experiments/gpu/torch_cuda.py experiments/torch_gpt.py \
    --batch_size 64 --block_size 256 --n_layer 6 --n_head 6 --n_embd 384 --dropout 0.2 \
    --max_iters 25 --timing_warmup 5 --eval_interval 0 --final_eval 0 --log_interval 5 |
    tee "$OUT_DIR/torch-cuda.txt"

# nanoGPT's shakespeare_char recipe: a short run, or all of it with FULL=1.
iters=500
[[ "${FULL:-0}" == 1 ]] && iters=5000
with_memory train-cuda /tmp/gpt-cuda train --config experiments/nanogpt_shakespeare_char.toml \
    --set "max_iters=$iters" --out-dir "$OUT_DIR/run" --overwrite --sample-tokens 200 |
    tee "$OUT_DIR/train-cuda.log"

#!/usr/bin/env bash
# The GPU benchmark of experiments/RESULTS.md, as one script for a machine with an NVIDIA
# GPU, CUDA and PyTorch but no Rust toolchain and no network.
#
# Prepare on the build machine (x86-64), from the repository root:
#   experiments/gpu/run.sh --prepare
# which builds the cuda and wgpu binaries of `gpt` into device-bin/ (git-ignored; stripped
# and gzipped, ~10 MB each, so that they travel) and copies Tiny Shakespeare beside them
# (from $BURNGPT_DATA_DIR, ../shared/datasets or gpt's download cache). Then, on the GPU
# machine, from the repository root with device-bin/ carried along:
#   experiments/gpu/run.sh [OUT_DIR]          # OUT_DIR defaults to gpu-out/
#
# What it runs, in this order (the lecture's full model, experiments/shakespeare_char.toml:
# 6L/6H/384, T 256, B 64, dropout 0.2, vocab 65; $STEPS timed steps after $WARMUP, default
# 30 and 10):
#   bench-cuda-bf16      gpt bench on cuda (fusion on), --set dtype=bfloat16
#   torch-eager-bf16     experiments/gpu/torch_bench.py: PyTorch eager, bf16 autocast
#   bench-cuda-f32       gpt bench on cuda, float32 (+ sampling $SAMPLE_TOKENS tokens, 500)
#   torch-eager-f32      PyTorch eager, float32
#   torch-compile-bf16   torch.compile, bf16 autocast
#   torch-compile-f32    torch.compile, float32
#   train-cuda-bf16      gpt train, nanoGPT's shakespeare_char recipe
#                        (experiments/nanogpt_shakespeare_char.toml) in bfloat16 on cuda:
#                        500 iterations, all 5000 with FULL=1
#   bench-wgpu-f32       gpt bench on wgpu (needs a Vulkan loader, libvulkan1)
#   bench-wgpu-f16       gpt bench on wgpu, --set dtype=float16
# then a summary table. Every step runs under `timeout` and a failure or time-out is
# reported and does not stop the rest. Its own limit is cut to what is left of BUDGET_S
# (default 570 s, so one run fits a 10-minute command; a step with under 30 s left is
# skipped). PARTS (default "cuda torch train wgpu") picks the groups to run, so the work
# can be split over calls into the same OUT_DIR, e.g. `PARTS=train FULL=1 BUDGET_S=580`;
# the summary reads every result in OUT_DIR. PYTHON (default python3) runs PyTorch.
#
# Outputs in OUT_DIR:
#   gpu.txt              nvidia-smi's name, memory and driver
#   NAME.log             the step's stdout and stderr
#   NAME.json            its JSON result (the log's last line that starts with "{"):
#                        gpt bench --json, or torch_bench.py's line (same keys where they
#                        mean the same: ms_per_step, tokens_per_s, mfu, peak_flops,
#                        peak_device_mib, dtype, device_name, ...)
#   NAME.status          "exit CODE SECONDS" (124: timed out; "skipped" when out of time)
#   mem-NAME.txt         GPU memory used (MiB, nvidia-smi, every 200 ms) during the step
#   run/                 the training run's directory (checkpoints, metrics)
#   summary.txt          mode, ms/step, tokens/s, MFU, peak memory (the framework's own and
#                        nvidia-smi's) per bench, the ratio of burngpt cuda bf16 tokens/s
#                        to PyTorch eager bf16 (the issue's goal: >= 1.0) and to compile
#                        bf16, and the training run's last line
#
# MFU: gpt bench knows the H100/H200 peaks; PEAK_FLOPS=F passes --peak-flops F to it and to
# torch_bench.py. Without it torch_bench.py takes the peak_flops gpt bench reported for the
# same dtype (so both divide by the same figure), else its own table of dense bf16 peaks.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=device-bin

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$BIN/datasets/tinyshakespeare"
    for backend in cuda wgpu; do
        cargo build -p cli --no-default-features --features "$backend"
        strip -o "$BIN/gpt-$backend" "${CARGO_TARGET_DIR:-target}/debug/gpt"
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
BUDGET_S=${BUDGET_S:-570}
PARTS=${PARTS:-cuda torch train wgpu}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-10}
SAMPLE_TOKENS=${SAMPLE_TOKENS:-500}
PYTHON=${PYTHON:-python3}
DEADLINE=$((SECONDS + BUDGET_S))
mkdir -p "$OUT_DIR"
for backend in cuda wgpu; do
    if [[ -f "$BIN/gpt-$backend.gz" ]]; then
        gunzip -c "$BIN/gpt-$backend.gz" >"/tmp/gpt-$backend"
        chmod +x "/tmp/gpt-$backend"
    else
        echo "no $BIN/gpt-$backend.gz (run --prepare on the build machine): its steps will fail"
    fi
done
export BURNGPT_DATA_DIR="$PWD/$BIN/datasets"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt" ||
    echo "nvidia-smi failed"

# part GROUP: whether GROUP is in PARTS.
part() { [[ " $PARTS " == *" $1 "* ]]; }

# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout` (LIMIT_S, cut to what is left
# of BUDGET_S) with stdout and stderr to NAME.log and the terminal, GPU memory sampled into
# mem-NAME.txt; keeps the log's last JSON line as NAME.json and "exit CODE SECONDS" as
# NAME.status. Never fails.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    ((limit > left)) && limit=$left
    rm -f "$OUT_DIR/$name.json" "$OUT_DIR/mem-$name.txt"
    if ((limit < 30)); then
        echo "== $name: skipped, ${left} s of BUDGET_S left"
        echo "skipped" >"$OUT_DIR/$name.status"
        return 0
    fi
    echo "== $name (limit ${limit} s): $*"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
        >"$OUT_DIR/mem-$name.txt" 2>/dev/null &
    local monitor=$! start=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log" || rc=$?
    kill "$monitor" 2>/dev/null || true
    wait "$monitor" 2>/dev/null || true
    grep '^{' "$OUT_DIR/$name.log" | tail -1 >"$OUT_DIR/$name.json" || true
    [[ -s "$OUT_DIR/$name.json" ]] || rm -f "$OUT_DIR/$name.json"
    echo "exit $rc $((SECONDS - start))" >"$OUT_DIR/$name.status"
    local peak
    peak=$(sort -n "$OUT_DIR/mem-$name.txt" 2>/dev/null | tail -1) || true
    echo "== $name: exit $rc$( ((rc == 124)) && echo ' (timed out)') after $((SECONDS - start)) s, peak GPU memory ${peak:-?} MiB"
}

# peak_for DTYPE: the --peak_flops argument for torch_bench.py (see the header).
peak_for() {
    if [[ -n "${PEAK_FLOPS:-}" ]]; then
        echo "--peak_flops $PEAK_FLOPS"
    elif [[ -f "$OUT_DIR/bench-cuda-$1.json" ]]; then
        "$PYTHON" -c 'import json, sys
p = json.load(open(sys.argv[1])).get("peak_flops")
print(f"--peak_flops {p}" if p else "")' "$OUT_DIR/bench-cuda-$1.json" 2>/dev/null || true
    fi
}

full=experiments/shakespeare_char.toml # the lecture's model: 6L/6H/384, T 256, B 64
peak_args=()
[[ -n "${PEAK_FLOPS:-}" ]] && peak_args=(--peak-flops "$PEAK_FLOPS")
# gpt_bench BACKEND DTYPE SAMPLE_TOKENS [--set ...]
gpt_bench() {
    local backend=$1 dtype=$2 sample=$3
    shift 3
    step "bench-$backend-$dtype" 150 "/tmp/gpt-$backend" bench --config "$full" "$@" \
        --steps "$STEPS" --warmup "$WARMUP" --sample-tokens "$sample" --json ${peak_args[@]+"${peak_args[@]}"}
}
# torch_bench MODE: torch_bench.py in one mode, in its own process (clean memory peaks).
torch_bench() {
    local mode=$1 limit=90 peak
    [[ $mode == compile-* ]] && limit=180
    peak=$(peak_for "${mode#*-}")
    # shellcheck disable=SC2086 # $peak is empty or two words
    step "torch-$mode" "$limit" "$PYTHON" experiments/gpu/torch_bench.py --modes "$mode" \
        --steps "$STEPS" --warmup "$WARMUP" $peak \
        --batch_size 64 --block_size 256 --n_layer 6 --n_head 6 --n_embd 384 --dropout 0.2 \
        --vocab_size 65
}

if part cuda; then gpt_bench cuda bf16 0 --set dtype=bfloat16; fi
if part torch; then torch_bench eager-bf16; fi
if part cuda; then gpt_bench cuda f32 "$SAMPLE_TOKENS"; fi
if part torch; then
    torch_bench eager-f32
    torch_bench compile-bf16
    torch_bench compile-f32
fi
if part train; then
    # nanoGPT's shakespeare_char recipe in bf16: a short run, or all of it with FULL=1.
    iters=500 limit=300
    if [[ "${FULL:-0}" == 1 ]]; then iters=5000 limit=$BUDGET_S; fi
    step train-cuda-bf16 "$limit" /tmp/gpt-cuda train --config experiments/nanogpt_shakespeare_char.toml \
        --set "max_iters=$iters" --set dtype=bfloat16 --out-dir "$OUT_DIR/run" --overwrite \
        --sample-tokens 200
fi
if part wgpu; then
    gpt_bench wgpu f32 0
    gpt_bench wgpu f16 0 --set dtype=float16
fi

"$PYTHON" - "$OUT_DIR" <<'EOF' | tee "$OUT_DIR/summary.txt"
import json, os, sys

out = sys.argv[1]
rows = [("burngpt cuda f32", "bench-cuda-f32"), ("burngpt cuda bf16", "bench-cuda-bf16"),
        ("burngpt wgpu f32", "bench-wgpu-f32"), ("burngpt wgpu f16", "bench-wgpu-f16"),
        ("torch eager f32", "torch-eager-f32"), ("torch eager bf16", "torch-eager-bf16"),
        ("torch compile f32", "torch-compile-f32"), ("torch compile bf16", "torch-compile-bf16")]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def result(name):
    text = read(os.path.join(out, name + ".json"))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def status(name):
    s = (read(os.path.join(out, name + ".status")) or "not run").split()
    if s[0] == "exit":
        return {"0": "no JSON", "124": "timed out", "137": "killed"}.get(s[1], f"exit {s[1]}")
    return s[0] if s[0] == "skipped" else "not run"


def smi_peak(name):
    values = [int(v) for v in (read(os.path.join(out, f"mem-{name}.txt")) or "").split() if v.isdigit()]
    return max(values) if values else None


def num(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


gpu = (read(os.path.join(out, "gpu.txt")) or "").strip().splitlines()
print("GPU:", gpu[-1] if gpu else "?")
head = f"{'mode':20} {'ms/step':>9} {'tokens/s':>10} {'MFU %':>6} {'peak MiB':>9} {'smi MiB':>8}  note"
print(head)
print("-" * len(head))
found = {}
for label, name in rows:
    r = result(name)
    if r is None or "error" in r:
        note = r["error"][:60] if r else status(name)
        print(f"{label:20} {'-':>9} {'-':>10} {'-':>6} {'-':>9} {num(smi_peak(name), 'd'):>8}  {note}")
        continue
    found[name] = r
    mfu = r.get("mfu")
    note = r.get("device_name") or ""
    if r.get("ms_per_step_sync_at_log_interval") is not None:
        note += f"; {r['ms_per_step_sync_at_log_interval']:.2f} ms/step syncing at log interval"
    elif r.get("ms_per_step_sync_at_end") is not None:
        note += f"; {r['ms_per_step_sync_at_end']:.2f} ms/step syncing at the end"
    print(f"{label:20} {num(r.get('ms_per_step'), '.2f'):>9} {num(r.get('tokens_per_s'), '.0f'):>10} "
          f"{num(mfu * 100 if mfu is not None else None, '.1f'):>6} "
          f"{num(r.get('peak_device_mib'), '.0f'):>9} {num(smi_peak(name), 'd'):>8}  {note}")
print("peak MiB: the framework's own peak (Burn's reserved memory, torch.cuda.max_memory_reserved);")
print("smi MiB: nvidia-smi's peak of the whole GPU's used memory during the step.")
print()
for ours, theirs in [("bench-cuda-bf16", "torch-eager-bf16"), ("bench-cuda-bf16", "torch-compile-bf16"),
                     ("bench-cuda-f32", "torch-eager-f32"), ("bench-cuda-f32", "torch-compile-f32")]:
    a, b = found.get(ours), found.get(theirs)
    ratio = f"{a['tokens_per_s'] / b['tokens_per_s']:.3f}" if a and b else "-"
    goal = "  (goal >= 1.0)" if theirs == "torch-eager-bf16" else ""
    print(f"tokens/s {ours} / {theirs}: {ratio}{goal}")
train = [l for l in (read(os.path.join(out, "train-cuda-bf16.log")) or "").splitlines() if " after " in l]
print()
print("train-cuda-bf16:", train[-1].strip() if train else status("train-cuda-bf16"))
EOF

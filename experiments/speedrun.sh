#!/usr/bin/env bash
# The CPU speedrun, side by side in one sitting: for each seed in turn, the CPU preset
# (shakespeare_char_cpu.toml), the speedrun (shakespeare_char_speedrun.toml) and PyTorch
# running the CPU preset's recipe (experiments/torch_gpt.py), interleaved so that a change
# in the machine's load hits all three alike.
#
#   experiments/speedrun.sh [SEEDS...]          (default seeds: 1337 1 2)
#
# Wall time: `gpt train` from start to exit (its evaluations included); for PyTorch its
# `train_wall_s` (2 threads, OMP_WAIT_POLICY=PASSIVE as xtask runs it; training and its
# evaluations, without the interpreter's start-up and the whole-val pass). Whole-val: `gpt eval --full`, torch_gpt.py's `--full_val 1` (the mean
# loss over every consecutive block_size window of the val split), not timed.
# Prints the table for RESULTS.md and writes every number to runs/speedrun/results.tsv.
#
# GPT=path to gpt (default: $CARGO_TARGET_DIR or target, debug/gpt; build it with
# `cargo build -p cli`); PYTHON=a python with torch (default ~/.cache/burngpt/venv/bin/python;
# NO_TORCH=1 skips PyTorch); SPEEDRUN=another config for the speedrun column; SETS="k=v ..."
# extra --set overrides for it (a sweep); OUT=another runs directory. MEANS=1 then trains
# the speedrun once more per seed with each of its means taken away alone (AdamW instead
# of Muon, the cosine instead of warmup-stable-decay, no QK-norm, ReLU² instead of ReLU)
# and prints a second table: what each means is worth inside the recipe.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gpt=${GPT:-${CARGO_TARGET_DIR:-$here/../target}/debug/gpt}
python=${PYTHON:-$HOME/.cache/burngpt/venv/bin/python}
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(1337 1 2)
preset=$here/shakespeare_char_cpu.toml
speedrun=${SPEEDRUN:-$here/shakespeare_char_speedrun.toml}
out=${OUT:-runs/speedrun}
mkdir -p "$out"
sets=(); for kv in ${SETS:-}; do sets+=(--set "$kv"); done

now() { date +%s.%N; }
json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])$1)"; }

# train NAME CONFIG SEED [ARGS...]: trains into $out/NAME-SEED, appends "NAME seed wall whole-val".
train() {
  local name=$1 config=$2 seed=$3; shift 3
  local dir=$out/$name-$seed start end
  start=$(now)
  "$gpt" train --config "$config" --set seed="$seed" "$@" --out-dir "$dir" --overwrite \
    --sample-tokens 0 > "$dir.log" 2>&1
  end=$(now)
  local loss; loss=$("$gpt" eval --full --json --run "$dir" | json '["full_val_loss"]')
  printf '%s\t%s\t%.1f\t%s\n' "$name" "$seed" "$(echo "$end - $start" | bc)" "$loss" | tee -a "$out/results.tsv"
}

torch() {
  local seed=$1 log=$out/torch-$1.log
  OMP_WAIT_POLICY=PASSIVE "$python" "$here/torch_gpt.py" --config "$preset" --seed "$seed" --full_val 1 \
    > "$log" 2>&1
  local result; result=$(grep '^RESULT ' "$log" | sed 's/^RESULT //')
  printf 'torch\t%s\t%s\t%s\n' "$seed" "$(echo "$result" | json '["train_wall_s"]')" \
    "$(echo "$result" | json '["full_val_loss"]')" | tee -a "$out/results.tsv"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$out/results.tsv"
for seed in "${seeds[@]}"; do
  train preset "$preset" "$seed"
  train speedrun "$speedrun" "$seed" "${sets[@]}"
  [ -n "${NO_TORCH:-}" ] || torch "$seed"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/results.tsv" <<'PY'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    name, seed, wall, loss = line.split("\t")
    rows[seed][name] = (float(wall), float(loss))
names = [n for n in ("preset", "speedrun", "torch") if any(n in r for r in rows.values())]
head = "| seed | " + " | ".join(f"{n} s | {n} whole-val" for n in names)
head += " | speedrun / preset | speedrun / torch |" if "torch" in names else " | speedrun / preset |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
def line(label, r):
    cells = [f"{r[n][0]:.1f} | {r[n][1]:.4f}" for n in names]
    ratios = [f"{r['speedrun'][0] / r['preset'][0]:.3f}"]
    if "torch" in names:
        ratios.append(f"{r['speedrun'][0] / r['torch'][0]:.3f}")
    print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
for seed, r in rows.items():
    line(seed, r)
mean = {n: tuple(sum(r[n][i] for r in rows.values()) / len(rows) for i in (0, 1)) for n in names}
line("mean", mean)
worst = max(r["speedrun"][1] for r in rows.values())
print(f"\nspeedrun: worst whole-val {worst:.4f} (target ≤ 1.78 for every seed)")
PY

[ -n "${MEANS:-}" ] || exit 0
# name|--set overrides that take one means away from the speedrun
means=(
  "adamw|optimizer=adamw"
  "cosine|lr_schedule=cosine"
  "no-qk-norm|qk_norm=false"
  "relu2|activation=relu2"
)
: > "$out/means.tsv"
for m in "${means[@]}"; do
  name=${m%%|*}; more=(); for kv in ${m#*|}; do more+=(--set "$kv"); done
  for seed in "${seeds[@]}"; do
    train "means-$name" "$speedrun" "$seed" "${sets[@]}" "${more[@]}" >> "$out/means.tsv"
  done
done
python3 - "$out/results.tsv" <<'PY'
import sys, collections
by = collections.OrderedDict()
for line in open(sys.argv[1]):
    name, seed, wall, loss = line.split("\t")
    if name == "speedrun" or name.startswith("means-"):
        by.setdefault(name, []).append((float(wall), float(loss)))
base = by["speedrun"]
mean = lambda xs: sum(xs) / len(xs)
label = {"speedrun": "the speedrun", "means-adamw": "AdamW instead of Muon",
         "means-cosine": "cosine instead of warmup-stable-decay",
         "means-no-qk-norm": "no QK-norm", "means-relu2": "ReLU² instead of ReLU"}
print("| recipe | whole-val (mean ± half-range) | Δ vs speedrun | wall s (mean) |")
print("|---|---|---|---|")
for name, rs in by.items():
    ls = [r[1] for r in rs]
    print(f"| {label[name]} | {mean(ls):.4f} ± {(max(ls) - min(ls)) / 2:.4f} (n={len(ls)}) "
          f"| {mean(ls) - mean([r[1] for r in base]):+.4f} | {mean([r[0] for r in rs]):.1f} |")
PY


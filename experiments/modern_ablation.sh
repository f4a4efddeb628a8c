#!/usr/bin/env bash
# Exercise 4's ablation: the lecture architecture, each modern switch alone (and the
# speedrun's means: squared ReLU, Muon, the warmup-stable-decay schedule), and the best
# combination, all at the CPU preset's budget (experiments/shakespeare_char_cpu.toml: same
# iterations, batch, block and learning-rate recipe) and the same seeds.
#
#   experiments/modern_ablation.sh [SEEDS...]        (default seeds: 1337 1338 1339)
#
# For each variant and seed: `gpt train` into runs/ablation/VARIANT-SEED, then
# `gpt eval --full` (the whole val split). Then `gpt bench` per variant for parameters and
# training tokens/s (the fused CPU attention path). Prints one markdown table (mean ± half
# the spread over seeds), writes it to runs/ablation/table.md for RESULTS.md and every
# number to runs/ablation/results.tsv. ONLY_BENCH=1 skips the training (tokens/s only).
# ONLY="lecture rope" limits it to some variants.
# Needs the `gpt` binary (cargo build -p cli; GPT=path overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gpt=${GPT:-${CARGO_TARGET_DIR:-$here/../target}/debug/gpt}
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(1337 1338 1339)
preset=$here/shakespeare_char_cpu.toml
out=runs/ablation
mkdir -p "$out"

# name|--set overrides (space-separated key=value)
variants=(
  "lecture|"
  "rope|rope=true"
  "rmsnorm|norm=rmsnorm"
  "swiglu|activation=swiglu"
  "no-bias|bias=false"
  "tied|tie_weights=true"
  "gqa-2kv|n_kv_head=2"
  "qk-norm|qk_norm=true"
  "softcap-30|logit_softcap=30"
  "relu2|activation=relu2"
  "muon|optimizer=muon"
  "wsd|lr_schedule=wsd warmdown_iters=400"
  "modern|$(sed -n 's/^\([a-z_]*\) = \(.*\)/\1=\2/p' "$here/shakespeare_char_modern.toml" | grep -E '^(rope|norm|activation|bias|tie_weights|n_kv_head|qk_norm|logit_softcap)=' | tr -d '"' | tr '\n' ' ')"
)
only=${ONLY:-}

sets() { local a=(); for kv in $1; do a+=(--set "$kv"); done; echo "${a[@]}"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Phase 1, the slow one: train and evaluate every run not done yet (a finished run leaves
# its whole-val loss in runs/ablation/VARIANT-SEED.loss, so an interrupted ablation resumes).
selected=()
for v in "${variants[@]}"; do
  name=${v%%|*}
  [ -z "$only" ] || [[ " $only " == *" $name "* ]] && selected+=("$v")
done
for v in "${selected[@]}"; do
  [ -z "${ONLY_BENCH:-}" ] || break
  name=${v%%|*}; overrides=${v#*|}
  for seed in "${seeds[@]}"; do
    dir=$out/$name-$seed
    [ -s "$dir.loss" ] && continue
    # shellcheck disable=SC2046
    "$gpt" train --config "$preset" $(sets "$overrides") --set seed="$seed" \
      --out-dir "$dir" --overwrite > "$dir.log" 2>&1
    "$gpt" eval --full --json --run "$dir" | json '["full_val_loss"]' > "$dir.loss.new"
    mv "$dir.loss.new" "$dir.loss"
    echo "$name seed $seed: whole-val $(cat "$dir.loss")"
  done
done
# Phase 2: parameters and tokens/s, variants back to back (run it on a quiet machine).
: > "$out/results.tsv.new"
for v in "${selected[@]}"; do
  name=${v%%|*}; overrides=${v#*|}
  # shellcheck disable=SC2046
  bench=$("$gpt" bench --config "$preset" $(sets "$overrides") --steps 50 --warmup 5 --sample-tokens 0 --json)
  params=$(echo "$bench" | json '["params"]'); tps=$(echo "$bench" | json '["tokens_per_s"]')
  for seed in "${seeds[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$(cat "$out/$name-$seed.loss" 2>/dev/null || echo nan)" \
      "$params" "$tps" "$overrides" >> "$out/results.tsv.new"
  done
done
mv "$out/results.tsv.new" "$out/results.tsv"
python3 - "$out/results.tsv" <<'PY' | tee "$out/table.md"
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = collections.OrderedDict()
for name, seed, loss, params, tps, sets in rows:
    by.setdefault(name, []).append((float(loss), int(params), float(tps), sets))
base = sum(r[0] for r in by.get("lecture", [(0,)])) / max(len(by.get("lecture", [1])), 1)
base_tps = by["lecture"][0][2] if "lecture" in by else None
print("| variant | --set | whole-val (mean ± half-range) | Δ vs lecture | params | tokens/s | vs lecture |")
print("|---|---|---|---|---|---|---|")
for name, rs in by.items():
    ls = [r[0] for r in rs]; mean = sum(ls) / len(ls)
    print(f"| {name} | `{rs[0][3].strip() or '-'}` | {mean:.4f} ± {(max(ls)-min(ls))/2:.4f} (n={len(ls)}) "
          f"| {mean-base:+.4f} | {rs[0][1]:,} | {rs[0][2]:,.0f} "
          f"| {rs[0][2] / base_tps if base_tps else float('nan'):.2f}× |")
PY

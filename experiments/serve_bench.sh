#!/usr/bin/env bash
# `gpt serve`'s throughput: one client, then 8 at once, on the CPU preset and on GPT-2
# 124M's shapes (random weights: the cost is the shapes'), `--workers` 1 and 2, each
# decoding one request at a time (`--batch 1`) or up to 8 together (`--batch 8`).
#   experiments/serve_bench.sh [SECONDS]        (from the repository root, after a build)
# The CPU preset run is runs/shakespeare_char_cpu (`cargo xtask train` makes it); the
# 124M run is made here, trained for one iteration on Tiny Shakespeare's GPT-2 tokens.
set -euo pipefail
seconds=${1:-30}
gpt=${GPT:-${CARGO_TARGET_DIR:-target}/debug/gpt}
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -e runs/serve-gpt2/model.mpk ]; then
  [ -e data/shakespeare_gpt2/meta.json ] ||
    "$gpt" prepare --tokenizer gpt2 --input tinyshakespeare --out data/shakespeare_gpt2 --val-fraction 0.1
  "$gpt" train --config experiments/gpt2.toml --data data/shakespeare_gpt2 --out-dir runs/serve-gpt2 \
    --set max_iters=1 --set eval_interval=1 --set eval_iters=1 --set batch_size=1 \
    --set gradient_accumulation_steps=1 --set warmup_iters=0 --sample-tokens 0 >/dev/null
fi
for run in runs/shakespeare_char_cpu runs/serve-gpt2; do
  for setting in "1 1" "2 1" "1 8" "2 8"; do
    read -r workers batch <<<"$setting"
    "$gpt" serve --run "$run" --addr 127.0.0.1:0 --workers "$workers" --batch "$batch" \
      --queue 16 2>"$run.serve.log" &
    pid=$!
    until grep -q 'serving' "$run.serve.log"; do sleep 0.2; done
    url=$(grep -o 'http://[0-9.:]*' "$run.serve.log")
    for clients in 1 8; do
      echo "$run workers=$workers batch=$batch $(python3 "$here/serve_bench.py" --url "$url" --clients "$clients" --seconds "$seconds")"
    done
    kill -TERM "$pid"; wait "$pid"
  done
done

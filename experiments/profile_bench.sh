#!/usr/bin/env bash
# Training speed of two `gpt` binaries, alternating, on the CPU preset and the lecture's full
# model: `gpt bench --json`'s tokens/s for each, ROUNDS rounds (default 3), A B A B …
#
#   experiments/profile_bench.sh A_GPT B_GPT [ROUNDS]
#
# Used for the dev profile against the release profile (RESULTS.md, "Build profiles").
set -euo pipefail
a=$1 b=$2 rounds=${3:-3}
cd "$(dirname "$0")/.."
tokens() { "$1" bench "${@:2}" --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_s"])'; }
for config in experiments/shakespeare_char_cpu.toml experiments/shakespeare_char.toml; do
  steps=30
  [ "$config" = experiments/shakespeare_char.toml ] && steps=6
  for r in $(seq "$rounds"); do
    ta=$(tokens "$a" --config "$config" --steps "$steps" --sample-tokens 0)
    tb=$(tokens "$b" --config "$config" --steps "$steps" --sample-tokens 0)
    echo "$config round $r: A $ta tokens/s, B $tb tokens/s, A/B $(python3 -c "print(round($ta/$tb, 3))")"
  done
done

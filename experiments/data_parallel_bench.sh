#!/usr/bin/env bash
# Data-parallel throughput on this machine: one process against `mpirun -n N` (default 2),
# the same config, each on loopback TCP. Prints each run's tokens/s (the whole job's) and
# rank 0's all-reduce line (time per step, its share of the step, bytes per step).
#   experiments/data_parallel_bench.sh [CONFIG] [ITERS] [N]
# Needs the gpt built with --features mpi (cargo build -p cli --features mpi) (GPT=path overrides) and Open MPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gpt=${GPT:-${CARGO_TARGET_DIR:-$here/../target}/debug/gpt}
config=${1:-$here/shakespeare_char_cpu.toml}; iters=${2:-200}; n=${3:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(train --config "$config" --set max_iters="$iters" --set eval_interval="$iters"
      --set eval_iters=1 --sample-tokens 0)
mpi=(mpirun --oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo
     --mca oob_tcp_if_include lo)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
tps() { grep -o '[0-9]* tok/s' | tail -1; }
echo "config $(basename "$config"), $iters iterations, $(nproc) cores"
echo "1 process:  $("$gpt" "${args[@]}" --out-dir "$out/one" | tps)"
log=$("${mpi[@]}" -n "$n" "$gpt" "${args[@]}" --out-dir "$out/dp")
echo "$n ranks:    $(echo "$log" | tps) (the job's tokens: $n × the batch per step)"
echo "$log" | grep '^data-parallel'

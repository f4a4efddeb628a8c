#!/usr/bin/env bash
# GPT-2 sampling speed, burngpt against Hugging Face transformers, in one run:
#   experiments/gpt2_sample_bench.sh PYTHON HF_DIR [TOKENS]
# HF_DIR: a GPT-2 in Hugging Face's layout (e.g. made offline with
#   python -c 'from transformers import *; GPT2LMHeadModel(GPT2Config()).save_pretrained("gpt2-random")'
# which has GPT-2 124M's shapes and cost). burngpt: `gpt sample --init-from HF_DIR`, with and
# without the KV cache, its generation time = wall time for TOKENS+1 tokens minus that for 1
# (so loading is left out). PyTorch: experiments/torch_gpt.py --hf_dir (generate, use_cache
# True/False). Both on 2 threads.
set -euo pipefail
python=${1:?PYTHON}; dir=${2:?HF_DIR}; n=${3:-100}
here=$(cd "$(dirname "$0")" && pwd)
gpt=${GPT:-${CARGO_TARGET_DIR:-$here/../target}/debug/gpt}
seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc -l; }
for mode in cached uncached; do
  flag=(); [ "$mode" = uncached ] && flag=(--no-kv-cache)
  t1=$(seconds "$gpt" sample --init-from "$dir" --prompt "Hello" --max-new-tokens 1 --top-k 50000 "${flag[@]}")
  tn=$(seconds "$gpt" sample --init-from "$dir" --prompt "Hello" --max-new-tokens $((n + 1)) --top-k 50000 "${flag[@]}")
  echo "burngpt $mode: $(echo "$n / ($tn - $t1)" | bc -l | cut -c1-6) tokens/s ($n tokens in $(echo "$tn - $t1" | bc -l | cut -c1-6) s)"
done
OMP_WAIT_POLICY=PASSIVE "$python" "$here/torch_gpt.py" --hf_dir "$dir" --sample_tokens "$n" --threads 2 | grep -v '^RESULT' | sed 's/^/PyTorch /'

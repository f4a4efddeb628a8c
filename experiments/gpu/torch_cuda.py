"""Runs the PyTorch reference (experiments/torch_gpt.py, written for the CPU) on the GPU,
unchanged.

Usage: python3 experiments/gpu/torch_cuda.py experiments/torch_gpt.py [its flags...]
(TORCH_DEVICE=cpu runs the same wrapper on the CPU, to check it without a GPU.)
For the step timings that experiments/gpu/run.sh compares with `gpt bench` (eager and
torch.compile, float32 and bf16 autocast) see experiments/gpu/torch_bench.py; this wrapper
is for torch_gpt.py's own training runs (losses, evaluations, samples) on the GPU.

Every tensor it creates goes to CUDA (torch.set_default_device), and each clock read waits
for the GPU first, so its per-step times measure finished work rather than queued kernels.
"""
import os
import runpy
import sys
import time

import torch

device = os.environ.get("TORCH_DEVICE", "cuda")
torch.set_default_device(device)
_clock = time.perf_counter


def _synchronised_clock():
    if device == "cuda":
        torch.cuda.synchronize()
    return _clock()


time.perf_counter = _synchronised_clock
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")

#!/usr/bin/env python3
"""Times training steps of the PyTorch reference (experiments/torch_gpt.py's Gpt, imported,
not copied) on a GPU, in the modes `gpt bench` is compared with:

  eager-f32      plain PyTorch, float32 (TF32 matmuls only with --tf32 1)
  eager-bf16     the same under torch.autocast(device, dtype=torch.bfloat16) around the
                 forward and the loss, as nanoGPT trains (weights and AdamW stay float32)
  compile-f32    torch.compile of forward + loss, float32
  compile-bf16   torch.compile of forward + loss, under bf16 autocast
  eager-bf16w / compile-bf16w (not in the default list): weights themselves in bfloat16,
                 no autocast (AdamW on bf16 parameters)

Usage (from the repository root):
  python3 experiments/gpu/torch_bench.py [--modes eager-f32,eager-bf16,...] [--steps 30]
      [--warmup 10] [--peak_flops F] [--tf32 0|1] [--compile_mode MODE] [torch_gpt.py flags]
The model flags are torch_gpt.py's (--n_layer, --n_embd, --block_size, --batch_size,
--dropout, --sdpa, --config FILE, ...; its defaults are the lecture's full model: 6 layers,
6 heads, n_embd 384, block 256, batch 64, dropout 0.2). Batches are random token ids of
--vocab_size (0: 65, Tiny Shakespeare's characters), as `gpt bench` feeds, so no data file
is read. TORCH_DEVICE=cpu runs it on the CPU (to check it without a GPU).

Each step: a fresh batch (made before the clock starts), forward + loss, backward,
clip_grad_norm_ if --grad_clip > 0, AdamW step (fused where PyTorch has it, the decay groups
of torch_gpt.py: matrices only unless --decay_all 1), zero_grad(set_to_none=True); the
device is synchronised before and after, so a step's time is finished work. ms_per_step is
the median over --steps steps after --warmup untimed ones (compilation and autotuning fall
in the warm-up); ms_per_step_sync_at_end is a second run of --steps steps with only one
synchronisation at the end (the cost of per-step host synchronisation is the difference).
MFU is nanoGPT's estimate_mfu (6N + 12·L·H·Q·T FLOPs per token, N without the position
table) against --peak_flops, else a small table of dense bf16 peaks by device name, else
null.

Output: one JSON line per mode on stdout (keys as `gpt bench --json` where they mean the
same: ms_per_step, min_ms_per_step, tokens_per_s, flops_per_token, achieved_flops, mfu,
peak_flops, dtype, device_name, peak_device_mib = torch.cuda.max_memory_reserved in MiB,
plus max_memory_allocated_mib); a mode that fails prints a line with "error" and the rest
still run; the exit status is 1 if any mode failed. Progress goes to stderr.
"""
import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TORCH_GPT = os.path.join(HERE, "..", "torch_gpt.py")
MODES = ["eager-f32", "eager-bf16", "compile-f32", "compile-bf16"]
ALL_MODES = MODES + ["eager-bf16w", "compile-bf16w"]
MIB = 1024.0 * 1024.0

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, by a substring of the device name:
# the fallback when --peak_flops is not given. The first match wins.
PEAKS = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM: the figure nanoGPT's estimate_mfu style uses for an H100
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
]


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def load_torch_gpt(path):
    spec = importlib.util.spec_from_file_location("torch_gpt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(ALL_MODES))
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--peak_flops", type=float, default=None, help="the device's peak FLOP/s, for MFU")
    p.add_argument("--tf32", type=int, default=0, help="1: TF32 matmuls and convolutions in float32")
    p.add_argument("--compile_mode", default=None, help="torch.compile's mode (default: its default)")
    p.add_argument("--fused", type=int, default=1, help="1: fused AdamW where available")
    p.add_argument("--torch_gpt", default=DEFAULT_TORCH_GPT, help="path of torch_gpt.py")
    own, rest = p.parse_known_args(argv)
    modes = [m.strip() for m in own.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        p.error(f"unknown mode(s) {unknown}; known: {ALL_MODES}")
    if own.steps < 1 or own.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    own.modes = modes
    return own, rest


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def table_peak(name):
    for key, peak in PEAKS:
        if key in name:
            return peak
    return None


def flops_per_token(model, a):
    """nanoGPT's estimate_mfu per token: 6N + 12·L·H·Q·T, N without the position table."""
    n = sum(p.numel() for p in model.parameters())
    if hasattr(model, "wpe"):
        n -= model.wpe.weight.numel()
    if a.model != "gpt":
        return 6.0 * n
    q = a.n_embd // a.n_head
    return 6.0 * n + 12.0 * a.n_layer * a.n_head * q * a.block_size


def adamw(tg, model, a, device, fused):
    """torch_gpt.py's AdamW groups, rebuilt with fused=True where PyTorch offers it."""
    reference = tg.optimizer(model, a)
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in reference.param_groups]
    kwargs = dict(lr=a.learning_rate, betas=(a.beta1, a.beta2), eps=a.eps)
    if fused:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs), True
        except (RuntimeError, TypeError, ValueError) as e:
            log(f"fused AdamW unavailable on {device.type} ({e}); using the default")
    return torch.optim.AdamW(groups, **kwargs), False


def run_mode(tg, mode, own, a, device, peak):
    kind, precision = mode.split("-")
    torch.manual_seed(a.seed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = (tg.Gpt if a.model == "gpt" else tg.Bigram)(a).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model, a)
    if precision == "bf16w":
        model = model.to(torch.bfloat16)
    model.train()
    opt, fused = adamw(tg, model, a, device, bool(own.fused))

    def forward_loss(x, y):
        return tg.loss_of(model, x, y)

    step_fn = forward_loss
    if kind == "compile":
        kwargs = {"mode": own.compile_mode} if own.compile_mode else {}
        step_fn = torch.compile(forward_loss, **kwargs)
    autocast = precision == "bf16"
    b, t, vocab = a.batch_size, a.block_size, a.vocab_size

    def batch():
        return (torch.randint(vocab, (b, t), device=device), torch.randint(vocab, (b, t), device=device))

    def step(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = step_fn(x, y)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    started = time.perf_counter()
    times = []
    first_step_s = None
    for i in range(own.warmup + own.steps):
        x, y = batch()
        sync(device)
        t0 = time.perf_counter()
        loss = step(x, y)
        sync(device)
        dt = time.perf_counter() - t0
        if i == 0:
            first_step_s = dt
            log(f"{mode}: first step {dt:.2f} s, loss {loss.item():.4f}")
        if i >= own.warmup:
            times.append(dt)
    # The same number of steps with one synchronisation at the end (batches made first).
    batches = [batch() for _ in range(own.steps)]
    sync(device)
    t0 = time.perf_counter()
    for x, y in batches:
        loss = step(x, y)
    sync(device)
    async_ms = (time.perf_counter() - t0) / own.steps * 1e3
    final_loss = loss.item()
    wall = time.perf_counter() - started

    median = statistics.median(times)
    tokens_per_s = b * t / median
    achieved = fpt * tokens_per_s
    result = {
        "backend": "torch",
        "mode": mode,
        "compile": kind == "compile",
        "dtype": {"f32": "float32", "bf16": "bfloat16", "bf16w": "bfloat16"}[precision],
        "autocast": autocast,
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "attention": "sdpa" if a.sdpa else "explicit",
        "tf32": bool(own.tf32),
        "fused_adamw": fused,
        "compile_mode": own.compile_mode if kind == "compile" else None,
        "batch_size": b,
        "block_size": t,
        "n_layer": a.n_layer,
        "n_head": a.n_head,
        "n_embd": a.n_embd,
        "dropout": a.dropout,
        "vocab_size": vocab,
        "params": n_params,
        "grad_clip": a.grad_clip,
        "steps": own.steps,
        "warmup": own.warmup,
        "first_step_s": first_step_s,
        "ms_per_step": median * 1e3,
        "min_ms_per_step": min(times) * 1e3,
        "mean_ms_per_step": statistics.fmean(times) * 1e3,
        "ms_per_step_sync_every_step": median * 1e3,
        "ms_per_step_sync_at_end": async_ms,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": fpt,
        "achieved_flops": achieved,
        "peak_flops": peak,
        "mfu": achieved / peak if peak else None,
        "peak_device_mib": torch.cuda.max_memory_reserved(device) / MIB if device.type == "cuda" else None,
        "max_memory_allocated_mib": (torch.cuda.max_memory_allocated(device) / MIB
                                     if device.type == "cuda" else None),
        "peak_rss_mib": tg.peak_rss_mib(),
        "final_loss": final_loss,
        "wall_s": wall,
    }
    del model, opt, step_fn
    return result


def main(argv=None):
    own, rest = parse(sys.argv[1:] if argv is None else argv)
    tg = load_torch_gpt(own.torch_gpt)
    a = tg.parse_args(rest)
    a.vocab_size = a.vocab_size or 65
    device = torch.device(os.environ.get("TORCH_DEVICE", "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: CUDA is not available (TORCH_DEVICE=cpu runs on the CPU)")
    if device.type == "cpu" and a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = bool(own.tf32)
    torch.backends.cudnn.allow_tf32 = bool(own.tf32)
    name = device_name(device)
    peak = own.peak_flops or (table_peak(name) if device.type == "cuda" else None)
    log(f"torch {torch.__version__} on {name}; peak {peak}; modes {own.modes}")
    failed = 0
    for mode in own.modes:
        try:
            result = run_mode(tg, mode, own, a, device, peak)
            log(f"{mode}: {result['ms_per_step']:.2f} ms/step, {result['tokens_per_s']:.0f} tokens/s"
                + (f", MFU {result['mfu'] * 100:.1f} %" if result["mfu"] else ""))
        except Exception as e:  # a mode that fails (torch.compile without a compiler...) is reported
            failed += 1
            traceback.print_exc(file=sys.stderr)
            result = {"backend": "torch", "mode": mode, "device": device.type, "device_name": name,
                      "torch": torch.__version__, "error": f"{type(e).__name__}: {e}"[:2000]}
        print(json.dumps(result), flush=True)
        gc.collect()
        if mode.startswith("compile"):
            torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

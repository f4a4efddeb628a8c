#!/usr/bin/env python3
"""burngpt's GPT in PyTorch: the reference that `cargo xtask bench --compare-torch PYTHON`
and experiments/gpu/run.sh time against `gpt bench`.

The same model and recipe as the Rust code (crates/model, crates/training):
  * token embedding + learned position embedding (no dropout on the sum);
  * n_layer pre-LayerNorm blocks, x = x + attn(ln_1(x)); x = x + mlp(ln_2(x));
  * causal multi-head self-attention: q, k, v from one bias-free Linear(C, 3C), scores
    scaled by head_size**-0.5, causal mask, softmax, dropout on the weights, heads side
    by side, output projection (bias per --bias), dropout;
    --sdpa 1 uses F.scaled_dot_product_attention instead of the explicit ops;
  * MLP: Linear(C, 4C) -> ReLU -> Linear(4C, C) -> dropout (crates/model/src/mlp.rs);
  * final LayerNorm, lm_head Linear(C, vocab) (bias per --bias);
  * init as crates/model/src/init.rs: Linear and Embedding weights N(0, 0.02), biases 0,
    LayerNorm weight 1 and bias 0;
  * AdamW (beta1, beta2, eps), weight decay on matrices only (linear weights and
    embeddings; --decay_all 1 decays everything, as plain torch.optim.AdamW does);
    gradient clipping by the global norm over all parameters (clip_grad_norm_);
    nanoGPT's lr schedule with --decay_lr 1 (linear warmup, cosine to min_lr), constant
    otherwise.
--model bigram is the lecture's bigram: one Embedding(vocab, vocab) table.

GPT-2's switches, as crates/model/src/config.rs: --qkv_bias 1 (a bias on c_attn),
--tie_weights 1 (lm_head is wte, no lm_head bias), --activation relu|relu2|gelu|gelu_tanh,
--layer_norm_eps, --scaled_init 1 (c_proj weights N(0, 0.02/sqrt(2 n_layer))). With
--vocab_size above the text's characters (GPT-2's 50257) batches are random ids, as
`gpt bench`'s are.

The modern switches the CPU speedrun uses (experiments/shakespeare_char_speedrun.toml), as
crates/model and crates/training: --rope 1 (rotary embeddings on q and k, pairs (2i, 2i+1),
--rope_theta; no wpe), --norm rmsnorm (nn.RMSNorm, no shift), --qk_norm 1 (RMSNorm over each
head's q and k, before RoPE), --lr_schedule wsd (warmup, the peak, a straight line to min_lr
over the last --warmdown_iters), and --optimizer muon: PyTorch's own torch.optim.Muon
(torch >= 2.9; Keller Jordan's shape rule, decay at the unscaled rate, as burngpt's) for the
blocks' matrices at --muon_lr (--muon_momentum, --muon_ns_steps, --muon_weight_decay), the
schedule scaling it as it scales AdamW's rate, AdamW for the rest. One difference:
torch.optim.Muon runs its Newton-Schulz iteration in bfloat16 (on the CPU too), burngpt in
float32. SwiGLU, grouped-query attention and the logit soft-cap are not here.

--hf_dir DIR --sample_tokens N: no training; times Hugging Face's GPT2LMHeadModel
(`from_pretrained(DIR)`) sampling N tokens after a one-token prompt with
`generate(do_sample=True, use_cache=True)` and with use_cache=False (`pip install
transformers`), and prints `RESULT {json}` with sample_tokens_per_s_cached/_uncached.

Data: the characters of Tiny Shakespeare, 90/10 split, random block_size chunks. The text is
--data, else $BURNGPT_DATA_DIR/tinyshakespeare/input.txt, else ../shared/datasets beside
the checkout, else gpt's download cache (~/.cache/burngpt/tinyshakespeare/input.txt).
--config FILE reads a burngpt preset (experiments/*.toml, Python >= 3.11) for the defaults;
flags given on the command line win.

Output: a log, then one last line `RESULT {json}`; xtask reads `median_ms_per_iter`.
Set-up: `python3 -m pip install torch` (PyPI's default wheel runs on the CPU).
"""
import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

# The flags, with the defaults of burngpt's RunConfig (crates/training/src/config.rs) where
# it has one, else the lecture's gpt.py.
FLAGS = [
    # name, type, default, help
    ("model", str, "gpt", "gpt or bigram"),
    ("vocab_size", int, 0, "0: the text's characters"),
    ("block_size", int, 256, "context length T"),
    ("n_layer", int, 6, "blocks"),
    ("n_head", int, 6, "attention heads"),
    ("n_embd", int, 384, "embedding width C"),
    ("dropout", float, 0.2, "dropout probability"),
    ("bias", int, 1, "1: biases in the projections, lm_head and LayerNorms"),
    ("qkv_bias", int, 0, "1: a bias on the q/k/v projection too"),
    ("tie_weights", int, 0, "1: lm_head shares wte's matrix"),
    ("activation", str, "relu", "relu, relu2, gelu or gelu_tanh"),
    ("layer_norm_eps", float, 1e-5, "LayerNorm epsilon"),
    ("scaled_init", int, 0, "1: residual projections at std 0.02/sqrt(2 n_layer)"),
    ("rope", int, 0, "1: rotary position embeddings on q and k instead of wpe"),
    ("rope_theta", float, 10000.0, "RoPE's base"),
    ("norm", str, "layernorm", "layernorm or rmsnorm"),
    ("qk_norm", int, 0, "1: RMSNorm over each head's queries and keys"),
    ("hf_dir", str, "", "time Hugging Face sampling from this GPT-2 directory instead"),
    ("sample_tokens", int, 0, "tokens to sample with --hf_dir"),
    ("batch_size", int, 64, "sequences per step"),
    ("max_iters", int, 5000, "training steps"),
    ("eval_interval", int, 500, "steps between evaluations (0: none during training)"),
    ("eval_iters", int, 200, "batches per split in an evaluation"),
    ("final_eval", int, 1, "1: evaluate after the last step"),
    ("full_val", int, 0, "1: also the loss over every consecutive window of val"),
    ("learning_rate", float, 3e-4, "(peak) learning rate"),
    ("decay_lr", int, 0, "1: warmup then cosine decay to min_lr"),
    ("lr_schedule", str, "cosine", "cosine, or wsd: the peak, then linear over warmdown_iters"),
    ("warmdown_iters", int, 0, "wsd: the final steps of linear decay to min_lr"),
    ("warmup_iters", int, 0, "linear warmup steps (with decay_lr)"),
    ("lr_decay_iters", int, 0, "cosine length (0: max_iters)"),
    ("min_lr", float, 3e-5, "lr at the end of the cosine"),
    ("beta1", float, 0.9, "AdamW beta1"),
    ("beta2", float, 0.999, "AdamW beta2"),
    ("eps", float, 1e-8, "AdamW epsilon"),
    ("weight_decay", float, 0.01, "AdamW weight decay"),
    ("decay_all", int, 0, "0: decay matrices only (burngpt, nanoGPT); 1: every parameter"),
    ("grad_clip", float, 0.0, "clip the global gradient norm to this (0: off)"),
    ("optimizer", str, "adamw", "adamw, or muon: torch.optim.Muon for the blocks' matrices"),
    ("muon_lr", float, 0.02, "Muon's peak rate"),
    ("muon_momentum", float, 0.95, "Muon's Nesterov momentum"),
    ("muon_ns_steps", int, 5, "Muon's Newton-Schulz steps"),
    ("muon_weight_decay", float, 0.0, "Muon's decoupled weight decay"),
    ("train_frac", float, 0.9, "share of the text used for training"),
    ("seed", int, 1337, "torch.manual_seed"),
    ("sdpa", int, 0, "1: F.scaled_dot_product_attention instead of explicit attention"),
    ("dtype", str, "float32", "float32, or bfloat16: the forward pass under torch.autocast"),
    ("threads", int, 2, "torch.set_num_threads (0: PyTorch's default)"),
    ("log_interval", int, 10, "steps between log lines"),
    ("timing_warmup", int, 5, "first steps left out of the timing statistics"),
    ("sample_chars", int, 0, "characters to sample after training"),
]
ALIASES = {"lr": "learning_rate"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="the training text (default: see above)")
    p.add_argument("--config", default=None, help="a burngpt preset TOML for the defaults")
    for name, kind, default, help_text in FLAGS:
        p.add_argument(f"--{name}", type=kind, default=None, help=f"{help_text} (default {default})")
    for alias, name in ALIASES.items():
        p.add_argument(f"--{alias}", dest=name, type=float, default=None, help=f"= --{name}")
    args = p.parse_args(argv)
    preset = read_preset(args.config) if args.config else {}
    for name, kind, default, _ in FLAGS:
        if getattr(args, name) is None:
            value = preset.get(name, default)
            setattr(args, name, int(value) if kind is int and isinstance(value, bool) else kind(value))
        elif kind is int and isinstance(getattr(args, name), bool):
            setattr(args, name, int(getattr(args, name)))
    if args.activation not in ("relu", "relu2", "gelu", "gelu_tanh"):
        p.error("--activation is relu, relu2, gelu or gelu_tanh")
    for name, allowed in (("norm", ("layernorm", "rmsnorm")), ("lr_schedule", ("cosine", "wsd")),
                          ("optimizer", ("adamw", "muon"))):
        if getattr(args, name) not in allowed:
            p.error(f"--{name} is " + " or ".join(allowed))
    if args.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
        p.error(f"--optimizer muon needs torch.optim.Muon (torch >= 2.9), this is {torch.__version__}")
    if args.rope and (args.n_embd // args.n_head) % 2:
        p.error("--rope needs an even head size")
    if args.model not in ("gpt", "bigram"):
        p.error("--model is gpt or bigram")
    if args.model == "gpt" and args.n_embd % args.n_head:
        p.error("n_embd must be a multiple of n_head")
    return args


def read_preset(path):
    import tomllib  # Python >= 3.11

    with open(path, "rb") as f:
        table = tomllib.load(f)
    flat = {}
    for section in ("model", "train"):
        flat.update(table.get(section, {}))
    known = {name for name, *_ in FLAGS}
    return {k: v for k, v in flat.items() if k in known}


def default_data():
    candidates = []
    if os.environ.get("BURNGPT_DATA_DIR"):
        candidates.append(os.path.join(os.environ["BURNGPT_DATA_DIR"], "tinyshakespeare", "input.txt"))
    candidates.append(os.path.join(HERE, "..", "..", "shared", "datasets", "tinyshakespeare", "input.txt"))
    cache = os.environ.get("BURNGPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "burngpt")
    candidates.append(os.path.join(cache, "tinyshakespeare", "input.txt"))
    for path in candidates:
        if os.path.exists(path):
            return path
    sys.exit("error: no Tiny Shakespeare found (tried " + ", ".join(candidates)
             + "); pass --data PATH, or run `cargo xtask train` once to download it")


# ----------------------------------------------------------------------------- data

class RandomIds:
    """Random token ids of a vocabulary larger than the text's (GPT-2's): what `gpt bench`
    feeds too. Same shapes and cost as real data."""

    def __init__(self, vocab_size):
        self.vocab_size, self.chars = vocab_size, None

    def batch(self, split, batch_size, block_size):
        ids = torch.randint(self.vocab_size, (batch_size, block_size + 1))
        return ids[:, :-1], ids[:, 1:]

    def decode(self, ids):
        return " ".join(map(str, ids))


def hf_sample(a):
    """Hugging Face's GPT-2 sampling speed, with and without its KV cache."""
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(a.hf_dir).eval()
    n = a.sample_tokens or 100
    out = {"hf_dir": a.hf_dir, "sample_tokens": n, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    prompt = torch.tensor([[50256 % model.config.vocab_size]])
    with torch.no_grad():
        for cached in (True, False):
            model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=True,
                           use_cache=cached, pad_token_id=0)  # warm-up
            torch.manual_seed(a.seed)
            t0 = time.perf_counter()
            ids = model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                                 top_k=0, use_cache=cached, pad_token_id=0)
            dt = time.perf_counter() - t0
            key = "cached" if cached else "uncached"
            out[f"sample_tokens_per_s_{key}"] = round((ids.shape[1] - 1) / dt, 2)
            print(f"{key}: {ids.shape[1] - 1} tokens in {dt:.2f} s", flush=True)
    print("RESULT " + json.dumps(out), flush=True)
    return out


class Text:
    """The characters of a text, as token ids, split into train and val."""

    def __init__(self, path, train_frac):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.chars = sorted(set(text))
        index = {c: i for i, c in enumerate(self.chars)}
        ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        n = int(train_frac * len(ids))
        self.train, self.val = ids[:n], ids[n:]

    def batch(self, split, batch_size, block_size):
        ids = self.train if split == "train" else self.val
        starts = torch.randint(len(ids) - block_size, (batch_size,))
        x = torch.stack([ids[s:s + block_size] for s in starts])
        y = torch.stack([ids[s + 1:s + 1 + block_size] for s in starts])
        return x, y

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


# ----------------------------------------------------------------------------- model

def norm_layer(a, width):
    if a.norm == "rmsnorm":
        return nn.RMSNorm(width, eps=a.layer_norm_eps)
    return nn.LayerNorm(width, eps=a.layer_norm_eps, bias=bool(a.bias))


class Rope(nn.Module):
    """Pair i = (2i, 2i+1) of every head turned by position * rope_theta**(-2i/hs), as
    crates/model/src/rope.rs."""

    def __init__(self, a):
        super().__init__()
        hs = a.n_embd // a.n_head
        pairs = torch.arange(hs // 2, dtype=torch.float64)
        angle = torch.arange(a.block_size, dtype=torch.float64)[:, None] * a.rope_theta ** (-2 * pairs / hs)
        self.register_buffer("cos", angle.cos().float(), persistent=False)  # (block_size, hs/2)
        self.register_buffer("sin", angle.sin().float(), persistent=False)

    def forward(self, x):  # (B, nh, T, hs)
        T = x.shape[2]
        a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
        cos, sin = self.cos[:T], self.sin[:T]
        return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.n_head, self.sdpa, self.p = a.n_head, bool(a.sdpa), a.dropout
        self.c_attn = nn.Linear(a.n_embd, 3 * a.n_embd, bias=bool(a.qkv_bias))
        self.c_proj = nn.Linear(a.n_embd, a.n_embd, bias=bool(a.bias))
        self.attn_dropout = nn.Dropout(a.dropout)
        self.resid_dropout = nn.Dropout(a.dropout)
        hs = a.n_embd // a.n_head
        self.q_norm = nn.RMSNorm(hs, eps=a.layer_norm_eps) if a.qk_norm else None
        self.k_norm = nn.RMSNorm(hs, eps=a.layer_norm_eps) if a.qk_norm else None
        self.rope = Rope(a) if a.rope else None
        mask = torch.tril(torch.ones(a.block_size, a.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        # (B, T, 3C) -> three (B, nh, T, hs)
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, hs).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.p if self.training else 0.0)
        else:
            att = (q @ k.transpose(-2, -1)) * hs ** -0.5
            att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
            y = self.attn_dropout(F.softmax(att, dim=-1)) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class Mlp(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.c_fc = nn.Linear(a.n_embd, 4 * a.n_embd, bias=bool(a.bias))
        self.c_proj = nn.Linear(4 * a.n_embd, a.n_embd, bias=bool(a.bias))
        self.dropout = nn.Dropout(a.dropout)
        self.act = {"relu": F.relu, "relu2": lambda x: F.relu(x).square(), "gelu": F.gelu,
                    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}[a.activation]

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.ln_1 = norm_layer(a, a.n_embd)
        self.attn = Attention(a)
        self.ln_2 = norm_layer(a, a.n_embd)
        self.mlp = Mlp(a)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.block_size = a.block_size
        self.wte = nn.Embedding(a.vocab_size, a.n_embd)
        self.wpe = None if a.rope else nn.Embedding(a.block_size, a.n_embd)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.n_layer))
        self.ln_f = norm_layer(a, a.n_embd)
        self.lm_head = nn.Linear(a.n_embd, a.vocab_size, bias=bool(a.bias) and not a.tie_weights)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        if a.scaled_init:
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * a.n_layer))
        if a.tie_weights:
            self.lm_head.weight = self.wte.weight  # nanoGPT's weight tying

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class Bigram(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.block_size = a.block_size
        self.table = nn.Embedding(a.vocab_size, a.vocab_size)

    def forward(self, idx):
        return self.table(idx)


def loss_of(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def autocast(a):
    """PyTorch's mixed precision as its docs recommend: the forward pass (and the loss) under
    autocast, which runs matmuls in bfloat16 (oneDNN's AMX / AVX512-BF16 kernels on the CPU),
    keeps norms, softmax and the loss in float32; the backward pass follows the forward's
    dtypes; the parameters and AdamW stay float32."""
    if a.dtype == "float32":
        return contextlib.nullcontext()
    if a.dtype != "bfloat16":
        sys.exit(f"error: --dtype {a.dtype}: use float32 or bfloat16")
    return torch.autocast("cpu", dtype=torch.bfloat16)


# ----------------------------------------------------------------------------- training

def lr_at(it, a):
    """nanoGPT's get_lr, as crates/training/src/schedule.rs."""
    if not a.decay_lr:
        return a.learning_rate
    if it < a.warmup_iters:
        return a.learning_rate * (it + 1) / (a.warmup_iters + 1)
    decay_iters = a.lr_decay_iters or a.max_iters
    if it > decay_iters:
        return a.min_lr
    if a.lr_schedule == "wsd":
        if it < decay_iters - a.warmdown_iters:
            return a.learning_rate
        left = (decay_iters - it) / max(1, a.warmdown_iters)  # 1 -> 0
        return a.min_lr + left * (a.learning_rate - a.min_lr)
    ratio = (it - a.warmup_iters) / max(1, decay_iters - a.warmup_iters)
    return a.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.learning_rate - a.min_lr)


def optimizer(model, a):
    """AdamW's groups, and with --optimizer muon torch.optim.Muon for the blocks' matrices
    (crates/training/src/muon.rs's `is_hidden`). Returns the optimizers and, for each, the
    factor its rate is to the schedule's."""
    params = list(model.parameters())
    optimizers = []
    if a.optimizer == "muon":
        hidden = [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2]
        ids = {id(p) for p in hidden}
        params = [p for p in params if id(p) not in ids]
        muon = torch.optim.Muon(hidden, lr=a.muon_lr, weight_decay=a.muon_weight_decay,
                                momentum=a.muon_momentum, nesterov=True, ns_steps=a.muon_ns_steps)
        optimizers.append((muon, a.muon_lr / a.learning_rate))
    if a.decay_all:
        groups = [{"params": params, "weight_decay": a.weight_decay}]
    else:
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": a.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=a.learning_rate, betas=(a.beta1, a.beta2), eps=a.eps)
    return optimizers + [(adamw, 1.0)]


@torch.no_grad()
def estimate_loss(model, text, a):
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = [loss_of(model, *text.batch(split, a.batch_size, a.block_size)).item()
                  for _ in range(a.eval_iters)]
        out[split] = sum(losses) / len(losses)
    model.train()
    return out


@torch.no_grad()
def full_split_loss(model, ids, block_size, batch_size):
    """Mean loss over every consecutive block_size window of ids (a partial last one dropped)."""
    model.eval()
    n = (len(ids) - 1) // block_size
    xs = ids[:n * block_size].view(n, block_size)
    ys = ids[1:n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        logits = model(xs[i:i + batch_size])
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), ys[i:i + batch_size].reshape(-1),
                                 reduction="sum").item()
    model.train()
    return total / (n * block_size)


@torch.no_grad()
def sample(model, n, generator):
    model.eval()
    idx = torch.zeros((1, 1), dtype=torch.long)
    for _ in range(n):
        logits = model(idx[:, -model.block_size:])[:, -1, :]
        nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    model.train()
    return idx[0, 1:].tolist()


def peak_rss_mib():
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main(argv=None):
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.hf_dir:
        return hf_sample(a)
    start, cpu_start = time.perf_counter(), time.process_time()
    a.data = a.data or default_data()
    text = Text(a.data, a.train_frac)
    if a.vocab_size > len(text.chars):
        text = RandomIds(a.vocab_size)
    a.vocab_size = a.vocab_size or len(text.chars)
    model = (Gpt if a.model == "gpt" else Bigram)(a)
    opts = optimizer(model, a)
    n_params = sum(p.numel() for p in model.parameters())
    tokens_per_iter = a.batch_size * a.block_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, python {platform.python_version()}")
    print(f"{a.model}: {n_params} parameters, vocab {a.vocab_size}, {tokens_per_iter} tokens per step, "
          f"attention {'sdpa' if a.sdpa else 'explicit'}, {a.dtype}, optimizer {a.optimizer}", flush=True)

    evals, step_ms = [], []
    for it in range(a.max_iters):
        if a.eval_interval and it % a.eval_interval == 0:
            e = estimate_loss(model, text, a)
            evals.append({"iter": it, "train_loss": round(e["train"], 4), "val_loss": round(e["val"], 4)})
            print(f"iter {it}: train loss {e['train']:.4f}, val loss {e['val']:.4f}", flush=True)
        t0 = time.perf_counter()
        lr = lr_at(it, a)
        for opt, factor in opts:
            for group in opt.param_groups:
                group["lr"] = lr * factor
        with autocast(a):
            loss = loss_of(model, *text.batch("train", a.batch_size, a.block_size))
        model.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        for opt, _ in opts:
            opt.step()
        loss = loss.item()  # waits for the step to finish
        step_ms.append((time.perf_counter() - t0) * 1000.0)
        if a.log_interval and (it % a.log_interval == 0 or it == a.max_iters - 1):
            print(f"step {it}: loss {loss:.4f}, {step_ms[-1]:.1f} ms, lr {lr:.2e}", flush=True)

    final = estimate_loss(model, text, a) if a.final_eval else None
    if final:
        print(f"final: train loss {final['train']:.4f}, val loss {final['val']:.4f}", flush=True)
    train_wall = time.perf_counter() - start  # training and its evaluations, not --full_val
    full_val = full_split_loss(model, text.val, a.block_size, max(a.batch_size, 64)) if a.full_val else None
    if a.sample_chars:
        print(text.decode(sample(model, a.sample_chars, torch.Generator().manual_seed(a.seed))))

    timed = step_ms[a.timing_warmup:] or step_ms
    median = statistics.median(timed) if timed else float("nan")
    wall = time.perf_counter() - start
    result = {
        "model": a.model,
        "optimizer": a.optimizer,
        "config": {k: v for k, v in vars(a).items() if k != "config"},
        "params": n_params,
        "vocab_size": a.vocab_size,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "iters": a.max_iters,
        "tokens_per_iter": tokens_per_iter,
        "final_train_loss": round(final["train"], 4) if final else None,
        "final_val_loss": round(final["val"], 4) if final else None,
        "full_val_loss": round(full_val, 4) if full_val is not None else None,
        "evals": evals,
        "timed_iters": len(timed),
        "median_ms_per_iter": round(median, 3),
        "min_ms_per_iter": round(min(timed), 3) if timed else None,
        "mean_ms_per_iter": round(statistics.fmean(timed), 3) if timed else None,
        "tokens_per_s": round(tokens_per_iter / median * 1000.0, 1) if timed else None,
        "wall_s": round(wall, 2),
        "train_wall_s": round(train_wall, 2),
        "cpu_per_wall": round((time.process_time() - cpu_start) / wall, 2) if wall > 0 else None,
        "peak_rss_mib": round(peak_rss_mib(), 1) if peak_rss_mib() is not None else None,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

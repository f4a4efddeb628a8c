"""The tokenizer measurements of RESULTS.md, on the corpora of fetch_corpora.py:

1. Compression: BPEs trained by `gpt tokenizer train` on each corpus's train.txt at each
   --vocab size, and GPT-2's, in bytes per token of its val.txt (and bytes per
   character, what a character-level model gets); the vocabulary each reached (a text
   with fewer distinct pairs than asked stops short) and the CPU seconds each took.
2. Loss per byte: for each --loss corpus and each --models tokenizer, the same model (the
   CPU preset: 4 layers, 4 heads, 128 wide, a context of 64 tokens) trained for the same
   --iters iterations of the same 12 × 64 tokens on all.txt prepared with it, then
   `gpt eval --full` on val.txt's tokens exactly (the prepare's val fraction is chosen so
   that train.txt's tokens are train and val.txt's are val). Its mean loss in nats per
   token, times val.txt's tokens, over val.txt's bytes, is its loss per byte: what a
   character-level, a BPE and GPT-2's model compare on.

    python3 experiments/tokenizer/fetch_corpora.py
    python3 experiments/tokenizer/measure.py --gpt target/debug/gpt [--data data/tokenizer]

Prints the tables (Markdown) as it finishes each, and writes everything to
DATA/results.json.
"""

import argparse
import contextlib
import json
import math
import pathlib
import resource
import shutil
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parent.parent.parent


class Gpt:
    def __init__(self, binary):
        self.binary = binary

    def __call__(self, *args, stdin=None):
        with open(stdin, "rb") if stdin else contextlib.nullcontext(subprocess.DEVNULL) as input:
            done = subprocess.run([self.binary, *map(str, args)], stdin=input,
                                  capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"gpt {' '.join(map(str, args))}:\n{done.stderr.decode()}")
        return done.stdout.decode()

    def tokens(self, tokenizer, path):
        """How many tokens `tokenizer` (a file or gpt2) writes the text at `path` in."""
        return len(self("tokenizer", "encode", tokenizer, stdin=path).split())


def cpu_seconds():
    """User and system seconds of the commands run so far: on a machine shared with other
    jobs, a fairer clock than the wall's."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def char_count(path):
    return len(path.read_text(encoding="utf-8"))


def bpe_file(data, corpus, vocab):
    return data / corpus / f"bpe_{vocab}.json"


def train_tokenizers(gpt, data, corpus, vocabs):
    """Trains one BPE per vocabulary size on the corpus's train.txt; their sizes and
    seconds."""
    trained = {}
    for vocab in vocabs:
        out = bpe_file(data, corpus, vocab)
        start, cpu = time.perf_counter(), cpu_seconds()
        gpt("tokenizer", "train", "--input", data / corpus / "train.txt", "--vocab-size", vocab,
            "--out", out, "--force")
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        info = json.loads(gpt("tokenizer", "info", out, "--json"))
        trained[vocab] = {"vocab_size": info["vocab_size"], "seconds": seconds, "cpu_seconds": cpu}
    return trained


def compression(gpt, data, corpus, vocabs):
    val = data / corpus / "val.txt"
    val_bytes = val.stat().st_size
    row = {"val_bytes": val_bytes, "char": val_bytes / char_count(val),
           "trained": train_tokenizers(gpt, data, corpus, vocabs)}
    for vocab in vocabs:
        row["trained"][vocab]["bytes_per_token"] = val_bytes / gpt.tokens(bpe_file(data, corpus, vocab), val)
    row["gpt2"] = val_bytes / gpt.tokens("gpt2", val)
    return row


def compression_table(rows, vocabs):
    head = ["corpus", "val bytes", "characters"] + [f"BPE {v:,}" for v in vocabs] + ["GPT-2 (50,257)"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for corpus, r in rows.items():
        cells = [corpus, f"{r['val_bytes']:,}", f"{r['char']:.2f}"]
        cells += [f"{r['trained'][v]['bytes_per_token']:.2f}" for v in vocabs]
        cells.append(f"{r['gpt2']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| corpus | " + " | ".join(f"BPE {v:,}: tokens reached, CPU s" for v in vocabs) + " |",
              "|---" + "|---" * len(vocabs) + "|"]
    for corpus, r in rows.items():
        cells = [f"{r['trained'][v]['vocab_size']:,}, {r['trained'][v]['cpu_seconds']:.1f} s" for v in vocabs]
        lines.append(f"| {corpus} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_loss(gpt, data, corpus, name, iters, work):
    """Prepares all.txt with tokenizer `name` (char, gpt2 or bpe_N) so that val is exactly
    val.txt, trains the CPU preset on it for `iters` iterations, and scores val.txt."""
    folder = data / corpus
    spec = {"char": "char", "gpt2": "gpt2"}.get(name) or folder / f"{name}.json"
    if name == "char":
        n_train, n_val = char_count(folder / "train.txt"), char_count(folder / "val.txt")
        n_all = n_train + n_val
    else:
        n_train = gpt.tokens(spec, folder / "train.txt")
        n_val = gpt.tokens(spec, folder / "val.txt") + 1  # <|endoftext|> ends the text
        n_all = n_train + n_val
    prepared, run = work / f"{corpus}_{name}_data", work / f"{corpus}_{name}_run"
    fraction = 1 - (n_train + 0.5) / n_all  # train: the first int((1 - f) n) tokens
    gpt("prepare", "--tokenizer", spec, "--input", folder / "all.txt", "--out", prepared,
        "--val-fraction", repr(fraction), "--force")
    meta = json.loads((prepared / "meta.json").read_text())
    assert (meta["train_tokens"], meta["val_tokens"]) == (n_train, n_val), (meta, n_train, n_val)
    if run.exists():
        shutil.rmtree(run)
    start, cpu = time.perf_counter(), cpu_seconds()
    gpt("train", "--data", prepared, "--out-dir", run, "--sample-tokens", 0,
        "--set", f"max_iters={iters}", "--set", f"lr_decay_iters={iters}",
        "--set", f"eval_interval={iters}", "--set", "eval_iters=10")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    info = json.loads(gpt("info", "--run", run, "--json"))
    scored = json.loads(gpt("eval", "--run", run, "--full", "--json"))
    val_bytes = (folder / "val.txt").stat().st_size
    nats_per_byte = scored["full_val_loss"] * n_val / val_bytes
    return {"vocab_size": meta["vocab_size"], "params": info["params"], "val_tokens": n_val,
            "bytes_per_token": val_bytes / n_val, "loss": scored["full_val_loss"],
            "scored_tokens": scored["full_val_tokens"], "nats_per_byte": nats_per_byte,
            "bits_per_byte": nats_per_byte / math.log(2), "train_seconds": seconds,
            "train_cpu_seconds": cpu,
            "train_bytes_seen": iters * info["tokens_per_iter"] * val_bytes / n_val}


def loss_table(rows):
    head = ["corpus", "tokenizer", "vocabulary", "parameters", "bytes per token",
            "val loss (nats/token)", "nats per byte", "bits per byte", "bytes seen in training",
            "training CPU time (× char's)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---" + "|---:" * (len(head) - 2) + "|"]
    for corpus, models in rows.items():
        base = models.get("char", next(iter(models.values())))["train_cpu_seconds"]
        for name, m in models.items():
            lines.append("| " + " | ".join([
                corpus, name, f"{m['vocab_size']:,}", f"{m['params'] / 1e6:.2f} M",
                f"{m['bytes_per_token']:.2f}", f"{m['loss']:.3f}", f"{m['nats_per_byte']:.3f}",
                f"**{m['bits_per_byte']:.3f}**", f"{m['train_bytes_seen'] / 1e6:.2f} MB",
                f"{m['train_cpu_seconds'] / base:.2f}"]) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpt", default=str(REPO / "target/debug/gpt"))
    p.add_argument("--data", default=str(REPO / "data/tokenizer"))
    p.add_argument("--compression", nargs="*", default=["shakespeare", "docs", "ru", "zh"])
    p.add_argument("--vocab", nargs="*", type=int, default=[4096, 16384, 50257])
    p.add_argument("--loss", nargs="*", default=["shakespeare", "ru"])
    p.add_argument("--models", nargs="*", default=["char", "bpe_4096", "bpe_16384", "gpt2"])
    p.add_argument("--iters", type=int, default=600)
    args = p.parse_args()
    gpt, data = Gpt(args.gpt), pathlib.Path(args.data)
    work = data / "work"
    work.mkdir(parents=True, exist_ok=True)
    results_path = data / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.compression:
        results["compression"] = {c: compression(gpt, data, c, args.vocab) for c in args.compression}
        results_path.write_text(json.dumps(results, indent=1))
        print(compression_table(results["compression"], args.vocab), flush=True)
    for corpus in args.loss:
        for name in args.models:
            if name.startswith("bpe_") and not (data / corpus / f"{name}.json").exists():
                train_tokenizers(gpt, data, corpus, [int(name[4:])])
        results.setdefault("loss", {})[corpus] = {
            name: model_loss(gpt, data, corpus, name, args.iters, work) for name in args.models}
        results_path.write_text(json.dumps(results, indent=1))
    if args.loss:
        print()
        print(loss_table({c: results["loss"][c] for c in args.loss}), flush=True)


if __name__ == "__main__":
    main()

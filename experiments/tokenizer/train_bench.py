"""`gpt tokenizer train` against Hugging Face's Python `tokenizers` trainer: the same
input, the same settings (GPT-4's split pattern, byte-level, vocab N with the 6 specials
last), the same pieces (about 8 KiB, the file streamed on both sides). Runs each --repeat
times, taking turns, and prints the median wall and CPU seconds (gpt's: the whole command;
Python's: the training alone) and the peak RSS of each, and checks both learned the same
vocabulary size.

    python experiments/tokenizer/train_bench.py --gpt target/debug/gpt --input FILE.txt --vocab-size 16384 [--copies 20] [--repeat 3]

(a venv with `pip install tokenizers`, or transformers, which brings it).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SPECIALS = ["<|endoftext|>", "<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>"]


def pieces(text, size=8 << 10):
    """About `size`-byte pieces cut at a space between printable characters, as gpt does."""
    at = 0
    while at < len(text):
        end = text.find(" ", at + size)
        while end != -1 and not (text[end - 1].isprintable() and not text[end - 1].isspace()
                                 and end + 1 < len(text) and not text[end + 1].isspace()):
            end = text.find(" ", end + 1)
        end = len(text) if end == -1 else end
        yield text[at:end]
        at = end


def cpu_seconds(who):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def streamed_pieces(path):
    """The pieces of the file at `path`, read 1 MiB at a time (as gpt streams its inputs),
    each block cut at its last line that starts with a non-space."""
    rest = ""
    with open(path, encoding="utf-8") as f:
        while block := f.read(1 << 20):
            text = rest + block
            cut = len(text) - 1
            while cut > 0 and not (text[cut - 1] == "\n" and not text[cut].isspace()):
                cut -= 1
            cut = cut or len(text)
            yield from pieces(text[:cut])
            rest = text[cut:]
    yield from pieces(rest)


def python_side(path, vocab_size):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT4), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), min_frequency=0,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    start, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    tok.train_from_iterator(streamed_pieces(path), trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    return time.perf_counter() - start, cpu_seconds(resource.RUSAGE_SELF) - cpu, tok.get_vocab_size()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gpt", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--vocab-size", type=int, default=16384)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--side", choices=["both", "python"], default="both")
    p.add_argument("--repeat", type=int, default=3, help="runs of each, taking turns")
    args = p.parse_args()
    if args.side == "python":
        secs, cpu, vocab = python_side(args.input, args.vocab_size)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "vocab_size": vocab,
                          "peak_rss_mib": rss}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "input.txt")
        text = open(args.input, encoding="utf-8").read()
        with open(data, "w", encoding="utf-8") as f:
            for _ in range(args.copies):
                f.write(text)
        del text
        mb = os.path.getsize(data) / 1e6
        out = os.path.join(tmp, "tok.json")
        gpt_runs, py_runs, gpt_rss = [], [], None
        for _ in range(args.repeat):
            start, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
            subprocess.run([args.gpt, "tokenizer", "train", "--input", data, "--vocab-size",
                            str(args.vocab_size), "--out", out, "--force"], check=True,
                           capture_output=True)
            gpt_runs.append((time.perf_counter() - start, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu))
            # The children's peak so far: gpt's alone, before any Python side has run.
            gpt_rss = gpt_rss or resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            py_runs.append(json.loads(subprocess.run(
                [sys.executable, __file__, "--gpt", args.gpt, "--input", data, "--vocab-size",
                 str(args.vocab_size), "--side", "python"],
                check=True, capture_output=True, text=True).stdout))
        info = json.loads(subprocess.run([args.gpt, "tokenizer", "info", out, "--json"],
                                         check=True, capture_output=True, text=True).stdout)
        median = lambda xs: sorted(xs)[len(xs) // 2]
        print(json.dumps({
            "input_mb": round(mb, 1), "runs": args.repeat,
            "gpt_seconds": round(median([r[0] for r in gpt_runs]), 2),
            "gpt_cpu_seconds": round(median([r[1] for r in gpt_runs]), 2),
            "gpt_peak_rss_mib": round(gpt_rss),
            "python_seconds": round(median([r["seconds"] for r in py_runs]), 2),
            "python_cpu_seconds": round(median([r["cpu_seconds"] for r in py_runs]), 2),
            "python_peak_rss_mib": round(max(r["peak_rss_mib"] for r in py_runs)),
            "vocab_sizes": [info["vocab_size"], py_runs[0]["vocab_size"]],
        }))


if __name__ == "__main__":
    main()

"""`gpt prepare` against Python's tiktoken on the same >= 1 GB input (RESULTS.md).

Generates a JSON-lines corpus of at least --size-gb GB from Tiny Shakespeare (documents
of ~40 paragraphs, repeated), then, one after the other in this run:

  1. `gpt prepare --tokenizer gpt2` on it (Rust: tiktoken-rs's r50k ranks, all cores);
  2. Python's tiktoken as nanoGPT's prepare.py uses it: `encode_ordinary_batch` with all
     cores over batches of documents, `<|endoftext|>` after each, written as uint16.

Each runs as a child process; wall time and peak RSS (ru_maxrss) are its own. Offline,
tiktoken cannot download its ranks, so its encoding is built from the r50k ranks file
that ships in tiktoken-rs's crate source with `load_tiktoken_bpe` and GPT-2's split
pattern; before timing, both must give the same ids for all of Tiny Shakespeare.

Usage (a Python with tiktoken):
  /root/.cache/burngpt/venv/bin/python experiments/corpus/prepare_bench.py \
      --gpt target/release/gpt --shakespeare $BURNGPT_DATA_DIR/tinyshakespeare/input.txt
"""

import argparse, glob, json, os, pathlib, subprocess, sys, time

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def gpt2_encoding():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = sorted(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/tiktoken-rs-0.12*/assets/r50k_base.tiktoken")))
    if not ranks:
        sys.exit("no tiktoken-rs 0.12 crate source under ~/.cargo/registry: build gpt first")
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(ranks[-1]),
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


def tiktoken_child(corpus, out):
    """The Python side, run as its own process: prints tokens and seconds as JSON."""
    from array import array

    enc = gpt2_encoding()
    threads = os.cpu_count()
    start = time.perf_counter()
    tokens = 0
    with open(corpus) as f, open(out, "wb") as o:
        batch = []
        def flush():
            nonlocal tokens
            for ids in enc.encode_ordinary_batch(batch, num_threads=threads):
                ids.append(enc.eot_token)
                array("H", ids).tofile(o)
                tokens += len(ids)
            batch.clear()
        for line in f:
            batch.append(json.loads(line)["text"])
            if len(batch) == 1024:
                flush()
        flush()
    print(json.dumps({"tokens": tokens, "seconds": time.perf_counter() - start}))


def timed(cmd):
    """Runs cmd; returns (stdout, wall seconds, peak RSS in MB of that child alone)."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.exit(f"{cmd[0]} failed with {child.returncode}")
        out.seek(0)
        return out.read(), wall, usage.ru_maxrss / 1024


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return tiktoken_child(sys.argv[2], sys.argv[3])
    p = argparse.ArgumentParser()
    p.add_argument("--gpt", required=True)
    p.add_argument("--shakespeare", required=True)
    p.add_argument("--work", default="/tmp/burngpt-prepare-bench")
    p.add_argument("--size-gb", type=float, default=1.0)
    a = p.parse_args()
    work = pathlib.Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    text = pathlib.Path(a.shakespeare).read_text()

    # Same ids: all of Tiny Shakespeare, whole, against gpt prepare's train.bin + val.bin.
    from array import array
    enc = gpt2_encoding()
    ids = enc.encode_ordinary(text) + [enc.eot_token]
    subprocess.run([a.gpt, "prepare", "--tokenizer", "gpt2", "--input", a.shakespeare,
                    "--out", str(work / "shakespeare"), "--val-fraction", "0.1", "--force"],
                   check=True, capture_output=True)
    ours = array("H")
    for n in ("train.bin", "val.bin"):
        ours.frombytes((work / "shakespeare" / n).read_bytes())
    assert ours.tolist() == ids, "gpt prepare and tiktoken disagree on Tiny Shakespeare"
    print(f"same ids: Tiny Shakespeare, {len(ids)} tokens (with the final <|endoftext|>)")

    corpus = work / "corpus.jsonl"
    target = int(a.size_gb * (1 << 30))
    if not corpus.exists() or corpus.stat().st_size < target:
        paragraphs = text.split("\n\n")
        docs = ["\n\n".join(paragraphs[i:i + 40]) for i in range(0, len(paragraphs), 40)]
        lines = "".join(json.dumps({"text": d}) + "\n" for d in docs)
        with open(corpus, "w") as f:
            for _ in range(target // len(lines.encode()) + 1):
                f.write(lines)
    size = corpus.stat().st_size
    print(f"input: {corpus}, {size / 1e6:.0f} MB, {os.cpu_count()} cores")

    out, wall, rss = timed([a.gpt, "prepare", "--tokenizer", "gpt2", "--input", str(corpus),
                                 "--out", str(work / "prepared"), "--force"])
    meta = json.loads((work / "prepared" / "meta.json").read_text())
    rust_tokens = meta["train_tokens"] + meta["val_tokens"]
    print(f"gpt prepare: {wall:.1f} s, {size / 1e6 / wall:.1f} MB/s, "
          f"{rust_tokens / 1e6 / wall:.2f} M tokens/s, peak RSS {rss:.0f} MB, {rust_tokens} tokens")

    out, wall2, rss2 = timed([sys.executable, __file__, "--child", str(corpus),
                                   str(work / "tiktoken.bin")])
    py = json.loads(out)
    print(f"tiktoken:    {wall2:.1f} s, {size / 1e6 / wall2:.1f} MB/s, "
          f"{py['tokens'] / 1e6 / wall2:.2f} M tokens/s, peak RSS {rss2:.0f} MB, {py['tokens']} tokens")
    assert py["tokens"] == rust_tokens, "token counts differ"
    print(f"same token count; gpt prepare is {wall2 / wall:.2f}x as fast")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ChatterBot's corpus as a conversations file for `gpt train --config experiments/chat.toml`.

    python3 experiments/chat/chatterbot.py [--lang english] [--out data/chatterbot.jsonl]

Finetuning a chat model wants real conversations, written by people, that anyone can get
the same way: PyPI's `chatterbot-corpus` 1.3.3 holds short ones in 28 languages (2,025 in
English), as YAML files in a wheel. The wheel is fetched once with pip into
$XDG_CACHE_HOME/burngpt/chatterbot-corpus (else ~/.cache/burngpt/…, or
$BURNGPT_CACHE/chatterbot-corpus where the Rust side's cache is moved), checked against its
sha256 and read without unpacking. Its conversations are never committed: the output goes
under data/, which .gitignore keeps out of git.

Each corpus conversation is a list of lines, speakers alternating. It becomes one JSON
line: {"messages": [{"role": "user", "content": …}, {"role": "assistant", …}, …],
"category": …} (the file's first category; readers ignore the extra field). Lines are
stripped; an empty one ends the conversation, an unanswered last user line is dropped, and
a conversation left without a reply is skipped (so are the corpus's few entries that are
one string, not a list). Nothing is de-duplicated.

PyYAML parses the files; where it does not import, its wheel is fetched the same way and
imported from the zip (its pure-Python part). The only network access is pip's, to PyPI.
Any failure is one `error:` line and exit code 1, with nothing written.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
SHA256 = "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"
PYYAML = "6.0.3"
DATA = "chatterbot_corpus/data/"


def fail(message):
    sys.exit(f"error: {message}")


def cache_dir():
    base = os.environ.get("BURNGPT_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        base = os.path.join(xdg, "burngpt")
    return Path(base) / "chatterbot-corpus"


def pip_download(requirement, cache):
    """Downloads `requirement`'s wheel (only) into `cache`, quietly."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", requirement, "--no-deps",
         "--only-binary", ":all:", "-d", str(cache), "--quiet"],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        said = (done.stderr + done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        fail(f"pip download {requirement} failed: {said[-1]}")


def corpus_wheel(cache):
    path = cache / WHEEL
    if not path.exists():
        pip_download("chatterbot-corpus==1.3.3", cache)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        path.unlink()
        fail(f"{path} has sha256 {digest}, not {SHA256}: deleted it")
    return path


def yaml_loader(cache):
    """PyYAML's parser, keeping every scalar as the string it is written as."""
    try:
        import yaml
    except ImportError:
        pattern = f"pyyaml-{PYYAML}-*.whl"
        if not list(cache.glob(pattern)):
            pip_download(f"pyyaml=={PYYAML}", cache)
        wheel = min(cache.glob(pattern), default=None)
        if wheel is None:
            fail(f"pip saved no {pattern} in {cache}")
        sys.path.insert(0, str(wheel))
        try:
            import yaml  # its C extension cannot load from a zip; the Python parser can
        except ImportError as e:
            fail(f"cannot import PyYAML from {wheel}: {e}")
    return lambda text: yaml.load(text, Loader=yaml.BaseLoader)


def messages(lines):
    """A corpus conversation as user/assistant messages (see the module doc)."""
    out = []
    for i, line in enumerate(lines if isinstance(lines, list) else []):
        text = str(line).strip()
        if not text:
            break
        out.append({"role": "assistant" if i % 2 else "user", "content": text})
    return out[: len(out) // 2 * 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", action="append",
                        help="a language of the corpus, or all (repeatable; default english)")
    parser.add_argument("--out", default="data/chatterbot.jsonl")
    args = parser.parse_args()
    try:
        cache = cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        wheel = zipfile.ZipFile(corpus_wheel(cache))
        load = yaml_loader(cache)
        files = sorted(n for n in wheel.namelist() if n.startswith(DATA) and n.endswith(".yml"))
        known = sorted({n[len(DATA):].split("/")[0] for n in files})
        langs = list(dict.fromkeys(args.lang or ["english"]))
        if "all" in langs:
            langs = known
        if unknown := [lang for lang in langs if lang not in known]:
            fail(f"unknown language {', '.join(unknown)}; the corpus has {', '.join(known)}")

        lines, summary = [], []
        for lang in langs:
            convs = msgs = chars = skipped = 0
            for name in (n for n in files if n.startswith(f"{DATA}{lang}/")):
                doc = load(wheel.read(name).decode("utf-8"))
                category = str((doc.get("categories") or [Path(name).stem])[0])
                for conversation in doc.get("conversations") or []:
                    chat = messages(conversation)
                    if not chat:
                        skipped += 1
                        continue
                    lines.append(json.dumps({"messages": chat, "category": category},
                                            ensure_ascii=False) + "\n")
                    convs, msgs = convs + 1, msgs + len(chat)
                    chars += sum(len(m["content"]) for m in chat)
            summary.append(f"{lang} {convs} conversations, {msgs} messages, {chars} characters"
                           + (f" ({skipped} skipped)" if skipped else ""))

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(lines)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        fail(e)
    print(f"chatterbot-corpus: {'; '.join(summary)}; wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

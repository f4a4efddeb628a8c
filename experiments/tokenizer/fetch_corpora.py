"""Fetches the corpora of the tokenizer measurements (experiments/tokenizer/measure.py) and
cuts each into the text a tokenizer or a model learns from and the text it is measured on:

    shakespeare  Tiny Shakespeare (English; BURNGPT_DATA_DIR's or the cache's copy), cut
                 where the lecture cuts it: the first int(0.9 * n) bytes, then the rest
    docs         Exercise 3's English documentation corpus (experiments/corpus/
                 fetch_debian_docs.sh, its pinned package versions): its first 90 % of
                 documents (already shuffled with a fixed seed), then the rest
    ru           Russian: the manual pages of Debian 12's `manpages-ru` 4.18.1-1 (groff
                 markup stripped), in path order
    zh           Chinese: the manual pages of Debian 12's `manpages-zh` 1.6.4.0-1 (zh_CN,
                 simplified), the same way

A man-page corpus is cut at the first line start past 90 % of its bytes. Each corpus is a
folder of `all.txt` (the whole text), `train.txt` and `val.txt`, with all = train + val
byte for byte, and its sha256 is checked against the one this script was written with
(the packages are fetched by version, with `apt-get download`, and unpacked with
`dpkg-deb -x`: nothing is installed). Never committed: data/ is git-ignored.

    python3 experiments/tokenizer/fetch_corpora.py [--out data/tokenizer]
"""

import argparse
import gzip
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
MAN_PAGES = {
    "ru": ("manpages-ru=4.18.1-1", "usr/share/man/ru"),
    "zh": ("manpages-zh=1.6.4.0-1", "usr/share/man/zh_CN"),
}
# sha256 of each corpus's all.txt, as this script first wrote them.
SHA256 = {
    "shakespeare": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "docs": "e2f44f34b487e36fdf0fa4e6efcb244e9b1ae44d5a2001ece2ab82b669347dd7",
    "ru": "ea116589a018c35d6b66f2788bcaf935e81f2af12a0ec34ca6780568caab74d3",
    "zh": "ad8aeb24ef01658968a7790395d31c3b30a081dadfcf0c8a9051caa718be89f6",
}

# groff's named characters that man pages use, as text.
NAMED = {"em": "—", "en": "–", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘",
         "cq": "’", "bu": "•", "co": "©", "rg": "®", "tm": "™", "hy": "-", "mi": "-",
         "pl": "+", "mu": "×", "di": "÷", "<=": "≤", ">=": "≥", "!=": "≠", "->": "→",
         "<-": "←", "de": "°", "Fo": "«", "Fc": "»", "ga": "`", "ha": "^", "ti": "~",
         "rs": "\\", "sl": "/", "ba": "|", "lB": "[", "rB": "]", "lC": "{", "rC": "}"}
ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)"          # font changes
    r"|s[-+]?(?:\d|\(\d\d|\[[^\]]*\])"      # size changes
    r"|\*(?:\[[^\]]*\]|\(..|.)"             # strings
    r"|\((..)|\[([^\]]*)\]"                 # named characters
    r"|([-e &,/|^~%c0dut]))"                # one-character escapes
)
ONE = {"-": "-", "e": "\\", " ": " ", "~": " ", "0": " "}
# Requests whose arguments are text: headings and the font macros.
TEXT_MACROS = {"SH", "SS", "B", "I", "SM", "SB", "IP", "TQ"}
ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}


def unescape(line):
    def sub(m):
        name = m.group(1) or m.group(2)
        if name is not None:
            return NAMED.get(name, "")
        return ONE.get(m.group(3) or "", "")
    return ESCAPE.sub(sub, line)


def macro_args(rest):
    """A request's arguments, quoted ones whole."""
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|\S+', rest)]


def man_text(source):
    """The text of a man page's groff source: comments and layout requests dropped,
    headings and font macros kept as their words, escapes as the characters they mean."""
    out = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", '.\\"', "\\\"")) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name in TEXT_MACROS:
                words = macro_args(rest)
                if name == "IP":
                    words = words[:1]
                line = " ".join(words)
            elif name in ALTERNATING:
                line = "".join(macro_args(rest))
            else:
                continue  # .TH, .PP, .TP, .RS, .br, .nf, .if, .de …
            if not line:
                continue
        out.append(unescape(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def man_pages(package, folder, work):
    """Every man page of `package` (fetched by version) under `folder`, in path order,
    as text; pages that only point to another (`.so`) left out."""
    subprocess.run(["apt-get", "download", package], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = next(pathlib.Path(work).glob(package.split("=")[0] + "_*.deb"))
    root = pathlib.Path(work) / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    pages = []
    for path in sorted((root / folder).glob("man*/*")):
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        source = raw.decode("utf-8")
        if source.lstrip().startswith(".so "):
            continue
        text = man_text(source)
        if len(text) > 200:
            pages.append(text)
    return "\n\n".join(pages) + "\n"


def line_cut(text, share=0.9):
    """The first line start at or after `share` of the text's bytes whose line begins
    with a non-space (where every split pattern starts a new piece too)."""
    data = text.encode("utf-8")
    at = int(share * len(data))
    while not (data[at - 1:at] == b"\n" and not data[at:at + 1].isspace()):
        at += 1
    return len(data[:at].decode("utf-8"))


def write(out, name, train, val):
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    whole = train + val
    for file, text in (("all.txt", whole), ("train.txt", train), ("val.txt", val)):
        (folder / file).write_text(text, encoding="utf-8")
    sha = hashlib.sha256(whole.encode("utf-8")).hexdigest()
    pinned = SHA256[name]
    status = "ok" if sha == pinned else f"NOT the pinned {pinned}" if pinned else "not pinned"
    print(f"{name}: {len(whole.encode()):,} bytes ({len(train.encode()):,} train, "
          f"{len(val.encode()):,} val), sha256 {sha} ({status})")
    return sha == pinned or pinned is None


def shakespeare():
    base = pathlib.Path(os.environ.get("BURNGPT_DATA_DIR", pathlib.Path.home() / ".cache/burngpt"))
    text = (base / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    n = int(0.9 * len(text))  # the lecture's cut (ASCII: bytes are characters)
    return text[:n], text[n:]


def docs(out, work):
    jsonl = out / "debian_docs/docs.jsonl"
    if not jsonl.exists():
        subprocess.run([str(REPO / "experiments/corpus/fetch_debian_docs.sh"), str(jsonl.parent)],
                       check=True)
    documents = [json.loads(line)["text"] for line in jsonl.open(encoding="utf-8")]
    n = int(0.9 * len(documents))
    join = lambda ds: "".join(d + "\n\n" for d in ds)
    return join(documents[:n]), join(documents[n:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "data/tokenizer"))
    p.add_argument("--only", nargs="*", choices=list(SHA256), default=list(SHA256))
    args = p.parse_args()
    out = pathlib.Path(args.out)
    good = True
    with tempfile.TemporaryDirectory() as work:
        for name in args.only:
            if name == "shakespeare":
                train, val = shakespeare()
            elif name == "docs":
                train, val = docs(out, work)
            else:
                text = man_pages(*MAN_PAGES[name], tempfile.mkdtemp(dir=work))
                cut = line_cut(text)
                train, val = text[:cut], text[cut:]
            good &= write(out, name, train, val)
    if not good:
        sys.exit("a corpus differs from the one the measurements were made on (see above)")


if __name__ == "__main__":
    main()

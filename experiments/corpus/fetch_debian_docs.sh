#!/usr/bin/env bash
# Fetches the pretraining corpus of experiments/pretrain_docs.toml: English technical prose
# from five Debian documentation packages (downloaded with `apt-get download`, unpacked
# with `dpkg-deb -x`, nothing installed), as one JSON-lines file with a document per line.
#
#   linux-doc-6.12      the Linux kernel's documentation, reStructuredText (_sources/),
#                       translations/ left out
#   python3.11-doc      the Python 3.11 documentation, reStructuredText (_sources/)
#   perl-doc            Perl's manual pages, POD
#   git-doc             Git's manual pages and guides, AsciiDoc (.txt)
#   postgresql-doc-15   the PostgreSQL 15 manual, HTML (tags stripped)
#
# About 55 MB of text in about 7,000 documents, shuffled with a fixed seed so that
# gpt prepare's document split draws val from every package. The packages are fetched
# at the versions RESULTS.md's Exercise 3 was measured on.
#
# Usage: experiments/corpus/fetch_debian_docs.sh [OUT_DIR]   (default data/debian_docs;
# data/ is git-ignored). Needs apt-get (Debian 12 package lists: run apt-get update once).
set -euo pipefail
out=${1:-data/debian_docs}
packages=(linux-doc-6.12=6.12.117-1~deb12u1 python3.11-doc=3.11.2-6+deb12u9
    perl-doc=5.36.0-7+deb12u4 git-doc=1:2.39.5-0+deb12u3 postgresql-doc-15=15.20-0+deb12u1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
(cd "$work" && apt-get download "${packages[@]}" >/dev/null)
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done
python3 - "$work/root" "$out/docs.jsonl" <<'PY'
import html.parser, json, pathlib, random, re, sys

root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

class Text(html.parser.HTMLParser):
    """The text of an HTML page, without scripts, styles and navigation."""
    skip = {"script", "style", "head", "nav"}
    def __init__(self):
        super().__init__()
        self.parts, self.depth = [], 0
    def handle_starttag(self, tag, attrs):
        if tag in self.skip:
            self.depth += 1
        elif tag in {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "pre", "dt", "dd"}:
            self.parts.append("\n")
    def handle_endtag(self, tag):
        if tag in self.skip:
            self.depth = max(0, self.depth - 1)
    def handle_data(self, data):
        if not self.depth:
            self.parts.append(data)

def html_text(path):
    parser = Text()
    parser.feed(path.read_text(errors="replace"))
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()

docs = []
def add(paths, read):
    for p in sorted(paths):
        text = read(p).strip()
        if len(text) > 200:
            docs.append(text)

share = root / "usr/share/doc"
add([p for p in share.glob("linux-doc-6.12/html/_sources/**/*.txt") if "translations" not in p.parts],
    lambda p: p.read_text(errors="replace"))
add(share.glob("python3.11/html/_sources/**/*.txt"), lambda p: p.read_text(errors="replace"))
add((root / "usr/share/perl").glob("**/pod/*.pod"), lambda p: p.read_text(errors="replace"))
add(share.glob("git-doc/*.txt"), lambda p: p.read_text(errors="replace"))
add(share.glob("postgresql-doc-15/html/*.html"), html_text)
random.Random(1337).shuffle(docs)
with out.open("w") as f:
    for text in docs:
        f.write(json.dumps({"text": text}) + "\n")
print(f"{out}: {len(docs)} documents, {out.stat().st_size / 1e6:.1f} MB")
PY

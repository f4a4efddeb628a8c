"""Writes what transformers encodes crates/data/tests/fixtures/bpe/held_out.txt to with
the tokenizer.json beside it (`gpt tokenizer train --input tinyshakespeare --vocab-size 512`),
as ids.json: the data crate's test checks that burngpt's encoding gives the same ids.

    python experiments/tokenizer/fixture.py      (a venv with `pip install transformers`)
"""

import json
import pathlib

from transformers import PreTrainedTokenizerFast

here = pathlib.Path(__file__).resolve().parent.parent.parent / "crates/data/tests/fixtures/bpe"
# split_special_tokens: a special's text in a document is text, as `gpt` encodes it.
tok = PreTrainedTokenizerFast(tokenizer_file=str(here / "tokenizer.json"), split_special_tokens=True)
text = (here / "held_out.txt").read_text(encoding="utf-8")
ids = tok.encode(text, add_special_tokens=False)
assert tok.decode(ids, clean_up_tokenization_spaces=False) == text
(here / "ids.json").write_text(json.dumps({"ids": ids}) + "\n")
print(f"{len(ids)} ids for {len(text.encode())} bytes")

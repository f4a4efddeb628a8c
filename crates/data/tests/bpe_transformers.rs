//! A trained tokenizer.json encodes as transformers encodes it: the fixture's ids were
//! written by `transformers.PreTrainedTokenizerFast` (experiments/tokenizer/fixture.py)
//! from the same file, on a text it was not trained on (several scripts, an emoji,
//! specials written as text, runs of spaces and a tab).

use data::bpe::BpeTokenizer;
use std::path::Path;

#[test]
fn transformers_gives_the_same_ids() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bpe");
    let bpe = BpeTokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(dir.join("held_out.txt")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json")).unwrap()).unwrap();
    let expected: Vec<u32> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let ids = bpe.encode(&text).unwrap();
    assert_eq!(ids, expected);
    let bytes: Vec<u8> = ids
        .iter()
        .flat_map(|&id| bpe.token_bytes(id).unwrap())
        .collect();
    assert_eq!(bytes, text.as_bytes());
}

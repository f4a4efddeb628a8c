//! `gpt prepare` end to end: a directory written, prepared again, refused, read back.

use super::write::prepare_with;
use super::*;
use crate::source::tests::shakespeare;
use crate::{CharTokenizer, GPT2_EOT, TextTokenizer, TokenStore, Tokenizer};
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burngpt-prepared-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn opts(kind: PrepareTokenizer, inputs: Vec<PathBuf>, out: PathBuf, f: f64) -> PrepareOptions {
    PrepareOptions {
        tokenizer: kind,
        inputs,
        out,
        val_fraction: f,
        force: false,
    }
}

fn all_ids(store: &TokenStore) -> (Vec<u32>, Vec<u32>) {
    let get = |s| {
        let t = store.split(s);
        t.range(0, t.len())
    };
    (get(crate::Split::Train), get(crate::Split::Val))
}

/// Encoding the pieces separately gives the ids of encoding the whole text.
#[test]
fn pieces_encode_like_the_whole_text() {
    let text = shakespeare();
    let dir = temp_dir("pieces");
    let input = dir.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let out = dir.join("out");
    // Small pieces: hundreds of cuts.
    let meta = match prepare_with(
        &opts(PrepareTokenizer::Gpt2, vec![input], out.clone(), 0.1),
        &Silent,
        3000,
    )
    .unwrap()
    {
        Outcome::Prepared(m) => m,
        Outcome::Unchanged(_) => panic!("a new directory is prepared"),
    };
    let mut whole = TextTokenizer::gpt2().encode(&text).unwrap();
    whole.push(GPT2_EOT);
    let (_, store) = open(&out).unwrap();
    let (train, val) = all_ids(&store);
    assert_eq!([train, val].concat(), whole);
    assert_eq!(meta.train_tokens + meta.val_tokens, whole.len() as u64);
    assert_eq!(meta.dtype, Dtype::U16);
    assert_eq!(meta.split.rule, SplitRule::Tail);
    assert_eq!(meta.documents, 1);
}

/// The character path gives the in-memory store's vocabulary and 90/10 split.
#[test]
fn char_tail_split_matches_the_lecture() {
    let text = shakespeare();
    let dir = temp_dir("char");
    let input = dir.join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let out = dir.join("out");
    prepare_with(
        &opts(
            PrepareTokenizer::Char,
            vec![input.clone()],
            out.clone(),
            0.1,
        ),
        &Silent,
        5000,
    )
    .unwrap();
    let (meta, store) = open(&out).unwrap();
    let tok = CharTokenizer::from_text(&text);
    assert_eq!(meta.tokenizer, TextTokenizer::char(tok.clone()));
    let memory = TokenStore::new(&tok.encode(&text).unwrap(), tok.vocab_size());
    let (train, val) = all_ids(&store);
    let (mtrain, mval) = all_ids(&memory);
    assert_eq!(train, mtrain);
    assert_eq!(val, mval);
    assert_eq!(meta.inputs[0].sha256.len(), 64);
    assert_eq!(meta.inputs[0].bytes, text.len() as u64);
    // Again: nothing to do. Another fraction: refused without --force.
    let again = prepare(
        &opts(
            PrepareTokenizer::Char,
            vec![input.clone()],
            out.clone(),
            0.1,
        ),
        &Silent,
    );
    assert!(matches!(again, Ok(Outcome::Unchanged(_))));
    let other = opts(
        PrepareTokenizer::Char,
        vec![input.clone()],
        out.clone(),
        0.2,
    );
    let msg = prepare(&other, &Silent).unwrap_err().to_string();
    assert!(
        msg.contains("--force") && msg.contains("--val-fraction 0.1"),
        "{msg}"
    );
    let forced = PrepareOptions {
        force: true,
        ..other
    };
    assert!(matches!(
        prepare(&forced, &Silent),
        Ok(Outcome::Prepared(_))
    ));
}

#[test]
fn jsonl_documents_are_split_by_document_with_separators() {
    let dir = temp_dir("jsonl");
    let docs: Vec<String> = (0..400)
        .map(|i| format!("Document number {i} says hello."))
        .collect();
    let jsonl: String = docs
        .iter()
        .map(|d| format!("{}\n", serde_json::json!({ "text": d, "id": 7 })))
        .collect();
    std::fs::create_dir_all(dir.join("corpus/sub")).unwrap();
    std::fs::write(dir.join("corpus/a.jsonl"), &jsonl).unwrap();
    std::fs::write(dir.join("corpus/sub/b.txt"), "A plain text document.").unwrap();
    std::fs::write(dir.join("corpus/ignored.md"), "not read").unwrap();
    let out = dir.join("out");
    prepare(
        &opts(
            PrepareTokenizer::Gpt2,
            vec![dir.join("corpus")],
            out.clone(),
            0.1,
        ),
        &Silent,
    )
    .unwrap();
    let (meta, store) = open(&out).unwrap();
    assert_eq!(meta.documents, 401);
    assert_eq!(meta.inputs.len(), 2);
    assert_eq!(meta.split.rule, SplitRule::Documents);
    let (train, val) = all_ids(&store);
    let eots = |ids: &[u32]| ids.iter().filter(|&&i| i == GPT2_EOT).count();
    assert_eq!(eots(&train) + eots(&val), 401);
    // About a tenth of the documents went to val, each whole.
    assert!((20..70).contains(&eots(&val)), "{}", eots(&val));
    let text = TextTokenizer::gpt2().decode(&val).unwrap();
    for doc in text.split("<|endoftext|>").filter(|d| !d.is_empty()) {
        assert!(docs.iter().any(|d| d == doc), "{doc:?}");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = temp_dir("bad");
    let out = dir.join("out");
    let jsonl = dir.join("x.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n").unwrap();
    let msg = prepare(
        &opts(PrepareTokenizer::Gpt2, vec![jsonl], out.clone(), 0.5),
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("line 2") && msg.contains("\"text\""), "{msg}");
    assert!(!out.join(META).exists());
    assert!(!out.join("train.bin.partial").exists());
    let csv = dir.join("x.csv");
    std::fs::write(&csv, "a,b").unwrap();
    let msg = prepare(
        &opts(PrepareTokenizer::Gpt2, vec![csv], out.clone(), 0.5),
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains(".txt or .jsonl"), "{msg}");
    let bin = dir.join("y.txt");
    std::fs::write(&bin, [b'o', b'k', 0xff]).unwrap();
    let msg = prepare(
        &opts(PrepareTokenizer::Char, vec![bin], out.clone(), 0.5),
        &Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("not UTF-8") && msg.contains("offset 2"),
        "{msg}"
    );
    let msg = open(&out).unwrap_err().to_string();
    assert!(msg.contains("no meta.json"), "{msg}");
}

#[test]
fn damaged_directories_are_refused() {
    let dir = temp_dir("damaged");
    let input = dir.join("t.txt");
    std::fs::write(&input, "hello there, general kenobi. ".repeat(50)).unwrap();
    let out = dir.join("out");
    prepare(
        &opts(PrepareTokenizer::Char, vec![input], out.clone(), 0.1),
        &Silent,
    )
    .unwrap();
    assert!(open(&out).is_ok());
    // A killed run: token files but no meta.json.
    let meta = std::fs::read(out.join(META)).unwrap();
    std::fs::remove_file(out.join(META)).unwrap();
    let msg = open(&out).unwrap_err().to_string();
    assert!(msg.contains("unfinished"), "{msg}");
    std::fs::write(out.join(META), &meta).unwrap();
    // A truncated token file.
    let train = std::fs::read(out.join(TRAIN_BIN)).unwrap();
    std::fs::write(out.join(TRAIN_BIN), &train[..train.len() - 2]).unwrap();
    let msg = open(&out).unwrap_err().to_string();
    assert!(msg.contains("--force"), "{msg}");
    // An id outside the vocabulary.
    let mut bad_ids = train.clone();
    bad_ids[0] = 0xff;
    bad_ids[1] = 0xff;
    std::fs::write(out.join(TRAIN_BIN), &bad_ids).unwrap();
    let msg = open(&out).unwrap_err().to_string();
    assert!(msg.contains("65535") && msg.contains("outside"), "{msg}");
}

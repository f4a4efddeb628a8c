//! `gpt export`: a trained run as a Hugging Face GPT-2 directory, which
//! `transformers.GPT2LMHeadModel.from_pretrained(DIR)` loads.
//!
//! Writes `config.json` and `model.safetensors` (see `model::hf`), and for a run on
//! GPT-2's BPE the tokenizer files `transformers` reads (`vocab.json`, `merges.txt`,
//! `tokenizer_config.json`, `special_tokens_map.json`), made from the same r50k ranks the
//! run tokenized with; for a run on a BPE that `gpt tokenizer train` wrote, that file as
//! `tokenizer.json` and its `tokenizer_config.json`. A character-level run exports its
//! weights with its own `vocab_size`; its characters are in the run's `tokenizer.json`.

use crate::backend::{self, Inner};
use crate::prompt::RunArg;
use anyhow::{Context, Result, bail};
use data::bpe::BpeTokenizer;
use data::{BaseTokenizer, GPT2_EOT, Special, TextTokenizer};
use model::Model;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// The directory to write: missing, empty, or an earlier export (its config.json,
    /// model.safetensors and tokenizer files are replaced); any other folder is refused.
    #[arg(long)]
    out: PathBuf,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    let run = args.run.open()?;
    let config = run.config()?;
    model::hf::exportable(&config.model)
        .with_context(|| format!("exporting {}", run.path().display()))?;
    if args.out.join("run.json").exists() || args.out == run.path() {
        bail!(
            "--out {} is a run directory: export into a directory of its own",
            args.out.display()
        );
    }
    EXPORT.check(&args.out).map_err(anyhow::Error::msg)?;
    let device = backend::device(device)?;
    let model = crate::sample::load_weights::<Inner>(&run, &args.weights, &device)?;
    let Model::Gpt(gpt) = model else {
        bail!("model = \"bigram\" cannot be written as GPT-2")
    };
    let tokenizer = run.tokenizer()?;
    let gpt2 = *tokenizer.base() == BaseTokenizer::Gpt2;
    // A chat model's text begins at <|bos|> and a reply ends at <|assistant_end|>, where
    // `generate` should stop.
    let chat = |s| tokenizer.special_id(s);
    let ids = match (
        chat(Special::Bos),
        chat(Special::AssistantEnd),
        tokenizer.base(),
    ) {
        (Some(bos), Some(eos), _) => serde_json::json!({"bos_token_id": bos, "eos_token_id": eos}),
        (_, _, BaseTokenizer::Gpt2) => {
            serde_json::json!({"bos_token_id": GPT2_EOT, "eos_token_id": GPT2_EOT})
        }
        (_, _, BaseTokenizer::Bpe(bpe)) => {
            serde_json::json!({"bos_token_id": bpe.end_of_text(), "eos_token_id": bpe.end_of_text()})
        }
        // No end-of-text token in a character vocabulary.
        (_, _, BaseTokenizer::Char(_)) => {
            serde_json::json!({"bos_token_id": null, "eos_token_id": null})
        }
    };
    let mut files = model::hf::gpt2_files(&gpt, &config.model, ids)?.to_vec();
    if gpt2 {
        files.extend(gpt2_tokenizer_files(&tokenizer, config.model.block_size)?);
    }
    if let BaseTokenizer::Bpe(bpe) = tokenizer.base() {
        files.extend(bpe_tokenizer_files(
            bpe,
            tokenizer.is_chat(),
            config.model.block_size,
        ));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, bytes) in files {
        let path = args.out.join(name);
        data::files::write_atomically(&path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote {} (config.json, model.safetensors{}) from {}",
        args.out.display(),
        match tokenizer.base() {
            BaseTokenizer::Gpt2 => ", vocab.json, merges.txt, tokenizer_config.json",
            BaseTokenizer::Bpe(_) => ", tokenizer.json, tokenizer_config.json",
            BaseTokenizer::Char(_) => "; character vocabulary: see the run's tokenizer.json",
        },
        run.path().display()
    );
    Ok(())
}

/// The files `gpt export` writes: a folder holding only these is an earlier export.
const EXPORT: data::files::Folder = data::files::Folder {
    holds: "GPT-2 export",
    marks: &[],
    writes: |name| {
        [
            model::hf::CONFIG_FILE,
            model::hf::WEIGHTS_FILE,
            "vocab.json",
            "merges.txt",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ]
        .contains(&name)
    },
    hint: "export into an empty or new directory",
};

/// A trained BPE's files for `transformers`: its own `tokenizer.json`, as trained, and a
/// `tokenizer_config.json` that names the fast tokenizer class and the ends of a text.
/// A base model's text ends at `<|endoftext|>`, and a special's text in a prompt stays
/// plain text, as `gpt` encodes it (`split_special_tokens`). A chat model's begins at
/// `<|bos|>` and a reply ends at `<|assistant_end|>`, with the chat template for
/// `apply_chat_template`, whose specials must then be read as tokens (as in every chat
/// model's files), so `split_special_tokens` stays off.
fn bpe_tokenizer_files(
    bpe: &BpeTokenizer,
    chat: bool,
    block_size: usize,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": false,
    });
    let map = config.as_object_mut().expect("an object");
    if chat {
        map.insert("bos_token".into(), Special::Bos.text().into());
        map.insert("eos_token".into(), Special::AssistantEnd.text().into());
        map.insert("chat_template".into(), CHAT_TEMPLATE.into());
    } else {
        map.insert("bos_token".into(), data::bpe::END_OF_TEXT.into());
        map.insert("eos_token".into(), data::bpe::END_OF_TEXT.into());
        map.insert("split_special_tokens".into(), true.into());
    }
    vec![
        ("tokenizer.json", bpe.json().as_bytes().to_vec()),
        (
            "tokenizer_config.json",
            serde_json::to_vec_pretty(&config).expect("JSON values serialize"),
        ),
    ]
}

/// The files `transformers`' GPT-2 tokenizers read, by name, derived from the r50k ranks:
/// each token's id is its rank, and each merge is the pair BPE joins to make that token
/// (found by running BPE on the token's bytes with the lower ranks only). A chat run's
/// tokenizer also gets its chat tokens (as added special tokens) and the chat template
/// (as a Jinja `chat_template`, for `apply_chat_template`).
pub fn gpt2_tokenizer_files(
    tokenizer: &TextTokenizer,
    block_size: usize,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let bpe = data::tokenizer::gpt2_bpe();
    let eot = data::tokenizer::GPT2_EOT;
    let tokens: Vec<Vec<u8>> = (0..eot)
        .map(|id| {
            bpe.decode_bytes(&[id])
                .expect("every id below 50256 is a token")
        })
        .collect();
    let rank: HashMap<&[u8], u32> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.as_slice(), id as u32))
        .collect();
    let table = data::bpe::bytes_to_unicode();
    let show = |bytes: &[u8]| -> String { bytes.iter().map(|&b| table[b as usize]).collect() };
    let mut merges = String::from("#version: 0.2\n");
    for (id, token) in tokens.iter().enumerate().filter(|(_, t)| t.len() > 1) {
        let mut parts: Vec<&[u8]> = (0..token.len()).map(|i| &token[i..i + 1]).collect();
        loop {
            let best = (0..parts.len() - 1)
                .filter_map(|i| {
                    let joined = &token[offset(&parts, i)..offset(&parts, i + 2)];
                    rank.get(joined)
                        .filter(|&&r| (r as usize) < id)
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let (start, end) = (offset(&parts, i), offset(&parts, i + 2));
            parts.splice(i..i + 2, [&token[start..end]]);
        }
        if parts.len() != 2 {
            bail!("token {id} is not one merge of lower-ranked tokens");
        }
        merges.push_str(&format!("{} {}\n", show(parts[0]), show(parts[1])));
    }
    let mut vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (show(t), id.into()))
        .collect();
    vocab.insert("<|endoftext|>".into(), eot.into());
    let mut files = vec![
        ("vocab.json", serde_json::to_string(&vocab)?.into_bytes()),
        ("merges.txt", merges.into_bytes()),
    ];
    let special = if tokenizer.is_chat() {
        serde_json::json!({
            "bos_token": Special::Bos.text(),
            "eos_token": Special::AssistantEnd.text(),
            "unk_token": "<|endoftext|>",
        })
    } else {
        serde_json::json!({
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
        })
    };
    let mut config = special.clone();
    let map = config.as_object_mut().expect("an object");
    map.insert("model_max_length".into(), block_size.into());
    map.insert("add_prefix_space".into(), false.into());
    map.insert("tokenizer_class".into(), "GPT2Tokenizer".into());
    if tokenizer.is_chat() {
        let added: serde_json::Map<String, serde_json::Value> = Special::ALL
            .iter()
            .map(|&s| {
                let id = tokenizer.special_id(s).expect("a chat tokenizer");
                let token = serde_json::json!({
                    "content": s.text(), "special": true, "normalized": false,
                    "lstrip": false, "rstrip": false, "single_word": false,
                });
                (id.to_string(), token)
            })
            .collect();
        map.insert("added_tokens_decoder".into(), added.into());
        map.insert("chat_template".into(), CHAT_TEMPLATE.into());
    }
    files.push((
        "tokenizer_config.json",
        serde_json::to_string_pretty(&config)?.into_bytes(),
    ));
    files.push((
        "special_tokens_map.json",
        serde_json::to_string_pretty(&special)?.into_bytes(),
    ));
    Ok(files)
}

/// `data::conversation::render` in Jinja: the same tokens for the same messages, with
/// `add_generation_prompt` for the open reply that render adds after a user message.
const CHAT_TEMPLATE: &str = "{{ '<|bos|>' }}{% set ns = namespace(system='') %}\
{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}\
{% elif m['role'] == 'user' %}{{ '<|user_start|>' + ns.system + m['content'] + '<|user_end|>' }}\
{% set ns.system = '' %}{% else %}{{ '<|assistant_start|>' + m['content'] + '<|assistant_end|>' }}\
{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant_start|>' }}{% endif %}";

/// Where part `i` of `parts` (consecutive slices of one token) starts in the token.
fn offset(parts: &[&[u8]], i: usize) -> usize {
    parts[..i].iter().map(|p| p.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The derived files hold GPT-2's 50,257 tokens and 50,000 merges, in the published
    /// order (its first merges are "Ġ t", "Ġ a", "h e"; "Ġ" is the space byte).
    #[test]
    fn gpt2_tokenizer_files_have_gpt2s_vocabulary_and_merges() {
        let files: HashMap<&str, Vec<u8>> = gpt2_tokenizer_files(&TextTokenizer::gpt2(), 1024)
            .unwrap()
            .into_iter()
            .collect();
        let merges = String::from_utf8(files["merges.txt"].clone()).unwrap();
        let lines: Vec<&str> = merges.lines().collect();
        assert_eq!(lines.len(), 1 + 50_000);
        assert_eq!(&lines[..4], ["#version: 0.2", "Ġ t", "Ġ a", "h e"]);
        let vocab: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&files["vocab.json"]).unwrap();
        assert_eq!(vocab.len(), 50_257);
        assert_eq!(vocab["Ġthe"], 262);
        assert_eq!(vocab["<|endoftext|>"], 50256);
        assert_eq!(vocab["!"], 0);
    }
}

//! `gpt tokenizer`: train a byte-level BPE on your own corpus (`data::bpe`), and inspect
//! any tokenizer a run can have: ids, pieces, vocabulary, merges and specials.

use anyhow::{Context, Result, bail};
use data::bpe::{BpeTokenizer, SplitPattern};
use data::prepared::input_text;
use data::{BaseTokenizer, Special, TextTokenizer, Tokenizer};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train a byte-level BPE on .txt / .jsonl files or directories (what `gpt prepare`
    /// reads) and write it as a Hugging Face tokenizer.json.
    Train(TrainArgs),
    /// Print the ids of a text (standard input, or --text).
    Encode(EncodeArgs),
    /// Print the text of ids (standard input, or --ids): numbers, or `{"ids": [...]}`.
    Decode(DecodeArgs),
    /// Vocabulary size, merges, specials.
    Info(InfoArgs),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// `.txt` files (one document each), `.jsonl` files (a `text` field per line),
    /// directories of them, or a named dataset (`tinyshakespeare`).
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Tokens in all: 256 bytes, the merges, `<|endoftext|>` and the 5 chat tokens.
    #[arg(long)]
    vocab_size: usize,
    /// The tokenizer.json to write.
    #[arg(long)]
    out: PathBuf,
    /// How text is cut into pieces that merges never cross: GPT-4's pattern (nanochat's)
    /// or GPT-2's.
    #[arg(long, default_value = "gpt4")]
    split: SplitPattern,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
}

/// Which tokenizer: a tokenizer.json `gpt tokenizer train` wrote, `gpt2`, or `char:RUN`
/// (a run directory's character vocabulary).
#[derive(clap::Args)]
pub struct Which {
    file: String,
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    which: Which,
    /// The text (default: standard input, read to its end).
    #[arg(long)]
    text: Option<String>,
    /// Print `{"ids": [...], "pieces": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    which: Which,
    /// The ids, separated by spaces or commas, or as JSON (default: standard input).
    #[arg(long)]
    ids: Option<String>,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    which: Which,
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(args) => train(args),
        Command::Encode(args) => {
            let tokenizer = args.which.open()?;
            let text = match args.text {
                Some(text) => text,
                None => read_stdin()?,
            };
            let ids = tokenizer.encode(&text)?;
            if args.json {
                let pieces = ids
                    .iter()
                    .map(
                        |&id| Ok(String::from_utf8_lossy(&tokenizer.token_bytes(id)?).into_owned()),
                    )
                    .collect::<Result<Vec<_>>>()?;
                println!("{}", serde_json::json!({"ids": ids, "pieces": pieces}));
            } else {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                println!("{}", ids.join(" "));
            }
            Ok(())
        }
        Command::Decode(args) => {
            let tokenizer = args.which.open()?;
            let input = match args.ids {
                Some(ids) => ids,
                None => read_stdin()?,
            };
            let ids = parse_ids(&input)?;
            print!("{}", tokenizer.decode(&ids)?);
            Ok(())
        }
        Command::Info(args) => info(&args.which.open()?, args.json),
    }
}

impl Which {
    fn open(&self) -> Result<TextTokenizer> {
        if self.file == "gpt2" {
            return Ok(TextTokenizer::gpt2());
        }
        if let Some(run) = self.file.strip_prefix("char:") {
            let run = training::RunDir::open(Path::new(run))?;
            let tokenizer = run.tokenizer()?;
            if !matches!(tokenizer.base(), BaseTokenizer::Char(_)) {
                bail!(
                    "{} has {}, not a character vocabulary: inspect it as `run:{}`",
                    run.path().display(),
                    tokenizer.describe(),
                    run.path().display()
                );
            }
            return Ok(tokenizer);
        }
        if let Some(run) = self.file.strip_prefix("run:") {
            return Ok(training::RunDir::open(Path::new(run))?.tokenizer()?);
        }
        Ok(TextTokenizer::bpe(BpeTokenizer::load(Path::new(&self.file))?).with_chat())
    }
}

fn train(args: TrainArgs) -> Result<()> {
    if args.out.exists() && !args.force {
        bail!(
            "{} exists: add --force to replace it, or choose another --out",
            args.out.display()
        );
    }
    if args.out.is_dir() {
        bail!(
            "{} is a directory: --out names the file to write",
            args.out.display()
        );
    }
    let started = Instant::now();
    let (text, read) = input_text(&args.input)?;
    let progress = std::io::stderr().is_terminal();
    let trained = BpeTokenizer::train(text, args.vocab_size, args.split, progress);
    let bytes = read.bytes;
    read.result()?;
    let bpe = trained?;
    data::files::write_atomically(&args.out, bpe.json().as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "trained {}: {} tokens ({} merges, {} specials) on {:.1} MB in {:.1} s",
        args.out.display(),
        bpe.vocab_size(),
        bpe.merges(),
        bpe.vocab_size() - bpe.merges() - 256,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn info(tokenizer: &TextTokenizer, json: bool) -> Result<()> {
    let specials: Vec<(String, u32)> = match tokenizer.base() {
        BaseTokenizer::Bpe(bpe) => vec![(data::bpe::END_OF_TEXT.to_string(), bpe.end_of_text())],
        BaseTokenizer::Gpt2 => vec![(data::bpe::END_OF_TEXT.to_string(), data::GPT2_EOT)],
        BaseTokenizer::Char(_) => Vec::new(),
    }
    .into_iter()
    .chain(
        Special::ALL
            .iter()
            .filter_map(|&s| Some((s.text().to_string(), tokenizer.special_id(s)?))),
    )
    .collect();
    let (merges, sha256) = match tokenizer.base() {
        BaseTokenizer::Bpe(bpe) => (Some(bpe.merges()), Some(bpe.sha256())),
        BaseTokenizer::Gpt2 => (Some(50_000), None),
        BaseTokenizer::Char(_) => (None, None),
    };
    if json {
        let specials: serde_json::Map<String, serde_json::Value> = specials
            .iter()
            .map(|(s, id)| (s.clone(), (*id).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "kind": tokenizer.kind().name(),
                "vocab_size": tokenizer.vocab_size(),
                "merges": merges,
                "specials": specials,
                "sha256": sha256,
            })
        );
        return Ok(());
    }
    println!("kind: {}", tokenizer.kind().name());
    println!("vocab_size: {}", tokenizer.vocab_size());
    if let Some(merges) = merges {
        println!("merges: {merges}");
    }
    for (text, id) in &specials {
        println!("special: {id} {text}");
    }
    if let Some(sha256) = sha256 {
        println!("sha256: {sha256}");
    }
    Ok(())
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading standard input (UTF-8 text)")?;
    Ok(text)
}

/// Ids written as numbers separated by spaces or commas, a JSON list, or `{"ids": [...]}`.
fn parse_ids(input: &str) -> Result<Vec<u32>> {
    let trimmed = input.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).context("the ids are not valid JSON")?;
        let list = value.get("ids").unwrap_or(&value);
        return serde_json::from_value(list.clone())
            .context("expected a list of token ids (numbers ≥ 0), or {\"ids\": [...]}");
    }
    trimmed
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("{s:?} is not a token id (a number ≥ 0)"))
        })
        .collect()
}

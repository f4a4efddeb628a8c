//! `cargo xtask readme`: runs every shell command of the documentation as a newcomer would
//! type it, shrunk so that each finishes in seconds. `cargo xtask ci` runs it after every
//! other check but the data-parallel (MPI) tests.
//!
//! **Which pages, in which order.** README.md first, then each `docs/*.md` page in the
//! order README first links it (`](docs/NAME.md…)`), which is the order README's
//! Documentation list gives them: a reader goes through them in that order, and so do
//! the commands, so a page may read the runs README and the pages before it made. Every
//! `docs/*.md` page must be linked from README, and every page README links must exist:
//! either mistake fails the step before anything runs (an unlinked page's commands would
//! never run, and a reader would never find it).
//!
//! **What is extracted.** Every line of the pages' ```` ```sh ```` blocks (also `bash`,
//! `shell`), with `\` continuations joined and `#` comments dropped, split into words
//! as a POSIX shell would (quotes, backslash escapes, leading `NAME=value` assignments).
//! A command using other shell syntax (pipes, `;`, `&&`, redirections, `$` expansion) is
//! listed as skipped, as is any command that is neither `cargo …`, a `gpt` binary nor a
//! script of `experiments/` (`python3 experiments/….py …`).
//! Commands a checkout cannot run (they need the Hugging Face hub, Open MPI, a corpus
//! fetched with apt) belong in ```` ```text ```` blocks, which are not run. Every page's
//! commands are written to run from the checkout's root.
//!
//! **Where it runs.** In a scratch directory, `$CARGO_TARGET_DIR/readme/` (emptied first,
//! kept afterwards for inspection), holding a symlink to every top-level entry of the
//! repository (`Cargo.toml`, `crates/`, `docs/`, `experiments/`, `datasets/`, …) except
//! `runs/`, `target/`, `data/` and `hf/`, and a real, empty `runs/`. The commands' relative paths
//! (`--config experiments/…`, `--run runs/…`) so resolve as in a checkout, while the runs
//! they make land in the scratch `runs/`: a user's real `runs/` is never read or written.
//! Directories the commands create (`data/`, `hf/`) are real ones in the scratch directory,
//! even when the checkout has its own.
//!
//! **How each command runs.** In page order and, within a page, top to bottom, so later
//! commands find the runs earlier ones made:
//! - `cargo xtask X …` runs this very xtask binary with the same arguments, in the scratch
//!   directory: it builds (`cargo build -p cli`, the dev profile) and runs `gpt`.
//! - `cargo run -p cli -- …` runs as written, through cargo (`--manifest-path` pointing at
//!   the checkout, so the build is the checkout's), and must compile nothing: after
//!   README's first command, `cargo xtask train`, every unit is built, and a `Compiling`
//!   line in its output fails the command. A newcomer's second command would otherwise
//!   wait for a second build of burn.
//! - `./target/debug/gpt …` runs a copy of the dev flex binary, taken at the start so that
//!   later builds of other backends cannot swap it.
//! - `python3 experiments/….py …` runs as written (the `python3` on `PATH`, the checkout's
//!   script): only the interpreter `python3`, only scripts under `experiments/`; other
//!   Python commands are skipped.
//! - `cargo build …` lines are skipped (the test built the binary); `cargo xtask ci` and
//!   `cargo xtask readme` are skipped (they would recurse), and so are `cargo test`,
//!   `clippy` and `fmt` (`ci` runs them). README's set-up command `cargo xtask train` does
//!   run, shrunk like every training command: a newcomer runs it first, and the commands
//!   after it must work on top of the run it leaves.
//! - Shrinking: `gpt train` gets `--set max_iters=20 --set eval_interval=10 --set
//!   eval_iters=2` and, unless the command sets them itself, `batch_size=4`, `n_layer=1`,
//!   `n_head=2`, `n_embd=16` (`block_size` is never changed: the arithmetic tasks fix it);
//!   `train --resume` gets only `max_iters` = the run's iteration + 10; `gpt bench` gets
//!   `--steps 2 --warmup 0 --sample-tokens 8` (replacing the command's own values) and the
//!   same model shape. Other commands run exactly as written.
//! - A command that reads a run (`--run DIR`, or `train --resume --out-dir DIR`) that no
//!   earlier command (on its page or an earlier one) made gets a tiny `gpt train --out-dir
//!   DIR` first (with `experiments/<DIR's name>.toml` when there is one), and a line saying
//!   so. A page's training command must therefore come before the commands that read its
//!   run: a later `gpt train` into a directory made this way is refused, as for a user.
//! - `gpt plot` and `gpt attention` need a font: without one (and not required, see
//!   `system.rs`) they are skipped.
//!
//! **GPU backends.** Commands for `--backend cuda|wgpu` (or `--features cuda|wgpu`) are not
//! trained on a GPU. Their `gpt` arguments run, shrunk, on the flex binary (so the
//! arguments and config are checked end to end; training runs go to a scratch `gpu-proxy/`
//! directory, not the run the command would name). Then, with the GPU checks on, the wgpu
//! command runs as written with Vulkan pointed at no driver (`VK_ICD_FILENAMES=/nonexistent`)
//! and must fail with exactly one `error:` line naming `wgpu` and no panic: `ci` has just
//! built that same dev wgpu binary, so this costs nothing. cuda's runtime path is not run:
//! `ci` only `cargo check`s cuda, and building the binary would cost a cold cuda build;
//! its error path is the same code as wgpu's (`crates/cli/src/backend.rs`).
//!
//! A failing command fails the step, after all commands ran; each failure is printed with
//! its page and line (`docs/gpu.md line 9`), what actually ran, and the tail of its stderr.

use crate::{GPT_COMMANDS, build_gpt, parse_info, root, split_forwarded, system, target_dir};
use anyhow::{Context, Result, bail};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single shrunk command may take.
const TIMEOUT: Duration = Duration::from_secs(600);

/// `--set` overrides every fresh training run gets.
const FORCED: &[&str] = &["max_iters=20", "eval_interval=10", "eval_iters=2"];

pub fn run(gpu_checks: bool, require: bool) -> Result<()> {
    let commands = all_commands(&root())?;
    let font = system::font(require)?;
    let scratch = Scratch::new(gpu_checks)?;
    let mut report = Report::default();
    for command in &commands {
        scratch.run(command, font, &mut report)?;
    }
    report.finish(&scratch.dir)
}

const README: &str = "README.md";
/// Where the topic pages are; README links each of them.
const DOCS: &str = "docs";

/// The commands of every page under `root`, in the order they run (see the module doc).
fn all_commands(root: &Path) -> Result<Vec<PageCommand>> {
    let readme = read_page(root, README)?;
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(root.join(DOCS)).context("listing docs/")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            on_disk.push(format!("{DOCS}/{name}"));
        }
    }
    let mut commands = extract(README, &readme);
    if commands.is_empty() {
        bail!("README.md has no ```sh commands: the extractor or the README changed");
    }
    for page in page_order(&readme, &on_disk)? {
        commands.extend(extract(&page, &read_page(root, &page)?));
    }
    Ok(commands)
}

fn read_page(root: &Path, page: &str) -> Result<String> {
    std::fs::read_to_string(root.join(page)).with_context(|| format!("reading {page}"))
}

/// The `docs/*.md` pages in the order README first links them. Fails, naming the page,
/// when README links a page that is not in `on_disk` or a page in `on_disk` is not linked.
fn page_order(readme: &str, on_disk: &[String]) -> Result<Vec<String>> {
    let mut linked: Vec<String> = Vec::new();
    for (at, _) in readme.match_indices(&format!("]({DOCS}/")) {
        let target = &readme[at + 2..];
        let end = target.find(['#', ')', ' ']).unwrap_or(target.len());
        let page = &target[..end];
        // Only pages directly under docs/: pictures and deeper folders are not pages.
        if page.ends_with(".md")
            && !page[DOCS.len() + 1..].contains('/')
            && !linked.iter().any(|p| p == page)
        {
            linked.push(page.to_string());
        }
    }
    if let Some(missing) = linked.iter().find(|p| !on_disk.contains(p)) {
        bail!("README.md links {missing}, which does not exist");
    }
    let mut unlinked: Vec<&String> = on_disk.iter().filter(|p| !linked.contains(p)).collect();
    if !unlinked.is_empty() {
        unlinked.sort();
        bail!(
            "README.md does not link {}: every docs page must be reachable from README \
             (its place among README's links is the order its commands run in)",
            unlinked
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(linked)
}

/// One command of a page: the page (`README.md`, `docs/…`), its first line's number and
/// its text, continuations joined.
#[derive(Debug, Clone, PartialEq)]
pub struct PageCommand {
    pub page: String,
    pub line: usize,
    pub text: String,
}

impl PageCommand {
    /// Where the command is written, as every message names it: `docs/gpu.md line 9`.
    fn place(&self) -> String {
        format!("{} line {}", self.page, self.line)
    }
}

/// The commands of `text`'s shell code blocks; `page` names it in each command.
pub fn extract(page: &str, text: &str) -> Vec<PageCommand> {
    #[derive(PartialEq)]
    enum In {
        Text,
        Shell,
        OtherBlock,
    }
    let mut state = In::Text;
    let mut out = Vec::new();
    let mut pending: Option<PageCommand> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(fence) = line.trim().strip_prefix("```") {
            state = match state {
                In::Text if matches!(fence.trim(), "sh" | "bash" | "shell") => In::Shell,
                In::Text => In::OtherBlock,
                In::Shell | In::OtherBlock => In::Text,
            };
            out.extend(pending.take());
            continue;
        }
        if state != In::Shell {
            continue;
        }
        let (body, continues) = match line.trim_end().strip_suffix('\\') {
            Some(body) if !comment_started(body) => (body, true),
            _ => (line, false),
        };
        let command = pending.get_or_insert_with(|| PageCommand {
            page: page.to_string(),
            line: i + 1,
            text: String::new(),
        });
        if !command.text.is_empty() {
            command.text.push(' ');
        }
        command.text.push_str(body.trim());
        if !continues {
            let done = pending.take().expect("just inserted");
            if !strip_comment(&done.text).trim().is_empty() {
                out.push(done);
            }
        }
    }
    out.extend(pending);
    out
}

/// Whether an unquoted `#` starting a word occurs in `s` (the rest is a comment).
fn comment_started(s: &str) -> bool {
    strip_comment(s).len() != s.len()
}

/// `s` up to its comment, if any.
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut prev_space = true;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && !single {
            escaped = true;
        } else if c == '\'' && !double {
            single = !single;
        } else if c == '"' && !single {
            double = !double;
        } else if c == '#' && !single && !double && prev_space {
            return &s[..i];
        }
        prev_space = c.is_whitespace();
    }
    s
}

/// Splits a command into words as `sh` would; `Err` names shell syntax this runner does
/// not emulate.
pub fn split_words(command: &str) -> Result<Vec<String>, String> {
    let command = strip_comment(command);
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("an unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("an unterminated \" quote".into()),
                        },
                        Some(c @ ('$' | '`')) => return Err(format!("`{c}` expansion")),
                        Some(c) => w.push(c),
                        None => return Err("an unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' | '$' => {
                return Err(format!("the shell operator `{c}`"));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// How a page's command is run here.
#[derive(Debug, PartialEq)]
enum Plan {
    /// Not run, and why.
    Skip(String),
    /// `cargo xtask ARGS`: run as written through this xtask binary.
    Xtask(Vec<String>),
    /// `cargo run CARGO -- GPT` on the default backend: run through cargo, as written,
    /// which must find everything built.
    CargoRun {
        cargo: Vec<String>,
        gpt: Vec<String>,
    },
    /// The `gpt` binary with these arguments.
    Gpt(Vec<String>),
    /// `python3 experiments/….py ARGS`: these words, run as written.
    Script(Vec<String>),
}

/// A page's command, understood.
#[derive(Debug)]
struct Parsed {
    /// Leading `NAME=value` words.
    env: Vec<(String, String)>,
    plan: Plan,
    /// The backend it is for: flex, ndarray, wgpu or cuda.
    backend: String,
    /// The `gpt` arguments it amounts to (subcommand first), without xtask's own flags.
    gpt: Vec<String>,
}

fn parse(words: Vec<String>) -> Result<Parsed> {
    let mut words = words.into_iter().peekable();
    let mut env = Vec::new();
    while let Some((k, v)) = words.peek().and_then(|w| w.split_once('=')) {
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        env.push((k.to_string(), v.to_string()));
        words.next();
    }
    let words: Vec<String> = words.collect();
    let skip = |why: &str| Parsed {
        env: env.clone(),
        plan: Plan::Skip(why.to_string()),
        backend: "flex".into(),
        gpt: Vec::new(),
    };
    let Some(program) = words.first() else {
        return Ok(skip("only variable assignments"));
    };
    if program == "gpt" || program.ends_with("/gpt") {
        return Ok(Parsed {
            env,
            plan: Plan::Gpt(words[1..].to_vec()),
            backend: "flex".into(),
            gpt: words[1..].to_vec(),
        });
    }
    if program == "python3" {
        let script = words.get(1).map(Path::new);
        let ours = script.is_some_and(|s| {
            s.starts_with("experiments")
                && s.extension().is_some_and(|e| e == "py")
                && s.components().all(|c| matches!(c, Component::Normal(_)))
        });
        if !ours {
            return Ok(skip("not a script of experiments/"));
        }
        return Ok(Parsed {
            env,
            plan: Plan::Script(words),
            backend: "flex".into(),
            gpt: Vec::new(),
        });
    }
    if program != "cargo" {
        return Ok(skip("not a cargo, gpt or python3 experiments/ command"));
    }
    let sub_at = words[1..]
        .iter()
        .position(|w| !w.starts_with('-') && !w.starts_with('+'))
        .map(|i| i + 1);
    let Some(sub_at) = sub_at else {
        return Ok(skip("cargo without a subcommand"));
    };
    let rest = &words[sub_at + 1..];
    match words[sub_at].as_str() {
        "xtask" => {
            let Some(command) = rest.first() else {
                return Ok(skip("`cargo xtask` alone prints its usage"));
            };
            match command.as_str() {
                "ci" | "readme" => return Ok(skip("it would run this test again")),
                c if GPT_COMMANDS.contains(&c) => {}
                _ => return Ok(skip("not an xtask command that runs gpt")),
            }
            let (own, forwarded) = split_forwarded(&rest[1..]);
            let (backend, mut args) = crate::take_backend(own)?;
            if command == "bench" {
                let (python, rest) = crate::take_value(&args, "--compare-torch")?;
                if python.is_some() {
                    return Ok(skip("the PyTorch comparison needs PyTorch"));
                }
                let (_, rest) = crate::take_value(&rest, "--rounds")?;
                let (_, rest) = crate::take_value(&rest, "--torch-sdpa")?;
                args = rest;
            }
            args.extend_from_slice(forwarded);
            let mut gpt = vec![command.clone()];
            gpt.extend(args);
            Ok(Parsed {
                env,
                plan: Plan::Xtask(rest.to_vec()),
                backend,
                gpt,
            })
        }
        "run" => {
            let (cargo_args, gpt) = split_forwarded(rest);
            let package = crate::take_value(cargo_args, "-p")?.0.or(crate::take_value(
                cargo_args,
                "--package",
            )?
            .0);
            let bin = crate::take_value(cargo_args, "--bin")?.0;
            if package.as_deref() != Some("cli") && bin.as_deref() != Some("gpt") {
                return Ok(skip("`cargo run` of something else than gpt"));
            }
            let features = crate::take_value(cargo_args, "--features")?
                .0
                .or(crate::take_value(cargo_args, "-F")?.0)
                .unwrap_or_default();
            let backend = ["cuda", "wgpu", "ndarray"]
                .into_iter()
                .find(|b| features.split([',', ' ']).any(|f| f == *b))
                .unwrap_or("flex");
            let plan = if backend == "flex" && features.is_empty() {
                Plan::CargoRun {
                    cargo: cargo_args.to_vec(),
                    gpt: gpt.to_vec(),
                }
            } else {
                Plan::Gpt(gpt.to_vec())
            };
            Ok(Parsed {
                env,
                plan,
                backend: backend.into(),
                gpt: gpt.to_vec(),
            })
        }
        "build" | "check" => Ok(skip("a build step: the test builds the dev binary itself")),
        "test" | "clippy" | "fmt" => Ok(skip("ci runs it")),
        _ => Ok(skip("not a cargo command that runs gpt")),
    }
}

/// The value of `--flag V` or `--flag=V` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut it = args.iter();
    let mut found = None;
    while let Some(a) = it.next() {
        if a == flag {
            found = it.next().map(String::as_str);
        } else if let Some(v) = a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
            found = Some(v);
        }
    }
    found
}

/// Sets `--flag value` in `args`, replacing the flag's value where it is given already
/// (clap refuses a single-valued flag given twice).
fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    let mut i = 0;
    let mut replaced = false;
    while i < args.len() {
        if args[i] == flag && i + 1 < args.len() {
            args[i + 1] = value.to_string();
            replaced = true;
            i += 2;
        } else if args[i].starts_with(&format!("{flag}=")) {
            args[i] = format!("{flag}={value}");
            replaced = true;
            i += 1;
        } else {
            i += 1;
        }
    }
    if !replaced {
        args.extend([flag.to_string(), value.to_string()]);
    }
}

/// Whether `args` sets config key `key` with `--set` (`key=…` or `section.key=…`).
fn sets_key(args: &[String], key: &str) -> bool {
    let mut it = args.iter();
    let mut values: Vec<&str> = Vec::new();
    while let Some(a) = it.next() {
        if a == "--set" {
            values.extend(it.next().map(String::as_str));
        } else if let Some(v) = a.strip_prefix("--set=") {
            values.push(v);
        }
    }
    values
        .iter()
        .any(|v| v.split('=').next().is_some_and(|k| key_is(k, key)))
}

fn key_is(given: &str, key: &str) -> bool {
    let given = given.trim();
    given == key || given.rsplit_once('.').is_some_and(|(_, k)| k == key)
}

/// The `--set` overrides that shrink a fresh model to seconds, leaving alone what the
/// command sets itself.
fn shape_overrides(gpt: &[String]) -> Vec<String> {
    let mut sets = Vec::new();
    if !sets_key(gpt, "batch_size") {
        sets.push("batch_size=4");
    }
    if !sets_key(gpt, "n_layer") {
        sets.push("n_layer=1");
    }
    // n_embd must stay a multiple of n_head: shrink both or neither.
    if !sets_key(gpt, "n_head") && !sets_key(gpt, "n_embd") {
        sets.extend(["n_head=2", "n_embd=16"]);
    }
    sets.into_iter().map(String::from).collect()
}

fn push_sets(args: &mut Vec<String>, sets: &[String]) {
    for kv in sets {
        args.extend(["--set".to_string(), kv.clone()]);
    }
}

#[derive(Default)]
struct Report {
    ran: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn skip(&mut self, command: &PageCommand, why: &str) {
        eprintln!(
            "xtask readme: {}: skipped ({why}): {}",
            command.place(),
            command.text
        );
        self.skipped
            .push(format!("{}: {} ({why})", command.place(), command.text));
    }

    fn finish(self, scratch: &Path) -> Result<()> {
        eprintln!(
            "xtask readme: {} commands ran, {} skipped, {} failed (scratch directory {})",
            self.ran,
            self.skipped.len(),
            self.failures.len(),
            scratch.display()
        );
        if self.failures.is_empty() {
            return Ok(());
        }
        for failure in &self.failures {
            eprintln!("{failure}");
        }
        bail!(
            "{} documented command(s) failed:\n{}",
            self.failures.len(),
            self.failures
                .iter()
                .map(|f| f.lines().next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

/// What a finished child did.
struct Finished {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seconds: f64,
}

struct Scratch {
    dir: PathBuf,
    /// A copy of the dev flex `gpt`.
    gpt: PathBuf,
    xtask: PathBuf,
    gpu_checks: bool,
}

impl Scratch {
    fn new(gpu_checks: bool) -> Result<Scratch> {
        let dir = target_dir().join("readme");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir.join("runs"))?;
        for entry in std::fs::read_dir(root())? {
            let entry = entry?;
            let name = entry.file_name();
            // What the commands write (runs, fetched or prepared data, exports) stays in
            // the scratch directory, never a checkout's own folders of that name.
            if ["runs", "target", "data", "hf"].iter().any(|n| name == *n) {
                continue;
            }
            symlink(&entry.path(), &dir.join(&name))?;
        }
        let built = build_gpt("flex")?;
        let bin = dir.join(".bin");
        std::fs::create_dir_all(&bin)?;
        let gpt = bin.join("gpt");
        std::fs::copy(&built, &gpt).with_context(|| format!("copying {}", built.display()))?;
        Ok(Scratch {
            dir,
            gpt,
            xtask: std::env::current_exe()?,
            gpu_checks,
        })
    }

    fn run(&self, command: &PageCommand, font: bool, report: &mut Report) -> Result<()> {
        let words = match split_words(&command.text) {
            Ok(words) => words,
            Err(syntax) => {
                report.skip(command, &format!("uses {syntax}"));
                return Ok(());
            }
        };
        let parsed = match parse(words) {
            Ok(parsed) => parsed,
            Err(e) => {
                report.failures.push(format!(
                    "{}: {}\n  xtask could not parse it: {e:#}",
                    command.place(),
                    command.text
                ));
                return Ok(());
            }
        };
        if let Plan::Skip(why) = &parsed.plan {
            report.skip(command, why);
            return Ok(());
        }
        let sub = parsed.gpt.first().map(String::as_str).unwrap_or_default();
        if (sub == "plot" || sub == "attention") && !font {
            report.skip(command, &format!("no font for `gpt {sub}` here"));
            return Ok(());
        }
        if let Err(e) = self.make_missing_run(command, &parsed.gpt) {
            report.failures.push(format!(
                "{}: {}\n  making the run it reads failed: {e:#}",
                command.place(),
                command.text
            ));
            return Ok(());
        }
        let edits = match self.shrink(&parsed.gpt) {
            Ok(edits) => edits,
            Err(e) => {
                report
                    .failures
                    .push(format!("{}: {}\n  {e:#}", command.place(), command.text));
                return Ok(());
            }
        };
        if parsed.backend == "cuda" || parsed.backend == "wgpu" {
            // The same gpt arguments on flex; training output to a scratch directory.
            let mut args = parsed.gpt.clone();
            edits.apply(&mut args);
            if sub == "train" && !args.iter().any(|a| a == "--resume") {
                let out = self.dir.join(format!("gpu-proxy/line-{}", command.line));
                set_flag(&mut args, "--out-dir", &out.display().to_string());
            }
            let mut cmd = Command::new(&self.gpt);
            cmd.args(&args);
            self.check(command, &parsed, cmd, "on flex", report, Expect::Success)?;
            if parsed.backend == "wgpu" && self.gpu_checks {
                let cmd = self.as_written(&parsed, &edits)?;
                self.check(command, &parsed, cmd, "no device", report, Expect::NoDevice)?;
            } else if parsed.backend == "cuda" {
                eprintln!(
                    "xtask readme: {}: cuda: arguments checked on flex; the cuda binary is \
                     only `cargo check`ed by ci",
                    command.place()
                );
            }
            return Ok(());
        }
        let cmd = self.as_written(&parsed, &edits)?;
        let expect = match parsed.plan {
            Plan::CargoRun { .. } => Expect::NothingCompiled,
            _ => Expect::Success,
        };
        self.check(command, &parsed, cmd, "", report, expect)
    }

    /// The command as its page writes it, with the shrinking edits.
    fn as_written(&self, parsed: &Parsed, edits: &Edits) -> Result<Command> {
        Ok(match &parsed.plan {
            Plan::Xtask(args) => {
                let mut args = args.clone();
                edits.apply(&mut args);
                let mut cmd = Command::new(&self.xtask);
                cmd.args(args);
                cmd
            }
            Plan::CargoRun { cargo, gpt } => {
                let mut args = gpt.clone();
                edits.apply(&mut args);
                let mut cmd = crate::cargo();
                cmd.arg("run")
                    .arg("--manifest-path")
                    .arg(root().join("Cargo.toml"))
                    .args(cargo)
                    .arg("--")
                    .args(args);
                cmd
            }
            Plan::Gpt(args) => {
                let mut args = args.clone();
                edits.apply(&mut args);
                let binary = if parsed.backend == "flex" {
                    self.gpt.clone()
                } else {
                    build_gpt(&parsed.backend)?
                };
                let mut cmd = Command::new(binary);
                cmd.args(args);
                cmd
            }
            Plan::Script(words) => {
                let mut cmd = Command::new(&words[0]);
                cmd.args(&words[1..]);
                cmd
            }
            Plan::Skip(_) => unreachable!("skipped before"),
        })
    }

    /// How to shrink a command with these `gpt` arguments.
    fn shrink(&self, gpt: &[String]) -> Result<Edits> {
        let mut edits = Edits::default();
        match gpt.first().map(String::as_str) {
            Some("train") if gpt.iter().any(|a| a == "--resume") => {
                let dir = run_dir(gpt).context("`train --resume` without --out-dir")?;
                let info = self.info(&dir)?;
                edits.sets.push(format!("max_iters={}", info.iter + 10));
            }
            Some("train") => {
                edits.sets.extend(FORCED.iter().map(|s| s.to_string()));
                edits.sets.extend(shape_overrides(gpt));
            }
            Some("bench") => {
                edits.flags.extend([
                    ("--steps", "2".to_string()),
                    ("--warmup", "0".to_string()),
                    ("--sample-tokens", "8".to_string()),
                ]);
                edits.sets.extend(shape_overrides(gpt));
            }
            _ => {}
        }
        Ok(edits)
    }

    /// `gpt info --json` of a run in the scratch directory.
    fn info(&self, dir: &str) -> Result<crate::Info> {
        let out = self.spawn(
            Command::new(&self.gpt).args(["info", "--json", "--run", dir]),
            &[],
        )?;
        if !out.success {
            bail!("gpt info --run {dir} failed: {}", out.stderr.trim());
        }
        parse_info(&out.stdout)
    }

    /// Makes a tiny run where the command reads one that does not exist yet.
    fn make_missing_run(&self, command: &PageCommand, gpt: &[String]) -> Result<()> {
        let reads = match gpt.first().map(String::as_str) {
            Some("train") if gpt.iter().any(|a| a == "--resume") => run_dir(gpt),
            Some("train" | "bench" | "lecture") | None => None,
            Some(_) => flag_value(gpt, "--run").map(String::from),
        };
        let Some(dir) = reads else { return Ok(()) };
        if self.dir.join(&dir).exists() {
            return Ok(());
        }
        let mut args: Vec<String> = ["train", "--out-dir", &dir, "--sample-tokens", "0"]
            .map(String::from)
            .to_vec();
        let name = Path::new(&dir).file_name().unwrap_or_default();
        let config = Path::new("experiments").join(name).with_extension("toml");
        if self.dir.join(&config).exists() {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        let mut sets: Vec<String> = FORCED.iter().map(|s| s.to_string()).collect();
        sets.extend(shape_overrides(&[]));
        push_sets(&mut args, &sets);
        eprintln!(
            "xtask readme: {}: no command before it makes {dir}; making it: gpt {}",
            command.place(),
            args.join(" ")
        );
        let out = self.spawn(Command::new(&self.gpt).args(&args), &[])?;
        if !out.success {
            bail!("gpt {} failed: {}", args.join(" "), out.stderr.trim());
        }
        Ok(())
    }

    /// Runs `cmd` for the page's `command` and records the outcome against `expect`.
    fn check(
        &self,
        command: &PageCommand,
        parsed: &Parsed,
        mut cmd: Command,
        how: &str,
        report: &mut Report,
        expect: Expect,
    ) -> Result<()> {
        let mut env: Vec<(String, String)> = parsed.env.clone();
        if expect == Expect::NoDevice {
            env.push(("VK_ICD_FILENAMES".into(), "/nonexistent".into()));
            env.push(("VK_DRIVER_FILES".into(), "/nonexistent".into()));
        }
        let shown = format!(
            "{}{cmd:?}",
            env.iter()
                .map(|(k, v)| format!("{k}={v} "))
                .collect::<String>()
        );
        let label = if how.is_empty() {
            String::new()
        } else {
            format!(" [{how}]")
        };
        eprintln!("xtask readme: {}{label}: {}", command.place(), command.text);
        let out = self.spawn(&mut cmd, &env)?;
        report.ran += 1;
        let problem = match expect {
            Expect::Success | Expect::NothingCompiled if !out.success => {
                Some(format!("exit {}", code(&out)))
            }
            Expect::NothingCompiled => compiled(&out.stderr),
            Expect::Success => None,
            Expect::NoDevice => no_device_problem(&out, &parsed.backend),
        };
        match problem {
            None => eprintln!("xtask readme:   ok ({:.1} s)", out.seconds),
            Some(problem) => {
                eprintln!("xtask readme:   FAILED: {problem}");
                report.failures.push(format!(
                    "{}{label}: {}\n  ran: {shown}\n  {problem}; stderr (tail):\n{}",
                    command.place(),
                    command.text,
                    tail(&out.stderr, 40)
                ));
            }
        }
        Ok(())
    }

    /// Runs `cmd` in the scratch directory, output to files (no pipe can fill up), killing
    /// it after `TIMEOUT`.
    fn spawn(&self, cmd: &mut Command, env: &[(String, String)]) -> Result<Finished> {
        let logs = self.dir.join(".logs");
        std::fs::create_dir_all(&logs)?;
        let (out_path, err_path) = (logs.join("stdout"), logs.join("stderr"));
        cmd.current_dir(&self.dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path)?)
            .stderr(std::fs::File::create(&err_path)?);
        let start = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        if status.is_none() {
            stderr.push_str(&format!("\n(killed after {} s)", TIMEOUT.as_secs()));
        }
        Ok(Finished {
            success: status.is_some_and(|s| s.success()),
            code: status.and_then(|s| s.code()),
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Success,
    /// Success, and cargo compiled nothing: the build an earlier command made was reused.
    NothingCompiled,
    /// A GPU build without a device: exactly one `error:` line naming the backend.
    NoDevice,
}

/// What cargo compiled, as its `Compiling NAME vX` lines say, if it compiled anything.
fn compiled(stderr: &str) -> Option<String> {
    let units: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .collect();
    (!units.is_empty()).then(|| {
        format!(
            "it compiled {} (the build of the commands before it was not reused): {}",
            units.len(),
            units.join(", ")
        )
    })
}

/// Why `out` is not the one-line no-device error `backend` should give, if it is not.
fn no_device_problem(out: &Finished, backend: &str) -> Option<String> {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    if out.success {
        Some(format!("it succeeded without a {backend} device"))
    } else if out.stderr.contains("panicked") {
        Some("it panicked instead of one error line".into())
    } else if errors.len() != 1 || !errors[0].contains(backend) {
        Some(format!(
            "expected exactly one `error:` line naming {backend}, got {}",
            errors.len()
        ))
    } else {
        None
    }
}

fn code(out: &Finished) -> String {
    out.code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "by signal or timeout".into())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `--out-dir` of a `train` command.
fn run_dir(gpt: &[String]) -> Option<String> {
    flag_value(gpt, "--out-dir").map(String::from)
}

/// The shrinking of one command: flags whose value is replaced (or added), and `--set`
/// overrides appended (the last `--set` of a key wins).
#[derive(Default)]
struct Edits {
    flags: Vec<(&'static str, String)>,
    sets: Vec<String>,
}

impl Edits {
    fn apply(&self, args: &mut Vec<String>) {
        for (flag, value) in &self.flags {
            set_flag(args, flag, value);
        }
        push_sets(args, &self.sets);
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    let result = if target.is_dir() {
        std::os::windows::fs::symlink_dir(target, link)
    } else {
        std::os::windows::fs::symlink_file(target, link)
    };
    result.with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn extracts_shell_blocks_joining_continuations_and_dropping_comments() {
        let readme = "text\n```sh\ncargo xtask train     # a comment\n\n# only a comment\n\
                      ./gpt train --out-dir runs/x \\\n    --set a=1   # more\n```\n\
                      ```toml\nnot = \"a command\"\n```\n```\nnor this\n```\n";
        let got = extract("docs/x.md", readme);
        let texts: Vec<_> = got.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "cargo xtask train     # a comment",
                "./gpt train --out-dir runs/x --set a=1   # more"
            ]
        );
        assert_eq!(got[1].place(), "docs/x.md line 6");
        assert_eq!(
            words(&got[1].text),
            ["./gpt", "train", "--out-dir", "runs/x", "--set", "a=1"]
        );
    }

    #[test]
    fn splits_words_as_sh() {
        assert_eq!(
            words(r#"gpt sample --prompt "ROMEO: \"hi\"" --x 'a b' c\ d"#),
            [
                "gpt",
                "sample",
                "--prompt",
                "ROMEO: \"hi\"",
                "--x",
                "a b",
                "c d"
            ]
        );
        assert_eq!(words("a #b c"), ["a"]);
        assert_eq!(words("a b#c"), ["a", "b#c"]);
        assert!(split_words("a | b").is_err());
        assert!(split_words("a $HOME").is_err());
        assert!(split_words("a > out").is_err());
    }

    #[test]
    fn understands_the_command_forms() {
        let p = parse(words(
            "cargo xtask train -- --config experiments/bigram.toml",
        ))
        .unwrap();
        assert_eq!(p.backend, "flex");
        assert_eq!(p.gpt, ["train", "--config", "experiments/bigram.toml"]);
        assert!(matches!(p.plan, Plan::Xtask(_)));

        let p = parse(words("cargo xtask bench --backend cuda --config c.toml")).unwrap();
        assert_eq!(p.backend, "cuda");
        assert_eq!(p.gpt, ["bench", "--config", "c.toml"]);

        let p = parse(words("cargo run -p cli -- info --run runs/x")).unwrap();
        assert_eq!(
            p.plan,
            Plan::CargoRun {
                cargo: words("-p cli"),
                gpt: words("info --run runs/x")
            }
        );

        let p = parse(words("cargo run -p cli --features wgpu -- info --run r")).unwrap();
        assert_eq!(p.backend, "wgpu");

        let p = parse(words("BURNGPT_DATA_DIR=d ./target/debug/gpt eval --run r")).unwrap();
        assert_eq!(p.env, [("BURNGPT_DATA_DIR".to_string(), "d".to_string())]);
        assert_eq!(p.plan, Plan::Gpt(words("eval --run r")));

        let script = words("python3 experiments/chat/chatterbot.py --out data/c.jsonl");
        let p = parse(script.clone()).unwrap();
        assert_eq!(p.plan, Plan::Script(script));
        assert!(p.gpt.is_empty());

        for skipped in [
            "cargo xtask ci",
            "cargo xtask readme",
            "cargo build -p cli",
            "python3 x.py",
            "python3 experiments/../x.py",
            "python3 -u experiments/chat/chatterbot.py",
            "python experiments/chat/chatterbot.py",
            "cargo xtask bench --compare-torch python3",
        ] {
            assert!(
                matches!(parse(words(skipped)).unwrap().plan, Plan::Skip(_)),
                "{skipped}"
            );
        }
    }

    /// A `cargo run` that compiled anything fails, naming what it compiled.
    #[test]
    fn a_cargo_run_that_compiles_is_caught() {
        let fresh = "    Finished `dev` profile [optimized + debuginfo] target(s) in 0.3s\n     Running `target/debug/gpt sample`\n";
        assert_eq!(compiled(fresh), None);
        let rebuilt = "   Compiling burn-tensor v0.21.0\n   Compiling cli v0.1.0 (/w/crates/cli)\n    Finished";
        let problem = compiled(rebuilt).unwrap();
        assert!(
            problem.contains("compiled 2") && problem.contains("burn-tensor v0.21.0"),
            "{problem}"
        );
    }

    #[test]
    fn shrinking_keeps_what_the_command_sets() {
        let gpt = words("train --set n_layer=6 --set train.batch_size=8");
        assert_eq!(shape_overrides(&gpt), ["n_head=2", "n_embd=16"]);
        let gpt = words("train --set=n_head=6");
        assert_eq!(shape_overrides(&gpt), ["batch_size=4", "n_layer=1"]);

        let mut args = words("bench --steps 50 --json");
        set_flag(&mut args, "--steps", "2");
        set_flag(&mut args, "--warmup", "0");
        assert_eq!(args, words("bench --steps 2 --json --warmup 0"));
        let mut args = words("bench --steps=50");
        set_flag(&mut args, "--steps", "2");
        assert_eq!(args, words("bench --steps=2"));
    }

    #[test]
    fn the_no_device_error_is_one_line_naming_the_backend() {
        let out = |success, stderr: &str| Finished {
            success,
            code: Some(if success { 0 } else { 1 }),
            stdout: String::new(),
            stderr: stderr.into(),
            seconds: 0.0,
        };
        let good =
            "xtask: building\nerror: the wgpu backend found no usable device\nxtask: error: …";
        assert_eq!(no_device_problem(&out(false, good), "wgpu"), None);
        assert!(no_device_problem(&out(true, ""), "wgpu").is_some_and(|p| p.contains("succeeded")));
        let two = "error: the wgpu backend found no usable device\nerror: again";
        assert!(no_device_problem(&out(false, two), "wgpu").is_some());
        let panic = "thread 'main' panicked at x\nerror: the wgpu backend";
        assert!(no_device_problem(&out(false, panic), "wgpu").is_some());
        assert!(no_device_problem(&out(false, "error: no usable device"), "wgpu").is_some());
    }

    #[test]
    fn pages_run_in_the_order_readme_first_links_them() {
        let readme = "[b](docs/b.md#x), [results](experiments/RESULTS.md), [a](docs/a.md) \
                      [b again](docs/b.md) ![picture](docs/pictures/p.md)";
        let on_disk = ["docs/a.md".to_string(), "docs/b.md".to_string()];
        assert_eq!(
            page_order(readme, &on_disk).unwrap(),
            ["docs/b.md", "docs/a.md"]
        );
    }

    #[test]
    fn an_unlinked_or_missing_page_is_an_error_naming_it() {
        let on_disk = ["docs/a.md".to_string(), "docs/z.md".to_string()];
        let unlinked = page_order("[a](docs/a.md)", &on_disk).unwrap_err();
        assert!(
            unlinked.to_string().contains("does not link docs/z.md"),
            "{unlinked}"
        );
        let missing =
            page_order("[a](docs/a.md) [z](docs/z.md) [m](docs/m.md)", &on_disk).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("links docs/m.md, which does not exist"),
            "{missing}"
        );
    }

    /// The real pages: README links every docs page, README has its commands, and every
    /// command of every page parses.
    #[test]
    fn every_page_is_covered_and_every_command_parses() {
        let commands = all_commands(&root()).unwrap();
        let in_readme = commands.iter().filter(|c| c.page == README).count();
        assert!(in_readme >= 2, "{commands:?}");
        assert!(commands.iter().any(|c| c.page.starts_with("docs/")));
        for c in commands {
            let w =
                split_words(&c.text).unwrap_or_else(|e| panic!("{}: {}: {e}", c.place(), c.text));
            parse(w).unwrap_or_else(|e| panic!("{}: {}: {e:#}", c.place(), c.text));
        }
    }
}

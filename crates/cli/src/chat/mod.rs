//! `gpt chat`: talk to a chat run (one finetuned on conversations) in the terminal.
//!
//! On a terminal it is a REPL as a shell's: line editing and history (rustyline), Ctrl-C
//! clears the line (or stops a reply being written), Ctrl-D or `/quit` leaves, `/reset`
//! starts a new conversation. With `--message TEXT` (repeatable), or when standard input
//! is not a terminal (each line one message), it answers without a prompt, for scripts.

mod session;

use crate::backend::{self, Inner};
use crate::prompt::{RunArg, SamplingArgs};
use crate::sample::{Output, load_weights};
use anyhow::{Result, bail};
use rustyline::error::ReadlineError;
use session::Session;
use std::io::{BufRead, IsTerminal};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    run: RunArg,
    /// A message to answer without a prompt; repeat it for a conversation of several
    /// turns. Each reply is printed on its own line.
    #[arg(long)]
    message: Vec<String>,
    /// A system message that opens the conversation (it becomes the first user
    /// message's beginning, as in nanochat).
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Which weights: the final model or the checkpoint with the best val loss.
    #[arg(long, value_parser = ["final", "best"], default_value = "final")]
    weights: String,
}

const HELP: &str = "/reset starts a new conversation, /quit (or Ctrl-D) leaves";

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    let sampling = args.sampling.sampling(0)?;
    if args.message.iter().any(|m| m.trim().is_empty()) {
        bail!("--message is empty: give the text to answer");
    }
    let run = args.run.open()?;
    let tokenizer = run.tokenizer()?;
    if !tokenizer.is_chat() {
        bail!(
            "{} is not a chat run (its tokenizer has no chat tokens): `gpt sample --run {0}` continues text; `gpt train --init-from {0} --data FILE.jsonl` finetunes it on conversations",
            run.path().display()
        );
    }
    let device = backend::device(device)?;
    let model = load_weights::<Inner>(&run, &args.weights, &device)?;
    let mut session = Session::new(&model, &tokenizer, sampling, args.system, &device);
    if !args.message.is_empty() {
        for message in &args.message {
            if answer(&mut session, message, None)?.is_break() {
                break;
            }
        }
        return Ok(());
    }
    if std::io::stdin().is_terminal() {
        repl(&mut session)
    } else {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            match command(&line) {
                Some(Command::Quit) => break,
                Some(Command::Reset) => session.reset(),
                Some(Command::Unknown) => bail!("unknown command {line:?}: {HELP}"),
                None if line.trim().is_empty() => {}
                None => {
                    if answer(&mut session, &line, None)?.is_break() {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

enum Command {
    Reset,
    Quit,
    Unknown,
}

/// A line starting with `/` is a command.
fn command(line: &str) -> Option<Command> {
    match line.trim() {
        "/reset" => Some(Command::Reset),
        "/quit" | "/exit" => Some(Command::Quit),
        l if l.starts_with('/') => Some(Command::Unknown),
        _ => None,
    }
}

fn repl(session: &mut Session<'_, Inner>) -> Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    // Ctrl-C while a reply is written stops it (at the prompt, rustyline reads it as a
    // key and clears the line, as a shell does).
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    let _ = ctrlc::set_handler(move || on_signal.store(true, Ordering::SeqCst));
    eprintln!("chatting with the model ({HELP})");
    loop {
        let line = match editor.readline("> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        match command(&line) {
            Some(Command::Quit) => return Ok(()),
            Some(Command::Reset) => {
                session.reset();
                eprintln!("(a new conversation)");
            }
            Some(Command::Unknown) => eprintln!("error: unknown command {line:?}: {HELP}"),
            None => {
                stop.store(false, Ordering::SeqCst);
                match answer(session, &line, Some(&stop)) {
                    Ok(flow) if flow.is_break() => return Ok(()),
                    Ok(_) => {}
                    // A message the vocabulary cannot write: say so, and go on.
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
        }
    }
}

/// Streams the reply to `message` to standard output, then a newline. `Break` when the
/// reader has gone.
fn answer(
    session: &mut Session<'_, Inner>,
    message: &str,
    stop: Option<&AtomicBool>,
) -> Result<ControlFlow<()>> {
    let dropped = session.ask(message)?;
    if dropped > 0 {
        eprintln!(
            "note: the conversation no longer fits in the model's context: dropped its {dropped} oldest exchange{}",
            if dropped == 1 { "" } else { "s" }
        );
    }
    let mut out = Output::new();
    let mut gone = false;
    session.reply(|text| {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return ControlFlow::Break(());
        }
        match out.write(text) {
            Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
            _ => {
                gone = true;
                ControlFlow::Break(())
            }
        }
    })?;
    if gone || out.write("\n")?.is_break() {
        return Ok(ControlFlow::Break(()));
    }
    Ok(ControlFlow::Continue(()))
}

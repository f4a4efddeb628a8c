//! The model workers: threads that each hold the model and generate for one request at a
//! time, fed by a bounded queue. The HTTP side never waits on the model: it queues a job
//! (or answers 503 when the queue is full) and reads the job's events as they come, so
//! memory is bounded by the queue, not by the number of clients.

use crate::backend::Inner;
use anyhow::Result;
use data::{TextTokenizer, Utf8Stream};
use model::{Model, Sampling, generate};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One generation.
pub struct Job {
    /// The prompt's tokens, cropped to the model's window by `generate` as `gpt sample`
    /// does.
    pub prompt: Vec<u32>,
    pub sampling: Sampling,
    /// Text that ends the completion where it first appears (not included).
    pub stop: Vec<String>,
    pub events: mpsc::Sender<Event>,
}

/// What a job reports, in order: text as it completes, then one `Done`.
pub enum Event {
    Text(String),
    Done {
        reason: FinishReason,
        completion_tokens: usize,
    },
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop sequence, or (a chat model) the end of the reply.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The queue's sending end; clones share it.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    /// Jobs queued or being generated.
    pending: Arc<AtomicUsize>,
}

impl Queue {
    /// Queues `job`; `false` when the queue is full (the caller answers 503).
    pub fn offer(&self, job: Job) -> bool {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let queued = self.jobs.try_send(job).is_ok();
        if !queued {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        queued
    }

    /// How many jobs are queued or being generated, as it changes (it holds no end of
    /// the queue).
    pub fn pending(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }
}

/// Starts `workers` threads, each with its own copy of the model `load` gives, serving a
/// queue of `depth` waiting jobs. The threads end when every [`Queue`] is dropped.
// The CPU backend's device is Copy, a GPU backend's is not.
#[allow(clippy::clone_on_copy)]
pub fn start(
    workers: usize,
    depth: usize,
    tokenizer: TextTokenizer,
    load: impl Fn() -> Result<Model<Inner>> + Send + Sync + 'static,
    device: crate::backend::Dev,
) -> Result<(Queue, Vec<std::thread::JoinHandle<()>>)> {
    let (tx, rx) = sync_channel::<Job>(depth);
    let rx = Arc::new(Mutex::new(rx));
    let pending = Arc::new(AtomicUsize::new(0));
    let load = Arc::new(load);
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        // Loaded before serving, so that a model that cannot load fails the start.
        let model = load()?;
        let (rx, tokenizer, device) = (rx.clone(), tokenizer.clone(), device.clone());
        let pending = pending.clone();
        let handle = std::thread::Builder::new()
            .name(format!("model-worker-{i}"))
            .spawn(move || serve_jobs(&model, &tokenizer, &rx, &pending, &device))?;
        handles.push(handle);
    }
    Ok((Queue { jobs: tx, pending }, handles))
}

fn serve_jobs(
    model: &Model<Inner>,
    tokenizer: &TextTokenizer,
    rx: &Mutex<Receiver<Job>>,
    pending: &AtomicUsize,
    device: &crate::backend::Dev,
) {
    loop {
        let job = match rx
            .lock()
            .expect("a worker panicked holding the queue")
            .recv()
        {
            Ok(job) => job,
            Err(_) => return,
        };
        run(model, tokenizer, job, device);
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Generates for `job`, sending its text as it completes. A client that has gone (its
/// events' receiver dropped) stops the generation at the next token.
fn run(model: &Model<Inner>, tokenizer: &TextTokenizer, job: Job, device: &crate::backend::Dev) {
    let mut stream = Utf8Stream::default();
    let mut text = StopWatch::new(job.stop.clone());
    let mut reason = FinishReason::Length;
    let mut tokens = 0;
    let mut gone = false;
    let result = generate(model, &job.prompt, &job.sampling, device, |id| {
        if tokenizer.special(id).is_some() {
            // A chat model's reply ends at its end token (or any chat token).
            reason = FinishReason::Stop;
            return ControlFlow::Break(());
        }
        tokens += 1;
        let bytes = tokenizer
            .token_bytes(id)
            .expect("the model only emits ids of its vocabulary");
        let (ready, stopped) = text.push(&stream.push(&bytes));
        if !ready.is_empty() && job.events.blocking_send(Event::Text(ready)).is_err() {
            gone = true;
            return ControlFlow::Break(());
        }
        if stopped {
            reason = FinishReason::Stop;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if gone {
        return;
    }
    let event = match result {
        Ok(_) => {
            let rest = if reason == FinishReason::Stop && text.stopped {
                String::new()
            } else {
                text.finish(&stream.finish())
            };
            if !rest.is_empty() {
                let _ = job.events.blocking_send(Event::Text(rest));
            }
            Event::Done {
                reason,
                completion_tokens: tokens,
            }
        }
        Err(e) => Event::Failed(e.to_string()),
    };
    let _ = job.events.blocking_send(event);
}

/// Generated text checked against stop sequences as it streams: text is released only
/// once no stop sequence can begin in it, and nothing from a stop sequence on is ever
/// released.
struct StopWatch {
    stops: Vec<String>,
    /// Text generated and not yet released.
    held: String,
    stopped: bool,
}

impl StopWatch {
    fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds `piece`; returns the text now safe to release and whether a stop sequence
    /// appeared (then the text before it is released and the rest dropped).
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            self.stopped = true;
            return (std::mem::take(&mut self.held), true);
        }
        // Hold back the longest end of the text that could still grow into a stop.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| {
                let held = &self.held;
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n))
                    .filter(move |&n| held.ends_with(&s[..n]))
            })
            .max()
            .unwrap_or(0);
        let released = self.held.len() - keep;
        let rest = self.held.split_off(released);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// The text left when generation ends without a stop sequence.
    fn finish(&mut self, last: &str) -> String {
        self.held.push_str(last);
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_cut_the_text_even_across_pieces() {
        let mut w = StopWatch::new(vec!["\n\n".into(), "END".into()]);
        assert_eq!(w.push("Hello"), ("Hello".into(), false));
        assert_eq!(w.push(" wor"), (" wor".into(), false));
        // "E" could begin "END": held back, then released when it does not.
        assert_eq!(w.push("ld E"), ("ld ".into(), false));
        assert_eq!(w.push("x\n"), ("Ex".into(), false));
        assert_eq!(w.push("\nmore"), ("".into(), true));
        let mut w = StopWatch::new(vec!["END".into()]);
        assert_eq!(w.push("aEN"), ("a".into(), false));
        assert_eq!(w.finish("é"), "ENé");
        let mut none = StopWatch::new(Vec::new());
        assert_eq!(none.push("x"), ("x".into(), false));
    }
}

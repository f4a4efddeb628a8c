//! The model workers: threads that each hold the model and generate for up to `batch`
//! requests at once, fed by a bounded queue. The HTTP side never waits on the model: it
//! queues a job (or answers 503 when the queue is full) and reads the job's events as
//! they come, so memory is bounded by the queue and the batches, not by the number of
//! clients.
//!
//! A worker decodes its requests together (continuous batching, as vLLM and llama.cpp's
//! server do): each step draws one token for every request in its batch with
//! [`model::step`], one matrix product per layer for all of them while each attends over
//! its own KV cache. A request joins at the next step after it arrives (its prompt read
//! on its own) and leaves when it is done, without waiting for the others.

use crate::backend::Inner;
use anyhow::Result;
use data::{TextTokenizer, Utf8Stream};
use model::{Model, Sampling, Sequence};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, TryLockError};
use tokio::sync::mpsc;

/// One generation.
pub struct Job {
    /// The prompt's tokens, cropped to the model's window as `gpt sample` does.
    pub prompt: Vec<u32>,
    pub sampling: Sampling,
    /// Text that ends the completion where it first appears (not included).
    pub stop: Vec<String>,
    /// Where the job's events go, [`EVENTS`] at most waiting to be read.
    pub events: mpsc::Sender<Event>,
}

/// Events a job's reader may fall behind by. A job whose reader is that far behind is
/// not stepped until it reads on (the rest of its batch goes on without it), so a
/// worker never waits on one client and a slow client's text never piles up.
pub const EVENTS: usize = 64;

/// The most events one step of a job sends: the text of its token, then, when it is the
/// last, the text held back for stop sequences and the end.
const EVENTS_PER_STEP: usize = 3;

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

/// Starts `workers` threads, each with its own copy of the model `load` gives, decoding
/// up to `batch` jobs together from a queue of `depth` waiting jobs. The threads end
/// when every [`Queue`] is dropped and their jobs are done.
// The CPU backend's device is Copy, a GPU backend's is not.
#[allow(clippy::clone_on_copy)]
pub fn start(
    workers: usize,
    batch: usize,
    depth: usize,
    tokenizer: TextTokenizer,
    load: impl Fn() -> Result<Model<Inner>> + Send + Sync + 'static,
    device: crate::backend::Dev,
) -> Result<(Queue, Vec<std::thread::JoinHandle<()>>)> {
    let (tx, rx) = sync_channel::<Job>(depth);
    let rx = Arc::new(Mutex::new(rx));
    let pending = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        // Loaded before serving, so that a model that cannot load fails the start.
        let worker = Worker {
            model: load()?,
            tokenizer: tokenizer.clone(),
            jobs: rx.clone(),
            pending: pending.clone(),
            device: device.clone(),
            batch,
        };
        let handle = std::thread::Builder::new()
            .name(format!("model-worker-{i}"))
            .spawn(move || worker.serve())?;
        handles.push(handle);
    }
    Ok((Queue { jobs: tx, pending }, handles))
}

struct Worker {
    model: Model<Inner>,
    tokenizer: TextTokenizer,
    jobs: Arc<Mutex<Receiver<Job>>>,
    pending: Arc<AtomicUsize>,
    device: crate::backend::Dev,
    batch: usize,
}

impl Worker {
    /// Steps the batch until the queue is closed and the batch is empty.
    fn serve(self) {
        let mut batch: Vec<Generation> = Vec::with_capacity(self.batch);
        loop {
            while batch.len() < self.batch {
                let Some(job) = self.next_job(batch.is_empty()) else {
                    break;
                };
                match Sequence::new(&job.prompt, job.sampling.clone()) {
                    Ok(sequence) => batch.push(Generation::new(job, sequence)),
                    Err(e) => {
                        let _ = job.events.try_send(Event::Failed(e.to_string()));
                        self.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            if batch.is_empty() {
                return; // the queue is closed
            }
            let (mut ready, behind): (Vec<_>, Vec<_>) =
                batch.drain(..).partition(Generation::has_room);
            if ready.is_empty() {
                // Every reader is behind: nothing to step until one reads on.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let mut sequences: Vec<_> = ready.iter_mut().map(|g| &mut g.sequence).collect();
            let drawn = model::step(&self.model, &mut sequences, &self.device);
            batch = behind;
            for (mut generation, next) in ready.into_iter().zip(drawn) {
                match next.map(|id| generation.take(id, &self.tokenizer)) {
                    Ok(Some(Next::Continue)) => batch.push(generation),
                    Ok(Some(Next::Finished(reason))) => {
                        generation.finish(reason);
                        self.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok(None) => {
                        self.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        generation.send(Event::Failed(e.to_string()));
                        self.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    /// The next queued job: waiting for one when `wait` (an empty batch), else only one
    /// already there. `None` when none is (or the queue is closed). A worker with a
    /// batch never waits for the queue's lock either: an idle worker may hold it while
    /// it waits for a job.
    fn next_job(&self, wait: bool) -> Option<Job> {
        if wait {
            let jobs = self
                .jobs
                .lock()
                .expect("a worker panicked holding the queue");
            return jobs.recv().ok();
        }
        let jobs = match self.jobs.try_lock() {
            Ok(jobs) => jobs,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(_)) => panic!("a worker panicked holding the queue"),
        };
        jobs.try_recv().ok()
    }
}

/// What a drawn token means for its generation.
enum Next {
    Continue,
    Finished(FinishReason),
}

/// One job being generated: its sequence, and the text its client has been sent.
struct Generation {
    sequence: Sequence<Inner>,
    events: mpsc::Sender<Event>,
    stop: StopWatch,
    stream: Utf8Stream,
}

impl Generation {
    fn new(job: Job, sequence: Sequence<Inner>) -> Self {
        Self {
            sequence,
            events: job.events,
            stop: StopWatch::new(job.stop),
            stream: Utf8Stream::default(),
        }
    }

    /// Takes the token just drawn: sends the text it completes, and says whether the
    /// generation goes on; `None` when the client has gone (its receiver dropped).
    fn take(&mut self, id: u32, tokenizer: &TextTokenizer) -> Option<Next> {
        if tokenizer.special(id).is_some() {
            // A chat model's reply ends at its end token (or any chat token).
            return Some(Next::Finished(FinishReason::Stop));
        }
        let bytes = tokenizer
            .token_bytes(id)
            .expect("the model only emits ids of its vocabulary");
        let (ready, stopped) = self.stop.push(&self.stream.push(&bytes));
        if !ready.is_empty() && !self.send(Event::Text(ready)) {
            return None;
        }
        Some(if stopped {
            Next::Finished(FinishReason::Stop)
        } else if self.sequence.is_done() {
            Next::Finished(FinishReason::Length)
        } else {
            Next::Continue
        })
    }

    /// Sends the text held back, then the end. Every drawn token counts, the end token
    /// too, as OpenAI's and llama.cpp's usage do.
    fn finish(mut self, reason: FinishReason) {
        if !self.stop.stopped {
            let rest = self.stop.finish(&self.stream.finish());
            if !rest.is_empty() {
                self.send(Event::Text(rest));
            }
        }
        self.send(Event::Done {
            reason,
            completion_tokens: self.sequence.new_tokens().len(),
        });
    }

    /// Whether a step can send all it may ([`EVENTS_PER_STEP`]) without waiting, or the
    /// client has gone (the step then ends the generation).
    fn has_room(&self) -> bool {
        self.events.capacity() >= EVENTS_PER_STEP || self.events.is_closed()
    }

    /// `false` when the client has gone. Only a job with room is stepped
    /// ([`Generation::has_room`]), so sending never waits.
    fn send(&self, event: Event) -> bool {
        self.events.try_send(event).is_ok()
    }
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

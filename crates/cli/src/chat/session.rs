//! One conversation with a chat run: the messages so far, rendered by the one chat
//! template, and what the model has read of them.
//!
//! Each turn renders the whole conversation again and hands it to the decoder, which
//! feeds the model only the tokens after those it has read: while the conversation fits
//! in `block_size`, a turn costs its own tokens only. When the next prompt would leave
//! less than [`Session::room`] for the reply, the oldest turns are dropped (the cache
//! then starts again on what is left).

use anyhow::{Context, Result};
use burn::prelude::*;
use data::conversation::{Message, Role, render};
use data::{TextTokenizer, Tokenizer, Utf8Stream};
use model::{Decoder, LanguageModel, Model, Sampling, extend};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::ops::ControlFlow;

pub struct Session<'a, B: Backend> {
    model: &'a Model<B>,
    tokenizer: &'a TextTokenizer,
    device: &'a B::Device,
    sampling: Sampling,
    /// A system message that opens every conversation (`--system`).
    system: Option<String>,
    messages: Vec<Message>,
    /// The conversation rendered up to the reply's start, once a message is asked.
    prompt: Vec<u32>,
    decoder: Decoder<B>,
    rng: StdRng,
}

impl<'a, B: Backend> Session<'a, B> {
    /// `tokenizer` must have the chat tokens (the caller says so when not).
    pub fn new(
        model: &'a Model<B>,
        tokenizer: &'a TextTokenizer,
        sampling: Sampling,
        system: Option<String>,
        device: &'a B::Device,
    ) -> Self {
        Self {
            model,
            tokenizer,
            device,
            decoder: Decoder::new(sampling.kv_cache),
            rng: StdRng::seed_from_u64(sampling.seed),
            sampling,
            system,
            messages: Vec::new(),
            prompt: Vec::new(),
        }
    }

    /// A new conversation, as if the session had just started (the same seed).
    pub fn reset(&mut self) {
        self.messages.clear();
        self.decoder = Decoder::new(self.sampling.kv_cache);
        self.rng = StdRng::seed_from_u64(self.sampling.seed);
    }

    /// The tokens a prompt leaves for the reply before older turns are dropped: up to
    /// a quarter of the context.
    pub fn room(&self) -> usize {
        let block_size = self.model.context_size().unwrap_or(usize::MAX);
        self.sampling.max_new_tokens.min(block_size / 4)
    }

    /// Adds the user's `text` to the conversation, and returns how many of the oldest
    /// exchanges (a message and its reply) were dropped to leave room for the reply. A
    /// message the run's vocabulary cannot write is an error, and leaves the
    /// conversation as it was.
    pub fn ask(&mut self, text: &str) -> Result<usize> {
        self.messages.push(Message::user(text));
        match self.render() {
            Ok((prompt, dropped)) => {
                self.prompt = prompt;
                Ok(dropped)
            }
            Err(e) => {
                self.messages.pop();
                Err(e)
            }
        }
    }

    /// Generates the reply to the message just asked, calling `on_text` with its text as
    /// it is generated (it returns `Break` to stop the reply early: what was generated
    /// stays the reply), and returns it.
    pub fn reply(&mut self, mut on_text: impl FnMut(&str) -> ControlFlow<()>) -> Result<String> {
        let mut context = std::mem::take(&mut self.prompt);
        let start = context.len();
        let mut stream = Utf8Stream::default();
        let tokenizer = self.tokenizer;
        extend(
            self.model,
            &mut self.decoder,
            &mut context,
            &self.sampling,
            &mut self.rng,
            self.device,
            |id| {
                // The reply ends at its end token (or any chat token: a turn is over).
                if tokenizer.special(id).is_some() {
                    return ControlFlow::Break(());
                }
                let bytes = tokenizer
                    .token_bytes(id)
                    .expect("the model only emits ids of its vocabulary");
                on_text(&stream.push(&bytes))
            },
        )?;
        let _ = on_text(&stream.finish());
        let reply: Vec<u32> = context[start..]
            .iter()
            .copied()
            .take_while(|&id| tokenizer.special(id).is_none())
            .collect();
        let reply = self.tokenizer.decode(&reply)?;
        if reply.trim().is_empty() {
            // An empty reply is no turn: the template has no empty messages.
            self.messages.pop();
        } else {
            self.messages.push(Message::assistant(reply.clone()));
        }
        Ok(reply)
    }

    /// The conversation rendered up to the reply's start, dropping the oldest exchanges
    /// until it leaves [`Self::room`] (the newest message stays, cropped by the decoder
    /// if it alone is too long); and how many were dropped.
    fn render(&mut self) -> Result<(Vec<u32>, usize)> {
        let limit = self
            .model
            .context_size()
            .map_or(usize::MAX, |b| b - self.room());
        let mut dropped = 0;
        loop {
            let mut messages = Vec::with_capacity(self.messages.len() + 1);
            if let Some(system) = &self.system {
                messages.push(Message {
                    role: Role::System,
                    content: system.clone(),
                });
            }
            messages.extend(self.messages.iter().cloned());
            let ids = render(&messages, self.tokenizer)
                .context("the message cannot be written in this run's vocabulary")?
                .ids;
            if ids.len() <= limit || self.messages.len() == 1 {
                return Ok((ids, dropped));
            }
            self.messages.drain(..2);
            dropped += 1;
        }
    }
}

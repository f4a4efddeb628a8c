//! The lecture spelled out: the steps that the production GPT skips, as tested code.
//!
//! The production model ([`crate::gpt`]) runs every head at once in one batched matmul. The
//! lecture gets there step by step, and each step is here, small, and checked against the
//! next one:
//!
//! - [`aggregation`]: "the mathematical trick in self-attention": the average of the past
//!   as a double loop (v1), a matmul (v2) and a masked softmax (v3), all equal.
//! - [`head`]: v4, one head of self-attention, where the weights of that average come from
//!   the data; the same head as an encoder and as cross-attention.
//! - [`multi_head`]: several heads run one at a time and concatenated, equal to the batched
//!   [`CausalSelfAttention`](crate::attention::CausalSelfAttention).
//! - [`block`]: the lecture's `FeedForward` (the production [`Mlp`](crate::mlp::Mlp)) and
//!   `Block`.
//! - `notes` (tests only): the lecture's six notes on attention, one test each.
//!
//! `docs/lecture.md` maps every chapter to its code and test; `gpt lecture` runs the steps.

pub mod aggregation;
pub mod block;
pub mod head;
pub mod multi_head;
#[cfg(test)]
mod notes;

pub use aggregation::{causal_softmax, xbow_loop, xbow_matmul, xbow_softmax};
pub use block::{Block, FeedForward};
pub use head::{Head, scaled_scores};
pub use multi_head::MultiHeadAttention;

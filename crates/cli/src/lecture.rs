//! `gpt lecture`: the lecture's steps run in order, each printing what it shows, from the
//! raw text to multi-head attention. CPU-sized, so it names the CPU backend (Flex) itself,
//! whatever backend the binary was built for. docs/lecture.md maps each step to its code.

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::softmax;
use data::{
    CharTokenizer, LmBatch, LmBatcher, RandomChunks, Split, TextSource, TokenStore, Tokenizer,
};
use model::attention::CausalSelfAttention;
use model::lecture::{
    Head, MultiHeadAttention, scaled_scores, xbow_loop, xbow_matmul, xbow_softmax,
};
use model::{GptConfig, LanguageModel, Model, ModelKind, Sampling, cross_entropy, generate};
use std::path::PathBuf;

type Train = Autodiff<Flex>;

/// The lecture's bigram.py: batches of 32 chunks of 8 tokens, AdamW at lr 1e-2.
const BATCH_SIZE: usize = 32;
const BLOCK_SIZE: usize = 8;
const STEPS: usize = 300;
const LR: f64 = 1e-2;
/// Batches per split in `estimate_loss`.
const EVAL_ITERS: usize = 20;
const SEED: u64 = 1337;

/// Walk through the lecture step by step on the CPU, printing what each step shows.
#[derive(clap::Args)]
pub struct Args {
    /// Read this text file instead of Tiny Shakespeare.
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let device = Default::default();
    Flex::seed(&device, SEED);
    let source = args.data.map_or_else(
        || TextSource::Named("tinyshakespeare".into()),
        TextSource::Path,
    );
    let text = data::load_text(&source)?;

    chapter(1, "reading and exploring the data");
    println!("length of dataset in characters: {}", text.chars().count());
    println!("the first 200 characters:");
    println!("{}", text.chars().take(200).collect::<String>());

    chapter(2, "tokenization, train/val split");
    let tokenizer = CharTokenizer::from_text(&text);
    let vocabulary: String = tokenizer.chars().iter().collect();
    println!("vocabulary: {vocabulary:?}");
    println!("vocab_size: {}", tokenizer.vocab_size());
    let hii = tokenizer
        .encode("hii there")
        .context("the lecture's example needs the letters of \"hii there\" in the text")?;
    println!("encode(\"hii there\") = {hii:?}");
    println!("decode({hii:?}) = {:?}", tokenizer.decode(&hii)?);
    let store = TokenStore::new(&tokenizer.encode(&text)?, tokenizer.vocab_size());
    store.check_block_size(BLOCK_SIZE)?;
    println!(
        "train: {} tokens, val: {} tokens (the first 90 % and the last 10 %)",
        store.split(Split::Train).len(),
        store.split(Split::Val).len()
    );

    chapter(3, "data loader: batches of chunks of data");
    let chunks = RandomChunks::new(store.split(Split::Train).clone(), BLOCK_SIZE, 4, SEED);
    let sample_batch: LmBatch<Flex> = batch(&chunks, 4, 0, &device);
    let (xb, yb) = (
        rows(sample_batch.inputs.clone()),
        rows(sample_batch.targets.clone()),
    );
    println!("inputs xb {:?}:", sample_batch.inputs.dims());
    xb.iter().for_each(|row| println!("  {row:?}"));
    println!("targets yb {:?}:", sample_batch.targets.dims());
    yb.iter().for_each(|row| println!("  {row:?}"));
    for t in 0..BLOCK_SIZE {
        println!(
            "when input is {:?} the target is {}",
            &xb[0][..=t],
            yb[0][t]
        );
    }

    chapter(
        4,
        "simplest baseline: bigram language model, loss, generation",
    );
    let config = GptConfig {
        model: ModelKind::Bigram,
        vocab_size: tokenizer.vocab_size(),
        ..GptConfig::default()
    };
    let mut model = Model::<Train>::new(&config, &device)?;
    let logits = model.valid().logits(sample_batch.inputs)?;
    println!("logits {:?}", logits.dims());
    let loss: f32 = cross_entropy(logits, sample_batch.targets).into_scalar();
    println!(
        "loss on xb, yb: {loss:.4} (a uniform guess gives ln {} = {:.4})",
        tokenizer.vocab_size(),
        (tokenizer.vocab_size() as f32).ln()
    );
    println!("a sample of the untrained model:");
    println!("{}", sample(&model.valid(), &tokenizer, 100, &device)?);

    chapter(5, "training the bigram model");
    let [train, val] = estimate_loss(&model.valid(), &store, &device)?;
    println!("step 0: train loss {train:.4}, val loss {val:.4}");
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8) // PyTorch's AdamW defaults, as in the lecture
        .with_weight_decay(0.01)
        .init::<Train, Model<Train>>();
    let train_chunks = RandomChunks::new(
        store.split(Split::Train).clone(),
        BLOCK_SIZE,
        STEPS * BATCH_SIZE,
        SEED + 1,
    );
    for step in 0..STEPS {
        let b: LmBatch<Train> = batch(&train_chunks, BATCH_SIZE, step, &device);
        let loss = cross_entropy(model.logits(b.inputs)?, b.targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model, grads);
    }
    let [train, val] = estimate_loss(&model.valid(), &store, &device)?;
    println!(
        "step {STEPS}: train loss {train:.4}, val loss {val:.4} (AdamW, lr {LR}, batch {BATCH_SIZE}, block {BLOCK_SIZE})"
    );
    println!("a sample after training:");
    println!("{}", sample(&model.valid(), &tokenizer, 200, &device)?);

    aggregation(&device);
    self_attention(&device);
    scaling(&device);
    multi_head(&device);
    println!();
    println!(
        "The rest (feed-forward, residual connections, LayerNorm, scaling up) is the production \
         GPT: `cargo xtask train`. docs/lecture.md maps every chapter to its code and tests."
    );
    Ok(())
}

/// The four versions of "average the past": v1–v3 agree exactly, and v4, a self-attention
/// head whose query asks for nothing (zero weights) and whose value is the identity, too.
fn aggregation(device: &Device<Flex>) {
    chapter(
        6,
        "the mathematical trick in self-attention: weighted aggregation",
    );
    let (b, t, c) = (4, 8, 2);
    let x = Tensor::<Flex, 3>::random([b, t, c], Distribution::Normal(0.0, 1.0), device);
    let v1 = xbow_loop(x.clone());
    println!(
        "x {:?}; v1, a double loop: xbow[b, t] = mean(x[b, ..=t])",
        [b, t, c]
    );
    let first = |y: Tensor<Flex, 3>| y.slice(0..1).reshape([t, c]).into_data();
    let (x0, xbow0) = (first(x.clone()), first(v1.clone()));
    let (x0, xbow0) = (
        x0.iter::<f32>().collect::<Vec<_>>(),
        xbow0.iter::<f32>().collect::<Vec<_>>(),
    );
    for ti in 0..t {
        println!(
            "  t={ti}  x[0, t] = [{:7.4}, {:7.4}]  xbow[0, t] = [{:7.4}, {:7.4}]",
            x0[2 * ti],
            x0[2 * ti + 1],
            xbow0[2 * ti],
            xbow0[2 * ti + 1]
        );
    }
    let blank_query = Head::from_weights(
        Tensor::random([c, c], Distribution::Normal(0.0, 1.0), device),
        Tensor::zeros([c, c], device),
        Tensor::eye(c, device),
        0.0,
    );
    for (name, v) in [
        (
            "v2, matmul with a row-normalised tril",
            xbow_matmul(x.clone()),
        ),
        (
            "v3, softmax of zeros, -inf above the diagonal",
            xbow_softmax(x.clone()),
        ),
        (
            "v4, a head with a blank query, identity value",
            blank_query.forward(x),
        ),
    ] {
        println!("{name}: max |v - v1| = {:.1e}", max_diff(v, v1.clone()));
    }
}

/// v4 for real: one head's weights, data-dependent, zero on the future.
fn self_attention(device: &Device<Flex>) {
    chapter(7, "self-attention (v4): the weights of one head");
    let (b, t, c, head_size) = (4, 8, 32, 16);
    let head = Head::unit_scale(c, head_size, device);
    let x = Tensor::<Flex, 3>::random([b, t, c], Distribution::Normal(0.0, 1.0), device);
    let wei = head.weights(x).slice(0..1).reshape([t, t]).into_data();
    let wei: Vec<f32> = wei.iter::<f32>().collect();
    println!(
        "wei[0] for x {:?}, head_size {head_size}; row t: how much token t listens to each token",
        [b, t, c]
    );
    for row in wei.chunks(t) {
        let cells: Vec<String> = row.iter().map(|w| format!("{w:.4}")).collect();
        println!("  {}", cells.join(" "));
    }
}

/// Note 6: why the scores are divided by sqrt(head_size).
fn scaling(device: &Device<Flex>) {
    chapter(8, "note 6: \"scaled\" self-attention");
    let head_size = 16;
    let q = Tensor::<Flex, 3>::random([4, 8, head_size], Distribution::Normal(0.0, 1.0), device);
    let k = Tensor::<Flex, 3>::random([4, 8, head_size], Distribution::Normal(0.0, 1.0), device);
    let unscaled = q.clone().matmul(k.clone().swap_dims(1, 2));
    let var = |s: Tensor<Flex, 3>| -> f32 { s.reshape([-1]).var(0).into_scalar() };
    println!(
        "unit-variance q, k: var(q·kᵀ) = {:.2}, var(q·kᵀ / sqrt({head_size})) = {:.2}",
        var(unscaled),
        var(scaled_scores(q, k))
    );
    let scores = Tensor::<Flex, 1>::from_floats([0.1, -0.2, 0.3, -0.2, 0.5], device);
    for (name, s) in [("", scores.clone()), (" * 8", scores * 8.0)] {
        let w: Vec<String> = softmax(s, 0)
            .into_data()
            .iter::<f32>()
            .map(|w| format!("{w:.4}"))
            .collect();
        println!(
            "softmax([0.1, -0.2, 0.3, -0.2, 0.5]{name}) = [{}]",
            w.join(", ")
        );
    }
    println!("large scores make softmax one-hot: each token would hear only one other");
}

/// The lecture's heads, one at a time, against the batched production layer.
fn multi_head(device: &Device<Flex>) {
    chapter(9, "multi-headed self-attention");
    let config = GptConfig {
        n_embd: 32,
        n_head: 4,
        dropout: 0.0,
        ..GptConfig::default()
    };
    let batched = CausalSelfAttention::<Flex>::new(&config, device);
    let one_at_a_time = MultiHeadAttention::from_batched(&batched);
    let x = Tensor::<Flex, 3>::random([4, 8, 32], Distribution::Normal(0.0, 1.0), device);
    let (a, b) = (one_at_a_time.forward(x.clone()), batched.forward(x));
    println!(
        "{} heads of {}, run one at a time and concatenated, vs all at once in one matmul:",
        config.n_head,
        config.head_size()
    );
    let size: f32 = b.clone().abs().max().into_scalar();
    println!(
        "max |diff| = {:.1e}, on outputs up to {size:.1e} (GPT-2 init)",
        max_diff(a, b)
    );
}

fn chapter(number: usize, title: &str) {
    println!();
    println!("== {number}. {title} ==");
}

/// Batch `index` of `chunks`: items index·size .. (index+1)·size, as the lecture's `get_batch`.
fn batch<B: Backend>(
    chunks: &RandomChunks,
    size: usize,
    index: usize,
    device: &B::Device,
) -> LmBatch<B> {
    let items = (index * size..(index + 1) * size)
        .filter_map(|i| chunks.get(i))
        .collect();
    LmBatcher.batch(items, device)
}

/// A (B, T) tensor of token ids as rows.
fn rows(ids: Tensor<Flex, 2, Int>) -> Vec<Vec<i64>> {
    let [_, t] = ids.dims();
    let flat: Vec<i64> = ids.into_data().iter::<i64>().collect();
    flat.chunks(t).map(<[i64]>::to_vec).collect()
}

/// The lecture's `estimate_loss`: the mean loss over `EVAL_ITERS` random batches of each
/// split, [train, val]. The same batches on every call, so before and after compare.
fn estimate_loss(
    model: &Model<Flex>,
    store: &TokenStore,
    device: &Device<Flex>,
) -> Result<[f32; 2]> {
    let mut losses = [0.0; 2];
    for (loss, split) in losses.iter_mut().zip([Split::Train, Split::Val]) {
        let chunks = RandomChunks::new(
            store.split(split).clone(),
            BLOCK_SIZE,
            EVAL_ITERS * BATCH_SIZE,
            SEED + 2,
        );
        for i in 0..EVAL_ITERS {
            let b: LmBatch<Flex> = batch(&chunks, BATCH_SIZE, i, device);
            let l: f32 = cross_entropy(model.logits(b.inputs)?, b.targets).into_scalar();
            *loss += l / EVAL_ITERS as f32;
        }
    }
    Ok(losses)
}

/// `n` characters generated from token 0 (a newline in Shakespeare), as the lecture does.
fn sample(
    model: &Model<Flex>,
    tokenizer: &CharTokenizer,
    n: usize,
    device: &Device<Flex>,
) -> Result<String> {
    let sampling = Sampling {
        max_new_tokens: n,
        ..Sampling::default()
    };
    let ids = generate(model, &[0], &sampling, device, |_| {
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(tokenizer.decode(&ids)?)
}

fn max_diff(a: Tensor<Flex, 3>, b: Tensor<Flex, 3>) -> f32 {
    (a - b).abs().max().into_scalar()
}

//! `gpt lecture`: the lecture's steps run in order, each printing what it shows, from the
//! raw text to multi-head attention. CPU-sized, so it names the CPU backend (Flex) itself,
//! whatever backend the binary was built for. docs/lecture.md maps each step to its code.

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
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
use std::path::{Path, PathBuf};

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
    /// Where the pictures go (default: a temporary folder, named in the output).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// The lecture's v4 model, trained in chapter 7 so its head's weights can be seen
/// before and after: token and position embeddings, one head of self-attention, lm_head.
const HEAD_EMBD: usize = 32;
const HEAD_STEPS: usize = 500;
const HEAD_LR: f64 = 3e-3;

pub fn run(args: Args) -> Result<()> {
    let device = Default::default();
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("burngpt-lecture-{}", std::process::id()))
    });
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
    let model = Model::<Train>::new(&config, &device)?;
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
    // The lecture's table starts as PyTorch's nn.Embedding does, N(0, 1); ours as GPT-2's
    // weights, N(0, 0.02). Both train on the same batches.
    let lecture_init = model.clone().map(&mut UnitNormal);
    let before = estimate_loss(&model.valid(), &store, &device)?;
    println!(
        "step 0: train loss {:.4}, val loss {:.4}",
        before[0], before[1]
    );
    let model = train_bigram(model, &store, &device)?;
    let after = estimate_loss(&model.valid(), &store, &device)?;
    println!(
        "step {STEPS}: train loss {:.4}, val loss {:.4} (AdamW, lr {LR}, batch {BATCH_SIZE}, block {BLOCK_SIZE})",
        after[0], after[1]
    );
    println!("a sample after training:");
    println!("{}", sample(&model.valid(), &tokenizer, 200, &device)?);
    let lecture_before = estimate_loss(&lecture_init.valid(), &store, &device)?;
    let lecture_init = train_bigram(lecture_init, &store, &device)?;
    let lecture_after = estimate_loss(&lecture_init.valid(), &store, &device)?;
    init_comparison(
        tokenizer.vocab_size(),
        [before, after],
        [lecture_before, lecture_after],
    );

    aggregation(&device);
    self_attention(&device);
    trained_head(&store, &tokenizer, &xb[0], &out_dir, &device)?;
    scaling(&device);
    multi_head(&device);
    println!();
    println!(
        "The rest (feed-forward, residual connections, LayerNorm, scaling up) is the production \
         GPT: `cargo xtask train`. docs/lecture.md maps every chapter to its code and tests."
    );
    Ok(())
}

/// The lecture's `bigram.py` loop: `STEPS` AdamW steps on the same batches every call.
fn train_bigram(
    mut model: Model<Train>,
    store: &TokenStore,
    device: &Device<Flex>,
) -> Result<Model<Train>> {
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
        let b: LmBatch<Train> = batch(&train_chunks, BATCH_SIZE, step, device);
        let loss = cross_entropy(model.logits(b.inputs)?, b.targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model, grads);
    }
    Ok(model)
}

/// Redraws every parameter from N(0, 1): PyTorch's `nn.Embedding` init, the lecture's.
struct UnitNormal;

impl<B: Backend> ModuleMapper<B> for UnitNormal {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        p.map(|t| {
            Tensor::random(t.shape(), Distribution::Normal(0.0, 1.0), &t.device()).require_grad()
        })
    }
}

/// The two inits side by side, and why the lecture's bigram starts at 4.87, not 4.17.
fn init_comparison(vocab_size: usize, ours: [[f32; 2]; 2], lecture: [[f32; 2]; 2]) {
    let ideal = (vocab_size as f32).ln();
    println!();
    println!("the same bigram table, initialised two ways and trained on the same batches:");
    for (name, [b, a]) in [
        ("N(0, 0.02) (GPT-2's, ours)", ours),
        ("N(0, 1) (nn.Embedding's, the lecture's)", lecture),
    ] {
        println!(
            "  init {name:<40}: step 0: train loss {:.4}, val loss {:.4}; step {STEPS}: train loss {:.4}, val loss {:.4}",
            b[0], b[1], a[0], a[1]
        );
    }
    println!(
        "A model that knows nothing should spread its bet evenly over the {vocab_size} characters: \
         loss -ln(1/{vocab_size}) = {ideal:.2}. With N(0, 0.02) every logit is within a few hundredths \
         of 0, the softmax is nearly uniform, and the loss starts right there. With N(0, 1) each \
         row's logits are random with spread 1, so the untrained model is confidently wrong: \
         on average the loss is about ln {vocab_size} + 1/2 = {:.2} (softmax's log-sum-exp of unit \
         normals), and one random table lands a little above or below; the lecture's started at \
         4.87. The first steps of training are spent undoing that confidence.",
        ideal + 0.5
    );
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

/// The lecture's v4 model (`bigram.py` plus one head): token and position embeddings
/// (N(0, 1), as PyTorch's), one head of self-attention at unit scale, and `lm_head`.
#[derive(Module, Debug)]
struct SingleHead<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: Embedding<B>,
    sa_head: Head<B>,
    lm_head: Linear<B>,
}

impl<B: Backend> SingleHead<B> {
    fn new(vocab_size: usize, device: &B::Device) -> Self {
        Self {
            token_embedding: EmbeddingConfig::new(vocab_size, HEAD_EMBD).init(device),
            position_embedding: EmbeddingConfig::new(BLOCK_SIZE, HEAD_EMBD).init(device),
            sa_head: Head::unit_scale(HEAD_EMBD, HEAD_EMBD, device),
            lm_head: LinearConfig::new(HEAD_EMBD, vocab_size).init(device),
        }
    }

    /// The head's input: token plus position embeddings, `idx` (B, T) → (B, T, C).
    fn embed(&self, idx: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let t = idx.dims()[1];
        let pos = Tensor::<B, 1, Int>::arange(0..t as i64, &idx.device()).unsqueeze::<2>();
        self.token_embedding.forward(idx) + self.position_embedding.forward(pos)
    }

    fn logits(&self, idx: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.lm_head.forward(self.sa_head.forward(self.embed(idx)))
    }

    /// The head's attention weights on one sequence of ids, as rows.
    fn weights(&self, ids: &[i64], device: &B::Device) -> Vec<Vec<f32>> {
        let t = ids.len();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(ids.to_vec(), [t]), device)
            .reshape([1, t]);
        let wei: Vec<f32> = self
            .sa_head
            .weights(self.embed(idx))
            .into_data()
            .iter::<f32>()
            .collect();
        wei.chunks(t).map(<[f32]>::to_vec).collect()
    }
}

/// One head's weights before and after training, on the chapter 3 batch's first row, as
/// tables and as a picture.
fn trained_head(
    store: &TokenStore,
    tokenizer: &CharTokenizer,
    ids: &[i64],
    out_dir: &Path,
    device: &Device<Flex>,
) -> Result<()> {
    let text = tokenizer.decode(&ids.iter().map(|&i| i as u32).collect::<Vec<_>>())?;
    println!();
    println!(
        "the lecture's v4 model (embeddings, one head of {HEAD_EMBD}, lm_head) on xb[0] = {text:?}:"
    );
    let mut model = SingleHead::<Train>::new(tokenizer.vocab_size(), device);
    let untrained = model.valid().weights(ids, device);
    print_table("untrained", &untrained);
    let mut optim = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init::<Train, SingleHead<Train>>();
    let chunks = RandomChunks::new(
        store.split(Split::Train).clone(),
        BLOCK_SIZE,
        HEAD_STEPS * BATCH_SIZE,
        SEED + 3,
    );
    let mut last = f32::NAN;
    for step in 0..HEAD_STEPS {
        let b: LmBatch<Train> = batch(&chunks, BATCH_SIZE, step, device);
        let loss = cross_entropy(model.logits(b.inputs), b.targets);
        if step + 1 == HEAD_STEPS {
            last = loss.clone().into_scalar();
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(HEAD_LR, model, grads);
    }
    let trained = model.valid().weights(ids, device);
    print_table(
        &format!("after {HEAD_STEPS} AdamW steps (lr {HEAD_LR}; last batch loss {last:.4})"),
        &trained,
    );
    println!(
        "untrained, the weights come from random projections; trained, from what the head learned to look for"
    );
    if let Err(e) = crate::picture::register_font() {
        println!("(no picture: {e})");
        return Ok(());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("single_head.png");
    let labels: Vec<String> = text
        .chars()
        .map(|c| crate::attention::token_label(&c.to_string()))
        .collect();
    let panels = [("untrained", untrained), ("trained", trained)].map(|(title, weights)| {
        crate::attention::Panel {
            title: format!("{title} · head_size {HEAD_EMBD}"),
            layer: 0,
            head: 0,
            weights,
        }
    });
    crate::attention::draw_heatmaps(
        &out,
        &format!("one head's weights on {text:?}: before and after training"),
        &labels,
        &panels,
        2,
    )
    .with_context(|| format!("drawing {}", out.display()))?;
    println!("picture: wrote {}", out.display());
    Ok(())
}

fn print_table(title: &str, wei: &[Vec<f32>]) {
    println!("{title}:");
    for row in wei {
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

//! `gpt bench`: how fast this build trains and samples — nanoGPT's `bench.py`, plus
//! sampling with and without the KV cache.
//!
//! Training steps are timed one by one (forward, backward, gradient clipping, the config's
//! optimizer: AdamW, or Muon beside AdamW) on random token batches of the config's shape,
//! after warmup steps that are not counted, each step waiting for the device and reading
//! its loss back (as a training step that logs). Then as many steps again with no read until the last: on a GPU the host queues
//! the next step while the device works, and the difference is what a per-step read
//! costs (why training reads the loss only every `log_interval` on the GPU backends).
//! Model FLOPs follow nanoGPT's `estimate_mfu`: 6N per token for the matmuls of forward and
//! backward (N = parameters without the position table) plus 12·L·H·Q·T for attention;
//! MFU divides by the device's peak for the config's dtype (see `peaks`).

use crate::backend::{self, Inner, Train};
use crate::peaks;
use crate::preset::ConfigArgs;
use anyhow::{Result, bail};
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::train::TrainStep;
use data::{LmBatch, Split};
use model::{Model, Sampling, generate};
use rand::{Rng, SeedableRng};
use std::time::Instant;
use training::RunConfig;
use training::loader::SplitBatch;
use training::step::{StepPolicy, TrainingModel};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Timed training steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed steps first (allocator, autotuning, shader compilation).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// The device's peak FLOP/s, for MFU (e.g. 312e12 for an A100 in bf16); by default
    /// the table's figure for the GPU and the config's dtype.
    #[arg(long)]
    peak_flops: Option<f64>,
    /// Tokens to sample in the sampling benchmark (0 skips it).
    #[arg(long, default_value_t = 500)]
    sample_tokens: usize,
    /// Prompt length for the sampling benchmark.
    #[arg(long, default_value_t = 1)]
    prompt_len: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args, device: Option<usize>) -> Result<()> {
    /// More steps than anyone times; it also bounds the timings kept in memory.
    const MAX_STEPS: usize = 1_000_000;
    if args.steps == 0 || args.steps > MAX_STEPS || args.warmup > MAX_STEPS {
        bail!("--steps must be in 1..={MAX_STEPS} and --warmup at most {MAX_STEPS}");
    }
    if args.sample_tokens > MAX_STEPS || args.prompt_len > MAX_STEPS {
        bail!("--sample-tokens and --prompt-len must be at most {MAX_STEPS}");
    }
    // The vocabulary is the config's (65, Tiny Shakespeare's characters, by default).
    let config = args.config.load()?;
    training::budget::check_fits(
        &config,
        config.train.batch_size,
        training::budget::available_bytes(),
    )?;
    let device_name = backend::device_name(device);
    let device = backend::device(device)?;
    let m = &config.model;
    let (b, t) = (config.train.batch_size, m.block_size);

    let model = Model::<Train>::new(m, &device)?;
    let n_params = model.num_params();
    let n_matmul_params = n_params - model.position_params();
    let policy = StepPolicy {
        grad_clip: config.train.grad_clip,
        ..StepPolicy::default()
    };
    let mut training_model = TrainingModel::new(model, policy);
    let mut optim = training::optim::init::<Train, TrainingModel<Train>>(&config);
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.train.seed);
    let mut times = Vec::with_capacity(args.steps);
    let mut peak_device = backend::device_memory(&device);
    for step in 0..args.warmup + args.steps {
        let batch = random_batch::<Train>(&mut rng, [b, t], m.vocab_size, &device);
        let start = Instant::now();
        let output = training_model.step(batch);
        training_model = optim.step(config.train.learning_rate, training_model, output.grads);
        let _: f32 = output.item.loss.into_scalar().elem(); // waits for the step
        if step >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
        peak_device = peak_device.max(backend::device_memory(&device));
    }
    // The same steps read back only at the end: the queue stays full.
    let start = Instant::now();
    for _ in 0..args.steps {
        let batch = random_batch::<Train>(&mut rng, [b, t], m.vocab_size, &device);
        let output = training_model.step(batch);
        training_model = optim.step(config.train.learning_rate, training_model, output.grads);
    }
    Train::sync(&device)?;
    let queued = start.elapsed().as_secs_f64() / args.steps as f64;
    peak_device = peak_device.max(backend::device_memory(&device));
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let min = times[0];
    let tokens_per_s = (b * t) as f64 / median;
    let flops_per_token = flops_per_token(&config, n_matmul_params);
    let achieved = flops_per_token * tokens_per_s;
    let peak_flops = args
        .peak_flops
        .or_else(|| peaks::peak_flops(device_name.as_deref()?, m.dtype));
    let mfu = peak_flops.map(|peak| achieved / peak);

    let sampler = training_model.valid().model;
    let attention_check =
        attention_check(&sampler, &mut rng, [b.min(4), t], m.vocab_size, &device)?;
    let prompt: Vec<u32> = (0..args.prompt_len.max(1))
        .map(|_| rng.random_range(0..m.vocab_size as u32))
        .collect();
    let sample_rate = |kv_cache: bool| -> Result<Option<f64>> {
        if args.sample_tokens == 0 {
            return Ok(None);
        }
        let sampling = Sampling {
            max_new_tokens: args.sample_tokens,
            kv_cache,
            ..Sampling::default()
        };
        let start = Instant::now();
        generate::<Inner, _>(&sampler, &prompt, &sampling, &device, |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(Some(
            args.sample_tokens as f64 / start.elapsed().as_secs_f64(),
        ))
    };
    let cached = sample_rate(true)?;
    let uncached = sample_rate(false)?;
    let batched = (args.sample_tokens > 0)
        .then(|| batched_decode_rate(&sampler, &prompt, DECODE_BATCH, args.sample_tokens, &device))
        .transpose()?
        .flatten();
    let rss = peak_rss_mib();

    if args.json {
        let mut json = serde_json::json!({
            "backend": backend::NAME,
            "device_name": device_name,
            "dtype": m.dtype,
            "attention": model::attention_path::<Train>(),
            "attention_inference": model::attention_path::<Inner>(),
            "matmul_isa": backend::matmul_isa(),
            "bf16_isa": backend::bf16_isa(),
            "attention_max_abs_diff": attention_check,
            "batch_size": b,
            "params": n_params,
            "grad_clip": config.train.grad_clip,
            "optimizer": config.train.optimizer,
            "muon_ns_steps": config.train.muon_ns_steps,
            "steps": args.steps,
            "warmup": args.warmup,
            "ms_per_step": median * 1e3,
            "min_ms_per_step": min * 1e3,
            "ms_per_step_sync_every_step": median * 1e3,
            "ms_per_step_sync_at_log_interval": queued * 1e3,
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_queued": (b * t) as f64 / queued,
            "flops_per_token": flops_per_token,
            "achieved_flops": achieved,
            "peak_flops": peak_flops,
            "mfu": mfu,
            "peak_rss_mib": rss,
            "peak_device_mib": peak_device.map(|bytes| bytes as f64 / (1 << 20) as f64),
            "sample_tokens": args.sample_tokens,
            "prompt_len": prompt.len(),
            "sample_tokens_per_s_cached": cached,
            "sample_tokens_per_s_uncached": uncached,
            "decode_batch": DECODE_BATCH,
            "sample_tokens_per_s_cached_batched": batched,
        });
        // The model's shape and every switch, as the config names them.
        let shape = serde_json::to_value(m)?;
        let fields = json.as_object_mut().expect("an object");
        for (key, value) in shape.as_object().expect("a config is a table") {
            fields.entry(key).or_insert_with(|| value.clone());
        }
        fields.insert("n_kv_head".into(), m.kv_heads().into());
        println!("{json}");
        return Ok(());
    }
    println!(
        "{} backend{} in {} ({} attention; {} for inference{}): {}L/{}H/{} (block {t}, batch {b}), {:.2} M parameters",
        backend::NAME,
        device_name.map(|n| format!(" on {n}")).unwrap_or_default(),
        m.dtype,
        model::attention_path::<Train>(),
        model::attention_path::<Inner>(),
        backend::isa_note(),
        m.n_layer,
        m.n_head,
        m.n_embd,
        n_params as f64 / 1e6
    );
    println!(
        "training ({}): {:.1} ms/step median, {:.1} ms min over {} steps; {:.0} tokens/s",
        optimizer_note(&config.train),
        median * 1e3,
        min * 1e3,
        args.steps,
        tokens_per_s
    );
    println!(
        "host reads: {:.1} ms/step reading the loss every step, {:.1} ms/step reading it once per {} steps",
        median * 1e3,
        queued * 1e3,
        args.steps
    );
    println!(
        "model FLOPs: {:.3e} per token, {:.3e} FLOP/s achieved{}",
        flops_per_token,
        achieved,
        match (mfu, peak_flops) {
            (Some(mfu), Some(peak)) => format!(", MFU {:.2} % of {peak:.3e}", mfu * 100.0),
            _ => ", MFU unknown (no peak for this device: give --peak-flops)".to_string(),
        }
    );
    if let Some(diff) = attention_check {
        println!(
            "inference attention ({}) vs the explicit path: max |Δlogit| {diff:.2e}",
            model::attention_path::<Inner>()
        );
    }
    if let Some(bytes) = peak_device {
        println!(
            "peak device memory (reserved): {:.0} MiB",
            bytes as f64 / (1 << 20) as f64
        );
    }
    if let (Some(c), Some(u)) = (cached, uncached) {
        println!(
            "sampling {} tokens from a {}-token prompt: {c:.0} tokens/s with KV cache, {u:.0} without ({:.1}×)",
            args.sample_tokens,
            prompt.len(),
            c / u
        );
    }
    if let (Some(c), Some(batched)) = (cached, batched) {
        println!(
            "decoding {DECODE_BATCH} sequences as one batch: {batched:.0} tokens/s in all ({:.1}× one sequence's)",
            batched / c
        );
    }
    if let Some(rss) = rss {
        println!("peak RSS: {rss:.0} MiB");
    }
    Ok(())
}

/// Sequences decoded together in the batched decoding measurement: what a server with
/// this many concurrent requests could run as one batch.
const DECODE_BATCH: usize = 8;

/// Tokens per second, all rows together, of `rows` copies of `prompt` decoded as one
/// batch through the KV cache (greedy, read on the host each step as sampling does):
/// what a step for many sequences costs against one. `None` for the bigram
/// model, or when the prompt and the tokens do not fit the context.
fn batched_decode_rate(
    model: &Model<Inner>,
    prompt: &[u32],
    rows: usize,
    steps: usize,
    device: &backend::Dev,
) -> Result<Option<f64>> {
    use model::{KvCache, LanguageModel};
    if model
        .context_size()
        .is_none_or(|c| prompt.len() + steps > c)
    {
        return Ok(None);
    }
    let ids = |ids: Vec<i64>, t: usize| {
        Tensor::<Inner, 2, Int>::from_data(TensorData::new(ids, [rows, t]), device)
    };
    let mut cache = KvCache::new();
    let start = Instant::now();
    let first: Vec<i64> = prompt.iter().map(|&id| i64::from(id)).collect();
    let mut input = ids(first.repeat(rows), prompt.len());
    for _ in 0..steps {
        let logits = model.logits_cached(input, &mut cache)?; // (rows, t, V)
        let [_, t, v] = logits.dims();
        let last: Vec<f32> = logits
            .slice([0..rows, t - 1..t])
            .reshape([rows, v])
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("converted to f32");
        let next: Vec<i64> = last
            .chunks(v)
            .map(|row| {
                let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
                best.map_or(0, |(i, _)| i as i64)
            })
            .collect();
        input = ids(next, 1);
    }
    Ok(Some((rows * steps) as f64 / start.elapsed().as_secs_f64()))
}

/// The largest difference between the logits of the model's inference forward pass
/// (Burn's attention op on the GPU backends, the fused kernel on flex) and those of the
/// explicit path, on a random batch; `None` for the bigram model.
fn attention_check(
    model: &Model<Inner>,
    rng: &mut rand::rngs::StdRng,
    shape: [usize; 2],
    vocab: usize,
    device: &backend::Dev,
) -> Result<Option<f32>> {
    let Model::Gpt(gpt) = model else {
        return Ok(None);
    };
    let idx = random_batch::<Inner>(rng, shape, vocab, device)
        .batch
        .inputs;
    let (explicit, _) = gpt.forward_with_attention(idx.clone())?;
    let diff = (gpt.forward(idx)? - explicit).abs().max();
    Ok(Some(diff.into_scalar().elem()))
}

/// nanoGPT's `estimate_mfu`: 6N + 12·L·H·Q·T FLOPs per token, N without the position
/// table (`n_matmul_params`: a lookup, not matmul work).
fn flops_per_token(config: &RunConfig, n_matmul_params: usize) -> f64 {
    let m = &config.model;
    let n = n_matmul_params as f64;
    let (l, h, q, t) = (m.n_layer, m.n_head, m.head_size(), m.block_size);
    6.0 * n + 12.0 * (l * h * q * t) as f64
}

/// A batch of random token ids (the step's cost does not depend on the text).
fn random_batch<B: Backend>(
    rng: &mut rand::rngs::StdRng,
    [b, t]: [usize; 2],
    vocab: usize,
    device: &B::Device,
) -> SplitBatch<B> {
    let mut ids = || -> Tensor<B, 2, Int> {
        let v: Vec<i64> = (0..b * t)
            .map(|_| rng.random_range(0..vocab as i64))
            .collect();
        Tensor::from_data(TensorData::new(v, [b, t]).convert::<B::IntElem>(), device)
    };
    let batch = LmBatch {
        inputs: ids(),
        targets: ids(),
        scored: None,
    };
    SplitBatch {
        split: Split::Train,
        batch,
    }
}

/// The process's peak resident memory (Linux: VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(all(
    test,
    not(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))
))]
mod tests {
    use crate::backend::{Inner, Train};
    use model::{AttentionPath, attention_path};

    /// The default build trains and samples through the fused CPU attention kernel: a
    /// change to the backend types that loses it fails here, not silently in a benchmark.
    #[test]
    fn flex_build_takes_the_fused_attention_kernel() {
        assert_eq!(attention_path::<Train>(), AttentionPath::FusedCpu);
        assert_eq!(attention_path::<Inner>(), AttentionPath::FusedCpu);
    }
}

/// The optimizer a step ran, as the config names it: `adamw`, or `muon` with its
/// iterations (`muon (5 Newton–Schulz steps) + adamw`).
fn optimizer_note(t: &training::TrainConfig) -> String {
    match t.optimizer {
        training::optim::OptimizerKind::AdamW => "adamw".into(),
        muon => format!("{muon} ({} Newton–Schulz steps) + adamw", t.muon_ns_steps),
    }
}

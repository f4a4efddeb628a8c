//! `train`: from a config and its data to a trained run directory, through burn-train.
//! What `gpt train` asks for ([`TrainOptions`]) is set up by [`setup`](crate::setup) (a new
//! run, a resume, a data-parallel follower), launched by [`learner`](crate::learner), and
//! reported here. The run directory's lifecycle (create, resume, replace, lock) is
//! [`RunWriter`](crate::run::RunWriter)'s.

use crate::distributed::DataParallel;
use crate::learner::{StartingPoint, launch};
use crate::run::RunDir;
use crate::run::writer::leftovers;
use crate::setup::{self, RunSetup};
use crate::{RunConfig, TrainError};
use burn::tensor::backend::AutodiffBackend;
use burn::train::{ExecutionStrategy, Interrupter};
use std::path::PathBuf;
use std::sync::Arc;

/// The reason the Ctrl-C handler gives the interrupter: a user's stop, not a failure.
pub const CTRL_C: &str = "Ctrl-C";

/// How `gpt train` starts.
pub enum Start {
    /// A new run with this config; `overwrite` replaces a run already in the directory.
    New {
        config: Box<RunConfig>,
        overwrite: bool,
    },
    /// Continue the run in the directory, with the keys of `config` (the command that
    /// started it, run again) and these `--set` overrides: recipe keys only may change.
    Resume {
        config: Option<PathBuf>,
        overrides: Vec<String>,
    },
}

/// What `gpt train` asked for.
pub struct TrainOptions {
    pub start: Start,
    /// `--data`: a text file instead of the config's dataset.
    pub data: Option<PathBuf>,
    /// Accept a text that differs from the one the run was trained on.
    pub allow_data_change: bool,
    pub out_dir: PathBuf,
    /// Refuse configs whose training step would not fit in the available memory.
    pub memory_check: bool,
    /// Show burn-train's TUI dashboard (stdout is a terminal); else plain lines.
    pub tui: bool,
    /// Stops training after the current iteration (Ctrl-C, `q` in the TUI).
    pub interrupter: Interrupter,
    /// `--init-from`: a new run starts from another run's weights (fresh optimizer and
    /// schedule), as nanoGPT's `init_from`.
    pub init_from: Option<InitFrom>,
    /// Under an MPI launcher: this process's place in the data-parallel job. Rank 0
    /// sets up and writes the run; the others read it and train beside it.
    pub data_parallel: Option<Arc<DataParallel>>,
    /// The backend computes asynchronously (a GPU): read the loss back only every
    /// `log_interval` iterations (see [`HostReads`]). The CPU backends read every step.
    pub asynchronous: bool,
}

/// The run whose weights a new run starts from.
#[derive(Debug, Clone)]
pub struct InitFrom {
    pub run: PathBuf,
    /// `best.mpk` instead of the final `model.mpk`.
    pub best: bool,
}

/// How a training session ended.
#[derive(Debug)]
pub struct TrainReport {
    pub run: RunDir,
    /// Iterations done in total (across resumes), as of the last evaluation.
    pub iter: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Seconds spent training in this session.
    pub seconds: f64,
    pub interrupted: bool,
    /// Something the user should know (an old run put back, a leftover found).
    pub notes: Vec<String>,
    /// Data-parallel: the hash of the final weights, the same on every rank (checked).
    pub weights_hash: Option<u64>,
}

/// Several devices of one process, trained by burn-train's DDP strategy (which the
/// caller builds where the backend has an all-reduce: NCCL on CUDA). Each device takes its
/// share of every step's batch, as MPI ranks do, and the schedule counts optimizer steps.
pub struct MultiDevice<B: burn::prelude::Backend> {
    pub strategy: ExecutionStrategy<B>,
    pub devices: usize,
}

/// Trains (or resumes) a run. Blocks until `max_iters` or an interrupt.
pub fn train<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
) -> Result<TrainReport, TrainError> {
    train_on::<B>(opts, device, None)
}

/// [`train`], on several devices when `multi` is given.
pub fn train_on<B: AutodiffBackend>(
    opts: TrainOptions,
    device: &B::Device,
    multi: Option<MultiDevice<B>>,
) -> Result<TrainReport, TrainError> {
    if multi.is_some() && opts.data_parallel.is_some() {
        return Err(TrainError::Config(
            "several devices in one process (--devices) and several MPI processes cannot be combined: run one process per GPU under mpirun instead".into(),
        ));
    }
    let dp = opts.data_parallel.clone();
    let RunSetup {
        writer,
        config,
        corpus,
        start_epoch,
        history,
        init_weights,
    } = match &dp {
        None => setup::set_up::<B>(&opts, device)?,
        Some(dp) if dp.is_leader() => {
            let setup = setup::set_up::<B>(&opts, device)?;
            dp.barrier(); // the run directory is ready for the other ranks to read
            setup
        }
        Some(dp) => {
            dp.barrier();
            setup::follower(&opts, dp.rank())?
        }
    };
    let mut notes: Vec<String> = leftovers(&opts.out_dir)
        .iter()
        .map(|p| {
            format!(
                "{} holds a run an interrupted --overwrite moved aside; delete it or move it back",
                p.display()
            )
        })
        .collect();
    let run = writer.run().clone();
    let start = std::time::Instant::now();
    let launched = launch::<B>(
        &writer,
        &config,
        corpus,
        StartingPoint {
            start_epoch,
            init_weights,
            multi,
        },
        &history,
        &opts,
        device,
    );
    let settled = writer.end_replacement()?;
    if dp.as_ref().is_some_and(|dp| !dp.is_leader()) {
        // A follower's scratch directory (see `setup::follower`) has served its purpose.
        let _ = std::fs::remove_dir_all(run.path());
    }
    let weights_hash = match launched {
        Ok(hash) => hash,
        Err(e) => {
            return Err(match settled {
                Some(note) => TrainError::Run(format!("{e}; {note}")),
                None => e,
            });
        }
    };
    notes.extend(settled);
    let last = history.rows().last().cloned();
    let iter = last.as_ref().map_or(0, |r| r.iter);
    Ok(TrainReport {
        iter,
        train_loss: last.as_ref().map_or(f64::NAN, |r| r.train_loss),
        val_loss: last.as_ref().map_or(f64::NAN, |r| r.val_loss),
        seconds: start.elapsed().as_secs_f64(),
        // (The TUI resets the interrupter when it closes, so ask the iteration count.)
        interrupted: iter < config.train.max_iters,
        run,
        notes,
        weights_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EvalRow;
    use crate::schedule::NanoGptSchedule;
    use burn::backend::{Autodiff, Flex};
    use data::Dataset;
    use model::Precision;
    use std::path::Path;

    /// A tiny run on a small text with `k` micro-batches per step; its evaluations.
    fn tiny_run(k: usize) -> (RunConfig, Vec<EvalRow>) {
        tiny_run_with(&format!("accum-{k}"), |c| {
            c.train.gradient_accumulation_steps = k
        })
    }

    /// As [`tiny_run`] with one micro-batch per step, after `change`.
    fn tiny_run_with(name: &str, change: impl Fn(&mut RunConfig)) -> (RunConfig, Vec<EvalRow>) {
        let dir = scratch(name);
        let out = tiny_train(&dir, "run", None, change);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    /// An empty scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("burngpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Trains the tiny model (after `change`) into `dir/run`, on a small text in `dir`,
    /// starting from `init_from`'s weights if given; its evaluations.
    fn tiny_train(
        dir: &Path,
        run: &str,
        init_from: Option<InitFrom>,
        change: impl Fn(&mut RunConfig),
    ) -> (RunConfig, Vec<EvalRow>) {
        let text = dir.join("text.txt");
        std::fs::write(
            &text,
            "the quick brown fox jumps over the lazy dog. ".repeat(40),
        )
        .unwrap();
        let mut config = RunConfig::default();
        config.model.n_layer = 1;
        config.model.n_head = 2;
        config.model.n_embd = 8;
        config.model.block_size = 8;
        config.model.dropout = 0.0;
        config.train.dataset = Dataset::File(text);
        config.train.batch_size = 2;
        config.train.max_iters = 6;
        config.train.eval_interval = 3;
        config.train.eval_iters = 1;
        config.train.decay_lr = true;
        config.train.learning_rate = 1e-3;
        config.train.min_lr = 1e-4;
        config.train.warmup_iters = 2;
        config.train.lr_decay_iters = 6;
        change(&mut config);
        let report = train::<Autodiff<Flex>>(
            TrainOptions {
                start: Start::New {
                    config: Box::new(config.clone()),
                    overwrite: false,
                },
                data: None,
                allow_data_change: false,
                out_dir: dir.join(run),
                memory_check: false,
                tui: false,
                interrupter: Interrupter::new(),
                data_parallel: None,
                init_from,
                asynchronous: false,
            },
            &Default::default(),
        )
        .unwrap();
        (config, report.run.rows().unwrap())
    }

    /// Mixed precision trains as f32 does: the same 200 steps (same data, same seed, the
    /// same starting weights) in bfloat16 and in float16 (with its loss scaler) end within
    /// 0.05 of the f32 losses.
    #[test]
    fn mixed_precision_follows_f32_training() {
        let dir = scratch("mixed-precision");
        // Tiny Shakespeare at a moderate learning rate: on a repeated sentence at 1e-2 the
        // model memorises, and its trajectory is chaotic enough for bfloat16 to end 0.07
        // away now and then; here 150 runs stayed within 0.01.
        let common = |c: &mut RunConfig| {
            c.train.dataset = Dataset::Named("tinyshakespeare".into());
            c.model.n_embd = 16;
            c.train.batch_size = 4;
            c.train.max_iters = 200;
            c.train.eval_interval = 200;
            c.train.eval_iters = 16;
            c.train.warmup_iters = 10;
            c.train.lr_decay_iters = 200;
            c.train.learning_rate = 3e-3;
        };
        // The starting weights come from a file, not from the seeded initialisation: the
        // backend's random generator is one per process, and tests running alongside draw
        // from it too.
        tiny_train(&dir, "init", None, |c| {
            common(c);
            c.train.max_iters = 1;
            c.train.eval_interval = 1;
        });
        let run = |dtype: Precision| {
            let init = InitFrom {
                run: dir.join("init"),
                best: false,
            };
            let (_, rows) = tiny_train(&dir, dtype.as_str(), Some(init), |c| {
                common(c);
                c.model.dtype = dtype;
            });
            let last = rows.last().expect("one evaluation");
            (last.train_loss, last.val_loss)
        };
        let f32 = run(Precision::Float32);
        assert!(
            f32.0 < 3.2,
            "the f32 run learned (ln 65 = 4.17 at the start): {f32:?}"
        );
        for dtype in [Precision::BFloat16, Precision::Float16] {
            let low = run(dtype);
            assert!(
                (low.0 - f32.0).abs() < 0.05 && (low.1 - f32.1).abs() < 0.05,
                "{dtype}: {low:?} vs f32 {f32:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Iterations, evaluations and the learning rate count optimizer steps: after n steps
    /// the schedule is at step n for k = 1 and k = 4 alike (burn-train's own
    /// accumulation would have stepped it 4n times).
    #[test]
    fn gradient_accumulation_counts_optimizer_steps() {
        let (config, one) = tiny_run(1);
        let (_, four) = tiny_run(4);
        let schedule = NanoGptSchedule::new(&config);
        for rows in [&one, &four] {
            let iters: Vec<usize> = rows.iter().map(|r| r.iter).collect();
            assert_eq!(iters, [3, 6]);
            for (row, it) in rows.iter().zip([2, 5]) {
                let want = schedule.lr_at(it);
                assert!((row.lr - want).abs() < 1e-6 * want, "{} vs {want}", row.lr);
            }
        }
        assert_ne!(schedule.lr_at(5), schedule.lr_at(4 * 6 - 1));
        // Four times the tokens per step: the throughput metric counts them all.
        assert!(four[1].tokens_per_s > 0.0);
    }
}

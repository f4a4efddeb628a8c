//! `gpt train`: train (or resume) a run, then print a sample from it.

use crate::backend::{self, Inner, Train};
use crate::preset::ConfigArgs;
use crate::prompt::Prompt;
use crate::sample::stream_sample;
use anyhow::Result;
use burn::train::Interrupter;
use model::Sampling;
use std::io::IsTerminal;
use std::path::PathBuf;
use training::train::CTRL_C;
use training::train::InitFrom;
use training::{Start, TrainOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Train on this text file instead of the config's dataset (recorded in the run, so
    /// --resume and eval use it again).
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --resume: accept a text other than the one the run was trained on (another
    /// --data file, or the same file after it changed).
    #[arg(long, requires = "resume")]
    allow_data_change: bool,
    /// Train even when the config's estimated memory exceeds what the machine has.
    #[arg(long)]
    no_memory_check: bool,
    /// Run directory (default: runs/<preset name>).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Continue the run in --out-dir from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace the run in --out-dir (only a run directory; the old run is kept until the
    /// new one has its first checkpoint).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Characters of the sample printed when training ends (0: none).
    #[arg(long, default_value_t = 300)]
    sample_tokens: usize,
    /// Start from other weights (fresh optimizer and this config's schedule), as nanoGPT's
    /// init_from: another run's directory (the architecture and tokenizer must match), or
    /// Hugging Face GPT-2: gpt2, gpt2-medium, gpt2-large, gpt2-xl (downloaded once into the
    /// cache) or a directory holding config.json and model.safetensors, whose shape
    /// replaces the config's (its dropout kept; a smaller block_size crops). Recorded in
    /// run.json.
    #[arg(long, conflicts_with = "resume")]
    init_from: Option<PathBuf>,
    /// With --init-from: the other run's final weights (model.mpk) or its best (best.mpk).
    #[arg(long, requires = "init_from", value_parser = ["final", "best"], default_value = "final")]
    init_weights: String,
    /// Train on several GPUs of this machine at once, e.g. --devices 0,1,2,3 (the `ddp`
    /// build: CUDA with burn-train's DDP strategy, NCCL all-reduce). Each device takes its share of every
    /// step's batch, so a step holds devices × batch_size × accumulation sequences.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    devices: Vec<usize>,
}

pub fn run(mut args: Args, device: Option<usize>) -> Result<()> {
    // `--init-from gpt2` (or a Hugging Face directory): the weights' local directory.
    let hf_init = match args.init_from.as_deref().and_then(|p| p.to_str()) {
        Some(spec) => crate::pretrained::hf_source(spec)
            .map(|source| source.locate())
            .transpose()?,
        None => None,
    };
    if let Some(dir) = &hf_init {
        args.init_from = Some(dir.clone());
    }
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| PathBuf::from("runs").join(args.config.name()));
    let start = if args.resume {
        // A resumed run keeps its own config. The command that started it, run again with
        // --resume, may name its --config: that file's keys and --set may change the
        // recipe (e.g. max_iters), never the run (the model's shape, the data).
        Start::Resume {
            config: args.config.config.clone(),
            overrides: args.config.set.clone(),
        }
    } else {
        let mut config = args.config.load()?;
        if let Some(hf) = hf_init.as_deref() {
            config.model = pretrained_shape(hf, &config.model)?;
        }
        Start::New {
            config: Box::new(config),
            overwrite: args.overwrite,
        }
    };
    if args.devices.len() > 1 && device.is_some() {
        anyhow::bail!("give either --device or --devices");
    }
    let multi = multi_device::strategy(&args.devices)?;
    let (_job, data_parallel) = data_parallel::join()?;
    // Under mpirun on a GPU build, one process per GPU: each rank takes its machine's GPU
    // number local rank (as torchrun's LOCAL_RANK), unless told otherwise.
    let index = device.or(args.devices.first().copied()).or_else(|| {
        data_parallel
            .as_ref()
            .filter(|_| backend::GPU)
            .and_then(|_| data_parallel::local_rank())
    });
    let device = backend::device(index)?;
    let interrupter = Interrupter::new();
    let on_signal = interrupter.clone();
    // Ctrl-C stops after the current iteration; the run is saved and can be resumed.
    let _ = ctrlc::set_handler(move || on_signal.stop(Some(CTRL_C)));
    let report = training::train_on::<Train>(
        TrainOptions {
            start,
            data: args.data,
            allow_data_change: args.allow_data_change,
            out_dir,
            memory_check: !args.no_memory_check,
            // Under mpirun a rank's stdout may look like a terminal (Open MPI gives it a
            // pty) while no keyboard reaches it: the plain log then.
            tui: std::io::stdout().is_terminal() && data_parallel.is_none(),
            interrupter,
            init_from: args.init_from.map(|run| InitFrom {
                run,
                best: args.init_weights == "best",
            }),
            data_parallel: data_parallel.clone(),
            asynchronous: backend::GPU,
        },
        &device,
        multi,
    );
    let report = match (report, &data_parallel) {
        (Ok(report), _) => report,
        // The other ranks may be waiting for this one: end them all, saying why here.
        (Err(e), Some(dp)) if dp.ranks() > 1 => {
            eprintln!("error: rank {} of {}: {e}", dp.rank(), dp.ranks());
            dp.abort(1)
        }
        (Err(e), _) => return Err(e.into()),
    };
    if let Some(dp) = &data_parallel {
        if !dp.is_leader() {
            return Ok(()); // rank 0 reports, and samples
        }
        data_parallel::report(dp, &report);
    }
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    println!(
        "{} after {} iterations: train loss {:.4}, val loss {:.4} ({:.1} s on {}); run saved in {}",
        if report.interrupted {
            "stopped"
        } else {
            "done"
        },
        report.iter,
        report.train_loss,
        report.val_loss,
        report.seconds,
        backend::NAME,
        report.run.path().display()
    );
    if report.interrupted {
        println!(
            "resume with: gpt train --resume --out-dir {}",
            report.run.path().display()
        );
    }
    if report.run.tokenizer()?.is_chat() {
        // A chat run answers messages rather than continuing text.
        println!("talk to it: gpt chat --run {}", report.run.path().display());
    } else if args.sample_tokens > 0 {
        println!("--- sample ---");
        let sampling = Sampling {
            max_new_tokens: args.sample_tokens,
            ..Sampling::default()
        };
        stream_sample::<Inner>(&report.run, &Prompt::Start, &sampling, &device)?;
        println!();
    }
    Ok(())
}

/// The model a run that starts from the Hugging Face GPT-2 in `dir` trains: the
/// checkpoint's shape, with the config's dropout and, when smaller, its block_size.
fn pretrained_shape(dir: &std::path::Path, ours: &model::GptConfig) -> Result<model::GptConfig> {
    let theirs = model::hf::read_config(dir)?
        .to_gpt_config()
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let block_size = ours.block_size.min(theirs.block_size);
    if block_size < theirs.block_size {
        eprintln!(
            "note: cropping the checkpoint's block_size {} to the config's {block_size}",
            theirs.block_size
        );
    }
    Ok(model::GptConfig {
        dropout: ours.dropout,
        block_size,
        ..theirs
    })
}

/// Joining the MPI job `mpirun` started this process in (feature `mpi`).
mod data_parallel {
    use anyhow::Result;
    use std::sync::Arc;
    use training::TrainReport;
    use training::distributed::DataParallel;

    /// MPI stays initialised while the first value lives.
    #[cfg(feature = "mpi")]
    pub type Job = training::distributed::mpi_job::Job;
    #[cfg(not(feature = "mpi"))]
    pub type Job = ();

    /// This process's place in an MPI job, if an MPI launcher started it.
    #[cfg(feature = "mpi")]
    pub fn join() -> Result<(Option<Job>, Option<Arc<DataParallel>>)> {
        Ok(match training::distributed::mpi_job::join()? {
            Some((job, dp)) => (Some(job), Some(Arc::new(dp))),
            None => (None, None),
        })
    }

    /// Without the `mpi` feature, a launch by mpirun would start N separate trainers
    /// on one run directory: refused, saying how to build the one that can.
    #[cfg(not(feature = "mpi"))]
    pub fn join() -> Result<(Option<Job>, Option<Arc<DataParallel>>)> {
        let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
            .iter()
            .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok());
        match size {
            Some(n) if n > 1 => anyhow::bail!(
                "launched as one of {n} MPI processes, but this gpt was built without data-parallel training: build it with `--features mpi` (cargo build -p cli --features mpi)"
            ),
            _ => Ok((None, None)),
        }
    }

    /// This process's rank among those of the job on its machine, as the launcher says
    /// (Open MPI, MPICH/Hydra, Slurm).
    pub fn local_rank() -> Option<usize> {
        [
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "MPI_LOCALRANKID",
            "SLURM_LOCALID",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
    }

    /// Rank 0's account of the job: its size, the all-reduce's cost and the check that
    /// every rank ended with the same weights.
    pub fn report(dp: &DataParallel, report: &TrainReport) {
        let stats = dp.stats();
        let steps = stats.steps.max(1) as f64;
        let per_step = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps;
        let step_ms = report.seconds * 1e3 / steps;
        println!(
            "data-parallel over {} ranks: {} optimizer steps, {:.1} MB of gradients per step per rank in {} all-reduce call(s); all-reduce {:.1} ms/step ({:.1} ms with host copies) of {:.1} ms/step ({:.0} %)",
            dp.ranks(),
            stats.steps,
            stats.bytes_per_step as f64 / 1e6,
            stats.calls / stats.steps.max(1),
            per_step(stats.reduce),
            per_step(stats.total),
            step_ms,
            100.0 * per_step(stats.total) / step_ms.max(f64::MIN_POSITIVE),
        );
        if let Some(hash) = report.weights_hash {
            println!("every rank ends with bit-identical weights (hash {hash:016x})");
        }
    }
}

/// `--devices`: several GPUs of one process, through burn-train's DDP strategy.
mod multi_device {
    use crate::backend::Train;
    use anyhow::Result;
    use training::MultiDevice;

    /// burn-train's DDP over `devices` (each checked to exist), with the gradients
    /// averaged by NCCL; `None` for one device or none.
    #[cfg(feature = "ddp")]
    pub fn strategy(devices: &[usize]) -> Result<Option<MultiDevice<Train>>> {
        use burn::tensor::backend::distributed::{DistributedConfig, ReduceOperation};
        use burn::train::ExecutionStrategy;
        if devices.len() < 2 {
            return Ok(None);
        }
        let devices = devices
            .iter()
            .map(|&i| crate::backend::device(Some(i)))
            .collect::<Result<Vec<_>>>()?;
        let n = devices.len();
        let config = DistributedConfig {
            all_reduce_op: ReduceOperation::Mean,
        };
        Ok(Some(MultiDevice {
            strategy: ExecutionStrategy::ddp(devices, config),
            devices: n,
        }))
    }

    /// Only CUDA has an all-reduce in Burn 0.21 (NCCL; cubecl's default one is not
    /// implemented and the CPU backends have one device each).
    #[cfg(not(feature = "ddp"))]
    pub fn strategy(devices: &[usize]) -> Result<Option<MultiDevice<Train>>> {
        if devices.len() > 1 {
            anyhow::bail!(
                "--devices with several GPUs needs the ddp build (CUDA with burn-train's DDP; its all-reduce is NCCL): cargo build -p cli --no-default-features --features ddp, then gpt train --devices {}; or one process per GPU under mpirun (the mpi feature)",
                devices
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        Ok(None)
    }
}

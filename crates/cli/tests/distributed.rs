//! Data-parallel training under `mpirun` (feature `mpi`; Open MPI's `mpirun` on PATH),
//! on this machine only: the ranks talk over TCP on the loopback interface, as ranks on
//! two machines would over their network.
//!
//!   cargo test --workspace --features cli/mpi --test distributed
#![cfg(feature = "mpi")]

mod common;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use common::{gpt, tiny_train_args, tmp};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `mpirun -n N gpt args…` over TCP on 127.0.0.1 (no shared-memory shortcut), allowed
/// to run as root (CI does) and with more ranks than cores.
fn mpirun(n: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &n.to_string(), "--oversubscribe"])
        .args([
            "--mca",
            "btl",
            "tcp,self",
            "--mca",
            "btl_tcp_if_include",
            "lo",
        ])
        .args(["--mca", "oob_tcp_if_include", "lo"])
        .arg(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output()
        .expect("mpirun runs (install Open MPI: openmpi-bin)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tiny model without dropout (whose masks differ between ranks and one process).
fn train_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = tiny_train_args(dir, &["--set", "dropout=0.0"]);
    args.extend_from_slice(extra);
    args
}

/// Every parameter of a run's final model, flattened.
fn weights(dir: &Path) -> Vec<f32> {
    struct All(Vec<f32>);
    impl ModuleVisitor<Flex> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let model = training::RunDir::new(dir)
        .load_model::<Flex>(&Default::default())
        .expect("a trained run");
    let mut all = All(Vec::new());
    model.visit(&mut all);
    all.0
}

/// The (iteration, learning rate, [train loss, mean training-batch loss]) of each
/// evaluation in a run's log.
fn evaluations(dir: &Path) -> Vec<(u64, f64, [f64; 2])> {
    training::RunDir::new(dir)
        .rows()
        .unwrap()
        .iter()
        .map(|r| (r.iter as u64, r.lr, [r.train_loss, r.batch_loss]))
        .collect()
}

/// N ranks with batch b train exactly as one process with N micro-batches of b per step
/// (dropout 0): the same learning rate at every optimizer step, the same losses and, to
/// float rounding, the same weights; and every rank ends with bit-identical weights.
#[test]
fn ranks_train_like_one_process_on_the_combined_batch() {
    for n in [2, 3] {
        let (ranks, one) = (tmp(&format!("mpi-{n}-ranks")), tmp(&format!("mpi-{n}-one")));
        let o = run(mpirun(n, &train_args(&ranks, &[])));
        let out = text(&o);
        assert!(o.status.success(), "{n} ranks:\n{out}");
        assert!(
            out.contains(&format!("data-parallel over {n} ranks"))
                && out.contains("every rank ends with bit-identical weights"),
            "{out}"
        );
        let accumulation = format!("gradient_accumulation_steps={n}");
        let o = gpt(&train_args(&one, &["--set", &accumulation]));
        assert!(o.status.success(), "one process:\n{}", text(&o));

        let (a, b) = (evaluations(&ranks), evaluations(&one));
        assert_eq!(a.len(), 2);
        for ((ia, lra, la), (ib, lrb, lb)) in a.iter().zip(&b) {
            assert_eq!((ia, lra), (ib, lrb), "iteration and learning rate");
            for (x, y) in la.iter().zip(lb) {
                assert!((x - y).abs() < 1e-4, "losses {la:?} vs {lb:?}");
            }
        }
        let (wa, wb) = (weights(&ranks), weights(&one));
        let diff = wa
            .iter()
            .zip(&wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{n} ranks vs one process: max |Δw| {diff}");
        for dir in [ranks, one] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

/// The pid of rank `rank` among mpirun's children.
fn rank_pid(mpirun: u32, rank: usize) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{mpirun}/task/{mpirun}/children")).ok()?;
    children.split_whitespace().find_map(|pid| {
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        env.split(|&b| b == 0)
            .any(|kv| kv == wanted.as_bytes())
            .then(|| pid.parse().ok())
            .flatten()
    })
}

/// Killing one rank mid-run ends the whole job within seconds, with mpirun naming the
/// rank that died; `--resume` under mpirun (here with 3 ranks instead of 2) continues
/// from the last checkpoint to the end.
#[test]
fn a_killed_rank_ends_the_job_and_resume_continues() {
    let dir = tmp("mpi-kill");
    let long = ["--set", "max_iters=100000", "--set", "eval_interval=20"];
    let mut job = mpirun(2, &train_args(&dir, &long))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    // Wait for the first checkpoint, so there is something to resume from.
    let start = Instant::now();
    while training::RunDir::new(&dir).checkpoint_epochs().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        if job.try_wait().unwrap().is_some() {
            panic!(
                "the job ended early:\n{}",
                text(&job.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let victim = rank_pid(job.id(), 1).expect("rank 1 runs under mpirun");
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job went on after a rank died"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = job.wait_with_output().unwrap();
    assert!(!status.success());
    let out = text(&o);
    assert!(
        out.contains("signal 9"),
        "mpirun should name the killed rank:\n{out}"
    );

    let done_before = evaluations(&dir).last().map_or(0, |e| e.0);
    assert!(done_before >= 20);
    let resume = [
        "train",
        "--resume",
        "--out-dir",
        dir.to_str().unwrap(),
        "--sample-tokens",
        "0",
        "--set",
    ];
    let until = format!("max_iters={}", done_before + 40);
    let mut args = resume.to_vec();
    args.push(&until);
    let o = run(mpirun(3, &args));
    let out = text(&o);
    assert!(o.status.success(), "resume:\n{out}");
    assert!(out.contains("data-parallel over 3 ranks"), "{out}");
    let iters: Vec<u64> = evaluations(&dir).iter().map(|e| e.0).collect();
    assert_eq!(iters.last(), Some(&(done_before + 40)), "{iters:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A gpt built without the feature refuses to be one of several MPI processes
/// (checked by faking the launcher's environment): see `cli::train`'s `join`. Here,
/// with the feature, a plain `gpt train` (no launcher) is a single process as ever.
#[test]
fn without_a_launcher_training_is_one_process() {
    let dir = tmp("mpi-none");
    let o = gpt(&train_args(&dir, &[]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("data-parallel"));
    std::fs::remove_dir_all(dir).unwrap();
}

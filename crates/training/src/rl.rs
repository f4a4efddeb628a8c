//! Reinforcement learning with a verifiable reward: the lecture's last chapter, after
//! pretraining and finetuning, as nanochat's `chat_rl` does it on GSM8K.
//!
//! Each step takes the batch's problems, lets the current model answer each `k` times
//! (sampling, not greedy), scores every answer with a [`Reward`], and moves the model
//! towards the answers that scored better than the others of their problem (REINFORCE
//! with the group's mean reward as the baseline; GRPO without its KL term or ratio clip
//! has the same shape). The baseline is what makes it learn from comparisons: a problem
//! whose answers all scored alike (all right, or all wrong) teaches nothing, so the step's
//! effort goes to the problems the model sometimes gets right.
//!
//! It is one more kind of training step under the same Learner: checkpoints, resume (each
//! step's samples are drawn from the run's seed and the iteration), the dashboard, and the
//! run directory's guarantees are those of any run. `gpt train --init-from RUN` with
//! `[rl] samples = k` starts it from a supervised run.

use crate::TrainError;
use crate::loader::SplitBatch;
use crate::logged::{PASS_AT_K, REWARD};
use crate::metrics::StepOutput;
use crate::step::{TrainingModel, scaled};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use data::arithmetic::TaskConfig;
use data::{CharTokenizer, LmBatch, Tokenizer, mix_seed};
use model::loss::policy_gradient_loss;
use model::{LanguageModel, Sampling, Sequence};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The `[rl]` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RlConfig {
    /// Answers sampled for each problem of a batch (k, at least 2: the baseline is their
    /// mean reward); 0 trains on the given answers instead (supervised, the default).
    pub samples: usize,
    /// The sampling temperature: 1 samples the model's own distribution.
    pub temperature: f64,
    /// Sample among the k most likely tokens only; 0: all of them.
    pub top_k: usize,
}

impl Default for RlConfig {
    fn default() -> Self {
        Self {
            samples: 0,
            temperature: 1.0,
            top_k: 0,
        }
    }
}

impl RlConfig {
    /// Whether the run learns from its own samples.
    pub fn enabled(&self) -> bool {
        self.samples > 0
    }

    pub fn validate(&self, task: Option<&TaskConfig>) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if !self.enabled() {
            return Ok(());
        }
        if self.samples < 2 {
            return bad(
                "[rl] samples must be 0 (supervised) or at least 2: each answer is compared with the mean of its problem's samples",
            );
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad("[rl] temperature must be a number > 0");
        }
        if task.is_none() {
            return bad(
                "[rl] needs a reward, and only dataset = \"arithmetic\" has one (the exact result); drop [rl] samples or train on arithmetic",
            );
        }
        Ok(())
    }
}

/// What reinforcement learning optimises: how long an answer to a prompt may be, and what
/// it earns. Implement it to train towards another goal.
pub trait Reward: Send + Sync {
    /// The most tokens an answer to `prompt` takes; sampling stops there.
    fn answer_tokens(&self, prompt: &[u32]) -> usize;
    /// What `answer` to `prompt` earns: 1 for a right answer, 0 for a wrong one (or
    /// anything between, for partial credit).
    fn reward(&self, prompt: &[u32], answer: &[u32]) -> f64;
}

/// Arithmetic's verifiable reward: 1 when the answer ends in the right result, 0 when not.
/// The trace earns nothing on its own: the model may write it any way that gets there.
pub struct ExactResult {
    task: TaskConfig,
    tokenizer: CharTokenizer,
}

impl ExactResult {
    pub fn new(task: TaskConfig) -> Self {
        Self {
            tokenizer: task.tokenizer(),
            task,
        }
    }

    fn problem(&self, prompt: &[u32]) -> data::Problem {
        let text = self.tokenizer.decode(prompt).expect("prompts use VOCAB");
        self.task
            .parse_problem(&text)
            .expect("the prompts are the task's own problems")
    }
}

impl Reward for ExactResult {
    fn answer_tokens(&self, prompt: &[u32]) -> usize {
        self.task.answer_len(self.problem(prompt).op)
    }

    fn reward(&self, prompt: &[u32], answer: &[u32]) -> f64 {
        let answer = self.tokenizer.decode(answer).unwrap_or_default();
        f64::from(u8::from(self.task.is_exact(&self.problem(prompt), &answer)))
    }
}

/// A run's reinforcement learning: its settings, its reward and its seed.
pub struct Rl {
    pub config: RlConfig,
    pub reward: Arc<dyn Reward>,
    pub seed: u64,
}

impl std::fmt::Debug for Rl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rl")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// One step's samples: `k` answers to each problem, in a row, and what each earned.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollouts {
    pub prompts: Vec<Vec<u32>>,
    /// `prompts.len() × k` answers, problem by problem.
    pub answers: Vec<Vec<u32>>,
    pub rewards: Vec<f64>,
    pub k: usize,
}

impl Rollouts {
    /// Each answer's reward minus the mean reward of its problem's answers.
    pub fn advantages(&self) -> Vec<f64> {
        self.rewards
            .chunks(self.k)
            .flat_map(|group| {
                let mean = group.iter().sum::<f64>() / group.len() as f64;
                group.iter().map(move |r| r - mean)
            })
            .collect()
    }

    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }

    /// pass@k: the share of problems with at least one of their `k` answers right
    /// (rewarded 1).
    pub fn pass_at_k(&self) -> f64 {
        let groups = self.rewards.chunks(self.k);
        let passed = groups.filter(|g| g.iter().any(|&r| r >= 1.0)).count();
        passed as f64 / self.prompts.len().max(1) as f64
    }

    /// Rows `rows` of the samples (prompt then answer, padded with token 0 to the
    /// longest) as a batch whose scored targets are the answers' tokens, and each row's
    /// advantage.
    pub fn batch<B: Backend>(
        &self,
        rows: std::ops::Range<usize>,
        device: &B::Device,
    ) -> (LmBatch<B>, Tensor<B, 1>) {
        let advantages = self.advantages();
        let len = rows
            .clone()
            .map(|r| self.prompts[r / self.k].len() + self.answers[r].len())
            .max()
            .unwrap_or(2)
            .max(2);
        let (n, t) = (rows.len(), len - 1);
        let (mut inputs, mut targets, mut scored) = (
            Vec::with_capacity(n * t),
            Vec::with_capacity(n * t),
            Vec::with_capacity(n * t),
        );
        for r in rows.clone() {
            let prompt = &self.prompts[r / self.k];
            let mut tokens: Vec<i64> = prompt
                .iter()
                .chain(&self.answers[r])
                .map(|&id| id as i64)
                .collect();
            let used = tokens.len();
            tokens.resize(len, 0);
            inputs.extend_from_slice(&tokens[..t]);
            targets.extend_from_slice(&tokens[1..]);
            // Target j predicts token j + 1: scored when that is an answer token.
            scored.extend((0..t).map(|j| (prompt.len()..used).contains(&(j + 1))));
        }
        let ids = |v: Vec<i64>| {
            Tensor::from_data(TensorData::new(v, [n, t]).convert::<B::IntElem>(), device)
        };
        let batch = LmBatch {
            inputs: ids(inputs),
            targets: ids(targets),
            scored: Some(Tensor::from_bool(TensorData::new(scored, [n, t]), device)),
        };
        let adv: Vec<f32> = advantages[rows].iter().map(|&a| a as f32).collect();
        (batch, Tensor::from_data(TensorData::new(adv, [n]), device))
    }

    /// Answer tokens over all samples: what the loss averages over.
    pub fn answer_tokens(&self) -> usize {
        self.answers.iter().map(Vec::len).sum()
    }
}

/// The problems of a supervised batch, as prompts: each row's tokens up to its first
/// scored target (the answer starts after it).
pub fn prompts<B: Backend>(batch: &LmBatch<B>) -> Vec<Vec<u32>> {
    let [b, t] = batch.inputs.dims();
    let inputs: Vec<i64> = batch
        .inputs
        .to_data()
        .convert::<i64>()
        .to_vec()
        .expect("ids");
    let scored: Vec<bool> = match &batch.scored {
        Some(s) => s.to_data().to_vec().expect("a mask"),
        None => vec![true; b * t],
    };
    (0..b)
        .map(|r| {
            let row = &scored[r * t..(r + 1) * t];
            let first = row.iter().position(|&s| s).unwrap_or(t - 1);
            inputs[r * t..=r * t + first]
                .iter()
                .map(|&i| i as u32)
                .collect()
        })
        .collect()
}

/// `k` answers to each prompt from `model`, all decoded together one token at a time, and
/// their rewards. Sample `j` of problem `i` at iteration `iter` draws from its own seed, so
/// a resumed run samples what the uninterrupted one would have.
pub fn sample<B: Backend, M: LanguageModel<B>>(
    model: &M,
    rl: &Rl,
    prompts: Vec<Vec<u32>>,
    iter: usize,
    device: &B::Device,
) -> Result<Rollouts, TrainError> {
    let k = rl.config.samples;
    let seed = mix_seed(rl.seed, iter as u64);
    let mut sequences = Vec::with_capacity(prompts.len() * k);
    for (i, prompt) in prompts.iter().enumerate() {
        for j in 0..k {
            let sampling = Sampling {
                max_new_tokens: rl.reward.answer_tokens(prompt),
                temperature: rl.config.temperature as f32,
                top_k: (rl.config.top_k > 0).then_some(rl.config.top_k),
                seed: mix_seed(seed, (i * k + j) as u64),
                kv_cache: true,
            };
            sequences.push(Sequence::new(prompt, sampling)?);
        }
    }
    model::finish(model, &mut sequences, device)?;
    let answers: Vec<Vec<u32>> = sequences.iter().map(|s| s.new_tokens().to_vec()).collect();
    let rewards = answers
        .iter()
        .enumerate()
        .map(|(r, answer)| rl.reward.reward(&prompts[r / k], answer))
        .collect();
    Ok(Rollouts {
        prompts,
        answers,
        rewards,
        k,
    })
}

impl<B: AutodiffBackend> TrainingModel<B> {
    /// A reinforcement-learning step's forward and backward passes: the batch's problems
    /// answered `k` times each by the model as it is now (without autodiff), then the
    /// policy-gradient loss on those answers, over the step's micro-batches of samples.
    /// The mean reward and pass@k are measured. When every problem's answers scored
    /// alike, no answer is better than its baseline: the step has no gradient, and the
    /// weights stay as they are (weight decay included).
    pub(crate) fn rl_step(
        &self,
        rl: &Rl,
        batch: SplitBatch<B>,
        iter: usize,
        loss_scale: f64,
    ) -> (StepOutput<B>, GradientsParams) {
        let device = self.model.devices()[0].clone();
        let rollouts = sample(
            &self.model.valid(),
            rl,
            prompts(&batch.batch),
            iter,
            &device,
        )
        .expect("the task's problems and answers fit the model's block_size");
        let rows = rollouts.answers.len();
        let per = rows.div_ceil(self.policy.accumulation.max(1));
        let count = rollouts.answer_tokens();
        let signal = rollouts.advantages().iter().any(|&a| a != 0.0);
        let mut accumulator = GradientsAccumulator::<TrainingModel<B>>::new();
        let (mut losses, mut tokens) = (Vec::new(), 0);
        for start in (0..rows).step_by(per).filter(|_| signal) {
            let (samples, advantages) =
                rollouts.batch::<B>(start..(start + per).min(rows), &device);
            let [n, t] = samples.inputs.dims();
            tokens += n * t;
            let logits = self
                .model
                .logits(samples.inputs)
                .expect("samples fit the model's block_size");
            let scored = samples.scored.expect("samples score their answers");
            let loss = policy_gradient_loss(logits, samples.targets, scored, advantages, count);
            let grads = scaled(loss.clone(), loss_scale).backward();
            accumulator.accumulate(self, GradientsParams::from_grads(grads, self));
            losses.push(loss.detach());
        }
        let value = |x: f64| Tensor::<B, 1>::from_data([x as f32], &device);
        let mut output = StepOutput {
            loss: if losses.is_empty() {
                value(0.0)
            } else {
                Tensor::cat(losses, 0).sum()
            },
            tokens,
            split: batch.split,
            exact_match: None,
            read: true,
            measured: Default::default(),
        };
        output.measure(&REWARD, value(rollouts.mean_reward()));
        output.measure(&PASS_AT_K, value(rollouts.pass_at_k()));
        (output, accumulator.grads())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollouts(rewards: &[f64], k: usize) -> Rollouts {
        let n = rewards.len() / k;
        Rollouts {
            prompts: (0..n).map(|i| vec![i as u32, 9]).collect(),
            answers: (0..rewards.len()).map(|r| vec![r as u32 % 7; 2]).collect(),
            rewards: rewards.to_vec(),
            k,
        }
    }

    #[test]
    fn advantages_are_rewards_minus_their_groups_mean() {
        let r = rollouts(&[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], 4);
        assert_eq!(
            r.advantages(),
            [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5]
        );
        assert_eq!(r.mean_reward(), 0.375);
        assert_eq!(r.pass_at_k(), 1.0);
        let none = rollouts(&[0.0, 0.0, 1.0, 1.0], 2);
        assert_eq!(none.pass_at_k(), 0.5);
        assert!(none.advantages().iter().all(|&a| a == 0.0));
    }

    /// The batch holds prompt then answer, scores the answer's tokens only, and carries
    /// each row's advantage.
    #[test]
    fn a_batch_scores_the_sampled_answers() {
        let r = rollouts(&[1.0, 0.0, 0.5, 0.5], 2);
        let (batch, adv) = r.batch::<burn::backend::Flex>(1..4, &Default::default());
        assert_eq!(batch.inputs.dims(), [3, 3]);
        let inputs: Vec<i64> = batch.inputs.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(inputs, [0, 9, 1, 1, 9, 2, 1, 9, 3]);
        let targets: Vec<i64> = batch.targets.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(targets, [9, 1, 1, 9, 2, 2, 9, 3, 3]);
        let scored: Vec<bool> = batch.scored.unwrap().into_data().to_vec().unwrap();
        assert_eq!(scored, [false, true, true].repeat(3));
        let adv: Vec<f32> = adv.into_data().to_vec().unwrap();
        assert_eq!(adv, [-0.5, 0.0, 0.0]);
        assert_eq!(r.answer_tokens(), 8);
    }

    #[test]
    fn the_arithmetic_reward_is_the_exact_result() {
        let task = TaskConfig {
            ops: data::Op::ALL.to_vec(),
            trace: true,
            ..TaskConfig::default()
        };
        let reward = ExactResult::new(task.clone());
        let tok = task.tokenizer();
        let p = data::Problem {
            op: data::Op::Div,
            a: 456,
            b: 7,
        };
        let prompt = tok.encode(&task.prompt(&p)).unwrap();
        assert_eq!(reward.answer_tokens(&prompt), task.answer_len(p.op));
        let right = tok.encode(&task.answer(&p)).unwrap();
        assert_eq!(reward.reward(&prompt, &right), 1.0);
        let mut wrong = right.clone();
        *wrong.last_mut().unwrap() = tok.encode("9").unwrap()[0];
        assert_eq!(reward.reward(&prompt, &wrong), 0.0);
        assert_eq!(reward.reward(&prompt, &right[..3]), 0.0, "cut short");
    }

    #[test]
    fn settings_are_checked() {
        let task = TaskConfig::default();
        let rl = |samples, temperature| RlConfig {
            samples,
            temperature,
            top_k: 0,
        };
        assert!(rl(0, 1.0).validate(None).is_ok());
        assert!(rl(8, 1.0).validate(Some(&task)).is_ok());
        let err = |c: RlConfig, t| c.validate(t).unwrap_err().to_string();
        assert!(err(rl(1, 1.0), Some(&task)).contains("at least 2"));
        assert!(err(rl(4, 0.0), Some(&task)).contains("temperature"));
        assert!(err(rl(4, 1.0), None).contains("arithmetic"));
    }

    mod steps {
        use super::super::*;
        use crate::RunConfig;
        use crate::step::StepPolicy;
        use crate::step::tests::param_values;
        use burn::backend::{Autodiff, Flex};
        use burn::optim::Optimizer;
        use burn::train::TrainStep;
        use burn::train::metric::ItemLazy;
        use data::Split;
        use model::Model;

        type B = Autodiff<Flex>;

        /// A one-token answer to any prompt, worth `reward(token)`.
        struct OneToken(fn(u32) -> f64);

        impl Reward for OneToken {
            fn answer_tokens(&self, _: &[u32]) -> usize {
                1
            }
            fn reward(&self, _: &[u32], answer: &[u32]) -> f64 {
                (self.0)(answer[0])
            }
        }

        fn config() -> RunConfig {
            let mut config = RunConfig::default();
            config.model.vocab_size = 13;
            config.model.block_size = 8;
            config.model.n_layer = 1;
            config.model.n_head = 2;
            config.model.n_embd = 16;
            config.model.dropout = 0.0;
            config
        }

        fn learner(reward: fn(u32) -> f64, samples: usize) -> TrainingModel<B> {
            let config = config();
            let model = Model::<B>::new(&config.model, &Default::default()).unwrap();
            crate::step::shapes(&model);
            let rl = Rl {
                config: RlConfig {
                    samples,
                    ..RlConfig::default()
                },
                reward: Arc::new(OneToken(reward)),
                seed: 5,
            };
            TrainingModel::new(
                model,
                StepPolicy {
                    rl: Some(Arc::new(rl)),
                    ..StepPolicy::default()
                },
            )
        }

        /// Four problems, each a two-token prompt whose answer starts after it.
        fn batch() -> SplitBatch<B> {
            let device = Default::default();
            let inputs = Tensor::<B, 2, Int>::from_data(
                [[1, 2, 0], [3, 4, 0], [5, 6, 0], [1, 5, 0]],
                &device,
            );
            let scored = Tensor::<B, 2, Bool>::from_bool([[false, true, false]; 4].into(), &device);
            SplitBatch {
                split: Split::Train,
                batch: LmBatch {
                    targets: inputs.clone(),
                    inputs,
                    scored: Some(scored),
                },
            }
        }

        /// When every answer earns the same, no answer beats its baseline: no gradient,
        /// and an AdamW step (with weight decay) leaves every weight as it was.
        #[test]
        fn equal_rewards_leave_the_weights_unchanged() {
            let mut config = config();
            config.train.weight_decay = 0.1;
            for constant in [0.0, 1.0] {
                let model = learner(if constant == 0.0 { |_| 0.0 } else { |_| 1.0 }, 4);
                let before = param_values(&model);
                let out = TrainStep::step(&model, batch());
                assert!(out.grads.is_empty());
                let stats = out.item.sync();
                assert_eq!(stats.value(&REWARD), Some(constant));
                let mut optim = crate::optim::init::<B, TrainingModel<B>>(&config);
                let after = optim.step(1e-2, model, out.grads);
                assert_eq!(param_values(&after), before);
            }
        }

        /// A toy task, "answer 7": from an untrained model (about 1 in 13 answers right),
        /// 40 policy-gradient steps make it answer 7 nearly always.
        #[test]
        fn a_toy_task_raises_the_mean_reward() {
            let config = config();
            let mut model = learner(|token| f64::from(u8::from(token == 7)), 8);
            let mut optim = crate::optim::init::<B, TrainingModel<B>>(&config);
            let mut rewards = Vec::new();
            for _ in 0..40 {
                let out = TrainStep::step(&model, batch());
                let grads = out.grads;
                rewards.push(out.item.sync().value(&REWARD).unwrap());
                model = optim.step(1e-2, model, grads);
            }
            let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
            let (first, last) = (mean(&rewards[..5]), mean(&rewards[35..]));
            assert!(first < 0.3 && last > 0.9, "{rewards:?}");
        }

        /// The same iteration draws the same samples: a resumed run repeats nothing and
        /// skips nothing.
        #[test]
        fn samples_follow_the_seed_and_the_iteration() {
            let model = learner(|_| 0.0, 3);
            let rl = model.policy.rl.clone().unwrap();
            let inner = model.model.valid();
            let prompts = prompts(&batch().batch);
            let device = Default::default();
            let draw = |iter| sample(&inner, &rl, prompts.clone(), iter, &device).unwrap();
            assert_eq!(draw(3), draw(3));
            assert_ne!(draw(3).answers, draw(4).answers);
            assert_eq!(prompts[1], [3, 4]);
        }
    }
}

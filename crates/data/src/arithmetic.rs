//! The arithmetic task (the lecture's exercise 2): which problems to pose, and how a
//! problem and its answer are laid out as characters for the model.
//!
//! Every example has the same layout, so a position always holds the same kind of digit:
//!
//! ```text
//! 123+456=9750       a and b zero-padded to n_digits; a+b reversed, n_digits+1 wide
//! 005-012=-700       sign (+ or -), then |a-b| reversed, n_digits wide
//! 012*034=804000     a*b reversed, 2·n_digits wide
//! 017/005=003r002    quotient and remainder, n_digits wide each, most significant first
//! ```
//!
//! Sums, differences and products are written least significant digit first because
//! that is the order their carries and borrows run in: each digit then depends only on
//! digits already written. Long division runs the other way, from the most significant
//! digit, so its results are written in the usual order.
//!
//! With `trace`, `*` and `/` first write the steps a person would (`+` and `-` have none:
//! their reversed digits already are the steps), each ending in `|`:
//!
//! ```text
//! 012*034=8400|6300|0000|804000    a × each digit of b, least significant first,
//!                                   each reversed and n_digits+1 wide
//! 123/007=0001|1005|7004|017r004    long division: after bringing down each digit of a,
//!                                   the quotient digit and the remainder (n_digits wide)
//! ```
//!
//! The loss scores the answer only, trace included; exact match scores the final result.

use crate::problem::{Op, Problem};
use crate::{CharTokenizer, DataError, Result, Tokenizer};
use serde::{Deserialize, Serialize};

/// Every character a problem or answer uses; `.` pads an example to `block_size + 1`.
pub const VOCAB: &str = "0123456789+-*/=r|.";

const PAD: char = '.';

/// The `[task]` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Operands have up to this many digits (1 to 9, so that products fit in 64 bits).
    pub n_digits: usize,
    /// Problems are drawn with these operators, each equally often.
    pub ops: Vec<Op>,
    /// Write the intermediate steps of `*` and `/` before the result.
    pub trace: bool,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            n_digits: 3,
            ops: vec![Op::Add],
            trace: false,
        }
    }
}

/// A model's answer, read back the way a person writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// `579`, `-7`, `3r2`.
    pub result: String,
    /// The written steps (`123*6=738`, `12/7=1r5`); empty without a trace.
    pub trace: Vec<String>,
}

impl TaskConfig {
    /// Reads a problem as a user types it, refusing what this task cannot pose.
    pub fn parse_problem(&self, input: &str) -> Result<Problem> {
        Problem::parse(input, self.n_digits, &self.ops)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(DataError::InvalidTask(m.into()));
        if !(1..=9).contains(&self.n_digits) {
            return bad("n_digits must be in 1..=9");
        }
        if self.ops.is_empty() {
            return bad("ops must name at least one of \"+\", \"-\", \"*\", \"/\"");
        }
        Ok(())
    }

    /// The fixed vocabulary, the same for every task.
    pub fn tokenizer(&self) -> CharTokenizer {
        CharTokenizer::from_text(VOCAB)
    }

    /// `007+045=`: what the model is given.
    pub fn prompt(&self, p: &Problem) -> String {
        let n = self.n_digits;
        format!("{:0n$}{}{:0n$}=", p.a, p.op, p.b)
    }

    /// What the model is trained to write after the prompt: the trace, then the result.
    pub fn answer(&self, p: &Problem) -> String {
        let mut answer: String = self.steps(p).iter().map(|s| format!("{s}|")).collect();
        answer.push_str(&self.result(p));
        answer
    }

    /// Characters of [`answer`](Self::answer) for problems with `op`.
    pub fn answer_len(&self, op: Op) -> usize {
        let n = self.n_digits;
        let trace = if self.trace { self.step_len(op) * n } else { 0 };
        trace + self.result_len(op)
    }

    /// The longest prompt + answer among the task's operators; a model's `block_size`
    /// must be at least this minus one (the last character is never an input).
    pub fn example_len(&self) -> usize {
        let longest = self.ops.iter().map(|&op| self.answer_len(op)).max();
        2 * self.n_digits + 2 + longest.unwrap_or(0)
    }

    /// Whether `answer` (as the model wrote it) ends in the right result; the trace is
    /// not scored.
    pub fn is_exact(&self, p: &Problem, answer: &str) -> bool {
        answer.len() == self.answer_len(p.op) && answer.ends_with(&self.result(p))
    }

    /// Reads an answer the model wrote back into a person's notation: digits in the usual
    /// order, padding dropped. `None` when a digit, sign or separator is not where the
    /// layout puts one.
    pub fn read(&self, p: &Problem, answer: &str) -> Option<Reading> {
        if answer.len() != self.answer_len(p.op) || !answer.is_ascii() {
            return None;
        }
        let n = self.n_digits;
        let (trace, result) = answer.split_at(answer.len() - self.result_len(p.op));
        let steps: Vec<&str> = trace.split_terminator('|').collect();
        if steps.len() != trace.matches('|').count()
            || steps.iter().any(|s| s.len() + 1 != self.step_len(p.op))
        {
            return None;
        }
        let (trace, result) = match p.op {
            Op::Add => (Vec::new(), number(result, true)?),
            Op::Sub => {
                let sign = match &result[..1] {
                    "-" => "-",
                    "+" => "",
                    _ => return None,
                };
                (Vec::new(), format!("{sign}{}", number(&result[1..], true)?))
            }
            Op::Mul => {
                let trace = steps.iter().enumerate().map(|(i, s)| {
                    let product = number(s, true)?;
                    Some(format!("{}*{}={product}", p.a, digit_of(p.b, i)))
                });
                (trace.collect::<Option<_>>()?, number(result, true)?)
            }
            Op::Div => {
                // Each step divides the previous remainder (as the model wrote it) with
                // the next digit of a brought down.
                let mut rem = 0;
                let trace = steps.iter().enumerate().map(|(i, s)| {
                    let part = rem * 10 + digit_of(p.a, n - 1 - i);
                    let (q, r) = (number(&s[..1], false)?, number(&s[1..], false)?);
                    rem = r.parse().ok()?;
                    Some(format!("{part}/{}={q}r{r}", p.b))
                });
                let trace = trace.collect::<Option<_>>()?;
                let (q, r) = result.split_at(n);
                let r = r.strip_prefix('r')?;
                (
                    trace,
                    format!("{}r{}", number(q, false)?, number(r, false)?),
                )
            }
        };
        Some(Reading { result, trace })
    }

    /// The prompt and answer of `p` encoded with `tokenizer`, padded to `len` tokens, and
    /// which of the `len - 1` targets are scored: those that predict the answer.
    pub fn example(
        &self,
        p: &Problem,
        tokenizer: &CharTokenizer,
        len: usize,
    ) -> (Vec<u32>, Vec<bool>) {
        let prompt = self.prompt(p);
        let answer = self.answer(p);
        let mut text = format!("{prompt}{answer}");
        let used = text.len();
        text.extend(std::iter::repeat_n(PAD, len.saturating_sub(used)));
        let tokens = tokenizer.encode(&text).expect("the layout uses VOCAB only");
        // Target j predicts character j + 1.
        let scored = (0..len - 1)
            .map(|j| (prompt.len()..used).contains(&(j + 1)))
            .collect();
        (tokens, scored)
    }

    fn result(&self, p: &Problem) -> String {
        let n = self.n_digits;
        match p.op {
            Op::Add => reversed(p.a + p.b, n + 1),
            Op::Sub => {
                let sign = if p.a < p.b { '-' } else { '+' };
                format!("{sign}{}", reversed(p.a.abs_diff(p.b), n))
            }
            Op::Mul => reversed(p.a * p.b, 2 * n),
            Op::Div => format!("{:0n$}r{:0n$}", p.a / p.b, p.a % p.b),
        }
    }

    fn result_len(&self, op: Op) -> usize {
        let n = self.n_digits;
        match op {
            Op::Add | Op::Sub => n + 1,
            Op::Mul => 2 * n,
            Op::Div => 2 * n + 1,
        }
    }

    /// The trace's steps, without their `|`.
    fn steps(&self, p: &Problem) -> Vec<String> {
        let n = self.n_digits;
        match p.op {
            _ if !self.trace => Vec::new(),
            Op::Add | Op::Sub => Vec::new(),
            Op::Mul => p
                .partial_products(n)
                .into_iter()
                .map(|pp| reversed(pp, n + 1))
                .collect(),
            Op::Div => p
                .long_division(n)
                .into_iter()
                .map(|(q, r)| format!("{q}{r:0n$}"))
                .collect(),
        }
    }

    /// Characters of one trace step, its `|` included (0: the operator has no trace).
    fn step_len(&self, op: Op) -> usize {
        match op {
            Op::Add | Op::Sub => 0,
            Op::Mul | Op::Div => self.n_digits + 2,
        }
    }
}

/// `value` zero-padded to `width` digits, least significant first.
fn reversed(value: u64, width: usize) -> String {
    format!("{value:0width$}").chars().rev().collect()
}

/// Digit `i` of `value`, counting from the least significant.
fn digit_of(value: u64, i: usize) -> u64 {
    value / 10u64.pow(i as u32) % 10
}

/// Fixed-width digits (least significant first when `reversed`) as a person writes the
/// number: usual order, no leading zeros. `None` if any is not a digit.
fn number(digits: &str, reversed: bool) -> Option<String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ordered: String = if reversed {
        digits.chars().rev().collect()
    } else {
        digits.to_string()
    };
    let trimmed = ordered.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn task(trace: bool) -> TaskConfig {
        TaskConfig {
            n_digits: 3,
            ops: Op::ALL.to_vec(),
            trace,
        }
    }

    fn problem(op: Op, a: u64, b: u64) -> Problem {
        Problem { op, a, b }
    }

    fn written(t: &TaskConfig, p: &Problem) -> String {
        format!("{}{}", t.prompt(p), t.answer(p))
    }

    #[test]
    fn layout_of_each_operator() {
        let t = task(false);
        assert_eq!(written(&t, &problem(Op::Add, 123, 456)), "123+456=9750");
        assert_eq!(written(&t, &problem(Op::Sub, 5, 12)), "005-012=-700");
        assert_eq!(written(&t, &problem(Op::Sub, 12, 5)), "012-005=+700");
        assert_eq!(written(&t, &problem(Op::Mul, 12, 34)), "012*034=804000");
        assert_eq!(written(&t, &problem(Op::Div, 17, 5)), "017/005=003r002");
        let t = task(true);
        assert_eq!(written(&t, &problem(Op::Add, 123, 456)), "123+456=9750");
        assert_eq!(
            written(&t, &problem(Op::Mul, 12, 34)),
            "012*034=8400|6300|0000|804000"
        );
        assert_eq!(
            written(&t, &problem(Op::Div, 123, 7)),
            "123/007=0001|1005|7004|017r004"
        );
        assert_eq!(t.example_len(), 8 + 15 + 7);
    }

    /// Random problems of every operator: the answer has its operator's fixed width, and
    /// reading it back (un-reversing, un-padding) gives the true result.
    #[test]
    fn answers_read_back_to_the_true_result() {
        let mut rng = StdRng::seed_from_u64(3);
        for trace in [false, true] {
            let t = task(trace);
            for _ in 0..2000 {
                let op = Op::ALL[rng.random_range(0..4)];
                let a = rng.random_range(0..1000);
                let b = rng.random_range(1..1000);
                let p = problem(op, a, b);
                let answer = t.answer(&p);
                assert_eq!(t.prompt(&p).len(), 8);
                assert_eq!(answer.len(), t.answer_len(op));
                let expected = match op {
                    Op::Add => (a + b).to_string(),
                    Op::Sub => (a as i64 - b as i64).to_string(),
                    Op::Mul => (a * b).to_string(),
                    Op::Div => format!("{}r{}", a / b, a % b),
                };
                let reading = t.read(&p, &answer).unwrap();
                assert_eq!(reading.result, expected, "{p} as {answer}");
                let steps = if trace && matches!(op, Op::Mul | Op::Div) {
                    3
                } else {
                    0
                };
                assert_eq!(reading.trace.len(), steps);
                assert!(t.is_exact(&p, &answer));
            }
        }
    }

    #[test]
    fn traces_read_as_written_steps() {
        let t = task(true);
        let mul = problem(Op::Mul, 123, 456);
        let r = t.read(&mul, &t.answer(&mul)).unwrap();
        assert_eq!(r.trace, ["123*6=738", "123*5=615", "123*4=492"]);
        assert_eq!(r.result, "56088");
        let div = problem(Op::Div, 123, 7);
        let r = t.read(&div, &t.answer(&div)).unwrap();
        assert_eq!(r.trace, ["1/7=0r1", "12/7=1r5", "53/7=7r4"]);
        assert_eq!(r.result, "17r4");
    }

    #[test]
    fn exact_match_scores_the_result_only() {
        let t = task(true);
        let p = problem(Op::Mul, 12, 34);
        assert!(t.is_exact(&p, "8400|6300|0000|804000"));
        // A wrong step, but the right result: still exact.
        assert!(t.is_exact(&p, "9999|6300|0000|804000"));
        assert!(!t.is_exact(&p, "8400|6300|0000|804001"));
        assert!(!t.is_exact(&p, "804000"));
        let add = problem(Op::Add, 7, 45);
        assert!(t.is_exact(&add, "2500") && !t.is_exact(&add, "0520"));
    }

    #[test]
    fn malformed_answers_are_unreadable() {
        let t = task(true);
        let add = problem(Op::Add, 7, 45);
        assert_eq!(t.read(&add, "2500").unwrap().result, "52");
        assert_eq!(t.read(&add, "0000").unwrap().result, "0");
        for bad in ["25+0", "250", "25000", "25r0"] {
            assert_eq!(t.read(&add, bad), None, "{bad}");
        }
        let sub = problem(Op::Sub, 5, 12);
        assert_eq!(t.read(&sub, "-700").unwrap().result, "-7");
        assert_eq!(t.read(&sub, "7000"), None);
        let mul = problem(Op::Mul, 12, 34);
        assert_eq!(t.read(&mul, "8400|630000000|804000"), None);
        let div = problem(Op::Div, 17, 5);
        assert_eq!(t.read(&div, "0000|0001|3002|003+002"), None);
    }

    #[test]
    fn examples_are_padded_and_score_the_answer_only() {
        let t = task(false);
        let tok = t.tokenizer();
        let p = problem(Op::Add, 123, 456);
        let (tokens, scored) = t.example(&p, &tok, 14);
        assert_eq!(tok.decode(&tokens).unwrap(), "123+456=9750..");
        // Targets 7..=10 predict the answer's 4 characters (positions 8..=11).
        let expected: Vec<bool> = (0..13).map(|j| (7..11).contains(&j)).collect();
        assert_eq!(scored, expected);
    }

    #[test]
    fn invalid_tasks_are_refused() {
        let bad = |t: TaskConfig| t.validate().unwrap_err().to_string();
        let ok = TaskConfig::default();
        assert!(ok.validate().is_ok());
        assert!(
            bad(TaskConfig {
                n_digits: 0,
                ..ok.clone()
            })
            .contains("n_digits")
        );
        assert!(
            bad(TaskConfig {
                n_digits: 10,
                ..ok.clone()
            })
            .contains("n_digits")
        );
        assert!(bad(TaskConfig { ops: vec![], ..ok }).contains("ops"));
    }
}

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
//! With `trace`, `-`, `*` and `/` first write the steps a person would, as in the
//! detailed scratchpads of Lee et al. 2023 ("Teaching Arithmetic to Small Transformers")
//! and Goat's division, each step ending in `|`. Every character of a step then depends
//! on a few characters at fixed distances before it:
//!
//! ```text
//! 178-523=50|50|61|-|51|41|31|-543
//!     a - b column by column, least significant first: the digit and whether the column
//!     borrowed (8-3=5, 7-2=5, 11-5=6 with a borrow); the last borrow is the sign, so
//!     no comparison of a and b is needed. Then |a-b|: when negative, 0 minus those
//!     digits with their borrows (10-5=5, 10-6=4, 10-7=3), else a copy; then the result
//! 123*456=8370|5160|88860|2940|880650
//!     the rows of written multiplication and their running sums, least significant
//!     digit first: 123·6 = 738 (n_digits+1 wide), 123·5 = 615, 738 + 6150 = 6888,
//!     123·4 = 492; the last sum, 6888 + 49200, is the product
//! 123/007=7000|4100|1200|8200|5300|2400|9400|6500|3600|100000000100|210017000500|350079400400|017r004
//!     long division: first the table of b's multiples, 1·b to 9·b (n_digits+1 wide),
//!     each the one before plus b, as addition writes it; then, after bringing down
//!     each digit of a, the part divided (n_digits+1 wide), the quotient digit, the
//!     multiple of b subtracted (n_digits+1 wide) and the remainder (n_digits wide). All
//!     are least significant first, so that the digits a subtraction pairs sit at the
//!     same offsets of their numbers, the order its borrows run in (1 - 0 = 1,
//!     12 - 7 = 5, 53 - 49 = 4), and bringing down a digit writes it in front of the
//!     remainder's. The quotient digit is the number of multiples in the table not
//!     above the part: a comparison with numbers already written rather than an
//!     estimate of part / b, and the multiple a copy of one of them
//! ```
//!
//! The loss scores the answer only, trace included; exact match scores the final result.

use crate::problem::{Op, Problem, digit_of};
use crate::{CharTokenizer, DataError, Result, Tokenizer};
use serde::{Deserialize, Serialize};

/// Every character a problem or answer uses; `.` pads an example to `block_size + 1`.
pub const VOCAB: &str = "0123456789+-*/=r|.";

const PAD: char = '.';

/// Long division's table holds b's multiples 1·b to this · b: every quotient digit's.
const MULTIPLES: usize = 9;

/// The `[task]` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Operands have up to this many digits (1 to 9, so that products fit in 64 bits).
    pub n_digits: usize,
    /// Problems are drawn with these operators.
    pub ops: Vec<Op>,
    /// How often each of `ops` is drawn, relative to the others (empty: equally often), so
    /// that an operator learned early does not take the budget of a harder one.
    pub op_weights: Vec<f64>,
    /// Write the intermediate steps of `-`, `*` and `/` before the result.
    pub trace: bool,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            n_digits: 3,
            ops: vec![Op::Add],
            op_weights: Vec::new(),
            trace: false,
        }
    }
}

/// A model's answer, read back the way a person writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// `579`, `-7`, `3r2`.
    pub result: String,
    /// The written steps (`13-8=5`, `123*6=738`, `53/7: 53-49=4`); empty without a trace.
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
        if !self.op_weights.is_empty() && self.op_weights.len() != self.ops.len() {
            return bad("op_weights must have one weight for each of ops, or be left out");
        }
        if self.op_weights.iter().any(|w| !w.is_finite() || *w <= 0.0) {
            return bad("op_weights must be positive numbers");
        }
        Ok(())
    }

    /// The weight of each of `ops`, as drawn.
    pub fn weights(&self) -> Vec<f64> {
        if self.op_weights.is_empty() {
            vec![1.0; self.ops.len()]
        } else {
            self.op_weights.clone()
        }
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
        let trace: usize = self.step_widths(op).iter().map(|w| w + 1).sum();
        trace + self.result_len(op)
    }

    /// Characters of the prompt `a op b =`.
    pub fn prompt_len(&self) -> usize {
        2 * self.n_digits + 2
    }

    /// The longest prompt + answer among the task's operators; a model's `block_size`
    /// must be at least this minus one (the last character is never an input).
    pub fn example_len(&self) -> usize {
        let longest = self.ops.iter().map(|&op| self.answer_len(op)).max();
        self.prompt_len() + longest.unwrap_or(0)
    }

    /// Whether `answer` (as the model wrote it) ends in the right result; the trace is
    /// not scored.
    pub fn is_exact(&self, p: &Problem, answer: &str) -> bool {
        answer.len() == self.answer_len(p.op) && answer.ends_with(&self.result(p))
    }

    /// Reads an answer the model wrote back into a person's notation: digits in the usual
    /// order, padding dropped, each step as the arithmetic it writes down (with the
    /// model's own numbers, right or wrong). `None` when a digit, sign or separator is not
    /// where the layout puts one.
    pub fn read(&self, p: &Problem, answer: &str) -> Option<Reading> {
        if answer.len() != self.answer_len(p.op) || !answer.is_ascii() {
            return None;
        }
        let n = self.n_digits;
        let (trace, result) = answer.split_at(answer.len() - self.result_len(p.op));
        let steps: Vec<&str> = trace.split_terminator('|').collect();
        let widths = self.step_widths(p.op);
        if steps.len() != widths.len()
            || trace.matches('|').count() != widths.len()
            || steps.iter().zip(&widths).any(|(s, &w)| s.len() != w)
        {
            return None;
        }
        // A number the model wrote, least significant digit first.
        let value = |digits: &str| -> Option<u64> { number(digits, true)?.parse().ok() };
        let (trace, result) = match p.op {
            Op::Add => (Vec::new(), number(result, true)?),
            Op::Sub => {
                let sign = match &result[..1] {
                    "-" => "-",
                    "+" => "",
                    _ => return None,
                };
                let trace = if steps.is_empty() {
                    Vec::new()
                } else {
                    // Each column as the subtraction it writes: top (plus 10 when it
                    // borrowed) minus bottom (plus the borrow it owes).
                    let column = |c: &str, top: u64, bottom: u64, owed: &mut u64| {
                        let d = number(&c[..1], false)?;
                        let borrow = match &c[1..] {
                            "1" => 1,
                            "0" => 0,
                            _ => return None,
                        };
                        let (x, y) = (top + 10 * borrow, bottom + *owed);
                        *owed = borrow;
                        Some(format!("{x}-{y}={d}"))
                    };
                    let (first, rest) = steps.split_at(n);
                    let mut owed = 0;
                    let mut trace: Vec<String> = first
                        .iter()
                        .enumerate()
                        .map(|(i, c)| column(c, digit_of(p.a, i), digit_of(p.b, i), &mut owed))
                        .collect::<Option<_>>()?;
                    // A negative difference is 0 minus the first pass's digits, as written.
                    if rest[0] == "-" {
                        let mut owed = 0;
                        for (c, d) in rest[1..].iter().zip(first) {
                            trace.push(column(
                                c,
                                0,
                                number(&d[..1], false)?.parse().ok()?,
                                &mut owed,
                            )?);
                        }
                    } else if rest[0] != "+" {
                        return None;
                    }
                    trace
                };
                (trace, format!("{sign}{}", number(&result[1..], true)?))
            }
            Op::Mul => {
                // Rows (a × digit i of b) and, between them, the sums so far.
                let mut trace = Vec::new();
                let mut sum = None;
                let mut rows = 0;
                let mut lines = steps.iter().map(|s| value(s));
                while let Some(row) = lines.next() {
                    let row = row?;
                    let shift = 10u64.pow(rows as u32);
                    trace.push(format!(
                        "{}*{}={}",
                        p.a,
                        digit_of(p.b, rows) * shift,
                        row * shift
                    ));
                    let total = match sum {
                        None => row,
                        Some(before) => {
                            let total = match lines.next() {
                                Some(written) => written?,
                                None => value(result)?,
                            };
                            trace.push(format!("{before}+{}={total}", row * shift));
                            total
                        }
                    };
                    sum = Some(total);
                    rows += 1;
                }
                (trace, number(result, true)?)
            }
            Op::Div => {
                // The table as the model wrote it, then each step: the part, its
                // quotient digit, and the subtraction of the multiple.
                let (table, steps) = steps.split_at(MULTIPLES.min(steps.len()));
                let table = table.iter().map(|s| value(s)).collect::<Option<Vec<_>>>()?;
                let table = table.iter().map(|m| m.to_string()).collect::<Vec<_>>();
                let mut trace = Vec::new();
                if !table.is_empty() {
                    trace.push(format!("{} × 1 to 9: {}", p.b, table.join(" ")));
                }
                let steps = steps.iter().map(|s| {
                    let part = number(&s[..n + 1], true)?;
                    let q = number(&s[n + 1..n + 2], false)?;
                    let multiple = value(&s[n + 2..2 * n + 3])?;
                    let rem = value(&s[2 * n + 3..])?;
                    Some(format!("{part}/{}: {q}, {part}-{multiple}={rem}", p.b))
                });
                trace.extend(steps.collect::<Option<Vec<_>>>()?);
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
            Op::Sub => format!("{}{}", sign(p), reversed(p.a.abs_diff(p.b), n)),
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
        if !self.trace {
            return Vec::new();
        }
        match p.op {
            Op::Add => Vec::new(),
            Op::Sub => {
                let column = |(d, borrow): (u64, bool)| format!("{d}{}", u8::from(borrow));
                let first = p.borrows(n).into_iter().map(column);
                let second = p.magnitude(n).into_iter().map(column);
                first
                    .chain(std::iter::once(sign(p).to_string()))
                    .chain(second)
                    .collect()
            }
            Op::Mul => {
                let rows = p.partial_products(n);
                let sums = p.running_sums(n);
                let mut steps = vec![reversed(rows[0], n + 1)];
                for i in 1..n {
                    steps.push(reversed(rows[i], n + 1));
                    if i + 1 < n {
                        steps.push(reversed(sums[i], n + i + 1));
                    }
                }
                steps
            }
            Op::Div => {
                let table = (1..=MULTIPLES as u64).map(|k| reversed(k * p.b, n + 1));
                let steps = p.long_division(n).into_iter().map(|s| {
                    let (part, multiple) = (reversed(s.part, n + 1), reversed(s.multiple, n + 1));
                    let rem = reversed(s.rem, n);
                    format!("{part}{}{multiple}{rem}", s.q)
                });
                table.chain(steps).collect()
            }
        }
    }

    /// Characters of each trace step, its `|` not included (none: no trace).
    fn step_widths(&self, op: Op) -> Vec<usize> {
        let n = self.n_digits;
        if !self.trace {
            return Vec::new();
        }
        match op {
            Op::Add => Vec::new(),
            Op::Sub => [vec![2; n], vec![1], vec![2; n]].concat(),
            Op::Mul => {
                let mut widths = vec![n + 1];
                for i in 1..n {
                    widths.push(n + 1);
                    if i + 1 < n {
                        widths.push(n + i + 1);
                    }
                }
                widths
            }
            Op::Div => [vec![n + 1; MULTIPLES], vec![3 * n + 3; n]].concat(),
        }
    }
}

/// The sign of `a - b`, as the layout writes it.
fn sign(p: &Problem) -> char {
    if p.a < p.b { '-' } else { '+' }
}

/// `value` zero-padded to `width` digits, least significant first.
fn reversed(value: u64, width: usize) -> String {
    format!("{value:0width$}").chars().rev().collect()
}

/// Fixed-width digits (least significant first when `reversed`) as a person writes the
/// number: usual order, no leading zeros. `None` if any is not a digit.
fn number(digits: &str, reversed: bool) -> Option<String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
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
            ..TaskConfig::default()
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
            written(&t, &problem(Op::Sub, 178, 523)),
            "178-523=50|50|61|-|51|41|31|-543"
        );
        assert_eq!(
            written(&t, &problem(Op::Sub, 523, 178)),
            "523-178=51|41|30|+|50|40|30|+543"
        );
        assert_eq!(
            written(&t, &problem(Op::Mul, 123, 456)),
            "123*456=8370|5160|88860|2940|880650"
        );
        assert_eq!(
            written(&t, &problem(Op::Div, 123, 7)),
            "123/007=7000|4100|1200|8200|5300|2400|9400|6500|3600|\
             100000000100|210017000500|350079400400|017r004"
        );
        assert_eq!(t.example_len(), 8 + 45 + 39 + 7);
        for op in Op::ALL {
            let p = problem(op, 999, 999);
            assert_eq!(t.answer(&p).len(), t.answer_len(op), "{op}");
        }
    }

    /// Random problems of every operator and size, with and without the trace, and
    /// n_digits 1 to 4: the answer has its operator's fixed width, and reading it back
    /// (un-reversing, un-padding) gives the true result.
    #[test]
    fn answers_read_back_to_the_true_result() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in 1..=4 {
            for trace in [false, true] {
                let t = TaskConfig {
                    n_digits: n,
                    ..task(trace)
                };
                let top = 10u64.pow(n as u32);
                for _ in 0..2000 {
                    let op = Op::ALL[rng.random_range(0..4)];
                    let a = rng.random_range(0..top);
                    let b = rng.random_range(1..top);
                    let p = problem(op, a, b);
                    let answer = t.answer(&p);
                    assert_eq!(t.prompt(&p).len(), t.prompt_len());
                    assert_eq!(answer.len(), t.answer_len(op), "{p} as {answer}");
                    let expected = match op {
                        Op::Add => (a + b).to_string(),
                        Op::Sub => (a as i64 - b as i64).to_string(),
                        Op::Mul => (a * b).to_string(),
                        Op::Div => format!("{}r{}", a / b, a % b),
                    };
                    let reading = t.read(&p, &answer).unwrap();
                    assert_eq!(reading.result, expected, "{p} as {answer}");
                    let steps = match op {
                        _ if !trace => 0,
                        Op::Add => 0,
                        Op::Sub if a < b => 2 * n,
                        Op::Sub => n,
                        // The table, then a step per digit.
                        Op::Div => 1 + n,
                        Op::Mul => 2 * n - 1,
                    };
                    assert_eq!(reading.trace.len(), steps, "{p} as {answer}");
                    assert!(t.is_exact(&p, &answer));
                }
            }
        }
    }

    /// Each step of a right trace reads as true arithmetic.
    #[test]
    fn traces_read_as_written_steps() {
        let t = task(true);
        let sub = problem(Op::Sub, 178, 523);
        let r = t.read(&sub, &t.answer(&sub)).unwrap();
        assert_eq!(
            r.trace,
            ["8-3=5", "7-2=5", "11-5=6", "10-5=5", "10-6=4", "10-7=3"]
        );
        assert_eq!(r.result, "-345");
        let sub = problem(Op::Sub, 523, 178);
        let r = t.read(&sub, &t.answer(&sub)).unwrap();
        assert_eq!(r.trace, ["13-8=5", "12-8=4", "5-2=3"]);
        assert_eq!(r.result, "345");
        let mul = problem(Op::Mul, 123, 456);
        let r = t.read(&mul, &t.answer(&mul)).unwrap();
        assert_eq!(
            r.trace,
            [
                "123*6=738",
                "123*50=6150",
                "738+6150=6888",
                "123*400=49200",
                "6888+49200=56088"
            ]
        );
        assert_eq!(r.result, "56088");
        let div = problem(Op::Div, 123, 7);
        let r = t.read(&div, &t.answer(&div)).unwrap();
        assert_eq!(
            r.trace,
            [
                "7 × 1 to 9: 7 14 21 28 35 42 49 56 63",
                "1/7: 0, 1-0=1",
                "12/7: 1, 12-7=5",
                "53/7: 7, 53-49=4"
            ]
        );
        assert_eq!(r.result, "17r4");
        // A wrong quotient digit shows in the step it was chosen in.
        let wrong = t
            .answer(&div)
            .replace("350079400400|017r004", "350086500300|018r003");
        assert_eq!(t.read(&div, &wrong).unwrap().trace[3], "53/7: 8, 53-56=3");
    }

    #[test]
    fn exact_match_scores_the_result_only() {
        let t = task(true);
        let p = problem(Op::Mul, 12, 34);
        let right = t.answer(&p);
        assert!(t.is_exact(&p, &right));
        // A wrong step, but the right result: still exact.
        let wrong_step = format!("9{}", &right[1..]);
        assert!(t.is_exact(&p, &wrong_step));
        let wrong_result = format!("{}1", &right[..right.len() - 1]);
        assert!(!t.is_exact(&p, &wrong_result));
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
        let right = t.answer(&sub);
        assert_eq!(right, "30|91|91|-|71|01|01|-700");
        assert_eq!(t.read(&sub, &right).unwrap().result, "-7");
        assert_eq!(
            t.read(&sub, &right.replacen("30", "32", 1)),
            None,
            "a borrow of 2"
        );
        assert_eq!(t.read(&sub, &right.replace("-|", "*|")), None, "no sign");
        assert_eq!(t.read(&sub, &right.replace("|-7", "|77")), None, "no sign");
        let mul = problem(Op::Mul, 12, 34);
        let right = t.answer(&mul);
        assert_eq!(t.read(&mul, &right.replacen('|', "0", 1)), None);
        let div = problem(Op::Div, 17, 5);
        let right = t.answer(&div);
        assert_eq!(t.read(&div, &right.replace('r', "+")), None);
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
        assert!(
            bad(TaskConfig {
                op_weights: vec![1.0, 2.0],
                ..ok.clone()
            })
            .contains("one weight for each")
        );
        assert!(
            bad(TaskConfig {
                op_weights: vec![0.0],
                ..ok.clone()
            })
            .contains("positive")
        );
        assert!(bad(TaskConfig { ops: vec![], ..ok }).contains("ops"));
    }
}

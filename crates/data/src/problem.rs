//! One arithmetic problem, `a op b` on non-negative integers: its exact result, the steps a
//! person writes down on the way (partial products, long division), and reading one from
//! what a user types (`7 + 45 =`).
//!
//! Division is integer division with a remainder: `a / b` gives `q` and `r` with
//! `a = q·b + r` and `0 ≤ r < b` (for non-negative operands, truncating and floor division
//! agree). `b` is never 0. Subtraction may go below zero: `5-12` is `-7`.

use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The calculator's four operators, written in configs and problems as `+ - * /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "+")]
    Add,
    #[serde(rename = "-")]
    Sub,
    #[serde(rename = "*")]
    Mul,
    #[serde(rename = "/")]
    Div,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Add, Op::Sub, Op::Mul, Op::Div];

    pub fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    fn from_symbol(c: char) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.symbol() == c)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.symbol())
    }
}

/// `a op b`; `b ≥ 1` for division.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Problem {
    pub op: Op,
    pub a: u64,
    pub b: u64,
}

impl fmt::Display for Problem {
    /// As a person writes it: `7+45`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.a, self.op, self.b)
    }
}

/// One step of long division: `part - multiple = rem`, with `multiple = q · b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivisionStep {
    pub part: u64,
    pub q: u64,
    pub multiple: u64,
    pub rem: u64,
}

impl Problem {
    /// Digits of `a` and of `b` written out: the problem's cell, as results are reported
    /// (`456/7` is a 3-digit by 1-digit division).
    pub fn digits(&self) -> (usize, usize) {
        (digit_count(self.a), digit_count(self.b))
    }

    /// Written subtraction `a - b` over `n_digits` columns, least significant first: each
    /// column's digit of `a - b` (modulo 10^n_digits) and whether it borrowed from the
    /// next. A column borrows when its top digit is smaller than its bottom digit plus the
    /// borrow it owes, so each depends on its two digits and the previous borrow only;
    /// the last column borrows exactly when `a < b`, which so needs no comparison.
    pub fn borrows(&self, n_digits: usize) -> Vec<(u64, bool)> {
        columns(self.a, self.b, n_digits)
    }

    /// The digits of `|a - b|` from [`borrows`](Self::borrows)' digits D, least
    /// significant first: D itself when `a ≥ b` (no column borrows), else 0 - D, column by
    /// column with its borrows (10^n_digits - D is `b - a`).
    pub fn magnitude(&self, n_digits: usize) -> Vec<(u64, bool)> {
        let modulus = 10u64.pow(n_digits as u32);
        let d = (self.a + modulus - self.b) % modulus;
        if self.a >= self.b {
            columns(d, 0, n_digits)
        } else {
            columns(0, d, n_digits)
        }
    }

    /// `a` times each digit of `b`, least significant first, over `n_digits` digits of `b`
    /// (leading zeros included): the rows of a written multiplication.
    pub fn partial_products(&self, n_digits: usize) -> Vec<u64> {
        (0..n_digits)
            .map(|i| self.a * digit_of(self.b, i))
            .collect()
    }

    /// The running sums of the written multiplication's rows: after row `i`, `a` times the
    /// last `i + 1` digits of `b`. Each adds one shifted row to the sum before it, two
    /// numbers at a time as a person adds them; the last is the product.
    pub fn running_sums(&self, n_digits: usize) -> Vec<u64> {
        (1..=n_digits)
            .map(|i| self.a * (self.b % 10u64.pow(i as u32)))
            .collect()
    }

    /// Long division over the `n_digits` digits of `a`, most significant first: after
    /// bringing down each digit, the part divided, the quotient digit, the multiple of `b`
    /// subtracted and the remainder.
    pub fn long_division(&self, n_digits: usize) -> Vec<DivisionStep> {
        let mut rem = 0;
        (0..n_digits)
            .rev()
            .map(|i| {
                let part = rem * 10 + digit_of(self.a, i);
                let q = part / self.b;
                rem = part - q * self.b;
                DivisionStep {
                    part,
                    q,
                    multiple: q * self.b,
                    rem,
                }
            })
            .collect()
    }

    /// Reads what a user types — `7+45=`, `7 + 45`, `007+045` — refusing anything a task
    /// of `n_digits` numbers and operators `ops` cannot pose: letters, longer numbers, a
    /// missing operand, an operator the task was not trained on, division by zero.
    pub fn parse(input: &str, n_digits: usize, ops: &[Op]) -> Result<Problem> {
        let bad = |reason: String| DataError::BadProblem {
            input: input.to_string(),
            reason,
            n_digits,
            ops: ops.iter().map(|op| op.symbol()).collect(),
        };
        let text: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        let text = text.strip_suffix('=').unwrap_or(&text);
        let Some((at, op)) = text
            .char_indices()
            .find_map(|(i, c)| Op::from_symbol(c).map(|op| (i, op)))
        else {
            return Err(bad("it has no operator".into()));
        };
        let number = |digits: &str, side: &str| -> Result<u64> {
            if digits.is_empty() {
                return Err(bad(format!("the number {side} '{op}' is missing")));
            }
            if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
                return Err(bad(match Op::from_symbol(c) {
                    Some(_) => "it has more than one operator".into(),
                    None => format!("{c:?} is not a digit"),
                }));
            }
            let significant = digits.trim_start_matches('0');
            if significant.len() > n_digits {
                return Err(bad(format!("{digits} has more than {n_digits} digits")));
            }
            Ok(significant.parse().unwrap_or(0))
        };
        let a = number(&text[..at], "before")?;
        let b = number(&text[at + 1..], "after")?;
        if !ops.contains(&op) {
            return Err(bad(format!("this run was not trained on '{op}'")));
        }
        if op == Op::Div && b == 0 {
            return Err(bad("division by zero".into()));
        }
        Ok(Problem { op, a, b })
    }
}

/// The columns of `top - bottom` modulo 10^n, least significant first: each digit and
/// whether its column borrowed.
fn columns(top: u64, bottom: u64, n: usize) -> Vec<(u64, bool)> {
    let mut owed = 0;
    (0..n)
        .map(|i| {
            let (x, y) = (digit_of(top, i), digit_of(bottom, i) + owed);
            let borrow = x < y;
            owed = u64::from(borrow);
            (x + 10 * owed - y, borrow)
        })
        .collect()
}

/// Digits in `n` written out (`0` has one).
pub fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Digit `i` of `value`, counting from the least significant.
pub fn digit_of(value: u64, i: usize) -> u64 {
    value / 10u64.pow(i as u32) % 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_natural_input() {
        let p = |s: &str| Problem::parse(s, 3, &Op::ALL).unwrap();
        let seven_plus_45 = Problem {
            op: Op::Add,
            a: 7,
            b: 45,
        };
        for s in ["7+45=", "7+45", " 7 + 45 = ", "007+045=", "0007+45"] {
            assert_eq!(p(s), seven_plus_45, "{s:?}");
        }
        assert_eq!(p("5-12").op, Op::Sub);
        assert_eq!(p("999*999=").a, 999);
        assert_eq!(p("17/5").b, 5);
        assert_eq!(seven_plus_45.to_string(), "7+45");
    }

    #[test]
    fn malformed_problems_say_what_is_wrong() {
        let err = |s: &str| {
            Problem::parse(s, 3, &[Op::Add, Op::Div])
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("7+4a").contains("'a' is not a digit"),
            "{}",
            err("7+4a")
        );
        assert!(err("1234+5").contains("1234 has more than 3 digits"));
        assert!(err("7+").contains("the number after '+' is missing"));
        assert!(err("+5=").contains("the number before '+' is missing"));
        assert!(err("75").contains("no operator"));
        assert!(err("1+2+3").contains("more than one operator"));
        assert!(err("7*5").contains("not trained on '*'"));
        assert!(err("7/0").contains("division by zero"));
        assert!(err("").contains("no operator"));
        let msg = err("7+4a");
        assert!(msg.starts_with("\"7+4a\" is not a problem"), "{msg}");
        assert!(
            msg.contains("up to 3 digits") && msg.contains("+/"),
            "{msg}"
        );
    }

    #[test]
    fn written_steps_add_up() {
        let p = Problem {
            op: Op::Mul,
            a: 123,
            b: 456,
        };
        assert_eq!(p.partial_products(3), vec![738, 615, 492]);
        // 738, then 738 + 6150, then 6888 + 49200.
        assert_eq!(p.running_sums(3), vec![738, 6888, 56088]);
        let d = Problem {
            op: Op::Div,
            a: 123,
            b: 7,
        };
        // 1 - 0 = 1, 12 - 7 = 5, 53 - 49 = 4: 123 = 17·7 + 4.
        let steps: Vec<_> = d
            .long_division(3)
            .iter()
            .map(|s| (s.part, s.q, s.multiple, s.rem))
            .collect();
        assert_eq!(steps, vec![(1, 0, 0, 1), (12, 1, 7, 5), (53, 7, 49, 4)]);
        // 178 - 523: 18 - 3 = 5, 7 - 2 = 5, 1 - 5 borrows: 655 (= 1000 - 345), so
        // negative; 0 - 655: 10 - 5 = 5, 10 - 6 = 4, 10 - 7 = 3: 345.
        let s = Problem {
            op: Op::Sub,
            a: 178,
            b: 523,
        };
        assert_eq!(s.borrows(3), vec![(5, false), (5, false), (6, true)]);
        assert_eq!(s.magnitude(3), vec![(5, true), (4, true), (3, true)]);
        let s = Problem {
            a: 523,
            b: 178,
            ..s
        };
        assert_eq!(s.borrows(3), vec![(5, true), (4, true), (3, false)]);
        assert_eq!(s.magnitude(3), vec![(5, false), (4, false), (3, false)]);
        assert_eq!(p.digits(), (3, 3));
        assert_eq!(Problem { a: 0, b: 45, ..p }.digits(), (1, 2));
    }

    /// On every 2-digit problem the steps end in the true result.
    #[test]
    fn steps_end_in_the_result() {
        for a in 0..100 {
            for b in 1..100 {
                let p = |op| Problem { op, a, b };
                let value = |columns: Vec<(u64, bool)>| -> u64 {
                    columns
                        .iter()
                        .enumerate()
                        .map(|(i, (d, _))| d * 10u64.pow(i as u32))
                        .sum()
                };
                assert_eq!(value(p(Op::Sub).borrows(2)), (a + 100 - b) % 100);
                assert_eq!(p(Op::Sub).borrows(2)[1].1, a < b, "the sign");
                assert_eq!(value(p(Op::Sub).magnitude(2)), a.abs_diff(b));
                assert_eq!(p(Op::Mul).running_sums(2)[1], a * b);
                let steps = p(Op::Div).long_division(2);
                let q = steps.iter().fold(0, |q, s| q * 10 + s.q);
                assert_eq!((q, steps[1].rem), (a / b, a % b));
                assert!(
                    steps
                        .iter()
                        .all(|s| s.rem < b && s.part == s.multiple + s.rem)
                );
            }
        }
    }
}

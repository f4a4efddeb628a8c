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

impl Problem {
    /// Digits of the longer operand: the problem's size, as results are reported.
    pub fn digits(&self) -> usize {
        digit_count(self.a.max(self.b))
    }

    /// `a` times each digit of `b`, least significant first, over `n_digits` digits of `b`
    /// (leading zeros included): the rows of a written multiplication.
    pub fn partial_products(&self, n_digits: usize) -> Vec<u64> {
        (0..n_digits)
            .map(|i| self.a * (self.b / 10u64.pow(i as u32) % 10))
            .collect()
    }

    /// Long division over the `n_digits` digits of `a`, most significant first: after
    /// bringing down each digit, the quotient digit and the remainder.
    pub fn long_division(&self, n_digits: usize) -> Vec<(u64, u64)> {
        let mut rem = 0;
        (0..n_digits)
            .rev()
            .map(|i| {
                let part = rem * 10 + self.a / 10u64.pow(i as u32) % 10;
                rem = part % self.b;
                (part / self.b, rem)
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

/// Digits in `n` written out (`0` has one).
fn digit_count(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
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
        let d = Problem {
            op: Op::Div,
            a: 123,
            b: 7,
        };
        // 1 → 0 r1, 12 → 1 r5, 53 → 7 r4: 123 = 17·7 + 4.
        assert_eq!(d.long_division(3), vec![(0, 1), (1, 5), (7, 4)]);
        assert_eq!(p.digits(), 3);
        assert_eq!(Problem { a: 0, b: 9, ..p }.digits(), 1);
    }
}

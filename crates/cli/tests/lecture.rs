//! End-to-end test of `gpt lecture` on the real Tiny Shakespeare (the shared copy that
//! `BURNGPT_DATA_DIR` points at): every chapter runs, in order, and shows what it should.

mod common;

use common::gpt_command;
use std::process::Output;

fn lecture(args: &[&str]) -> Output {
    let mut all = vec!["lecture"];
    all.extend_from_slice(args);
    gpt_command(&all).output().expect("the gpt binary runs")
}

/// The number that follows `label` on the first line starting with `line_start`.
fn number_after(out: &str, line_start: &str, label: &str) -> f32 {
    let line = out
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no line starting with {line_start:?} in:\n{out}"));
    let rest = &line[line.find(label).expect("label on the line") + label.len()..];
    rest.split(|c: char| c == ',' || c.is_whitespace())
        .find(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn walks_through_every_chapter_in_order() {
    let pictures = common::tmp("lecture-pictures");
    let o = lecture(&["--out-dir", pictures.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "gpt lecture failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let headings: Vec<usize> = (1..=9)
        .map(|n| {
            out.find(&format!("== {n}. "))
                .unwrap_or_else(|| panic!("chapter {n} missing:\n{out}"))
        })
        .collect();
    assert!(headings.windows(2).all(|w| w[0] < w[1]), "{out}");

    assert!(out.contains("length of dataset in characters: 1115394"));
    assert!(out.contains("vocab_size: 65"));
    assert!(out.contains("encode(\"hii there\") = [46, 47, 47, 1, 58, 46, 43, 56, 43]"));
    assert!(out.contains("= \"hii there\""));
    assert!(out.contains("train: 1003854 tokens, val: 111540 tokens"));
    assert_eq!(out.matches("when input is [").count(), 8);

    // The bigram model starts at a uniform guess, ln 65, and clearly learns.
    let before = number_after(&out, "step 0:", "train loss ");
    let after = number_after(&out, "step 300:", "train loss ");
    let val_after = number_after(&out, "step 300:", "val loss ");
    assert!((before - 65f32.ln()).abs() < 0.05, "{before}");
    assert!(after < 3.0 && val_after < 3.0, "{after} {val_after}");
    // The lecture's N(0, 1) table starts well above ln 65 (the lecture: 4.87); both learn.
    let small = number_after(&out, "  init N(0, 0.02)", "step 0: train loss ");
    let unit = number_after(&out, "  init N(0, 1)", "step 0: train loss ");
    let unit_after = number_after(&out, "  init N(0, 1)", "step 300: train loss ");
    assert!((small - before).abs() < 1e-4, "{small} {before}");
    assert!(unit > 4.4, "{unit}");
    assert!(unit_after < unit - 1.0, "{unit_after}");
    assert!(out.contains("-ln(1/65) = 4.17"), "{out}");

    // The aggregation versions agree, and the heads one at a time equal the batched layer.
    for version in ["v2", "v3", "v4"] {
        let diff = number_after(&out, version, "max |v - v1| = ");
        assert!(diff < 1e-5, "{version}: {diff}");
    }
    assert!(number_after(&out, "max |diff|", "max |diff| = ") < 1e-5);
    // The head's first row: token 0 can only listen to itself.
    assert!(out.contains("  1.0000 0.0000 0.0000 0.0000 0.0000 0.0000 0.0000 0.0000\n"));

    // The single head, untrained and trained, as tables and as one picture of two panels.
    assert!(out.contains("untrained:\n"), "{out}");
    assert!(out.contains("after 500 AdamW steps"), "{out}");
    let png = pictures.join("single_head.png");
    assert!(
        out.contains(&format!("picture: wrote {}", png.display())),
        "{out}"
    );
    let file = std::fs::File::open(&png).expect("the picture");
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!((info.width, info.height), (872, 430));
    let colours: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()]
        .chunks(info.color_type.samples())
        .collect();
    assert!(colours.len() > 10, "blank: {} colours", colours.len());
    std::fs::remove_dir_all(&pictures).unwrap();
}

#[test]
fn a_missing_file_is_one_error_line() {
    let o = lecture(&["--data", "/nonexistent/input.txt"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: cannot read /nonexistent/input.txt"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

//! GPT-2 in and out, end to end: `gpt export` writes a run as Hugging Face's GPT-2
//! directory (and refuses models GPT-2 cannot express, naming the switch); `gpt sample` and
//! `gpt train` take `--init-from` a Hugging Face directory or a published name (whose
//! download fails offline with an error naming the flag for a local directory).
//!
//! With `BURNGPT_TRANSFORMERS_PYTHON` set to a Python that has `transformers`, the export
//! test also has `GPT2LMHeadModel.from_pretrained` load the export and match our logits to
//! 1e-4 (RESULTS.md records such a run).

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use common::{check_one_error_line, gpt, gpt_command, json, ok, shakespeare_path, tmp, train_tiny};
use model::{GptConfig, LanguageModel};
use std::path::Path;

fn logits(model: &impl LanguageModel<Flex>, ids: &[i64], t: usize) -> Vec<f32> {
    let idx = Tensor::<Flex, 2, Int>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i as i32).collect::<Vec<_>>(),
            [ids.len() / t, t],
        ),
        &Default::default(),
    );
    model.logits(idx).unwrap().into_data().to_vec().unwrap()
}

#[test]
fn export_writes_hugging_face_gpt2_with_our_logits() {
    let dir = tmp("export");
    let run = dir.join("run");
    let o = train_tiny(
        &run,
        &[
            "--set",
            "tie_weights=true",
            "--set",
            "qkv_bias=true",
            "--set",
            "activation=gelu_tanh",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("hf");
    let said = ok(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(said.contains("wrote"), "{said}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["activation_function"], "gelu_new");
    assert_eq!(config["n_embd"], 16);
    assert_eq!(config["tie_word_embeddings"], true);
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    assert!(vocab < 100, "a character vocabulary: {vocab}");
    assert!(
        !out.join("vocab.json").exists(),
        "no BPE files for a character run"
    );

    // Imported back: the run's own logits, bit for bit.
    let device = Default::default();
    let ours = training::RunDir::open(&run)
        .unwrap()
        .load_model::<Flex>(&device)
        .unwrap();
    let (back, _) = model::hf::load_gpt2::<Flex>(&out, &device).unwrap();
    let back = model::Model::Gpt(back);
    let ids: Vec<i64> = (0..32).map(|i| (i * 7 % vocab) as i64).collect();
    let expected = logits(&ours, &ids, 16);
    assert_eq!(logits(&back, &ids, 16), expected);

    if let Ok(python) = std::env::var("BURNGPT_TRANSFORMERS_PYTHON") {
        let check = dir.join("check.json");
        std::fs::write(
            &check,
            serde_json::json!({"ids": ids, "t": 16, "logits": expected}).to_string(),
        )
        .unwrap();
        let script = r#"
import json, sys, torch
from transformers import GPT2LMHeadModel
c = json.load(open(sys.argv[2]))
m = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor(c["ids"]).view(-1, c["t"])
with torch.no_grad():
    got = m(ids).logits.flatten()
diff = (got - torch.tensor(c["logits"])).abs().max().item()
print(f"transformers max abs diff {diff:.3g}")
sys.exit(0 if diff <= 1e-4 else 1)
"#;
        let o = std::process::Command::new(python)
            .args(["-c", script, out.to_str().unwrap(), check.to_str().unwrap()])
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    // The lecture's head (its own lm_head, with a bias) is not GPT-2's: refused, named.
    let lecture = dir.join("lecture");
    assert!(train_tiny(&lecture, &[]).status.success());
    let no = dir.join("no");
    let args = [
        "export",
        "--run",
        lecture.to_str().unwrap(),
        "--out",
        no.to_str().unwrap(),
    ];
    check_one_error_line(&args, &gpt(&args), "tie_weights");
    assert!(!dir.join("no").join("model.safetensors").exists());
}

/// A tiny model with GPT-2's vocabulary, written as Hugging Face's GPT-2.
fn tiny_gpt2_dir(dir: &Path) {
    let config = GptConfig {
        vocab_size: 50257,
        block_size: 32,
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: true,
        qkv_bias: true,
        tie_weights: true,
        activation: model::Activation::GeluTanh,
        ..GptConfig::default()
    };
    let gpt = model::Gpt::<Flex>::new(&config, &Default::default()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in model::hf::gpt2_files(&gpt, &config, serde_json::json!({})).unwrap() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn sample_and_train_init_from_hugging_face_weights() {
    let dir = tmp("init-from-hf");
    let hf = dir.join("hf");
    tiny_gpt2_dir(&hf);
    let h = hf.to_str().unwrap();
    // Sampling: the prompt through GPT-2's BPE, streamed back; the cache changes nothing.
    let sample = |seed: &str, extra: &[&str]| {
        let mut a = vec![
            "sample",
            "--init-from",
            h,
            "--prompt",
            "Hello, world",
            "--max-new-tokens",
            "12",
            "--seed",
            seed,
        ];
        a.extend_from_slice(extra);
        ok(&a)
    };
    let a = sample("3", &[]);
    assert!(
        a.starts_with("Hello, world") && a.len() > "Hello, world".len(),
        "{a}"
    );
    assert_eq!(a, sample("3", &["--no-kv-cache"]));
    assert_ne!(a, sample("4", &[]));

    // The fixture's 512 tokens are not GPT-2's: refused.
    let fixture = model::hf::gpt2_fixture_dir();
    let args = [
        "sample",
        "--init-from",
        fixture.to_str().unwrap(),
        "--prompt",
        "a",
    ];
    check_one_error_line(&args, &gpt(&args), "not GPT-2's");

    // Training from it on GPT-2 tokens: its shape replaces the config's (block_size cropped
    // to the config's 16), and run.json records where the weights came from.
    let data = dir.join("data");
    let s = shakespeare_path();
    ok(&[
        "prepare",
        "--input",
        s.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
        "--val-fraction",
        "0.1",
    ]);
    let run = dir.join("run");
    let o = train_tiny(
        &run,
        &[
            "--data",
            data.to_str().unwrap(),
            "--init-from",
            h,
            "--set",
            "n_embd=64",
            "--set",
            "max_iters=10",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = json(&ok(&["info", "--run", run.to_str().unwrap(), "--json"]));
    assert_eq!(
        info["config"]["model"]["n_embd"], 16,
        "the checkpoint's width"
    );
    assert_eq!(
        info["config"]["model"]["block_size"], 16,
        "cropped to the config's"
    );
    assert_eq!(info["config"]["model"]["tie_weights"], true);
    let marker = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(marker.contains("hugging-face"), "{marker}");

    // Character tokens cannot start from GPT-2's weights.
    let args = [
        "train",
        "--out-dir",
        dir.join("chars").to_str().unwrap().to_owned().leak(),
        "--init-from",
        h,
        "--set",
        "max_iters=1",
    ];
    check_one_error_line(&args, &gpt(&args), "GPT-2's BPE tokens");
}

/// GPT-2's weights become a chat model: the BPE vocabulary grows by the chat tokens (old
/// rows kept), the export carries them and the chat template, and the export itself is a
/// base a chat run can start from again. With `BURNGPT_TRANSFORMERS_PYTHON`, transformers'
/// tokenizer loaded from the export renders a conversation to our ids.
#[test]
fn gpt2_weights_grow_into_a_chat_model_and_export_as_one() {
    let dir = tmp("chat-gpt2");
    let hf = dir.join("hf");
    tiny_gpt2_dir(&hf);
    let data = dir.join("chat.jsonl");
    let conversation = serde_json::json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello, who are you?"},
        {"role": "assistant", "content": "A tiny GPT."},
    ]});
    std::fs::write(&data, format!("{conversation}\n").repeat(4)).unwrap();
    let chat_args = |run: &Path, from: &Path| {
        let o = train_tiny(
            run,
            &[
                "--data",
                data.to_str().unwrap(),
                "--init-from",
                from.to_str().unwrap(),
                "--set",
                "block_size=32",
                "--set",
                "max_iters=10",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let run = dir.join("run");
    chat_args(&run, &hf);
    let info = json(&ok(&["info", "--run", run.to_str().unwrap(), "--json"]));
    assert_eq!(info["chat"], true);
    assert_eq!(info["tokenizer"], "gpt2");
    assert_eq!(info["config"]["model"]["vocab_size"], 50262);
    ok(&[
        "chat",
        "--run",
        run.to_str().unwrap(),
        "--message",
        "Hi",
        "--max-new-tokens",
        "5",
    ]);

    let out = dir.join("export");
    ok(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
    };
    let config = read("config.json");
    assert_eq!(config["vocab_size"], 50262);
    assert_eq!(
        (
            config["bos_token_id"].clone(),
            config["eos_token_id"].clone()
        ),
        (50257.into(), 50261.into())
    );
    let tokenizer = read("tokenizer_config.json");
    assert_eq!(
        tokenizer["added_tokens_decoder"]["50260"]["content"],
        "<|assistant_start|>"
    );
    assert_eq!(tokenizer["eos_token"], "<|assistant_end|>");
    assert!(
        tokenizer["chat_template"]
            .as_str()
            .unwrap()
            .contains("add_generation_prompt")
    );

    // The export is a chat base: it trains on conversations again, not on text.
    chat_args(&dir.join("again"), &out);
    let text = dir.join("text.txt");
    std::fs::write(&text, "plain text ".repeat(100)).unwrap();
    let args = [
        "train",
        "--out-dir",
        dir.join("text-run").to_str().unwrap().to_owned().leak(),
        "--data",
        text.to_str().unwrap().to_owned().leak(),
        "--init-from",
        out.to_str().unwrap().to_owned().leak(),
    ];
    check_one_error_line(&args, &gpt(&args), "finetune it on conversations");

    if let Ok(python) = std::env::var("BURNGPT_TRANSFORMERS_PYTHON") {
        let ours = {
            let tok = data::TextTokenizer::gpt2().with_chat();
            let c: data::conversation::Conversation = serde_json::from_value(conversation).unwrap();
            data::conversation::render(&c.messages, &tok).unwrap().ids
        };
        let script = r#"
import json, sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
c = json.loads(sys.argv[2])
print(json.dumps(t.apply_chat_template(c["messages"], tokenize=True, return_dict=True)["input_ids"]))
"#;
        let o = std::process::Command::new(python)
            .args([
                "-c",
                script,
                out.to_str().unwrap(),
                &conversation_line(&data),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let theirs: Vec<u32> = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(theirs, ours);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn conversation_line(data: &Path) -> String {
    std::fs::read_to_string(data)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string()
}

/// Offline, a published name fails at once, saying how to use a local copy instead, and
/// leaves nothing in the cache.
#[test]
fn named_checkpoints_offline_name_the_local_directory_flag() {
    let cache = tmp("hf-cache");
    for command in ["sample", "train"] {
        let cwd = tmp(&format!("hf-cwd-{command}"));
        std::fs::create_dir_all(&cwd).unwrap();
        let o = gpt_command(
            &[command, "--init-from", "gpt2", "--set", "max_iters=1"]
                [..if command == "sample" { 3 } else { 5 }],
        )
        .env("BURNGPT_CACHE", &cache)
        .env("BURNGPT_HF_ENDPOINT", "http://127.0.0.1:9")
        .current_dir(&cwd)
        .output()
        .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--init-from DIR") && err.contains("gpt2"),
            "{err}"
        );
        assert!(!cache.join("huggingface/gpt2/model.safetensors").exists());
    }
}

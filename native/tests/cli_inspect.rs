//! `strata inspect` end to end: JSON shape, exit codes, messages on stderr.

use std::process::Command;

use strata::model::gguf::Value;
use strata_conformance::{models, Tiny};

const REQUIRED: &[&str] = &[
    "architecture", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "head_dim", "rope_dim",
    "vocab_size", "context_length", "tied_embeddings", "n_tensors", "valid",
];

fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn inspect_json(path: &std::path::Path) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(["inspect", "--json"]).arg(path).output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn valid_model_json_has_the_required_keys() {
    let p = tmp("ok.gguf", &Tiny::qwen2().gguf().build());
    let (ok, v, stderr) = inspect_json(&p);
    assert!(ok, "{stderr}");
    for k in REQUIRED {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["architecture"], "qwen2");
    assert_eq!(v["head_dim"], 16);
    assert_eq!(v["valid"], true);
    assert!(v.get("errors").is_none());
    assert_eq!(v["provenance"]["head_dim"], "derived: hidden_size / n_heads = 64 / 4");
}

#[test]
fn invalid_model_exits_non_zero_with_errors() {
    let p = tmp("wide.gguf", &Tiny::llama().gguf().reshape("blk.0.ffn_down.weight", &[64, 192]).build());
    let (ok, v, stderr) = inspect_json(&p);
    assert!(!ok);
    assert_eq!(v["valid"], false);
    assert_eq!(v["hidden_size"], 64, "what could be read is still reported");
    let errors = v["errors"].as_array().unwrap();
    assert!(errors[0].as_str().unwrap().contains("blk.0.ffn_down.weight"), "{errors:?}");
    assert!(stderr.contains("expected shape [64, 96]") && stderr.contains("found [64, 192]"), "{stderr}");
}

#[test]
fn unreadable_files_exit_non_zero_with_a_message() {
    let (ok, v, stderr) = inspect_json(std::path::Path::new("/nonexistent/model.gguf"));
    assert!(!ok);
    assert_eq!(v["valid"], false);
    assert!(stderr.contains("/nonexistent/model.gguf") && stderr.contains("cannot open"), "{stderr}");
    let mut b = Tiny::llama().gguf().build();
    b.truncate(100);
    let (ok, _, stderr) = inspect_json(&tmp("cut.gguf", &b));
    assert!(!ok);
    assert!(stderr.contains("truncated"), "{stderr}");
    let (ok, _, stderr) = inspect_json(&tmp("zero.gguf", &Tiny::llama().gguf().kv("llama.attention.head_count", Value::U32(0)).build()));
    assert!(!ok);
    assert!(stderr.contains("llama.attention.head_count") && stderr.contains("must be > 0"), "{stderr}");
}

#[test]
fn text_report_names_sources() {
    let p = tmp("text.gguf", &Tiny::gemma3().gguf().build());
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("inspect").arg(&p).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("gguf key gemma3.attention.key_length"), "{text}");
    assert!(text.contains("valid: yes"));
}

#[test]
fn real_model_json() {
    let Some(p) = models::find(models::SMOLLM2) else { return };
    let (ok, v, stderr) = inspect_json(&p);
    assert!(ok, "{stderr}");
    assert_eq!((v["n_layers"].as_u64(), v["hidden_size"].as_u64(), v["n_heads"].as_u64()), (Some(30), Some(576), Some(9)));
    assert_eq!((v["n_kv_heads"].as_u64(), v["head_dim"].as_u64(), v["n_tensors"].as_u64()), (Some(3), Some(64), Some(272)));
    assert_eq!(v["tied_embeddings"], true);
}

//! Tokenizers built from GGUF metadata against llama.cpp's ids (fixture from
//! scripts/make_tokenizer_fixtures.py): 36 strings per model — ASCII, accents, Cyrillic,
//! Greek, CJK, Hangul, Arabic, Hebrew, Devanagari, emoji (with ZWJ and skin tones),
//! whitespace runs, tabs, newlines, code, URLs — and decode round trips.

use strata::tokenizer::Tokenizer;
use strata_conformance::fixtures::{self, ids};
use strata_conformance::models;

fn check(key: &str, file: &str) {
    let Some(path) = models::find(file) else { return };
    let fx = fixtures::json("reference/tokenizer.json");
    let m = &fx["models"][key];
    let files = strata::model::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(files.gguf.as_ref().unwrap()).unwrap();
    assert_eq!(tok.add_bos, m["add_bos"].as_bool().unwrap());
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        let got = tok.encode(text, true, false).unwrap();
        if got != want {
            failures.push(format!("{text:?}:\n   ours  {got:?}\n   llama {want:?}"));
            continue;
        }
        let body = if tok.add_bos { &got[1..] } else { &got[..] };
        assert_eq!(tok.decode(body).unwrap(), text, "{key}: decode round trip");
    }
    assert!(failures.is_empty(), "{key}: {} of {} strings differ from llama.cpp:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn smollm2_bpe_matches_llama_cpp() {
    check("smollm2", models::SMOLLM2);
}

#[test]
fn gemma3_spm_matches_llama_cpp() {
    check("gemma3", models::GEMMA3);
}

#[test]
fn control_tokens_only_with_parse_special() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let files = strata::model::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(files.gguf.as_ref().unwrap()).unwrap();
    let special = tok.encode("<|im_start|>user\nhi<|im_end|>", false, true).unwrap();
    assert_eq!(special.first(), Some(&1), "<|im_start|> is token 1");
    assert_eq!(special.last(), Some(&2), "<|im_end|> is token 2");
    let plain = tok.encode("<|im_start|>", false, false).unwrap();
    assert!(plain.len() > 1 && !plain.contains(&1));
}

/// The `tokenizer.json` path (safetensors models): SmolLM2's tokenizer as transformers
/// converts it from the GGUF (tests/fixtures/tokenizer/smollm2.tokenizer.json, saved by
/// `AutoTokenizer.from_pretrained(..., gguf_file=...)`), against llama.cpp's ids.
#[test]
fn smollm2_tokenizer_json_matches_llama_cpp() {
    let json = std::fs::read_to_string(fixtures::path("tokenizer/smollm2.tokenizer.json")).unwrap();
    let tok = Tokenizer::from_tokenizer_json(&json, Some(1), Some(2), false).unwrap();
    let fx = fixtures::json("reference/tokenizer.json");
    let mut failures = Vec::new();
    for c in fx["models"]["smollm2"]["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        let got = tok.encode(text, true, false).unwrap();
        if got != want {
            failures.push(format!("{text:?}: ours {got:?} llama {want:?}"));
        } else {
            assert_eq!(tok.decode(&got).unwrap(), text);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

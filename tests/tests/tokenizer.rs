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

/// `TextStream` (what generation streams) equals a whole decode after every token: on
/// the fixture strings' ids (accents, CJK, emoji split across byte tokens, whitespace) and
/// on seeded random id sequences (control, byte-fallback and multi-byte tokens in any
/// order), for the GGUF BPE and SentencePiece tokenizers and tokenizer.json.
/// The fixture's tokenizers: both GGUFs' (when the models are here) and SmolLM2's
/// tokenizer.json, keyed as the fixture keys them.
fn fixture_tokenizers() -> Option<Vec<(&'static str, Tokenizer)>> {
    let mut tokenizers = Vec::new();
    for (key, file) in [("smollm2", models::SMOLLM2), ("gemma3", models::GEMMA3)] {
        let files = strata::model::open(models::find(file)?).unwrap();
        tokenizers.push((key, Tokenizer::from_gguf(files.gguf.as_ref().unwrap()).unwrap()));
    }
    let json = std::fs::read_to_string(fixtures::path("tokenizer/smollm2.tokenizer.json")).unwrap();
    tokenizers.push(("smollm2", Tokenizer::from_tokenizer_json(&json, Some(1), Some(2), false).unwrap()));
    Some(tokenizers)
}

#[test]
fn incremental_decoding_equals_whole_decoding() {
    use strata::tokenizer::TextStream;
    let fx = fixtures::json("reference/tokenizer.json");
    let Some(mut tokenizers) = fixture_tokenizers() else { return };
    // Gemma's vocabulary as a Llama-2-style SentencePiece that drops the text's first
    // leading space: the case that needs the context token.
    let mut h = strata::model::open(models::find(models::GEMMA3).unwrap()).unwrap().gguf.unwrap();
    let key = "tokenizer.ggml.add_space_prefix";
    let at = h.metadata.iter().position(|(k, _)| k == key).expect(key);
    h.metadata[at].1 = strata::model::gguf::Value::Bool(true);
    tokenizers.push(("gemma3", Tokenizer::from_gguf(&h).unwrap()));
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as u32
    };
    for (key, tok) in &tokenizers {
        let mut sequences: Vec<Vec<u32>> = fx["models"][key]["cases"].as_array().unwrap().iter().map(|c| ids(&c["ids"])).collect();
        let vocab = tok.vocab_size();
        for _ in 0..40 {
            // Mostly low ids (control and byte tokens live there), some anywhere.
            sequences.push((0..60).map(|i| if i % 3 == 0 { rnd(600) } else { rnd(vocab) }).collect());
        }
        for seq in &sequences {
            let mut stream = TextStream::new();
            for (i, &id) in seq.iter().enumerate() {
                stream.push(tok, id).unwrap();
                assert_eq!(stream.text(), tok.decode(&seq[..=i]).unwrap(), "{key}: after {} tokens of {seq:?}", i + 1);
            }
        }
    }
}

/// Each token's bytes (what logprobs report) put together spell the text llama.cpp
/// tokenized into those ids: byte-level BPE from GGUF and from tokenizer.json, and
/// SentencePiece with byte tokens (Gemma 3), over every fixture string (emoji split across
/// byte tokens included).
#[test]
fn token_bytes_spell_the_text() {
    let fx = fixtures::json("reference/tokenizer.json");
    let Some(tokenizers) = fixture_tokenizers() else { return };
    // SmolLM2's 49k vocabulary splits emoji across tokens (Gemma's 262k holds them whole).
    let mut split_chars = 0;
    for (key, tok) in &tokenizers {
        let m = &fx["models"][key];
        for c in m["cases"].as_array().unwrap() {
            let text = c["text"].as_str().unwrap();
            let mut want = ids(&c["ids"]);
            if m["add_bos"].as_bool().unwrap() {
                want.remove(0);
            }
            let pieces: Vec<Vec<u8>> = want.iter().map(|&id| tok.token_bytes(id).unwrap()).collect();
            split_chars += pieces.iter().filter(|p| std::str::from_utf8(p).is_err()).count();
            assert_eq!(String::from_utf8_lossy(&pieces.concat()), text, "{key}: {want:?}");
        }
        assert_eq!(tok.token_bytes(tok.vocab_size() as u32), None);
    }
    assert!(split_chars > 0, "some fixture token holds part of a character");
}

//! Tokenizers from GGUF metadata or a `tokenizer.json`, matching llama.cpp's ids.
//!
//! * GPT-2-style byte-level BPE (`tokenizer.ggml.model = gpt2`): the `tokenizers` crate,
//!   built from the GGUF vocabulary and merges, with the pre-tokenizer that
//!   `tokenizer.ggml.pre` names (the regexes of llama.cpp's `llama-vocab.cpp`).
//! * SentencePiece (`llama`): llama.cpp's algorithm, written here because GGUF stores
//!   scores, not merges: merge the adjacent pair whose union is the highest-scoring token,
//!   repeat; characters outside the vocabulary fall back to `<0xXX>` byte tokens.
//! * `tokenizer.json` (safetensors models): the `tokenizers` crate as is.
//!
//! User-defined tokens (GGUF token type 4) are always matched as whole tokens; control
//! tokens (type 3: `<|im_start|>`, `<start_of_turn>`) only when `parse_special` is set, as
//! llama.cpp does.

use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use crate::model::gguf::{Array, GgufHeader, Strings, Value};

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: required GGUF key {0} is missing or has the wrong type")]
    Missing(String),
    #[error("tokenizer: {0} is not supported")]
    Unsupported(String),
    #[error("tokenizer: {0}")]
    Build(String),
}

const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

#[derive(Clone)]
enum Model {
    /// Byte-level BPE through the `tokenizers` crate: one copy of its vocabulary and
    /// merges (several MB), its `encode_special_tokens` switch set per call under the lock
    /// (control-token texts as text, or as their ids).
    Hf(Arc<Mutex<tokenizers::Tokenizer>>),
    Spm(Box<Spm>),
}

/// A text <-> token-id codec with the model's BOS/EOS conventions.
#[derive(Clone)]
pub struct Tokenizer {
    model: Model,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Prepend BOS when encoding a prompt (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    tokens: Arc<Strings>,
    /// Token texts spell bytes in GPT-2's byte-level alphabet (`Ġ` for a space), as
    /// opposed to SentencePiece's (`▁` for a space, `<0xXX>` byte tokens).
    byte_level: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.model {
            Model::Hf(..) => "bpe",
            Model::Spm(_) => "spm",
        };
        write!(f, "Tokenizer({kind}, {} tokens)", self.tokens.len())
    }
}

fn strings<'a>(h: &'a GgufHeader, key: &str) -> Result<&'a Strings, TokenizerError> {
    match h.get(key) {
        Some(Value::Array(Array::String(v))) => Ok(v),
        _ => Err(TokenizerError::Missing(key.into())),
    }
}

fn id_key(h: &GgufHeader, key: &str) -> Option<u32> {
    h.get(key).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok())
}

/// The pre-tokenizer regexes of llama.cpp for a `tokenizer.ggml.pre` value, applied in
/// order (each splits the previous pieces, keeping matches as pieces).
fn pre_regexes(pre: &str) -> Option<Vec<&'static str>> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    Some(match pre {
        "default" | "gpt2" | "gpt-2" => vec![GPT2],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => vec![r"\p{N}", GPT2],
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => vec![
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "qwen2" | "deepseek-r1-qwen" => vec![
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        _ => return None,
    })
}

impl Tokenizer {
    /// From GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, TokenizerError> {
        let kind = h.get("tokenizer.ggml.model").and_then(Value::as_str).ok_or_else(|| TokenizerError::Missing("tokenizer.ggml.model".into()))?;
        let tokens = Arc::new(strings(h, "tokenizer.ggml.tokens")?.clone());
        let types: Vec<i32> = match h.get("tokenizer.ggml.token_type") {
            Some(Value::Array(Array::I32(v))) if v.len() == tokens.len() => v.clone(),
            Some(Value::Array(a)) if a.len() == tokens.len() => a.to_u64s().map(|v| v.into_iter().map(|x| x as i32).collect()).unwrap_or_else(|| vec![1; tokens.len()]),
            _ => vec![1; tokens.len()],
        };
        let bos = id_key(h, "tokenizer.ggml.bos_token_id");
        let eos = id_key(h, "tokenizer.ggml.eos_token_id");
        let add_bos = h.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(kind == "llama");
        let model = match kind {
            "gpt2" => {
                let merges = strings(h, "tokenizer.ggml.merges")?;
                let pre = h.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
                let regexes = pre_regexes(pre).ok_or_else(|| TokenizerError::Unsupported(format!("pre-tokenizer {pre:?}")))?;
                Model::Hf(Arc::new(Mutex::new(bpe(&tokens, &types, merges, &regexes)?)))
            }
            "llama" => {
                let scores: Vec<f32> = match h.get("tokenizer.ggml.scores") {
                    Some(Value::Array(Array::F32(v))) if v.len() == tokens.len() => v.clone(),
                    _ => return Err(TokenizerError::Missing("tokenizer.ggml.scores".into())),
                };
                let add_space_prefix = h.get("tokenizer.ggml.add_space_prefix").and_then(Value::as_bool).unwrap_or(true);
                Model::Spm(Box::new(Spm::new(tokens.clone(), scores, &types, add_space_prefix, id_key(h, "tokenizer.ggml.unknown_token_id"))))
            }
            other => return Err(TokenizerError::Unsupported(format!("tokenizer model {other:?} (supported: gpt2, llama)"))),
        };
        Ok(Tokenizer { model, bos, eos, add_bos, tokens, byte_level: kind == "gpt2" })
    }

    /// From a `tokenizer.json` text, with BOS/EOS from the model config.
    pub fn from_tokenizer_json(json: &str, bos: Option<u32>, eos: Option<u32>, add_bos: bool) -> Result<Self, TokenizerError> {
        let t: tokenizers::Tokenizer = json.parse().map_err(|e| TokenizerError::Build(format!("tokenizer.json: {e}")))?;
        let mut tokens = vec![String::new(); t.get_vocab_size(true)];
        for (s, id) in t.get_vocab(true) {
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = s;
            }
        }
        let tokens = Arc::new(tokens.iter().collect::<Strings>());
        // A byte-level vocabulary is decoded by a ByteLevel decoder (alone or in a sequence).
        let decoder: serde_json::Value = serde_json::from_str(json).map(|v: serde_json::Value| v["decoder"].clone()).unwrap_or_default();
        let byte_level = decoder.to_string().contains("\"ByteLevel\"");
        Ok(Tokenizer { model: Model::Hf(Arc::new(Mutex::new(t))), bos, eos, add_bos, tokens, byte_level })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize)
    }

    /// The bytes token `id` stands for, as generated text would hold them (a space as a
    /// space, a byte token as its byte: a piece of a character split across tokens is not
    /// valid UTF-8 alone); control tokens as their texts. `None` past the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let t = self.tokens.get(id as usize)?;
        if self.byte_level {
            // Every character of a byte-level token is one byte; added tokens outside the
            // alphabet (which decode as themselves) keep their text.
            let bytes: Option<Vec<u8>> = t.chars().map(byte_level_byte).collect();
            return Some(bytes.unwrap_or_else(|| t.as_bytes().to_vec()));
        }
        let hex = t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2);
        Some(match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => vec![b],
            None => t.replace('\u{2581}', " ").into_bytes(),
        })
    }

    /// Token ids of `text`; with `add_bos` (and the model asking for it) BOS comes first.
    /// `parse_special`: control-token texts (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        if add_bos && self.add_bos {
            ids.extend(self.bos);
        }
        match &self.model {
            Model::Hf(t) => {
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                t.set_encode_special_tokens(!parse_special);
                let enc = t.encode(text, false).map_err(|e| TokenizerError::Build(e.to_string()))?;
                ids.extend_from_slice(enc.get_ids());
            }
            Model::Spm(spm) => spm.encode(text, parse_special, &mut ids),
        }
        Ok(ids)
    }

    /// The text of `ids` (control tokens are skipped). Invalid UTF-8 at a token boundary
    /// (a character split across tokens) is replaced, so decode whole sequences.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match &self.model {
            Model::Hf(t) => t.lock().unwrap_or_else(|e| e.into_inner()).decode(ids, true).map_err(|e| TokenizerError::Build(e.to_string())),
            Model::Spm(spm) => Ok(spm.decode(ids)),
        }
    }
}

/// The byte GPT-2's byte-level alphabet spells with `c`: the printable bytes (`!`..`~`,
/// `¡`..`¬`, `®`..`ÿ`) as themselves, the other 68 as U+0100 onwards in byte order.
fn byte_level_byte(c: char) -> Option<u8> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let c = c as u32;
    if c < 0x100 {
        return printable(c).then_some(c as u8);
    }
    (0..=255u32).filter(|&b| !printable(b)).nth((c - 0x100) as usize).map(|b| b as u8)
}

/// The text of a growing token sequence, decoded incrementally: each `push` decodes only
/// the tokens since the last character boundary, with the tokens before them that decode to
/// some text as context (so that a decoder's start-of-text rules, such as SentencePiece's
/// dropped leading space, apply only at the real start), instead of the whole sequence. The result equals
/// `Tokenizer::decode` of all the tokens; where a decoder is not concatenative (the
/// context's text is not a prefix of the longer decode) or no context is found, the whole
/// sequence is decoded.
/// Tokens `TextStream` looks back for context before decoding everything again.
const MAX_CONTEXT: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct TextStream {
    tokens: Vec<u32>,
    text: String,
    /// Tokens (and bytes of `text`) up to the last character boundary.
    done_tokens: usize,
    done_bytes: usize,
}

impl TextStream {
    pub fn new() -> Self {
        TextStream::default()
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The text so far; it may end in U+FFFD while a character is split across tokens.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<(), TokenizerError> {
        self.tokens.push(id);
        let w = self.done_tokens;
        // Context: the fewest tokens before the window that decode to some text (a control
        // token alone decodes to nothing and would leave the new token "first").
        let mut tail = None;
        if w == 0 {
            tail = Some(tokenizer.decode(&self.tokens)?);
        }
        for c in (w.saturating_sub(MAX_CONTEXT)..w).rev() {
            let context = tokenizer.decode(&self.tokens[c..w])?;
            if !context.is_empty() {
                let both = tokenizer.decode(&self.tokens[c..])?;
                tail = both.strip_prefix(context.as_str()).map(str::to_owned);
                break;
            }
        }
        match tail {
            Some(tail) => {
                self.text.truncate(self.done_bytes);
                self.text.push_str(&tail);
            }
            None => self.text = tokenizer.decode(&self.tokens)?,
        }
        if !self.text.ends_with('\u{fffd}') {
            self.done_tokens = self.tokens.len();
            self.done_bytes = self.text.len();
        }
        Ok(())
    }
}

fn bpe(tokens: &Strings, types: &[i32], merges: &Strings, regexes: &[&str]) -> Result<tokenizers::Tokenizer, TokenizerError> {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    use tokenizers::{AddedToken, SplitDelimiterBehavior};

    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_owned(), i as u32)).collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| TokenizerError::Build(format!("bad merge {m:?}"))))
        .collect::<Result<_, _>>()?;
    let model = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut pre: Vec<PreTokenizerWrapper> = Vec::new();
    for r in regexes {
        let split = Split::new(SplitPattern::Regex((*r).to_owned()), SplitDelimiterBehavior::Isolated, false).map_err(|e| TokenizerError::Build(e.to_string()))?;
        pre.push(split.into());
    }
    pre.push(ByteLevel::new(false, false, false).into());
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(Sequence::new(pre)));
    t.with_decoder(Some(ByteLevel::default()));
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(types)
        .filter(|(_, &ty)| ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)
        .map(|(s, &ty)| AddedToken::from(s.to_owned(), ty == TYPE_CONTROL))
        .collect();
    t.add_tokens(added.iter().filter(|a| !a.special).cloned()).map_err(|e| TokenizerError::Build(e.to_string()))?;
    t.add_special_tokens(added.iter().filter(|a| a.special).cloned()).map_err(|e| TokenizerError::Build(e.to_string()))?;
    Ok(t)
}

/// llama.cpp's SentencePiece tokenizer (score-driven bigram merges, byte fallback).
#[derive(Clone)]
struct Spm {
    /// Token ids ordered by text (then id): text -> id by binary search, at 4 bytes per
    /// token instead of a map of owned strings (17 MB for a 262k vocabulary).
    by_text: Vec<u32>,
    scores: Vec<f32>,
    tokens: Arc<Strings>,
    /// Always split out (user-defined), longest first.
    user_defined: Vec<(String, u32)>,
    /// Split out with `parse_special` (control), longest first.
    control: Vec<(String, u32)>,
    /// `<0xXX>` token ids.
    bytes: [Option<u32>; 256],
    add_space_prefix: bool,
    unk: Option<u32>,
    is_control: Vec<bool>,
}

enum Frag<'a> {
    Text(&'a str),
    Token(u32),
}

impl Spm {
    fn new(tokens: Arc<Strings>, scores: Vec<f32>, types: &[i32], add_space_prefix: bool, unk: Option<u32>) -> Self {
        let mut by_text: Vec<u32> = (0..tokens.len() as u32).collect();
        by_text.sort_by(|&a, &b| tokens.get(a as usize).cmp(&tokens.get(b as usize)).then(a.cmp(&b)));
        let pick = |ty: i32| {
            let mut v: Vec<(String, u32)> =
                tokens.iter().zip(types).enumerate().filter(|(_, (t, &k))| k == ty && !t.is_empty()).map(|(i, (t, _))| (t.to_owned(), i as u32)).collect();
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
            v
        };
        let mut bytes = [None; 256];
        for (i, t) in tokens.iter().enumerate() {
            if t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') {
                if let Ok(b) = u8::from_str_radix(&t[3..5], 16) {
                    bytes[b as usize] = Some(i as u32);
                }
            }
        }
        let (user_defined, control) = (pick(TYPE_USER_DEFINED), pick(TYPE_CONTROL));
        Spm {
            by_text,
            scores,
            tokens,
            user_defined,
            control,
            bytes,
            add_space_prefix,
            unk,
            is_control: types.iter().map(|&t| t == TYPE_CONTROL).collect(),
        }
    }

    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Frag<'a>> {
        let mut frags = vec![Frag::Text(text)];
        let lists: Vec<&Vec<(String, u32)>> = if parse_special { vec![&self.user_defined, &self.control] } else { vec![&self.user_defined] };
        // Longest tokens first across both lists, as llama.cpp does.
        let mut specials: Vec<&(String, u32)> = lists.into_iter().flatten().filter(|(s, _)| text.contains(s.as_str())).collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        for (s, id) in specials {
            let mut next = Vec::new();
            for f in frags {
                match f {
                    Frag::Text(t) => {
                        let mut rest = t;
                        while let Some(i) = rest.find(s.as_str()) {
                            if i > 0 {
                                next.push(Frag::Text(&rest[..i]));
                            }
                            next.push(Frag::Token(*id));
                            rest = &rest[i + s.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    tok => next.push(tok),
                }
            }
            frags = next;
        }
        frags
    }

    fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        for (i, frag) in self.partition(text, parse_special).into_iter().enumerate() {
            match frag {
                Frag::Token(id) => out.push(id),
                Frag::Text(t) => {
                    let mut s = String::with_capacity(t.len() + 3);
                    if self.add_space_prefix && i == 0 {
                        s.push(' ');
                    }
                    s.push_str(t);
                    self.encode_piece(&s.replace(' ', "\u{2581}"), out);
                }
            }
        }
    }

    /// Bigram merging over the characters of `text` (spaces already escaped).
    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) {
        // Symbols as byte ranges into `text`, linked left/right; `len == 0` once merged away.
        struct Sym {
            start: usize,
            len: usize,
            prev: Option<usize>,
            next: Option<usize>,
        }
        let mut syms: Vec<Sym> = Vec::new();
        for (start, c) in text.char_indices() {
            let n = syms.len();
            syms.push(Sym { start, len: c.len_utf8(), prev: n.checked_sub(1), next: None });
            if n > 0 {
                syms[n - 1].next = Some(n);
            }
        }
        // Max-heap by score, then leftmost.
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            len: usize,
        }
        impl Eq for Bigram {}
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Bigram {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
            }
        }
        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], left: Option<usize>, right: Option<usize>| {
            let (Some(l), Some(r)) = (left, right) else { return };
            let start = syms[l].start;
            let len = syms[l].len + syms[r].len;
            if let Some(id) = self.id(&text[start..start + len]) {
                heap.push(Bigram { score: self.scores[id as usize], left: l, right: r, len });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, Some(i - 1), Some(i));
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (b.left, b.right);
            // Stale: one side already merged into something else.
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != b.len {
                continue;
            }
            syms[l].len += syms[r].len;
            syms[r].len = 0;
            syms[l].next = syms[r].next;
            if let Some(n) = syms[r].next {
                syms[n].prev = Some(l);
            }
            try_add(&mut heap, &syms, syms[l].prev, Some(l));
            try_add(&mut heap, &syms, Some(l), syms[l].next);
        }
        let mut i = if syms.is_empty() { None } else { Some(0) };
        while let Some(s) = i {
            let piece = &text[syms[s].start..syms[s].start + syms[s].len];
            match self.id(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.extend(self.bytes[b as usize].or(self.unk));
                    }
                }
            }
            i = syms[s].next;
        }
    }

    /// The id of a token text; the last of equal texts (as a map built in id order).
    fn id(&self, text: &str) -> Option<u32> {
        let text = Some(text);
        let end = self.by_text.partition_point(|&i| self.tokens.get(i as usize) <= text);
        let id = *self.by_text.get(end.checked_sub(1)?)?;
        (self.tokens.get(id as usize) == text).then_some(id)
    }

    fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(t) = self.tokens.get(id as usize) else { continue };
            if self.is_control.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            match self.bytes.iter().position(|&b| b == Some(id)) {
                Some(b) => bytes.push(b as u8),
                None => bytes.extend_from_slice(t.replace('\u{2581}', " ").as_bytes()),
            }
        }
        let s = String::from_utf8_lossy(&bytes).into_owned();
        match s.strip_prefix(' ') {
            Some(rest) if self.add_space_prefix => rest.to_owned(),
            _ => s,
        }
    }
}

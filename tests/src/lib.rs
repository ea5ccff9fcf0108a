//! strata conformance suite: shared case builders.
//!
//! * [`GgufWriter`]: writes GGUF v2/v3 files byte by byte (independent of the reader
//!   under test), with hooks to write lying or broken headers.
//! * [`write_safetensors`]: writes safetensors files.
//! * [`Tiny`]: a tiny model description rendered as GGUF keys + tensors or as config.json +
//!   HF tensors, so both formats can be checked against the same expectation.
//! * [`models`]: where the real models live (fetched by `scripts/fetch_models.sh`).

use strata::model::gguf::{Array, Value};
use strata::quant::DType;

/// A tensor to write: GGUF name, row-major shape, dtype. Data is zero-filled with the
/// exact byte size the dtype implies (or `len_override`).
#[derive(Clone, Debug)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
}

/// Writes GGUF files. Byte layout follows the GGUF spec; nothing here calls the reader.
#[derive(Clone, Debug)]
pub struct GgufWriter {
    pub version: u32,
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<TensorSpec>,
    pub alignment: u64,
    /// Overrides the tensor count field (to write a lying header).
    pub tensor_count_override: Option<u64>,
    pub kv_count_override: Option<u64>,
    /// Overrides data offsets (relative to the data section), by tensor index.
    pub offset_overrides: Vec<(usize, u64)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
            alignment: 32,
            tensor_count_override: None,
            kv_count_override: None,
            offset_overrides: Vec::new(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn array_type(a: &Array) -> u32 {
    match a {
        Array::U8(_) => 0,
        Array::I8(_) => 1,
        Array::U16(_) => 2,
        Array::I16(_) => 3,
        Array::U32(_) => 4,
        Array::I32(_) => 5,
        Array::F32(_) => 6,
        Array::Bool(_) => 7,
        Array::String(_) => 8,
        Array::Array(_) => 9,
        Array::U64(_) => 10,
        Array::I64(_) => 11,
        Array::F64(_) => 12,
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&array_type(a).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        Array::U8(v) => v.iter().for_each(|x| out.push(*x)),
        Array::I8(v) => v.iter().for_each(|x| out.push(*x as u8)),
        Array::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => v.iter().for_each(|x| out.push(*x as u8)),
        Array::String(v) => v.iter().for_each(|x| put_str(out, x)),
        Array::Array(v) => v.iter().for_each(|x| put_array(out, x)),
        Array::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// Exact byte size of a tensor, computed here from the ggml block table independently
/// of `DType::tensor_bytes`.
pub fn ggml_nbytes(dtype: DType, shape: &[u64]) -> u64 {
    let (block, size) = dtype.block();
    let n: u64 = shape.iter().product();
    n / block * size
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn kv(mut self, key: &str, v: Value) -> Self {
        self.kvs.retain(|(k, _)| k != key);
        self.kvs.push((key.into(), v));
        self
    }

    pub fn remove_kv(mut self, key: &str) -> Self {
        self.kvs.retain(|(k, _)| k != key);
        self
    }

    pub fn tensor(mut self, name: &str, shape: &[u64], dtype: DType) -> Self {
        self.tensors.retain(|t| t.name != name);
        self.tensors.push(TensorSpec { name: name.into(), shape: shape.to_vec(), dtype });
        self
    }

    pub fn remove_tensor(mut self, name: &str) -> Self {
        self.tensors.retain(|t| t.name != name);
        self
    }

    /// Replaces the shape of a tensor (to write a shape that disagrees with the config).
    pub fn reshape(mut self, name: &str, shape: &[u64]) -> Self {
        let t = self.tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"));
        t.shape = shape.to_vec();
        self
    }

    pub fn retype(mut self, name: &str, dtype: DType) -> Self {
        let t = self.tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"));
        t.dtype = dtype;
        self
    }

    /// Byte offset of the tensor-count field (for patching).
    pub const TENSOR_COUNT_AT: usize = 8;

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.tensor_count_override.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.kv_count_override.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend_from_slice(&value_type(v).to_le_bytes());
            put_value(&mut out, v);
        }
        let align = |x: u64| x.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut sizes = Vec::new();
        for (i, t) in self.tensors.iter().enumerate() {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                out.extend_from_slice(&d.to_le_bytes()); // GGUF dims are innermost-first
            }
            out.extend_from_slice(&t.dtype.ggml_id().expect("ggml dtype").to_le_bytes());
            let at = self.offset_overrides.iter().find(|(j, _)| *j == i).map_or(offset, |(_, o)| *o);
            out.extend_from_slice(&at.to_le_bytes());
            let n = ggml_nbytes(t.dtype, &t.shape);
            sizes.push(n);
            offset = align(offset + n);
        }
        let data_start = align(out.len() as u64) as usize;
        out.resize(data_start + offset as usize, 0);
        // Recognisable non-zero data: byte i of tensor k is (k + i) as u8.
        let mut at = 0u64;
        for (k, n) in sizes.iter().enumerate() {
            for i in 0..*n {
                out[data_start + (at + i) as usize] = (k as u64 + i) as u8;
            }
            at = align(at + n);
        }
        out
    }
}

/// Writes a safetensors file: `(name, dtype, row-major shape)` in order, data zero-filled.
pub fn write_safetensors(tensors: &[(String, &str, Vec<u64>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, dtype, shape) in tensors {
        let width = match *dtype {
            "F64" | "I64" => 8,
            "F32" | "I32" => 4,
            "F16" | "BF16" | "I16" => 2,
            _ => 1,
        };
        let n = shape.iter().product::<u64>() * width;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut json = serde_json::to_string(&serde_json::Value::Object(header)).unwrap();
    while (8 + json.len()) % 8 != 0 {
        json.push(' ');
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(out.len() + offset as usize, 0);
    out
}

/// A tiny model, described once and written in either format.
#[derive(Clone, Debug)]
pub struct Tiny {
    pub arch: &'static str,
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    /// `None`: the GQA key is omitted.
    pub kv_heads: Option<u64>,
    /// `None`: no explicit head-dim key (head_dim = hidden / heads).
    pub head_dim: Option<u64>,
    pub ff: u64,
    pub vocab: u64,
    pub context: u64,
    pub tied: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// Gemma-style post-attention / post-FFN norms.
    pub post_norms: bool,
    pub dtype: DType,
}

impl Tiny {
    pub fn llama() -> Self {
        Tiny {
            arch: "llama",
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: Some(2),
            head_dim: None,
            ff: 96,
            vocab: 128,
            context: 256,
            tied: true,
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            dtype: DType::F32,
        }
    }

    pub fn qwen2() -> Self {
        Tiny { arch: "qwen2", qkv_bias: true, tied: false, ..Self::llama() }
    }

    pub fn gemma3() -> Self {
        Tiny {
            arch: "gemma3",
            layers: 7,
            hidden: 64,
            heads: 2,
            kv_heads: Some(1),
            head_dim: Some(48),
            qk_norm: true,
            post_norms: true,
            ..Self::llama()
        }
    }

    pub fn head_dim(&self) -> u64 {
        self.head_dim.unwrap_or(self.hidden / self.heads)
    }

    /// (GGUF name, row-major shape, is a matrix) of every tensor.
    pub fn tensors(&self) -> Vec<(String, Vec<u64>, bool)> {
        let hd = self.head_dim();
        let kv = self.kv_heads.unwrap_or(self.heads);
        let (h, ff) = (self.hidden, self.ff);
        let mut v = vec![("token_embd.weight".to_string(), vec![self.vocab, h], true), ("output_norm.weight".into(), vec![h], false)];
        if !self.tied {
            v.push(("output.weight".into(), vec![self.vocab, h], true));
        }
        for l in 0..self.layers {
            let b = |n: &str| format!("blk.{l}.{n}");
            v.push((b("attn_norm.weight"), vec![h], false));
            v.push((b("attn_q.weight"), vec![self.heads * hd, h], true));
            v.push((b("attn_k.weight"), vec![kv * hd, h], true));
            v.push((b("attn_v.weight"), vec![kv * hd, h], true));
            if self.qkv_bias {
                v.push((b("attn_q.bias"), vec![self.heads * hd], false));
                v.push((b("attn_k.bias"), vec![kv * hd], false));
                v.push((b("attn_v.bias"), vec![kv * hd], false));
            }
            if self.qk_norm {
                v.push((b("attn_q_norm.weight"), vec![hd], false));
                v.push((b("attn_k_norm.weight"), vec![hd], false));
            }
            v.push((b("attn_output.weight"), vec![h, self.heads * hd], true));
            if self.post_norms {
                v.push((b("post_attention_norm.weight"), vec![h], false));
                v.push((b("post_ffw_norm.weight"), vec![h], false));
            }
            v.push((b("ffn_norm.weight"), vec![h], false));
            v.push((b("ffn_gate.weight"), vec![ff, h], true));
            v.push((b("ffn_up.weight"), vec![ff, h], true));
            v.push((b("ffn_down.weight"), vec![h, ff], true));
        }
        v
    }

    pub fn gguf(&self) -> GgufWriter {
        let a = self.arch;
        let u32v = |x: u64| Value::U32(x as u32);
        let mut w = GgufWriter::new()
            .kv("general.architecture", Value::String(a.into()))
            .kv(&format!("{a}.block_count"), u32v(self.layers))
            .kv(&format!("{a}.context_length"), u32v(self.context))
            .kv(&format!("{a}.embedding_length"), u32v(self.hidden))
            .kv(&format!("{a}.feed_forward_length"), u32v(self.ff))
            .kv(&format!("{a}.attention.head_count"), u32v(self.heads))
            .kv(&format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6))
            .kv(&format!("{a}.rope.freq_base"), Value::F32(10000.0))
            .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
            .kv(
                "tokenizer.ggml.tokens",
                Value::Array(Array::String((0..self.vocab).map(|i| format!("t{i}")).collect())),
            )
            .kv("tokenizer.ggml.bos_token_id", Value::U32(1))
            .kv("tokenizer.ggml.eos_token_id", Value::U32(2));
        if let Some(kv) = self.kv_heads {
            w = w.kv(&format!("{a}.attention.head_count_kv"), u32v(kv));
        }
        if let Some(hd) = self.head_dim {
            w = w.kv(&format!("{a}.attention.key_length"), u32v(hd)).kv(&format!("{a}.attention.value_length"), u32v(hd));
        }
        if a == "gemma3" {
            w = w.kv("gemma3.attention.sliding_window", Value::U32(32));
        }
        for (name, shape, matrix) in self.tensors() {
            w = w.tensor(&name, &shape, if matrix { self.dtype } else { DType::F32 });
        }
        w
    }

    /// config.json for the HF rendering.
    pub fn config_json(&self) -> serde_json::Value {
        let (class, model_type) = match self.arch {
            "llama" => ("LlamaForCausalLM", "llama"),
            "qwen2" => ("Qwen2ForCausalLM", "qwen2"),
            "gemma3" => ("Gemma3ForCausalLM", "gemma3_text"),
            other => panic!("no HF class for {other}"),
        };
        let mut c = serde_json::json!({
            "architectures": [class],
            "model_type": model_type,
            "num_hidden_layers": self.layers,
            "hidden_size": self.hidden,
            "intermediate_size": self.ff,
            "num_attention_heads": self.heads,
            "vocab_size": self.vocab,
            "max_position_embeddings": self.context,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.tied,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": "float32",
        });
        if let Some(kv) = self.kv_heads {
            c["num_key_value_heads"] = kv.into();
        }
        if let Some(hd) = self.head_dim {
            c["head_dim"] = hd.into();
        }
        if self.arch == "gemma3" {
            c["sliding_window"] = 32.into();
            c["rope_local_base_freq"] = 10000.0.into();
            c["hidden_activation"] = "gelu_pytorch_tanh".into();
        }
        c
    }

    /// HF tensors (name, safetensors dtype, shape), mapped from the GGUF names.
    pub fn hf_tensors(&self, dtype: &str) -> Vec<(String, &'static str, Vec<u64>)> {
        let arch = strata::arch::Arch::from_gguf_name(self.arch).expect("arch");
        let dtype: &'static str = match dtype {
            "BF16" => "BF16",
            "F16" => "F16",
            _ => "F32",
        };
        self.tensors()
            .into_iter()
            .map(|(name, shape, _)| {
                let id = strata::arch::parse_gguf_name(&name).expect("known name");
                (id.hf_name(arch).expect("hf name"), dtype, shape)
            })
            .collect()
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub mod engine;
#[cfg(not(target_arch = "wasm32"))]
pub mod llamacpp;
pub mod loader_cases;
pub mod ops;

/// Committed reference data under tests/fixtures/.
pub mod fixtures {
    use std::path::PathBuf;

    pub fn path(rel: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
    }

    pub fn json(rel: &str) -> serde_json::Value {
        let p = path(rel);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A little-endian f32 file.
    pub fn f32s(rel: &str) -> Vec<f32> {
        let p = path(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    /// A JSON array of token ids.
    pub fn ids(v: &serde_json::Value) -> Vec<u32> {
        v.as_array().expect("array of ids").iter().map(|x| x.as_u64().expect("id") as u32).collect()
    }
}

/// A host C++ compiler for the tests that compile the CUDA kernels for the CPU
/// (tests/tests/cuda_host.rs, cuda_emulated.rs): `$CXX`, else c++, g++ or clang++.
/// Without one: `None` (the test says SKIPPED), or a failure with STRATA_REQUIRE_CXX=1 (CI).
#[cfg(not(target_arch = "wasm32"))]
pub fn cxx_or_skip() -> Option<String> {
    use std::process::Command;
    let found = [std::env::var("CXX").unwrap_or_default(), "c++".into(), "g++".into(), "clang++".into()]
        .into_iter()
        .find(|c| !c.is_empty() && Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert_ne!(std::env::var("STRATA_REQUIRE_CXX").as_deref(), Ok("1"), "STRATA_REQUIRE_CXX=1 but no C++ compiler");
        eprintln!("SKIPPED: no C++ compiler (c++, g++, clang++)");
    }
    found
}

/// Real models: fetched by `scripts/fetch_models.sh` into the strata cache.
pub mod models {
    use std::path::PathBuf;

    /// The CLI's rule: `$STRATA_CACHE`, else `$XDG_CACHE_HOME/strata`, else
    /// `~/.cache/strata`, an empty variable counting as unset.
    pub fn cache_dir() -> PathBuf {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(d) = var("STRATA_CACHE") {
            return d;
        }
        let base = var("XDG_CACHE_HOME").unwrap_or_else(|| var("HOME").unwrap_or_else(|| ".".into()).join(".cache"));
        base.join("strata")
    }

    /// The path of a cached model, or `None` when absent. With `STRATA_REQUIRE_MODELS=1`
    /// (set by CI) an absent model fails the test instead of skipping it.
    pub fn find(name: &str) -> Option<PathBuf> {
        let p = cache_dir().join("models").join(name);
        if p.exists() {
            return Some(p);
        }
        if std::env::var("STRATA_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
            panic!("{} is missing: run scripts/fetch_models.sh (STRATA_REQUIRE_MODELS=1)", p.display());
        }
        eprintln!("skipping: {} not found (run scripts/fetch_models.sh)", p.display());
        None
    }

    pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
    pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
    /// Made by scripts/gguf_to_safetensors.py from SMOLLM2.
    pub const SMOLLM2_ST: &str = "SmolLM2-135M-Instruct-safetensors";
    pub const SMOLLM2_ST_SHARDED: &str = "SmolLM2-135M-Instruct-safetensors-sharded";
    /// F32 safetensors copy (scripts/gguf_to_safetensors.py --dtype f32) for exact checks.
    pub const SMOLLM2_F32: &str = "SmolLM2-135M-Instruct-f32";
}

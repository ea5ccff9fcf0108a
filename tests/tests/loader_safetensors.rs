//! Loader cases on safetensors + config.json written by the test itself.

use serde_json::json;
use strata::arch::{Param, Part, TensorId};
use strata::model::{analyze, Analysis, Field, ModelFiles, RopeStyle, Source};
use strata::quant::DType;
use strata::source::{ByteSource, SliceSource};
use strata::ErrorKind;
use strata_conformance::{write_safetensors, Tiny};

fn files(config: &serde_json::Value, tensors: &[(String, &str, Vec<u64>)]) -> Result<ModelFiles, strata::Error> {
    let src = SliceSource::new("model.safetensors", write_safetensors(tensors));
    let shards: [&dyn ByteSource; 1] = [&src];
    ModelFiles::from_safetensors("model", &config.to_string(), None, None, &shards)
}

fn run(t: &Tiny, dtype: &str) -> Analysis {
    analyze(files(&t.config_json(), &t.hf_tensors(dtype)).expect("structurally valid"))
}

fn kinds(a: &Analysis) -> Vec<&ErrorKind> {
    a.errors.iter().map(|e| e.kind()).collect()
}

#[test]
fn same_tiny_model_same_config_in_both_formats() {
    for t in [Tiny::llama(), Tiny::qwen2(), Tiny::gemma3(), Tiny { head_dim: Some(32), ..Tiny::llama() }] {
        let st = run(&t, "F32");
        assert!(st.is_valid(), "{}: {:#?}", t.arch, st.errors);
        let gg = analyze(ModelFiles::from_gguf(&SliceSource::new("t.gguf", t.gguf().build())).unwrap());
        assert!(gg.is_valid(), "{}: {:#?}", t.arch, gg.errors);
        let (mut a, mut b) = (gg.config.unwrap(), st.config.unwrap());
        // By design: rope pairing follows the weight layout, Gemma HF norms store w - 1.
        if t.arch == "llama" {
            assert_eq!((a.rope_style, b.rope_style), (RopeStyle::Normal, RopeStyle::Neox));
        }
        if t.arch == "gemma3" {
            assert_eq!((a.norm_weight_offset, b.norm_weight_offset), (0.0, 1.0));
        }
        for c in [&mut a, &mut b] {
            c.rope_style = RopeStyle::Neox;
            c.norm_weight_offset = 0.0;
            c.declared_dtype = None;
            c.provenance.clear();
        }
        assert_eq!(a, b, "{}", t.arch);
    }
}

#[test]
fn bf16_weights_stay_bf16() {
    let a = run(&Tiny::llama(), "BF16");
    let c = a.config.unwrap();
    assert_eq!(c.native_dtype, DType::BF16);
    assert_ne!(c.native_dtype, DType::F16);
    // The config says float32 but the tensors are bf16: the tensors win, with a warning.
    assert!(a.warnings.iter().any(|w| w.contains("float32") && w.contains("BF16")), "{:?}", a.warnings);
}

#[test]
fn tie_word_embeddings_decides_the_head() {
    let tied = run(&Tiny::llama(), "F32").into_model().unwrap();
    assert!(tied.config.tied_embeddings);
    assert_eq!(tied.config.provenance[Field::TiedEmbeddings], Source::ConfigJson("tie_word_embeddings".into()));
    let head = tied.tensor(TensorId::global(Part::Output, Param::Weight)).unwrap();
    assert_eq!(head.name, "model.embed_tokens.weight");

    // Untied in the config but no lm_head in the file: a named missing tensor.
    let t = Tiny { tied: false, ..Tiny::llama() };
    let mut tensors = t.hf_tensors("F32");
    tensors.retain(|(n, _, _)| n != "lm_head.weight");
    let a = analyze(files(&t.config_json(), &tensors).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, hint } if tensor == "lm_head.weight" && hint.contains("not tied"))));

    // config.json without tie_word_embeddings: the transformers default of the class.
    let mut cfg = Tiny::llama().config_json();
    cfg.as_object_mut().unwrap().remove("tie_word_embeddings");
    let a = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingTensor { tensor, .. } if tensor == "lm_head.weight")), "LlamaConfig defaults to untied");
}

#[test]
fn wrong_width_and_missing_field() {
    let t = Tiny::llama();
    let mut tensors = t.hf_tensors("F32");
    for (n, _, shape) in tensors.iter_mut() {
        if n == "model.layers.1.mlp.up_proj.weight" {
            *shape = vec![192, 64];
        }
    }
    let a = analyze(files(&t.config_json(), &tensors).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, expected, found, .. }
        if tensor == "model.layers.1.mlp.up_proj.weight" && expected.0 == vec![96, 64] && found.0 == vec![192, 64])));

    let mut cfg = t.config_json();
    cfg.as_object_mut().unwrap().remove("hidden_size");
    let a = analyze(files(&cfg, &t.hf_tensors("F32")).unwrap());
    assert!(a.config.is_none());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::MissingKey { key } if key.contains("hidden_size"))));

    let mut cfg = t.config_json();
    cfg["num_attention_heads"] = json!(0);
    let a = analyze(files(&cfg, &t.hf_tensors("F32")).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadValue { key, .. } if key.contains("num_attention_heads"))));
}

#[test]
fn unknown_architecture_and_activation() {
    let mut cfg = Tiny::llama().config_json();
    cfg["architectures"] = json!(["MambaForCausalLM"]);
    cfg["model_type"] = json!("mamba");
    let a = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap());
    assert!(matches!(kinds(&a).as_slice(), [ErrorKind::UnknownArchitecture { name, .. }] if name == "MambaForCausalLM"));
    let mut cfg = Tiny::llama().config_json();
    cfg["hidden_act"] = json!("relu");
    let a = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::BadValue { key, value, .. } if key.contains("hidden_act") && value == "relu")));
}

#[test]
fn rope_scaling_and_layer_types_from_config() {
    let mut cfg = Tiny::llama().config_json();
    cfg["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    let c = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap()).config.unwrap();
    assert_eq!(
        c.rope_scaling,
        strata::model::RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context_length: 8192 }
    );
    let mut cfg = Tiny::gemma3().config_json();
    cfg["layer_types"] = json!(["sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention", "full_attention", "full_attention"]);
    let c = analyze(files(&cfg, &Tiny::gemma3().hf_tensors("F32")).unwrap()).config.unwrap();
    use strata::model::LayerAttention::{Global as G, Local as L};
    assert_eq!(c.layer_attention, vec![L, G, L, G, L, G, G]);
    cfg["layer_types"] = json!(["full_attention"]);
    let a = analyze(files(&cfg, &Tiny::gemma3().hf_tensors("F32")).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::InvalidConfig { message } if message.contains("layer_types lists 1 layers"))));
}

#[test]
fn structural_errors() {
    let t = Tiny::llama();
    let good = write_safetensors(&t.hf_tensors("F32"));
    let cfg = t.config_json().to_string();
    let try_bytes = |b: Vec<u8>| {
        let src = SliceSource::new("model.safetensors", b);
        let shards: [&dyn ByteSource; 1] = [&src];
        ModelFiles::from_safetensors("model", &cfg, None, None, &shards).map(|_| ()).map_err(|e| *e.kind)
    };
    assert!(try_bytes(good.clone()).is_ok());
    // Truncated anywhere: header length, header, data.
    for cut in [0, 5, 8, 20, good.len() / 2, good.len() - 1] {
        assert!(matches!(try_bytes(good[..cut].to_vec()), Err(ErrorKind::Truncated { .. })), "cut {cut}");
    }
    // Trailing bytes after the data.
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(try_bytes(long), Err(ErrorKind::Safetensors { message }) if message.contains("1 bytes after")));
    // A header length no file can hold: refused before reading or allocating it.
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(try_bytes(huge), Err(ErrorKind::TooLong { .. })));
    // Overlapping / gapped offsets (validated by the safetensors crate).
    let text = String::from_utf8_lossy(&good[8..]).to_string();
    let bad = text.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1);
    let mut b = good[..8].to_vec();
    b.extend_from_slice(bad.as_bytes());
    assert!(matches!(try_bytes(b), Err(ErrorKind::Safetensors { .. } | ErrorKind::Truncated { .. })));
    // Bad JSON in the header, bad config.json.
    let mut b = good.clone();
    b[8] = b'[';
    assert!(matches!(try_bytes(b), Err(ErrorKind::Safetensors { .. })));
    let src = SliceSource::new("model.safetensors", good);
    let shards: [&dyn ByteSource; 1] = [&src];
    let e = ModelFiles::from_safetensors("model", "{not json", None, None, &shards).unwrap_err();
    assert!(matches!(*e.kind, ErrorKind::Json { .. }));
    assert_eq!(e.file, "model/config.json");
}

#[test]
fn sharded_model_on_disk() {
    let dir = std::env::temp_dir().join(format!("strata-sharded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let t = Tiny::qwen2();
    let tensors = t.hf_tensors("BF16");
    let (a, b) = tensors.split_at(tensors.len() / 2);
    std::fs::write(dir.join("model-00001-of-00002.safetensors"), write_safetensors(a)).unwrap();
    std::fs::write(dir.join("model-00002-of-00002.safetensors"), write_safetensors(b)).unwrap();
    let mut map = serde_json::Map::new();
    for (n, _, _) in a {
        map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for (n, _, _) in b {
        map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), t.config_json().to_string()).unwrap();
    std::fs::write(dir.join("generation_config.json"), json!({"eos_token_id": [2, 7]}).to_string()).unwrap();

    let m = strata::model::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.files.files.len(), 2);
    assert!(m.config.attn_bias);
    assert_eq!(m.config.eog_token_ids, vec![2, 7], "generation_config.json adds end-of-generation ids");
    let bias = m.tensor(TensorId::layer(1, Part::AttnV, Param::Bias)).unwrap();
    assert_eq!(bias.name, "model.layers.1.self_attn.v_proj.bias");

    // A weight_map entry pointing at the wrong shard; a shard path escaping the directory.
    let mut wrong = index.clone();
    let last = &b.last().unwrap().0; // lives in shard 2
    wrong["weight_map"][last] = json!("model-00001-of-00002.safetensors");
    std::fs::write(dir.join("model.safetensors.index.json"), wrong.to_string()).unwrap();
    let e = strata::model::open(&dir).unwrap_err();
    assert!(matches!(*e.kind, ErrorKind::MissingTensor { ref tensor, ref hint } if tensor == last && hint.contains("found in")), "{e}");
    let mut escape = index.clone();
    escape["weight_map"]["model.norm.weight"] = json!("../x.safetensors");
    std::fs::write(dir.join("model.safetensors.index.json"), escape.to_string()).unwrap();
    assert!(matches!(*strata::model::open(&dir).unwrap_err().kind, ErrorKind::BadValue { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn phi3_fused_projections() {
    let cfg = json!({
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
        "num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 16, "max_position_embeddings": 64,
        "sliding_window": 47, "tie_word_embeddings": false
    });
    let f = |n: &str, s: Vec<u64>| (n.to_string(), "F32", s);
    let tensors = vec![
        f("model.embed_tokens.weight", vec![16, 32]),
        f("model.norm.weight", vec![32]),
        f("lm_head.weight", vec![16, 32]),
        f("model.layers.0.input_layernorm.weight", vec![32]),
        f("model.layers.0.self_attn.qkv_proj.weight", vec![32 + 2 * 16, 32]),
        f("model.layers.0.self_attn.o_proj.weight", vec![32, 32]),
        f("model.layers.0.post_attention_layernorm.weight", vec![32]),
        f("model.layers.0.mlp.gate_up_proj.weight", vec![96, 32]),
        f("model.layers.0.mlp.down_proj.weight", vec![32, 48]),
    ];
    let a = analyze(files(&cfg, &tensors).unwrap());
    assert!(a.is_valid(), "{:#?}", a.errors);
    let c = a.config.unwrap();
    assert!(c.fused_qkv && c.fused_gate_up);
    assert_eq!(c.sliding_window, Some(47));
    // Half the fused gate|up width: "a fused projection fed half its width".
    let mut half = tensors.clone();
    half[7].2 = vec![48, 32];
    let a = analyze(files(&cfg, &half).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, why, .. } if tensor.contains("gate_up_proj") && why.contains("fused"))));
}

#[test]
fn gemma3_multimodal_checkpoint_reads_text_config() {
    // Gemma3ForConditionalGeneration nests the text model: config under `text_config`,
    // tensors under `model.language_model.`; the vision tower is ignored with warnings.
    let t = Tiny::gemma3();
    let text = t.config_json();
    let cfg = json!({
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "text_config": text, "vision_config": {"hidden_size": 1152}, "eos_token_id": [1, 106]
    });
    let mut tensors: Vec<(String, &str, Vec<u64>)> = t
        .hf_tensors("BF16")
        .into_iter()
        .map(|(n, d, s)| (n.replacen("model.", "model.language_model.", 1), d, s))
        .collect();
    tensors.push(("model.vision_tower.patch_embedding.weight".into(), "BF16", vec![4, 4]));
    let a = analyze(files(&cfg, &tensors).unwrap());
    assert!(a.is_valid(), "{:#?}", a.errors);
    let c = a.config.unwrap();
    assert_eq!((c.hidden_size, c.head_dim, c.n_layers), (64, 48, 7));
    assert_eq!(c.provenance[Field::HeadDim], Source::ConfigJson("text_config.head_dim".into()));
    assert_eq!(c.eog_token_ids, vec![1, 106]);
    assert_eq!(c.norm_weight_offset, 1.0);
    assert!(a.warnings.iter().any(|w| w.contains("vision_tower")));
}

/// A Qwen-MoE-layout checkpoint (`num_experts`, `mlp.gate`, one tensor per expert
/// `mlp.experts.E.*_proj`) is refused by the field that makes it MoE, with its expert
/// tensors known roles; Mixtral's `num_local_experts` names itself; 0 experts is dense.
#[test]
fn a_mixture_of_experts_checkpoint_is_refused_by_its_expert_count() {
    let t = Tiny::qwen2();
    let mut cfg = t.config_json();
    cfg["num_experts"] = json!(4);
    cfg["num_experts_per_tok"] = json!(2);
    cfg["moe_intermediate_size"] = json!(32);
    let mut tensors: Vec<_> = t.hf_tensors("F32").into_iter().filter(|(n, _, _)| !n.contains(".mlp.")).collect();
    for l in 0..t.layers {
        tensors.push((format!("model.layers.{l}.mlp.gate.weight"), "F32", vec![4, t.hidden]));
        for e in 0..4 {
            for (p, shape) in [("gate_proj", vec![32, t.hidden]), ("up_proj", vec![32, t.hidden]), ("down_proj", vec![t.hidden, 32])] {
                tensors.push((format!("model.layers.{l}.mlp.experts.{e}.{p}.weight"), "F32", shape));
            }
        }
    }
    let a = analyze(files(&cfg, &tensors).unwrap());
    assert!(
        kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedFeature { key, value, .. } if key == "config.json num_experts" && value == "4")),
        "{:#?}",
        a.errors
    );
    assert!(!a.warnings.iter().any(|w| w.contains("is not used by qwen2 and")), "expert tensors are known roles: {:?}", a.warnings);
    assert_eq!(a.errors.len(), 1, "refused once, by its key: {:#?}", a.errors);
    let c = a.config.as_ref().unwrap();
    assert_eq!((c.n_experts, c.n_experts_used, c.expert_intermediate_size), (4, Some(2), Some(32)));
    assert_eq!(c.expert_layout, Some(strata::model::config::ExpertLayout::PerExpert));
    // An expert at the dense width is named against moe_intermediate_size.
    let wrong: Vec<_> = tensors.iter().cloned().map(|(n, d, s)| if n == "model.layers.1.mlp.experts.3.up_proj.weight" { (n, d, vec![t.ff, t.hidden]) } else { (n, d, s) }).collect();
    let a = analyze(files(&cfg, &wrong).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::ShapeMismatch { tensor, why, .. } if tensor == "model.layers.1.mlp.experts.3.up_proj.weight" && why.contains("expert_intermediate_size"))), "{:#?}", a.errors);
    let mut cfg = Tiny::llama().config_json();
    cfg["num_local_experts"] = json!(8);
    let a = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap());
    assert!(kinds(&a).iter().any(|k| matches!(k, ErrorKind::UnsupportedFeature { key, .. } if key == "config.json num_local_experts")));
    let mut cfg = Tiny::llama().config_json();
    cfg["num_experts"] = json!(0);
    let a = analyze(files(&cfg, &Tiny::llama().hf_tensors("F32")).unwrap());
    assert!(a.is_valid(), "{:#?}", a.errors);
    assert_eq!(a.config.unwrap().n_experts, 0);
}

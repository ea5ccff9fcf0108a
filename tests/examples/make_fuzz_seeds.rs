//! Writes the fuzz corpus seeds (tiny valid models of each architecture, in both formats)
//! into fuzz/corpus/. Run: cargo run -p strata-conformance --example make_fuzz_seeds
use strata::model::gguf::Value;
use strata_conformance::{write_safetensors, Tiny};

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let gguf_dir = root.join("gguf_header");
    let st_dir = root.join("safetensors_header");
    std::fs::create_dir_all(&gguf_dir)?;
    std::fs::create_dir_all(&st_dir)?;
    let small = |t: Tiny| Tiny { layers: 1, hidden: 8, heads: 2, kv_heads: Some(1), ff: 8, vocab: 4, head_dim: t.head_dim.map(|_| 8), ..t };
    let models = [
        ("llama", small(Tiny::llama())),
        ("qwen2", small(Tiny::qwen2())),
        ("gemma3", small(Tiny::gemma3())),
        ("llama_untied", small(Tiny { tied: false, ..Tiny::llama() })),
    ];
    for (name, t) in &models {
        std::fs::write(gguf_dir.join(format!("{name}.gguf")), t.gguf().build())?;
        let mut st = serde_json::to_vec(&t.config_json())?;
        st.push(b'\n');
        st.extend(write_safetensors(&t.hf_tensors("BF16")));
        std::fs::write(st_dir.join(format!("{name}.bin")), st)?;
    }
    let v2 = { let mut w = models[0].1.gguf().kv("general.alignment", Value::U32(64)); w.version = 2; w.alignment = 64; w };
    std::fs::write(gguf_dir.join("llama_v2_align64.gguf"), v2.build())?;
    println!("seeds written to {}", root.display());
    Ok(())
}

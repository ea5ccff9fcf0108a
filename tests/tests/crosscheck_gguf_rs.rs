//! Our GGUF reader against the gguf-rs crate on the real models: same metadata keys, same
//! tensor names, dims, types and offsets. (Byte sizes are compared against llama.cpp's
//! Python reader in loader_real.rs; gguf-rs mis-sizes several types.)

use strata::model;
use strata_conformance::models;

fn crosscheck(file: &str) {
    let Some(path) = models::find(file) else { return };
    let ours = model::open(&path).unwrap();
    let h = ours.gguf.as_ref().unwrap();
    let mut container = gguf_rs::get_gguf_container_array_size(path.to_str().unwrap(), u64::MAX).unwrap();
    let theirs = container.decode().unwrap();
    assert_eq!(theirs.num_tensor(), h.tensors.len() as u64);
    assert_eq!(theirs.num_kv(), h.metadata.len() as u64);
    for key in theirs.metadata().keys() {
        assert!(h.get(key).is_some(), "gguf-rs has key {key}, we do not");
    }
    assert_eq!(theirs.alignment(), h.alignment);
    assert_eq!(theirs.data_offset(), h.data_offset);
    for (a, b) in h.tensors.iter().zip(theirs.tensors()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.dims, b.shape, "{}", a.name);
        assert_eq!(a.dtype.ggml_id(), Some(b.kind), "{}", a.name);
        assert_eq!(a.offset, b.offset, "{}", a.name);
    }
}

#[test]
fn smollm2_matches_gguf_rs() {
    crosscheck(models::SMOLLM2);
}

#[test]
fn gemma3_matches_gguf_rs() {
    crosscheck(models::GEMMA3);
}

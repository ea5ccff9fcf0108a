//! The packed-weight cache (runtime/src/packed_cache.rs) on the real models and the fast
//! CPU backend: a load through a written cache file computes bit for bit what a load that
//! repacks the model computes; a cache file for another instruction set, for a model file
//! changed in place (its mtime, or a header byte with the mtime put back), or one truncated
//! or corrupted, is never used: the load rebuilds it, says why, and the rebuilt file is
//! used next time. Under a memory budget the streamed layers are read from the same file,
//! packed (no repacking per step), with the same logits bit for bit.

use std::path::{Path, PathBuf};

use strata::backend::fast::{FastCpuBackend, Isa};
use strata::engine::{Engine, EngineOptions};
use strata::packed_cache::CacheStatus;
use strata_conformance::engine::quarter_budget;
use strata_conformance::models;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-packed-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn open(model: &Path, isa: Option<Isa>, cache: Option<&Path>) -> Engine<FastCpuBackend> {
    open_with_budget(model, isa, cache, None)
}

fn open_with_budget(model: &Path, isa: Option<Isa>, cache: Option<&Path>, max_memory: Option<u64>) -> Engine<FastCpuBackend> {
    let b = match isa {
        Some(isa) => FastCpuBackend::with_isa(2, isa),
        None => FastCpuBackend::with_threads(2),
    }
    .unwrap();
    let opts = EngineOptions { context: 64, max_memory, packed_cache: cache.map(Path::to_path_buf) };
    Engine::open(b, model, opts, &mut |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", model.display()))
}

/// The prompt's last logits, then 3 greedy steps' logits, as bits.
fn logits(e: &mut Engine<FastCpuBackend>) -> Vec<u32> {
    let ids = e.encode_prompt("The packed cache must not change a single logit").unwrap();
    let s = e.session_mut();
    let mut row = pollster::block_on(s.prefill(&ids)).unwrap();
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(row.iter().map(|v| v.to_bits()));
        let next = strata_conformance::engine::argmax(&row) as u32;
        row = pollster::block_on(s.prefill(&[next])).unwrap();
    }
    all
}

fn status(e: &Engine<FastCpuBackend>) -> CacheStatus {
    e.packed_cache().expect("loaded by open").clone()
}

fn written(s: &CacheStatus) -> (PathBuf, Option<String>) {
    match s {
        CacheStatus::Written { path, rebuilt, .. } => (path.clone(), rebuilt.clone()),
        other => panic!("expected a written cache, got {other:?}"),
    }
}

fn used(s: &CacheStatus) -> PathBuf {
    match s {
        CacheStatus::Used { path, .. } => path.clone(),
        other => panic!("expected the cache used, got {other:?}"),
    }
}

fn identical_through_the_cache(file: &str) {
    let Some(model) = models::find(file) else { return };
    let cache = dir(file);
    let mut plain = open(&model, None, None);
    assert!(matches!(status(&plain), CacheStatus::Off(_)));
    let want = logits(&mut plain);
    drop(plain);
    let mut first = open(&model, None, Some(&cache));
    let (path, rebuilt) = written(&status(&first));
    assert_eq!(rebuilt, None, "a fresh directory holds nothing to rebuild");
    assert!(logits(&mut first) == want, "{file}: the load that wrote the cache");
    drop(first);
    let mut second = open(&model, None, Some(&cache));
    assert_eq!(used(&status(&second)), path);
    assert!(logits(&mut second) == want, "{file}: the load from the mapped cache differs from repacking");
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn smollm2_through_the_cache_equals_repacking_bit_for_bit() {
    identical_through_the_cache(models::SMOLLM2);
}

#[test]
fn gemma3_through_the_cache_equals_repacking_bit_for_bit() {
    identical_through_the_cache(models::GEMMA3);
}

/// Whether `e`'s layers streamed (after a forward pass), and from the packed cache file.
fn streams_packed(e: &Engine<FastCpuBackend>) -> bool {
    let stats = e.stream_stats().expect("layers stream under the budget");
    assert!(stats.layers_streamed > 0 && stats.bytes_read > 0, "{stats:?}");
    stats.packed
}

/// Under a quarter budget: without the cache the streamed layers are repacked from the
/// model file; the load that writes the cache (packing the streamed layers once) and the
/// one that maps it both read them packed from the cache file, all three with the resident
/// repacking load's logits bit for bit; and the one file serves a resident load too.
fn streamed_through_the_cache(file: &str) {
    let Some(model) = models::find(file) else { return };
    let cache = dir(&format!("streamed-{file}"));
    let budget = Some(quarter_budget(&model));
    let want = logits(&mut open(&model, None, None));
    let mut plain = open_with_budget(&model, None, None, budget);
    assert!(logits(&mut plain) == want, "{file}: streamed without the cache");
    assert!(!streams_packed(&plain), "no cache: the layers come from the model file");
    drop(plain);
    let mut first = open_with_budget(&model, None, Some(&cache), budget);
    let (path, _) = written(&status(&first));
    assert!(logits(&mut first) == want, "{file}: streamed by the load that wrote the cache");
    assert!(streams_packed(&first), "{file}: the writing load streams from the file it wrote");
    drop(first);
    let mut second = open_with_budget(&model, None, Some(&cache), budget);
    assert_eq!(used(&status(&second)), path);
    assert!(logits(&mut second) == want, "{file}: streamed from the packed cache");
    assert!(streams_packed(&second));
    drop(second);
    assert_eq!(used(&status(&open(&model, None, Some(&cache)))), path, "a resident load uses the file a streamed one wrote");
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn smollm2_streamed_from_the_cache_equals_resident_bit_for_bit() {
    streamed_through_the_cache(models::SMOLLM2);
}

#[test]
fn gemma3_streamed_from_the_cache_equals_resident_bit_for_bit() {
    streamed_through_the_cache(models::GEMMA3);
}

/// Kilobytes of `path`'s mappings in this process's memory (Linux: /proc/self/smaps).
#[cfg(target_os = "linux")]
fn mapped_rss_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("Rss:") {
            if inside {
                kib += rest.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
            }
        } else if line.split_whitespace().next().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            inside = line.ends_with(name);
        }
    }
    kib
}

/// Streamed layers borrow the mapping in place, and a layer leaving its slot gives its
/// pages back: after decoding, the file's pages in this process are the resident tensors
/// plus a few layers, well under the whole file (a streamer that kept every layer mapped
/// would hold all of it).
#[cfg(target_os = "linux")]
#[test]
fn streamed_layers_give_their_pages_back() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let cache = dir("streamed-rss");
    let budget = quarter_budget(&model);
    let (path, _) = written(&status(&open(&model, None, Some(&cache))));
    let mut e = open_with_budget(&model, None, Some(&cache), Some(budget));
    assert_eq!(used(&status(&e)), path);
    logits(&mut e);
    assert!(streams_packed(&e));
    let m = strata::model::load(&model).unwrap();
    let plan = strata::streaming::StreamPlan::new(&m, Some(budget)).unwrap();
    let file_kib = std::fs::metadata(&path).unwrap().len() / 1024;
    let rss = mapped_rss_kib(&path);
    println!("cache file {file_kib} KiB, mapped {rss} KiB, streamed {} KiB of the model file", plan.streamed_bytes() / 1024);
    assert!(rss > 0, "the resident tensors are mapped from the file");
    assert!(rss < file_kib - plan.streamed_bytes() / 2048, "{rss} KiB of a {file_kib} KiB cache file still mapped");
    let _ = std::fs::remove_dir_all(&cache);
}

/// A streamed load checks the tensors it streams too (by reads, not through the mapping):
/// one flipped byte in the last layer's last tensor, streamed under the budget, is found
/// and the file rebuilt.
#[test]
fn a_corrupted_streamed_tensor_is_rebuilt_never_streamed() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let cache = dir("streamed-damage");
    let budget = Some(quarter_budget(&model));
    let (path, _) = written(&status(&open(&model, None, Some(&cache))));
    let mut bytes = std::fs::read(&path).unwrap();
    let index_at = u64::from_le_bytes(bytes[bytes.len() - 32..][..8].try_into().unwrap()) as usize;
    bytes[index_at - 1] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let mut e = open_with_budget(&model, None, Some(&cache), budget);
    let (rebuilt_path, rebuilt) = written(&status(&e));
    assert_eq!(rebuilt_path, path);
    assert!(rebuilt.is_some_and(|r| r.contains("corrupted")), "the damaged streamed tensor is named");
    logits(&mut e);
    assert!(streams_packed(&e));
    drop(e);
    assert_eq!(used(&status(&open_with_budget(&model, None, Some(&cache), budget))), path);
    let _ = std::fs::remove_dir_all(&cache);
}

/// Rebuilt with a reason, then used: the rebuilt file is valid.
fn rebuilt_then_used(model: &Path, cache: &Path, isa: Option<Isa>, why: &str) -> PathBuf {
    let (path, rebuilt) = written(&status(&open(model, isa, Some(cache))));
    let rebuilt = rebuilt.unwrap_or_else(|| panic!("expected a rebuild because {why}"));
    assert!(rebuilt.contains(why), "{rebuilt:?} should say {why:?}");
    assert_eq!(used(&status(&open(model, isa, Some(cache)))), path);
    path
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn another_isa_a_changed_model_and_damaged_files_are_rebuilt_never_used() {
    let Some(src) = models::find(models::SMOLLM2) else { return };
    let work = dir("keys");
    let model = work.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(&src, &model).unwrap();
    let cache = work.join("packed");
    let (best, _) = written(&status(&open(&model, None, Some(&cache))));

    // Another instruction set: its own file, whose stored key is also checked (a file of
    // the best set's under the scalar set's name is rebuilt).
    let scalar = Some(Isa::Scalar);
    let (scalar_path, _) = written(&status(&open(&model, scalar, Some(&cache))));
    assert_ne!(scalar_path, best);
    if Isa::detect().unwrap() != Isa::Scalar {
        std::fs::copy(&best, &scalar_path).unwrap();
        rebuilt_then_used(&model, &cache, scalar, "another backend layout or instruction set");
    }

    // Truncated, then one byte of a tensor flipped.
    let len = std::fs::metadata(&best).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&best).unwrap().set_len(len - 100).unwrap();
    rebuilt_then_used(&model, &cache, None, "trailer");
    let mut bytes = std::fs::read(&best).unwrap();
    bytes[4096 * 3 + 17] ^= 0x40;
    std::fs::write(&best, &bytes).unwrap();
    rebuilt_then_used(&model, &cache, None, "corrupted");

    // The model changed in place: a new mtime gives a new key (and a new file, replacing the
    // old one of this model and layout).
    let f = std::fs::OpenOptions::new().write(true).open(&model).unwrap();
    let mtime = std::fs::metadata(&model).unwrap().modified().unwrap();
    f.set_modified(mtime + std::time::Duration::from_secs(60)).unwrap();
    drop(f);
    let (after_touch, rebuilt) = written(&status(&open(&model, None, Some(&cache))));
    assert_eq!(rebuilt, None);
    assert_ne!(after_touch, best);
    assert!(!best.exists(), "the cache of the model's old state is removed");

    // A header byte changed (general.name's value) with size and mtime as they were: the
    // header hash alone tells.
    let mut bytes = std::fs::read(&model).unwrap();
    let at = bytes.windows(12).position(|w| w == b"general.name").expect("general.name key") + 12 + 4 + 8;
    bytes[at] ^= 0x01;
    let mtime = std::fs::metadata(&model).unwrap().modified().unwrap();
    std::fs::write(&model, &bytes).unwrap();
    std::fs::OpenOptions::new().write(true).open(&model).unwrap().set_modified(mtime).unwrap();
    let (after_edit, _) = written(&status(&open(&model, None, Some(&cache))));
    assert_ne!(after_edit, after_touch);
    assert_eq!(cache_files(&cache), { let mut v = vec![after_edit, scalar_path]; v.sort(); v }, "one file per layout, nothing left over");
    let _ = std::fs::remove_dir_all(&work);
}

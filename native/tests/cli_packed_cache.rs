//! The packed-weight cache through the CLI: two processes loading the same model at once
//! both succeed and leave one valid cache file; the next load maps it; `--no-cache` and
//! `STRATA_PACKED_CACHE=0` turn it off.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value as Json;
use strata_conformance::models;

/// `strata ARGS` with its cache in `cache` (the packed cache's switch unset unless `env`
/// sets it), output captured.
fn strata(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(args).env("STRATA_CACHE", cache).env_remove("STRATA_PACKED_CACHE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn bench(model: &Path, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = strata(&["bench", "--backend", "cpu", "-t", "1", "-p", "8", "-n", "2", "--ctx", "32", "--json", "-m"], cache, env);
    c.arg(model).args(extra);
    c
}

/// The JSON a successful command printed.
fn json(out: std::process::Output) -> Json {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status(out: std::process::Output) -> String {
    let v = json(out);
    v["packed_cache"].as_str().unwrap_or_else(|| panic!("no packed_cache in {v}")).to_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[test]
fn two_processes_at_once_leave_one_valid_cache_that_the_next_load_uses() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let cache = std::env::temp_dir().join(format!("strata-cli-packed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let (a, b) = (bench(&model, &cache, &[], &[]).spawn().unwrap(), bench(&model, &cache, &[], &[]).spawn().unwrap());
    let (a, b) = (status(a.wait_with_output().unwrap()), status(b.wait_with_output().unwrap()));
    // Each either wrote its own file (renamed over the other's) or found one already there.
    assert!([&a, &b].iter().all(|s| *s == "written" || *s == "used"), "{a} / {b}");
    assert!(a == "written" || b == "written", "{a} / {b}");
    let left = files(&cache.join("packed"));
    assert_eq!(left.len(), 1, "one file, no temporaries: {left:?}");
    assert!(left[0].starts_with("SmolLM2-135M-Instruct-Q4_1.fast-cpu-layout-") && left[0].ends_with(".pack"), "{left:?}");
    assert_eq!(status(bench(&model, &cache, &[], &[]).output().unwrap()), "used");
    assert_eq!(status(bench(&model, &cache, &["--no-cache"], &[]).output().unwrap()), "off");
    assert_eq!(status(bench(&model, &cache, &[], &[("STRATA_PACKED_CACHE", "0")]).output().unwrap()), "off");
    assert_eq!(files(&cache.join("packed")), left, "turned off: nothing written");
    let _ = std::fs::remove_dir_all(&cache);
}

/// A cache directory that cannot be created: the model loads (repacked in memory) with
/// one warning that names the directory.
#[test]
fn an_unwritable_cache_directory_warns_once_and_loads() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let base = std::env::temp_dir().join(format!("strata-cli-packed-ro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // A file where the cache directory would be: creating `packed/` under it fails, even as root.
    let cache = base.join("not-a-dir");
    std::fs::write(&cache, b"x").unwrap();
    let out = bench(&model, &cache, &[], &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(status(out), "failed");
    assert_eq!(stderr.matches("warning: packed cache not used").count(), 1, "{stderr}");
    assert!(stderr.contains("not-a-dir"), "{stderr}");
    let _ = std::fs::remove_dir_all(&base);
}

/// `strata inspect` says what the next load will find: none, a valid file (after a load
/// wrote it), one it will rebuild (corrupted), or the cache turned off.
#[test]
fn inspect_reports_the_cache_state() {
    let Some(model) = models::find(models::SMOLLM2) else { return };
    let cache = std::env::temp_dir().join(format!("strata-cli-packed-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let inspect = |env: &[(&str, &str)]| {
        let mut c = strata(&["inspect", "--json"], &cache, env);
        json(c.arg(&model).output().unwrap())["packed_cache"].clone()
    };
    let absent = inspect(&[]);
    assert_eq!(absent["state"], "absent", "{absent}");
    assert_eq!(status(bench(&model, &cache, &[], &[]).output().unwrap()), "written");
    let valid = inspect(&[]);
    assert_eq!(valid["state"], "valid", "{valid}");
    assert_eq!(valid["path"], absent["path"], "the file the first load wrote");
    let path = std::path::PathBuf::from(valid["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let stale = inspect(&[]);
    assert_eq!(stale["state"], "stale", "{stale}");
    assert!(stale["detail"].as_str().unwrap().contains("corrupted"), "{stale}");
    assert_eq!(inspect(&[("STRATA_PACKED_CACHE", "0")])["state"], "off");
    let _ = std::fs::remove_dir_all(&cache);
}

//! The crate's layers, checked on the sources (issue 16): a forbidden import fails here.
//!
//! - architectures (`runtime/src/arch`) never name a backend implementation;
//! - backends (`runtime/src/backend`, `native/cuda`) never name architectures, models,
//!   weights, streaming or sessions: they know the op set only;
//! - `model` names no backend, only the op vocabulary (`Activation`, `RopeStyle`);
//! - the runtime never names the native or web crates, and the web crate never the
//!   native ones (in code or in Cargo.toml).
//!
//! Comments are skipped (docs may point anywhere).

use std::path::{Path, PathBuf};

struct Rule {
    /// Directories (from the workspace root) whose `.rs` files the rule covers.
    dirs: &'static [&'static str],
    /// Paths those files must not name.
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        dirs: &["runtime/src/arch"],
        forbidden: &["backend::cpu", "backend::fast", "backend::webgpu", "strata_cuda"],
        why: "architectures build on the Backend trait, never on one backend",
    },
    Rule {
        dirs: &["runtime/src/backend"],
        forbidden: &["crate::arch", "crate::model", "crate::weights", "crate::streaming", "crate::session", "crate::engine", "crate::kv_cache"],
        why: "backends know the op set, not models",
    },
    Rule {
        dirs: &["native/cuda/src"],
        forbidden: &["strata::arch", "strata::model", "strata::weights", "strata::streaming", "strata::session", "strata::engine", "strata::kv_cache"],
        why: "backends know the op set, not models",
    },
    Rule {
        dirs: &["runtime/src/model"],
        forbidden: &["backend::cpu", "backend::fast", "backend::webgpu", "backend::Backend", "crate::weights", "crate::session", "crate::engine"],
        why: "the model loader uses no backend (only the op vocabulary)",
    },
    Rule {
        dirs: &["runtime/src"],
        forbidden: &["strata_cli", "strata_web", "strata_cuda"],
        why: "the runtime does not depend on its front ends",
    },
    Rule {
        dirs: &["web/src", "web/conformance/src"],
        forbidden: &["strata_cli", "strata_cuda"],
        why: "the web crate does not depend on the native ones",
    },
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(line number, forbidden path)` for each code line of `text` naming one of `forbidden`.
fn violations(text: &str, forbidden: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for f in forbidden {
            if code.contains(f) {
                out.push((i + 1, f.to_string()));
            }
        }
    }
    out
}

#[test]
fn no_layer_imports_what_it_must_not() {
    let root = root();
    let mut found = Vec::new();
    let mut files_checked = 0;
    for rule in RULES {
        for dir in rule.dirs {
            let mut files = Vec::new();
            rust_files(&root.join(dir), &mut files);
            assert!(!files.is_empty(), "{dir} holds no .rs files: the rule checks nothing");
            for f in files {
                files_checked += 1;
                let text = std::fs::read_to_string(&f).unwrap();
                for (line, what) in violations(&text, rule.forbidden) {
                    found.push(format!("{}:{line} names {what} ({})", f.strip_prefix(&root).unwrap_or(&f).display(), rule.why));
                }
            }
        }
    }
    assert!(files_checked > 50, "{files_checked} files");
    assert!(found.is_empty(), "forbidden imports:\n{}", found.join("\n"));
}

#[test]
fn manifests_keep_the_runtime_and_the_web_crate_off_the_native_crates() {
    let root = root();
    for (manifest, forbidden) in [("runtime/Cargo.toml", &["strata-cli", "strata-web", "strata-cuda"][..]), ("web/Cargo.toml", &["strata-cli", "strata-cuda"][..])] {
        let text = std::fs::read_to_string(root.join(manifest)).unwrap();
        let deps: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
        for f in forbidden {
            assert!(!deps.iter().any(|l| l.contains(f)), "{manifest} depends on {f}");
        }
    }
}

/// The checker sees a forbidden import in code and ignores one in a comment.
#[test]
fn the_checker_finds_an_import_and_skips_comments() {
    let text = "use crate::backend::Op;\nuse crate::model::ModelConfig; // the config\n/// see [`crate::model`]\nlet x = 1; // crate::arch\n";
    assert_eq!(violations(text, &["crate::model", "crate::arch"]), vec![(2, "crate::model".to_string())]);
}

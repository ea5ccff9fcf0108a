//! The crate's layers, checked on the sources (issue 16): a forbidden import fails here.
//!
//! - architectures (`runtime/src/arch`) never name a backend implementation;
//! - backends (`runtime/src/backend`, `native/cuda`) never name architectures, models,
//!   weights, streaming or sessions: they know the op set only;
//! - `model` names no backend, only the op vocabulary (`Activation`, `RopeStyle`);
//! - no code outside `runtime/src/arch` names one architecture (`Arch::Gemma2`): what an
//!   architecture does differently is in its own file (`arch::Quirks`);
//! - the runtime never names the native or web crates, and the web crate never the
//!   native ones (in code or in Cargo.toml);
//! - the runtime's modules import each other in one direction only: no loop such as
//!   `weights` ↔ `streaming` or `arch` ↔ `model` (the forward pass, `arch/forward.rs`,
//!   counts as a module of its own above the weight store).
//!
//! Comments are skipped (docs may point anywhere).

use std::path::{Path, PathBuf};

struct Rule {
    /// Directories (from the workspace root) whose `.rs` files the rule covers.
    dirs: &'static [&'static str],
    /// Directories under those that the rule leaves out.
    except: &'static [&'static str],
    /// Paths those files must not name.
    forbidden: &'static [&'static str],
    why: &'static str,
}

/// Every architecture by name: only its own file (and the registry beside it) names one.
const ARCHS_BY_NAME: &[&str] = &["Arch::Llama", "Arch::Qwen2", "Arch::Qwen3", "Arch::Gemma2", "Arch::Gemma3", "Arch::Phi3"];

const RULES: &[Rule] = &[
    Rule {
        dirs: &["runtime/src", "native/src", "web/src"],
        except: &["runtime/src/arch"],
        forbidden: ARCHS_BY_NAME,
        why: "an architecture's quirks live in its own file (arch::Quirks), not in the loader or the engine",
    },
    Rule {
        dirs: &["runtime/src/arch"],
        except: &[],
        forbidden: &["backend::cpu", "backend::fast", "backend::webgpu", "strata_cuda"],
        why: "architectures build on the Backend trait, never on one backend",
    },
    Rule {
        dirs: &["runtime/src/backend"],
        except: &[],
        forbidden: &["crate::arch", "crate::model", "crate::weights", "crate::streaming", "crate::session", "crate::engine", "crate::kv_cache"],
        why: "backends know the op set, not models",
    },
    Rule {
        dirs: &["native/cuda/src"],
        except: &[],
        forbidden: &["strata::arch", "strata::model", "strata::weights", "strata::streaming", "strata::session", "strata::engine", "strata::kv_cache"],
        why: "backends know the op set, not models",
    },
    Rule {
        dirs: &["runtime/src/model"],
        except: &[],
        forbidden: &["backend::cpu", "backend::fast", "backend::webgpu", "backend::Backend", "crate::weights", "crate::session", "crate::engine"],
        why: "the model loader uses no backend (only the op vocabulary)",
    },
    Rule {
        dirs: &["runtime/src"],
        except: &[],
        forbidden: &["strata_cli", "strata_web", "strata_cuda"],
        why: "the runtime does not depend on its front ends",
    },
    Rule {
        dirs: &["web/src", "web/conformance/src"],
        except: &[],
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
            files.retain(|f| !rule.except.iter().any(|e| f.starts_with(root.join(e))));
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

/// The runtime's modules and which others each one names (`crate::x`, `crate::{x, y}`).
/// A module is a top-level file or directory of `runtime/src`; the forward pass
/// (`arch/forward.rs`) counts as its own module, `forward`, above the weights it reads.
fn module_graph(files: &[(String, String)]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for (path, text) in files {
        let node = if path == "arch/forward.rs" { "forward".to_string() } else { path.split('/').next().unwrap().trim_end_matches(".rs").to_string() };
        let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let mut refs = std::collections::BTreeSet::new();
        // The module a path names (`arch::forward::…` is the forward pass, not `arch`).
        let ident = |s: &str| {
            if s.starts_with("arch::forward") {
                return "forward".to_string();
            }
            s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect::<String>()
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of a grouped import: split at depth-0 commas.
                let (mut depth, mut start) = (0usize, 0usize);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            refs.insert(ident(group[start..j].trim()));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            refs.insert(ident(group[start..j].trim()));
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                refs.insert(ident(rest));
            }
        }
        if node == "forward" && code.contains("super::") {
            refs.insert("arch".into());
        }
        if node == "arch" && code.contains("forward::") {
            refs.insert("forward".into());
        }
        refs.retain(|r| !r.is_empty() && *r != node && r != "self");
        graph.entry(node).or_default().extend(refs);
    }
    graph
}

/// A cycle of `graph` (its modules in order, the first repeated at the end), if any.
fn find_cycle(graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(n: &str, g: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>, path: &mut Vec<String>, done: &mut std::collections::BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = Default::default();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// No two modules of the runtime name each other, directly or around a loop: the loader
/// (`model`) below the layer definition (`layer`), the streamer, the weight store and the
/// forward pass, each above the ones it uses.
#[test]
fn the_runtime_modules_import_each_other_in_one_direction() {
    let src = root().join("runtime/src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| (p.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/"), std::fs::read_to_string(p).unwrap()))
        .collect();
    let graph = module_graph(&files);
    for (from, to) in [("forward", "weights"), ("weights", "streaming"), ("streaming", "layer"), ("layer", "model"), ("model", "arch")] {
        assert!(graph[from].contains(to), "the scan lost the edge {from} -> {to}: {graph:?}");
    }
    assert_eq!(find_cycle(&graph), None, "modules that import each other");
}

/// The scanner reads grouped imports and the checker reports the loop it finds.
#[test]
fn the_module_scan_sees_grouped_imports_and_reports_a_loop() {
    let files = vec![
        ("weights.rs".to_string(), "use crate::{layer::{Qkv, GateUp}, model};\n// crate::session\n".to_string()),
        ("streaming.rs".to_string(), "use crate::weights::Weights;\n".to_string()),
        ("layer.rs".to_string(), "fn f() { crate::model::load(); }\n".to_string()),
        ("session.rs".to_string(), "use crate::arch::forward::Net;\n".to_string()),
        ("arch/forward.rs".to_string(), "use super::Part; use crate::weights::W;\n".to_string()),
    ];
    let graph = module_graph(&files);
    assert_eq!(graph["weights"].iter().map(String::as_str).collect::<Vec<_>>(), ["layer", "model"]);
    assert_eq!(graph["forward"].iter().map(String::as_str).collect::<Vec<_>>(), ["arch", "weights"]);
    assert_eq!(graph["session"].iter().map(String::as_str).collect::<Vec<_>>(), ["forward"]);
    assert_eq!(find_cycle(&graph), None);
    let mut looped = files;
    looped.push(("model/mod.rs".to_string(), "use crate::streaming::StreamPlan;".to_string()));
    let graph = module_graph(&looped);
    let cycle = find_cycle(&graph).expect("layer -> model -> streaming -> weights -> layer is a loop");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.windows(2).all(|e| graph[&e[0]].contains(&e[1])), "not a path of the graph: {cycle:?}");
    assert_eq!(cycle.len(), 5, "{cycle:?}");
}

//! `strata`: the native command-line interface.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

mod demo_model;

#[derive(Parser)]
#[command(name = "strata", version, about = "strata: LLM inference for the browser and native")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's architecture, every config value with its source, tensor bytes by
    /// dtype and the validation result. Exits non-zero when the model is invalid.
    Inspect {
        /// A .gguf file, a .safetensors file (config.json beside it), a
        /// model.safetensors.index.json, or a directory holding a model. Default: the demo
        /// model (SmolLM2-135M-Instruct Q4_1), fetched once into the cache.
        path: Option<std::path::PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { path, json } => {
            let path = match path.map_or_else(demo_model::path, Ok) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("strata inspect: {e}");
                    return ExitCode::FAILURE;
                }
            };
            inspect(&path, json)
        }
    }
}

fn inspect(path: &std::path::Path, json: bool) -> ExitCode {
    let t0 = Instant::now();
    let files = match strata::model::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("strata inspect: {e}");
            if json {
                out(&serde_json::json!({"valid": false, "errors": [e.to_string()], "path": path.display().to_string()}).to_string());
            }
            return ExitCode::FAILURE;
        }
    };
    let parse_ms = t0.elapsed().as_secs_f64() * 1e3;
    let analysis = strata::model::analyze(files);
    let total_ms = t0.elapsed().as_secs_f64() * 1e3;
    if json {
        let mut report = strata::inspect::report_json(&analysis);
        report["timings"] = serde_json::json!({"header_parse_ms": parse_ms, "total_ms": total_ms});
        out(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        out(&format!(
            "{}time:         header parsed in {parse_ms:.2} ms, validated in {total_ms:.2} ms total",
            strata::inspect::report_text(&analysis)
        ));
    }
    if analysis.is_valid() {
        ExitCode::SUCCESS
    } else {
        for e in &analysis.errors {
            eprintln!("strata inspect: {e}");
        }
        if analysis.errors.is_empty() {
            eprintln!("strata inspect: {}: invalid model", path.display());
        }
        ExitCode::FAILURE
    }
}

/// Prints a line to stdout; a closed pipe (`strata inspect ... | head`) is not an error.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

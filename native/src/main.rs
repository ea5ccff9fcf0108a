//! `strata`: the native command-line interface.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata::backend::cpu::CpuBackend;
use strata::backend::fast::FastCpuBackend;
use strata::backend::webgpu::{WgpuBackend, WgpuOptions};
use strata::backend::Backend;
use strata_cuda::{CudaBackend, CudaOptions};
use strata::chat::Message;
use strata::sampler::{Sampler, SamplerConfig};
use strata::engine::{Engine, EngineError, EngineOptions};
use strata::packed_cache::CacheStatus;
use strata::source::{ByteSource, FileSource};

mod demo_model;
mod error;
mod serve;

use error::CliError;

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
        path: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also read every tensor and check every float value and block scale for NaN
        /// and infinities, naming the tensor and block (reads the whole file).
        #[arg(long)]
        deep: bool,
    },
    /// Generate text after PROMPT (plain completion; `chat` applies the chat template).
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Tokens to generate at most.
        #[arg(short = 'n', long, default_value_t = 64)]
        n: usize,
        /// Print one JSON object: prompt_tokens, tokens, text, timings.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prompt: PromptArgs,
    },
    /// Interactive chat with the model's chat template.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Tokens per reply at most.
        #[arg(short = 'n', long, default_value_t = 256)]
        n: usize,
    },
    /// The final-position logits of PROMPT, highest first.
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// How many to print.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prompt: PromptArgs,
    },
    /// The compute devices strata can use: wgpu adapters with their limits and features,
    /// CUDA, the CPU.
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// An OpenAI-compatible HTTP server (`/v1/chat/completions`, `/v1/completions`,
    /// `/v1/models`, `/health`, `/tokenize`, `/detokenize`) batching every running request
    /// into each forward pass. `--ctx` is shared by the slots, as llama-server's `-c`.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Prompt processing and generation speed, like llama-bench (pp, tg).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt tokens.
        #[arg(short = 'p', default_value_t = 512)]
        p: usize,
        /// Generated tokens.
        #[arg(short = 'n', default_value_t = 128)]
        n: usize,
        #[arg(long)]
        json: bool,
    },
}

/// The prompt: the argument, or a file (`-f -`: standard input), since one argument is
/// limited to 128 KiB on Linux.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct PromptArgs {
    prompt: Option<String>,
    /// Read the prompt from FILE (`-` for standard input) instead of the argument.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl PromptArgs {
    fn text(&self) -> Result<String, Fail> {
        let Some(path) = &self.file else { return Ok(self.prompt.clone().unwrap_or_default()) };
        let bytes = if path.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b).map_err(CliError::Stdin)?;
            b
        } else {
            std::fs::read(path).map_err(|source| CliError::PromptFile { file: path.clone(), source })?
        };
        let mut text = String::from_utf8(bytes).map_err(|e| CliError::PromptNotUtf8 { file: path.clone(), offset: e.utf8_error().valid_up_to() })?;
        // The file's final line break is not part of the prompt (as llama.cpp's -f).
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// CUDA when an NVIDIA GPU and driver are there, else a hardware GPU through wgpu,
    /// else the CPU (a CPU-emulated adapter such as lavapipe is slower than the CPU
    /// backend, so auto skips it).
    Auto,
    /// The fast CPU backend: integer kernels on repacked weights, a thread pool.
    Cpu,
    /// The plain CPU reference backend (the ground truth other backends are tested against).
    Ref,
    Wgpu,
    Cuda,
}

#[derive(Args)]
struct ModelArgs {
    /// Model file or directory. Default: the demo model, fetched once into the cache.
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    backend: BackendKind,
    /// wgpu adapter index, or CUDA device ordinal with --backend cuda (see `strata
    /// devices`); default: the high-performance adapter, CUDA device 0.
    #[arg(long)]
    adapter: Option<usize>,
    /// Context positions to allocate (capped at the model's context length).
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// CPU threads (the cpu and ref backends). Default: every core.
    #[arg(long, short = 't')]
    threads: Option<usize>,
    /// Memory budget for device-resident weights (e.g. 64M, 40MiB, 1.5G; KB/MB/GB are
    /// decimal): the embedding, norms and
    /// output head stay resident, then as many layers as fit; the rest stream from the file
    /// with the next layer prefetched. Default: everything resident.
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Print per-token streaming figures: bytes and time read from storage, upload time,
    /// time waiting for prefetch, compute time; and what loading did with the packed cache.
    #[arg(long)]
    profile: bool,
    /// Do not read or write the packed-weight cache ($STRATA_CACHE/packed; also
    /// STRATA_PACKED_CACHE=0): the cpu backend repacks the model's weights at every load.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together (slots), each with its own KV cache of ctx / parallel.
    #[arg(long, visible_alias = "np", default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a slot; past it a request gets 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Require `Authorization: Bearer KEY` (every endpoint but /health).
    #[arg(long)]
    api_key: Option<String>,
    /// Largest request body (bigger: 413).
    #[arg(long, value_parser = parse_size, default_value = "8M")]
    max_body: u64,
    /// Tokens one forward pass runs at most: a token per decoding slot, then chunks of the
    /// prompts being prefilled.
    #[arg(long, default_value_t = 512)]
    batch_tokens: usize,
}

/// `strata::settings::parse_size`: `40M`, `40MiB`, `40MB`, `1.5G`, `1.5GiB`.
fn parse_size(s: &str) -> Result<u64, strata::settings::NamedSetting> {
    strata::settings::parse_size(s).map_err(|e| e.named("--max-memory"))
}

#[derive(Args)]
struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(allow_negative_numbers = true, long = "temp", default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(allow_negative_numbers = true, long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Subtracted from every token seen in the last 64 (0 = off).
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// Subtracted once per occurrence in the last 64 (0 = off).
    #[arg(allow_negative_numbers = true, long, default_value_t = 0.0)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// The sampler, its values checked by the runtime's rules (the browser's too).
    fn sampler(&self) -> Result<Sampler, Fail> {
        use strata::settings::Setting;
        let config = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            repetition_window: 64,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        };
        config.validate().map_err(|e| {
            let name = match e.setting {
                Setting::Temperature => "--temp",
                Setting::TopP => "--top-p",
                Setting::MinP => "--min-p",
                Setting::RepetitionPenalty => "--repeat-penalty",
                Setting::PresencePenalty => "--presence-penalty",
                Setting::FrequencyPenalty => "--frequency-penalty",
                Setting::Context => "--ctx",
                Setting::MaxMemory => "--max-memory",
            };
            e.named(name)
        })?;
        Ok(Sampler::new(config))
    }
}

/// Runs `$body` with `$m` bound to the model loaded on the backend the arguments choose.
macro_rules! on_backend {
    ($args:expr, |$m:ident| $body:expr) => {
        match open_backend($args) {
            Err(e) => Err(e),
            Ok(Chosen::Cpu(b)) => load(*b, $args).and_then(|$m| $body),
            Ok(Chosen::Ref(b)) => load(b, $args).and_then(|$m| $body),
            Ok(Chosen::Wgpu(b)) => load(*b, $args).and_then(|$m| $body),
            Ok(Chosen::Cuda(b)) => load(*b, $args).and_then(|$m| $body),
        }
    };
}

type Fail = CliError;

/// The model and sampling arguments checked by the runtime's rules.
fn checked(model: &ModelArgs, sampling: Option<&SamplingArgs>) -> Result<(), Fail> {
    strata::settings::check_context(model.ctx).map_err(|e| e.named("--ctx"))?;
    sampling.map_or(Ok(()), |s| s.sampler().map(drop))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { path, json, deep } => return inspect_cmd(path, json, deep),
        Command::Devices { json } => devices(json),
        Command::Run { model, sampling, n, json, prompt } => {
            // Bad arguments are reported before a model loads.
            checked(&model, Some(&sampling)).and_then(|_| prompt.text()).and_then(|text| on_backend!(&model, |m| run(m, &sampling, n, json, &text)))
        }
        Command::Chat { model, sampling, n } => checked(&model, Some(&sampling)).and_then(|_| on_backend!(&model, |m| chat(m, &sampling, n))),
        Command::Logits { model, top, json, prompt } => {
            checked(&model, None).and_then(|_| prompt.text()).and_then(|text| on_backend!(&model, |m| logits(m, top, json, &text)))
        }
        Command::Serve { model, serve } => checked(&model, None).and_then(|_| serve_cmd(model, serve)),
        Command::Bench { model, p, n, json } => checked(&model, None).and_then(|_| on_backend!(&model, |m| bench(m, p, n, json))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints to stdout; a closed pipe (`strata ... | head`) is not an error.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

fn model_path(p: &Option<PathBuf>) -> Result<PathBuf, Fail> {
    match p {
        Some(p) => Ok(p.clone()),
        None => Ok(demo_model::path()?),
    }
}

enum Chosen {
    Cpu(Box<FastCpuBackend>),
    Ref(CpuBackend),
    Wgpu(Box<WgpuBackend>),
    Cuda(Box<CudaBackend>),
}

fn open_wgpu(args: &ModelArgs) -> Result<WgpuBackend, Fail> {
    pollster::block_on(WgpuBackend::new(WgpuOptions { adapter: args.adapter, ..Default::default() }.with_env())).map_err(|source| CliError::Backend { backend: "wgpu", source, hint: "" })
}

fn open_cuda(args: &ModelArgs) -> Result<CudaBackend, Fail> {
    CudaBackend::new(CudaOptions { device: args.adapter.unwrap_or(0), ..Default::default() }.with_env()).map_err(|source| CliError::Backend { backend: "cuda", source, hint: " (`strata devices` lists what is available)" })
}

fn open_cpu(args: &ModelArgs) -> Result<FastCpuBackend, Fail> {
    match args.threads {
        Some(t) => FastCpuBackend::with_threads(t),
        None => FastCpuBackend::new(),
    }
    .map_err(|source| CliError::Backend { backend: "cpu", source, hint: "" })
}

fn open_backend(args: &ModelArgs) -> Result<Chosen, Fail> {
    match args.backend {
        BackendKind::Cpu => Ok(Chosen::Cpu(Box::new(open_cpu(args)?))),
        BackendKind::Ref => Ok(Chosen::Ref(args.threads.map_or_else(CpuBackend::new, CpuBackend::with_threads))),
        BackendKind::Wgpu => Ok(Chosen::Wgpu(Box::new(open_wgpu(args)?))),
        BackendKind::Cuda => Ok(Chosen::Cuda(Box::new(open_cuda(args)?))),
        BackendKind::Auto => {
            if strata_cuda::driver_present() {
                if let Ok(b) = open_cuda(args) {
                    return Ok(Chosen::Cuda(Box::new(b)));
                }
            }
            match open_wgpu(args) {
                Ok(b) if b.adapter().device_type != "Cpu" => Ok(Chosen::Wgpu(Box::new(b))),
                _ => Ok(Chosen::Cpu(Box::new(open_cpu(args)?))),
            }
        }
    }
}

fn devices(json: bool) -> Result<(), Fail> {
    let adapters = pollster::block_on(strata::backend::webgpu::adapters());
    let cpu = match FastCpuBackend::new() {
        Ok(b) => b.name(),
        Err(e) => e.to_string(),
    };
    let cuda = strata_cuda::devices();
    if json {
        let cuda = match &cuda {
            Ok(d) => serde_json::json!({"devices": d}),
            Err(e) => serde_json::json!({"devices": [], "error": e.to_string()}),
        };
        out(&serde_json::json!({"wgpu": adapters, "cuda": cuda, "cpu": cpu}).to_string());
        return Ok(());
    }
    if adapters.is_empty() {
        out("wgpu: no adapter (no Vulkan/Metal/DX12 driver found; on Linux without a GPU, install mesa-vulkan-drivers for lavapipe)");
    }
    for a in &adapters {
        out(&format!(
            "wgpu #{}: {} ({}, {}, driver {})\n    shader-f16: {}, subgroups: {}\n    max_storage_buffer_binding_size: {} MiB, max_buffer_size: {} MiB, workgroup storage: {} KiB, invocations/workgroup: {}",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.shader_f16,
            a.subgroups,
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        ));
    }
    match &cuda {
        Err(e) => out(&format!("cuda: {e}")),
        Ok(d) if d.is_empty() => out("cuda: driver present, no NVIDIA GPU"),
        Ok(d) => {
            let nvrtc = match strata_cuda::kernels::nvrtc_version() {
                Ok((a, b)) => format!("NVRTC {a}.{b}"),
                Err(e) => e.to_string(),
            };
            let nvrtc = format!("{nvrtc}; cuBLAS: {}", if strata_cuda::cublas_present() { "found" } else { "not found (prefill uses the tiled kernel)" });
            for g in d {
                out(&format!(
                    "cuda #{}: {} (sm_{}{}, {} SMs, {} MiB, {:.0} GB/s peak, driver {}.{})\n    {nvrtc}",
                    g.index,
                    g.name,
                    g.compute_capability.0,
                    g.compute_capability.1,
                    g.multiprocessors,
                    g.total_memory >> 20,
                    g.memory_bandwidth / 1e9,
                    g.driver_version / 1000,
                    g.driver_version % 1000 / 10
                ));
            }
        }
    }
    out(&format!("cpu: {cpu}"));
    Ok(())
}

/// `--profile`: streaming figures per token since `before` (totals over `tokens` forward
/// passes taking `elapsed`).
fn print_profile<B: Backend>(engine: &Engine<B>, before: &strata::streaming::StreamStats, tokens: usize, elapsed: std::time::Duration, stage: &str) {
    let Some(now) = engine.stream_stats() else {
        eprintln!("[profile {stage}: every layer resident, nothing streamed]");
        return;
    };
    let n = tokens.max(1) as f64;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / n;
    let (read, wait, upload) = (now.read - before.read, now.wait - before.wait, now.upload - before.upload);
    let bytes = (now.bytes_read - before.bytes_read) as f64 / n;
    let compute = elapsed.saturating_sub(wait + upload);
    eprintln!(
        "[profile {stage}, per token: read {:.1} MiB {} in {:.2} ms ({:.0} MiB/s), upload {:.2} ms, waiting for prefetch {:.2} ms, compute {:.2} ms, total {:.2} ms]",
        bytes / 1048576.0,
        if now.packed { "mapped from the packed cache" } else { "from the model file" },
        ms(read),
        if read.is_zero() { 0.0 } else { bytes * n / 1048576.0 / read.as_secs_f64() },
        ms(upload),
        ms(wait),
        ms(compute),
        ms(elapsed)
    );
}

struct Loaded<B: Backend> {
    engine: Engine<B>,
    profile: bool,
    load_ms: f64,
}

fn load<B: Backend>(backend: B, args: &ModelArgs) -> Result<Loaded<B>, Fail> {
    let t0 = Instant::now();
    let path = model_path(&args.model)?;
    let mut bar = Progress::new("loading weights");
    let packed_cache = if args.no_cache { None } else { strata::packed_cache::default_dir() };
    let opts = EngineOptions { context: args.ctx, max_memory: args.max_memory, packed_cache };
    let engine = Engine::open(backend, &path, opts, &mut |done, total| bar.update(done, total))?;
    bar.finish();
    match engine.packed_cache() {
        Some(s @ CacheStatus::Failed(_)) => eprintln!("warning: {}", s.describe()),
        Some(s @ CacheStatus::Written { rebuilt: Some(_), .. }) => eprintln!("[{}]", s.describe()),
        Some(s) if args.profile => eprintln!("[{}]", s.describe()),
        _ => {}
    }
    if args.profile {
        eprintln!("[profile load: weights ready {:.0} ms after start]", t0.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(budget) = args.max_memory {
        let plan = engine.plan();
        eprintln!(
            "[memory budget {:.1} MiB: {} of {} layers streamed through {} slot(s), {:.1} MiB on the device, {:.1} MiB read per token]",
            budget as f64 / 1048576.0,
            plan.streamed_layers(),
            plan.resident.len(),
            plan.slots,
            plan.device_bytes() as f64 / 1048576.0,
            plan.streamed_bytes() as f64 / 1048576.0
        );
    }
    Ok(Loaded { engine, profile: args.profile, load_ms: t0.elapsed().as_secs_f64() * 1e3 })
}

/// A loading progress bar on stderr (only when stderr is a terminal).
struct Progress {
    label: &'static str,
    tty: bool,
    last: u64,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        use std::io::IsTerminal;
        Progress { label, tty: std::io::stderr().is_terminal(), last: u64::MAX }
    }

    fn update(&mut self, done: u64, total: u64) {
        let pct = done * 100 / total.max(1);
        if !self.tty || pct == self.last {
            return;
        }
        self.last = pct;
        let filled = (pct / 4) as usize;
        eprint!("\r{} [{}{}] {pct:>3}% ({:.0} MiB)", self.label, "#".repeat(filled), " ".repeat(25 - filled), done as f64 / 1048576.0);
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn run<B: Backend>(mut m: Loaded<B>, sampling: &SamplingArgs, n: usize, json: bool, prompt: &str) -> Result<(), Fail> {
    let ids = m.engine.encode_prompt(prompt)?;
    let mut sampler = sampling.sampler()?;
    let mut stdout = std::io::stdout();
    let before = m.engine.stream_stats().unwrap_or_default();
    let started = Instant::now();
    if !json && !ids.is_empty() {
        let _ = write!(stdout, "{prompt}");
        let _ = stdout.flush();
    }
    let g = pollster::block_on(m.engine.generate(&ids, n, &mut sampler, &mut |piece| {
        if !json {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
        }
        true
    }))
    .map_err(|e| {
        if !json && !ids.is_empty() {
            out(""); // end the text line before the error
        }
        CliError::engine(e)
    })?;
    let (pp, tg) = (g.prefill.as_secs_f64(), g.decode.as_secs_f64());
    if m.profile {
        print_profile(&m.engine, &before, g.tokens.len().max(1), started.elapsed(), "run (prefill + decode, per forward pass)");
    }
    // A rate only where something was timed: `-n 0` runs nothing.
    let rate = |count: usize, secs: f64| (count > 0 && secs > 0.0).then(|| count as f64 / secs);
    if json {
        out(&serde_json::json!({
            "prompt_tokens": ids,
            "tokens": g.tokens,
            "text": g.text,
            "stop": format!("{:?}", g.stop),
            "timings": {
                "load_ms": m.load_ms,
                "prefill_ms": pp * 1e3,
                "decode_ms": tg * 1e3,
                "prompt_tokens_per_s": rate(ids.len(), pp),
                "generated_tokens_per_s": rate(g.tokens.len(), tg),
            },
            "backend": m.engine.backend_name(),
        })
        .to_string());
    } else {
        out("");
        let shown = |count: usize, what: &str, r: Option<f64>| match r {
            Some(r) => format!("{count} {what} at {r:.1} tok/s"),
            None => format!("{count} {what}"),
        };
        eprintln!(
            "[{}, {}, stop: {:?}]",
            shown(ids.len(), "prompt tokens", rate(ids.len(), pp)),
            shown(g.tokens.len(), "generated", rate(g.tokens.len(), tg)),
            g.stop
        );
    }
    Ok(())
}

fn chat<B: Backend>(mut m: Loaded<B>, sampling: &SamplingArgs, n: usize) -> Result<(), Fail> {
    // A missing or broken template is reported before the first line.
    match m.engine.chat_template() {
        None => return Err(EngineError::NoChatTemplate.into()),
        Some(Err(e)) => return Err(EngineError::Template(e.clone()).into()),
        Some(Ok(_)) => {}
    }
    let mut sampler = sampling.sampler()?;
    let mut messages: Vec<Message> = Vec::new();
    eprintln!("strata chat: type a message, an empty line to quit.");
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    loop {
        let _ = write!(stdout, "> ");
        let _ = stdout.flush();
        let mut bytes = Vec::new();
        if stdin.lock().read_until(b'\n', &mut bytes).map_err(|source| CliError::Read { what: "standard input", source })? == 0 {
            return Ok(());
        }
        // A line that is not UTF-8 (a terminal in another encoding, a binary paste) is
        // reported; the conversation goes on.
        let line = match String::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("strata chat: that line is not UTF-8 text (invalid byte at offset {}); it was not sent: type it again", e.utf8_error().valid_up_to());
                continue;
            }
        };
        if line.trim().is_empty() {
            return Ok(());
        }
        messages.push(Message::new("user", line.trim_end()));
        let ids = m.engine.encode_chat(&messages)?;
        let g = pollster::block_on(m.engine.generate(&ids, n, &mut sampler, &mut |piece| {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
            true
        }))?;
        out("");
        messages.push(Message::new("assistant", g.text.trim()));
    }
}

fn logits<B: Backend>(mut m: Loaded<B>, top: usize, json: bool, prompt: &str) -> Result<(), Fail> {
    let ids = m.engine.encode_prompt(prompt)?;
    let l = pollster::block_on(m.engine.session_mut().prefill(&ids))?;
    let order = strata::backend::top_k(&l, top);
    if json {
        let top: Vec<_> = order.iter().map(|&i| serde_json::json!({"id": i, "logit": l[i]})).collect();
        out(&serde_json::json!({"prompt_tokens": ids, "top": top}).to_string());
    } else {
        for i in order {
            out(&format!("{i:>8} {:>10.4}  {:?}", l[i], m.engine.tokenizer().token_text(i as u32).unwrap_or("")));
        }
    }
    Ok(())
}

/// Weight bytes one decode step reads: every tensor once, except that an untied
/// embedding table is read one row per token (a tied one is read whole, as the output
/// head). Divided by the memory bandwidth this is the decode roofline.
/// This process's memory after the run, from /proc/self/status (Linux; null elsewhere):
/// peak and current RSS, and the current RSS split into anonymous memory (the heap: repacked
/// weights, KV cache) and file pages (a mapped packed-weight cache, shared with the page
/// cache and other processes).
fn memory_kib() -> serde_json::Value {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return serde_json::Value::Null };
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok());
    serde_json::json!({"peak_rss": field("VmHWM:"), "rss": field("VmRSS:"), "anon": field("RssAnon:"), "file": field("RssFile:")})
}

fn weight_bytes_per_token(model: &strata::LoadedModel) -> u64 {
    use strata::arch::{Param, Part, TensorId};
    let total: u64 = model.files.tensors.iter().map(|t| t.nbytes).sum();
    if model.config.tied_embeddings {
        return total;
    }
    let embd = model.tensor(TensorId::global(Part::TokenEmbd, Param::Weight));
    let rows = u64::from(model.config.vocab_size.max(1));
    total - embd.map_or(0, |e| e.nbytes - e.nbytes / rows)
}

fn bench<B: Backend>(mut m: Loaded<B>, p: usize, n: usize, json: bool) -> Result<(), Fail> {
    let vocab = m.engine.model().config.vocab_size as u64;
    // Deterministic pseudo-random prompt, as llama-bench uses random tokens.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % vocab) as u32
    };
    let prompt: Vec<u32> = (0..p).map(|_| next()).collect();
    let stats = |m: &Loaded<B>| m.engine.stream_stats().unwrap_or_default();
    let before = stats(&m);
    let t = Instant::now();
    let session = m.engine.session_mut();
    pollster::block_on(session.prefill(&prompt))?;
    let pp = t.elapsed().as_secs_f64();
    if m.profile {
        print_profile(&m.engine, &before, 1, t.elapsed(), &format!("pp{p} (one forward pass)"));
    }
    m.engine.session_mut().reset();
    let mut tok = next();
    // Greedy decode as in generation: on-device argmax, one id read back per token.
    let mut greedy = Sampler::new(SamplerConfig::greedy());
    let before = stats(&m);
    let t = Instant::now();
    for _ in 0..n {
        let session = m.engine.session_mut();
        let l = session.forward_last(&[tok])?;
        tok = pollster::block_on(session.pick(&l, &mut greedy, &[]))?;
    }
    let tg = t.elapsed().as_secs_f64();
    if m.profile {
        print_profile(&m.engine, &before, n, t.elapsed(), &format!("tg{n}"));
    }
    let model = m.engine.model().files.path.clone();
    let (pp_tps, tg_tps) = (p as f64 / pp, n as f64 / tg);
    let bytes = weight_bytes_per_token(m.engine.model());
    if json {
        out(&serde_json::json!({"model": model, "backend": m.engine.backend_name(), "pp": p, "tg": n, "pp_tokens_per_s": pp_tps, "tg_tokens_per_s": tg_tps, "load_ms": m.load_ms, "packed_cache": m.engine.packed_cache().map(|c| c.kind()), "memory_kib": memory_kib(), "weight_bytes_per_token": bytes}).to_string());
    } else {
        out(&format!("| model | backend | test | t/s |\n|---|---|---|---|\n| {model} | {} | pp{p} | {pp_tps:.2} |\n| {model} | {} | tg{n} | {tg_tps:.2} |", m.engine.backend_name(), m.engine.backend_name()));
    }
    Ok(())
}

fn inspect_cmd(path: Option<PathBuf>, json: bool, deep: bool) -> ExitCode {
    let path = match model_path(&path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("strata inspect: {e}");
            return ExitCode::FAILURE;
        }
    };
    inspect(&path, json, deep)
}

/// What the cpu backend's next load of a valid model would find in the packed-weight cache
/// (the instruction set it would use, and the probe): `None` for an invalid model.
fn packed_cache_probe(analysis: &strata::model::Analysis) -> Option<(&'static str, strata::packed_cache::Probe)> {
    use strata::packed_cache::Probe;
    let model = analysis.clone().into_model().ok()?;
    let b = strata::backend::fast::FastCpuBackend::with_threads(1).ok()?;
    let isa = b.isa().name();
    let sources = match model.files.files.iter().map(FileSource::open).collect::<Result<Vec<_>, _>>() {
        Ok(s) => s,
        Err(e) => return Some((isa, Probe::Unreadable(e.to_string()))),
    };
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    let probe = strata::weights::Weights::probe_cache(&b, &model, &refs, strata::packed_cache::default_dir().as_deref()).unwrap_or_else(|e| Probe::Unreadable(e.to_string()));
    Some((isa, probe))
}

/// `inspect --deep`: every tensor's floats, with a progress bar.
fn deep_scan(files: &strata::model::ModelFiles) -> Result<strata::inspect::DeepScan, Fail> {
    let sources: Vec<FileSource> = files.files.iter().map(FileSource::open).collect::<Result<_, _>>()?;
    let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
    let mut bar = Progress::new("scanning tensors");
    let scan = strata::inspect::deep_scan(files, &refs, &mut |done, total| bar.update(done, total)).map_err(CliError::from);
    bar.finish();
    scan
}

fn inspect(path: &Path, json: bool, deep: bool) -> ExitCode {
    let t0 = Instant::now();
    let files = match strata::model::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("strata inspect: {e}");
            if json {
                out(&strata::inspect::unreadable_json(&path.display().to_string(), &e).to_string());
            }
            return ExitCode::FAILURE;
        }
    };
    let parse_ms = t0.elapsed().as_secs_f64() * 1e3;
    let analysis = strata::model::analyze(files);
    let total_ms = t0.elapsed().as_secs_f64() * 1e3;
    let scan = deep.then(|| deep_scan(&analysis.files));
    let cache = packed_cache_probe(&analysis);
    if json {
        let mut report = strata::inspect::report_json(&analysis);
        report["timings"] = serde_json::json!({"header_parse_ms": parse_ms, "total_ms": total_ms});
        if let Some((isa, p)) = &cache {
            report["packed_cache"] = serde_json::json!({"backend": "cpu", "isa": isa, "state": p.kind(), "path": p.path().map(|p| p.display().to_string()), "detail": p.describe()});
        }
        match &scan {
            Some(Ok(d)) => report["deep"] = strata::inspect::deep_json(d),
            Some(Err(e)) => report["deep"] = serde_json::json!({"error": e.to_string()}),
            None => {}
        }
        out(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        out(&format!(
            "{}time:         header parsed in {parse_ms:.2} ms, validated in {total_ms:.2} ms total",
            strata::inspect::report_text(&analysis)
        ));
        if let Some((isa, p)) = &cache {
            out(&format!("packed cache: (cpu backend, {isa}) {}", p.describe()));
        }
        if let Some(Ok(d)) = &scan {
            out(&strata::inspect::deep_text(d));
        }
    }
    match &scan {
        Some(Err(e)) => {
            eprintln!("strata inspect --deep: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(d)) if !d.is_clean() => {
            let (name, count, _) = &d.findings[0];
            eprintln!("strata inspect --deep: {} tensor(s) hold NaN or infinite values (first: {name:?}, {count} field(s))", d.findings.len());
            return ExitCode::FAILURE;
        }
        _ => {}
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

fn serve_cmd(mut model: ModelArgs, args: ServeArgs) -> Result<(), Fail> {
    if args.parallel == 0 || args.batch_tokens == 0 {
        return Err(CliError::Flags { flags: "--parallel and --batch-tokens", expected: "at least 1" });
    }
    let path = model_path(&model.model)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    let stem = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| name.clone());
    let opts = serve::ServeOptions {
        host: args.host,
        port: args.port,
        slots: args.parallel,
        context: model.ctx,
        queue: args.queue,
        api_key: args.api_key,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        batch_tokens: args.batch_tokens,
        model_id: stem.clone(),
        model_names: vec![stem, name, path.display().to_string()],
    };
    // The slots' caches are the server's: the engine's own single-sequence cache is
    // never used, so it gets one position.
    model.ctx = 1;
    Ok(serve::serve(opts, move |worker| on_backend!(&model, |m| Ok::<(), CliError>(serve::scheduler::run(m.engine, worker)?)))?)
}

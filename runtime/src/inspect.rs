//! The `strata inspect` report, shared by the CLI and the browser build: every config
//! value with its source, tensor bytes by dtype, and the validation result.

use serde_json::{json, Map, Value as Json};

use crate::model::{Analysis, Format};

/// The JSON report. Top-level keys: `architecture`, `n_layers`, `hidden_size`, `n_heads`,
/// `n_kv_heads`, `head_dim`, `rope_dim`, `vocab_size`, `context_length`,
/// `tied_embeddings`, `n_tensors`, `valid`, and `errors` when invalid; then every other
/// config field, `provenance`, `tensors_by_dtype`, `warnings` and file facts.
pub fn report_json(a: &Analysis) -> Json {
    let mut o = Map::new();
    o.insert("architecture".into(), json!(a.config.as_ref().map(|c| c.architecture.name().to_owned()).or(a.architecture_name.clone())));
    let cfg = a.config.as_ref().map(|c| serde_json::to_value(c).unwrap_or(Json::Null));
    for key in ["n_layers", "hidden_size", "n_heads", "n_kv_heads", "head_dim", "rope_dim", "vocab_size", "context_length", "tied_embeddings"] {
        o.insert(key.into(), cfg.as_ref().and_then(|c| c.get(key).cloned()).unwrap_or(Json::Null));
    }
    o.insert("n_tensors".into(), json!(a.files.tensors.len()));
    o.insert("valid".into(), json!(a.is_valid()));
    if !a.is_valid() {
        let mut errors: Vec<String> = a.errors.iter().map(|e| e.to_string()).collect();
        if errors.is_empty() {
            errors.push(format!("{}: the configuration could not be built", a.files.path));
        }
        o.insert("errors".into(), json!(errors));
    }
    if let Some(Json::Object(c)) = cfg {
        for (k, v) in c {
            o.entry(k).or_insert(v);
        }
    }
    if let Some(c) = &a.config {
        let prov: Map<String, Json> = c.provenance.iter().map(|(k, s)| (k.name().to_owned(), json!(s.to_string()))).collect();
        o.insert("provenance".into(), Json::Object(prov));
    }
    o.insert("format".into(), json!(match a.files.format { Format::Gguf => "gguf", Format::Safetensors => "safetensors" }));
    if let Some(h) = &a.files.gguf {
        o.insert("gguf_version".into(), json!(h.version));
        o.insert("n_metadata_keys".into(), json!(h.metadata.len()));
    }
    o.insert("path".into(), json!(a.files.path));
    o.insert("files".into(), json!(a.files.files));
    o.insert("file_bytes".into(), json!(a.files.file_bytes));
    o.insert("header_bytes_read".into(), json!(a.files.header_bytes_read));
    o.insert("tensor_bytes".into(), json!(a.files.tensors.iter().map(|t| t.nbytes).sum::<u64>()));
    let by_dtype: Vec<Json> = a
        .files
        .bytes_by_dtype()
        .into_iter()
        .map(|(d, n, b)| json!({"dtype": d.name(), "tensors": n, "bytes": b}))
        .collect();
    o.insert("tensors_by_dtype".into(), json!(by_dtype));
    o.insert("warnings".into(), json!(a.warnings));
    Json::Object(o)
}

/// The JSON report of a file that could not be parsed at all.
pub fn unreadable_json(path: &str, e: &crate::Error) -> Json {
    json!({"valid": false, "errors": [e.to_string()], "path": path})
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The human-readable report.
pub fn report_text(a: &Analysis) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let f = &a.files;
    let fmt_name = match (&f.format, &f.gguf) {
        (Format::Gguf, Some(h)) => format!("GGUF v{}, {} metadata keys", h.version, h.metadata.len()),
        _ => format!("safetensors + config.json, {} shard(s)", f.files.len()),
    };
    let _ = writeln!(s, "model:        {}", f.path);
    let _ = writeln!(s, "format:       {fmt_name}");
    let _ = writeln!(s, "size:         {} ({} of headers read)", human(f.file_bytes), human(f.header_bytes_read));
    let arch = a.config.as_ref().map(|c| c.architecture.name().to_owned()).or(a.architecture_name.clone());
    let _ = writeln!(s, "architecture: {}", arch.as_deref().unwrap_or("?"));
    if let Some(c) = &a.config {
        let _ = writeln!(s, "\nconfig (value, then where it came from):");
        if let Json::Object(m) = serde_json::to_value(c).unwrap_or(Json::Null) {
            for (k, v) in m {
                if k == "provenance" {
                    continue;
                }
                let shown = match &v {
                    Json::Array(items) if items.len() > 8 => summarize_list(items),
                    other => other.to_string(),
                };
                let src = crate::model::config::Field::from_name(k.as_str()).and_then(|f| c.provenance.get(f)).map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                let _ = writeln!(s, "  {k:<20} {shown:<24} {src}");
            }
        }
    }
    let total: u64 = f.tensors.iter().map(|t| t.nbytes).sum();
    let _ = writeln!(s, "\ntensors: {} ({})", f.tensors.len(), human(total));
    for (d, n, b) in f.bytes_by_dtype() {
        let _ = writeln!(s, "  {:<8} {n:>5} tensors  {:>10}", d.name(), human(b));
    }
    for w in &a.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if a.is_valid() {
        let _ = writeln!(s, "\nvalid: yes (config and all {} tensor shapes checked)", a.index.len());
    } else {
        let _ = writeln!(s, "\nvalid: NO");
        for e in &a.errors {
            let _ = writeln!(s, "  error: {e}");
        }
    }
    s
}

/// `["local" x 5, "global", ...]` for long per-layer lists.
fn summarize_list(items: &[Json]) -> String {
    let mut runs: Vec<(String, usize)> = Vec::new();
    for it in items {
        let t = it.as_str().map(str::to_owned).unwrap_or_else(|| it.to_string());
        match runs.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => runs.push((t, 1)),
        }
    }
    if runs.len() > 12 {
        return format!("[{} items]", items.len());
    }
    let parts: Vec<String> = runs.iter().map(|(t, n)| if *n > 1 { format!("{t} x{n}") } else { t.clone() }).collect();
    format!("[{}]", parts.join(", "))
}

/// What `inspect --deep` found: every tensor's floats (values of plain float tensors,
/// scale fields of quantised blocks) checked for NaN and infinities.
#[derive(Clone, Debug, Default)]
pub struct DeepScan {
    pub tensors_scanned: usize,
    pub bytes_scanned: u64,
    /// Tensors whose format has no scan (strata cannot run them either).
    pub not_scanned: Vec<String>,
    /// Per tensor with findings: (name, how many non-finite fields, the first few).
    pub findings: Vec<(String, u64, Vec<crate::quant::scan::NonFinite>)>,
}

impl DeepScan {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Findings listed per tensor in the report (the count covers the rest).
const FIRST_FINDINGS: usize = 5;

/// Reads every tensor of `files` (`sources[i]` reads `files.files[i]`) a few MiB at a time,
/// whole blocks, and scans its floats.
pub fn deep_scan(files: &crate::model::ModelFiles, sources: &[&dyn crate::source::ByteSource], progress: &mut dyn FnMut(u64, u64)) -> crate::Result<DeepScan> {
    use crate::quant::scan;
    const CHUNK: u64 = 4 << 20;
    let total: u64 = files.tensors.iter().map(|t| t.nbytes).sum();
    let mut out = DeepScan::default();
    let mut buf = Vec::new();
    for t in &files.tensors {
        if !scan::scannable(t.dtype) {
            out.not_scanned.push(t.name.clone());
            continue;
        }
        let src = sources.get(t.file).ok_or_else(|| crate::Error::new(&files.path, crate::ErrorKind::Io { op: "read".into(), message: format!("no source for file {} of tensor {:?}", t.file, t.name) }))?;
        let block_bytes = t.dtype.block().1;
        let step = (CHUNK / block_bytes).max(1) * block_bytes;
        let (mut count, mut first) = (0u64, Vec::new());
        let mut done = 0u64;
        while done < t.nbytes {
            let n = step.min(t.nbytes - done);
            buf.resize(n as usize, 0);
            src.read_exact_at(t.offset + done, &mut buf).map_err(|e| {
                crate::Error::new(src.name(), crate::ErrorKind::Io { op: format!("read tensor {:?} at byte {}", t.name, t.offset + done), message: e.to_string() })
            })?;
            scan::scan(t.dtype, &buf, done / block_bytes, &mut |f| {
                count += 1;
                if first.len() < FIRST_FINDINGS {
                    first.push(f);
                }
            });
            done += n;
            out.bytes_scanned += n;
            progress(out.bytes_scanned, total);
        }
        out.tensors_scanned += 1;
        if count > 0 {
            out.findings.push((t.name.clone(), count, first));
        }
    }
    Ok(out)
}

/// The deep scan as JSON: `{tensors_scanned, bytes_scanned, clean, not_scanned,
/// non_finite: [{tensor, count, first: [{block, field, value}]}]}`.
pub fn deep_json(d: &DeepScan) -> Json {
    let findings: Vec<Json> = d
        .findings
        .iter()
        .map(|(name, count, first)| {
            let first: Vec<Json> = first.iter().map(|f| json!({"block": f.block, "field": f.field, "value": f.value.to_string()})).collect();
            json!({"tensor": name, "count": count, "first": first})
        })
        .collect();
    json!({"tensors_scanned": d.tensors_scanned, "bytes_scanned": d.bytes_scanned, "clean": d.is_clean(), "not_scanned": d.not_scanned, "non_finite": findings})
}

/// The deep scan as text lines.
pub fn deep_text(d: &DeepScan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "deep scan:    {} tensors, {} read, every float and block scale checked", d.tensors_scanned, human(d.bytes_scanned));
    if !d.not_scanned.is_empty() {
        let _ = writeln!(s, "  not scanned (format without a scan): {}", d.not_scanned.join(", "));
    }
    if d.is_clean() {
        let _ = writeln!(s, "  no NaN or infinity found");
    }
    for (name, count, first) in &d.findings {
        let list: Vec<String> = first.iter().map(|f| format!("block {} {} = {}", f.block, f.field, f.value)).collect();
        let more = if *count as usize > first.len() { format!(", ... ({} more)", *count as usize - first.len()) } else { String::new() };
        let _ = writeln!(s, "  NON-FINITE: tensor {name:?}: {count} field(s): {}{more}", list.join(", "));
    }
    s
}

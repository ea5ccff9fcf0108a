//! From parsed files to a checked model: architecture, config (derive/override/validate),
//! then every tensor against the shape and dtype the config implies.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::arch::{self, Arch, NameError, Param, Part, TensorId};
use crate::error::{Error, ErrorKind, Errors, Shape};
use crate::model::config::{self, Errs, ModelConfig, TensorFacts};
use crate::model::{Format, LoadedModel, ModelFiles, TensorIndex};
use crate::quant::DType;

/// Everything known about a model after checking it, valid or not.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub files: ModelFiles,
    /// The architecture name as the file states it.
    pub architecture_name: Option<String>,
    pub config: Option<ModelConfig>,
    pub index: TensorIndex,
    pub errors: Vec<Error>,
    pub warnings: Vec<String>,
}

impl Analysis {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty() && self.config.is_some()
    }

    pub fn into_model(self) -> Result<LoadedModel, Errors> {
        match self.config {
            Some(config) if self.errors.is_empty() => {
                Ok(LoadedModel { files: self.files, config, index: self.index, warnings: self.warnings })
            }
            _ => Err(Errors(self.errors)),
        }
    }
}

struct Facts<'a> {
    files: &'a ModelFiles,
    by_id: &'a HashMap<TensorId, usize>,
}

impl TensorFacts for Facts<'_> {
    fn has(&self, id: TensorId) -> bool {
        self.by_id.contains_key(&id)
    }

    fn shape(&self, id: TensorId) -> Option<Vec<u64>> {
        self.by_id.get(&id).map(|&i| self.files.tensors[i].shape.0.clone())
    }

    fn count(&self) -> usize {
        self.files.tensors.len()
    }

    fn dominant_weight_dtype(&self) -> Option<DType> {
        let mut bytes: HashMap<DType, u64> = HashMap::new();
        // Decoder-layer matrices: the embedding table is often kept at higher precision.
        for (_, &i) in self.by_id.iter().filter(|(id, _)| id.layer.is_some()) {
            let t = &self.files.tensors[i];
            if t.shape.0.len() == 2 {
                *bytes.entry(t.dtype).or_default() += t.nbytes;
            }
        }
        bytes.into_iter().max_by_key(|&(d, b)| (b, std::cmp::Reverse(d))).map(|(d, _)| d)
    }
}

/// Resolves the architecture, builds the config and checks every tensor. Never fails:
/// problems are collected in `errors` so that all of them can be shown at once.
pub fn analyze(files: ModelFiles) -> Analysis {
    let file = files.path.clone();
    let mut errs = Errs { file: &file, list: Vec::new() };
    let mut warnings = Vec::new();
    let (architecture_name, arch) = resolve_arch(&files, &mut errs);
    let mut index = TensorIndex::default();
    let config = arch.and_then(|arch| {
        let by_id = map_names(&files, arch, &mut errs, &mut warnings);
        let facts = Facts { files: &files, by_id: &by_id };
        let params = match (&files.gguf, &files.hf_config) {
            (Some(h), _) => config::from_gguf(h, architecture_name.as_deref().unwrap_or(arch.name()), &mut errs),
            (None, Some(c)) => config::from_hf(c, files.generation_config.as_ref(), arch, &mut errs),
            (None, None) => return None,
        };
        let cfg = config::finish(params, arch, &facts, &mut errs)?;
        check_tensors(&files, &cfg, &by_id, &mut errs, &mut warnings, &mut index);
        if let Some(declared) = cfg.declared_dtype.as_deref() {
            if files.format == Format::Safetensors && !declared.eq_ignore_ascii_case(&torch_name(cfg.native_dtype)) {
                warnings.push(format!(
                    "config.json declares dtype {declared} but the weights are {}; using {}",
                    cfg.native_dtype, cfg.native_dtype
                ));
            }
        }
        Some(cfg)
    });
    let errors = errs.list;
    Analysis { files, architecture_name, config, index, errors, warnings }
}

fn torch_name(d: DType) -> String {
    match d {
        DType::BF16 => "bfloat16".into(),
        DType::F16 => "float16".into(),
        DType::F32 => "float32".into(),
        other => other.name().to_lowercase(),
    }
}

fn resolve_arch(files: &ModelFiles, errs: &mut Errs) -> (Option<String>, Option<Arch>) {
    let unknown = |errs: &mut Errs, name: &str| {
        errs.push(ErrorKind::UnknownArchitecture { name: name.into(), supported: Arch::supported_list() })
    };
    if let Some(h) = &files.gguf {
        let key = "general.architecture";
        return match h.get(key) {
            None => {
                errs.push(ErrorKind::MissingKey { key: format!("GGUF key {key}") });
                (None, None)
            }
            Some(v) => match v.as_str() {
                None => {
                    errs.push(ErrorKind::BadKeyType { key: format!("GGUF key {key}"), expected: "a string".into(), found: v.type_name() });
                    (None, None)
                }
                Some(name) => {
                    let arch = Arch::from_gguf_name(name);
                    if arch.is_none() {
                        unknown(errs, name);
                    }
                    (Some(name.to_owned()), arch)
                }
            },
        };
    }
    let Some(c) = &files.hf_config else { return (None, None) };
    let class = c.get("architectures").and_then(Json::as_array).and_then(|a| a.first()).and_then(Json::as_str);
    let model_type = c.get("model_type").and_then(Json::as_str);
    let name = class.or(model_type).map(str::to_owned);
    let arch = Arch::from_hf(class, model_type);
    match (&name, arch) {
        (None, _) => errs.push(ErrorKind::MissingKey { key: "config.json field architectures or model_type".into() }),
        (Some(n), None) => unknown(errs, n),
        _ => {}
    }
    (name, arch)
}

/// File names -> canonical roles. Unknown names are warnings (ignored tensors); the same
/// role twice (e.g. both `lm_head.weight` spellings) is an error.
fn map_names(files: &ModelFiles, arch: Arch, errs: &mut Errs, warnings: &mut Vec<String>) -> HashMap<TensorId, usize> {
    let mut by_id = HashMap::new();
    for (i, t) in files.tensors.iter().enumerate() {
        let parsed = match files.format {
            Format::Gguf => arch::parse_gguf_name(&t.name),
            Format::Safetensors => arch::parse_hf_name(arch, &t.name),
        };
        match parsed {
            Ok(id) => {
                if let Some(prev) = by_id.insert(id, i) {
                    errs.push(ErrorKind::DuplicateTensor { name: format!("{} (same role as {})", t.name, files.tensors[prev].name) });
                }
            }
            Err(NameError::Unknown) => warnings.push(format!("tensor {:?} is not used by {arch} and is ignored", t.name)),
            Err(NameError::BadLayer) => warnings.push(format!("tensor {:?} has a malformed layer index and is ignored", t.name)),
        }
    }
    by_id
}

/// Checks presence, shape and dtype of every tensor the config implies, and fills the
/// index (the tied head points at the embedding entry: one tensor, one buffer).
fn check_tensors(
    files: &ModelFiles,
    cfg: &ModelConfig,
    by_id: &HashMap<TensorId, usize>,
    errs: &mut Errs,
    warnings: &mut Vec<String>,
    index: &mut TensorIndex,
) {
    let name_of = |id: TensorId| match files.format {
        Format::Gguf => id.gguf_name(),
        Format::Safetensors => id.hf_name(cfg.architecture).unwrap_or_else(|| id.gguf_name()),
    };
    let expected = super::expected_tensors(cfg);
    for spec in &expected {
        let Some(&i) = by_id.get(&spec.id) else {
            if spec.required {
                let hint = if spec.id.part == Part::Output {
                    " (the config says the output head is not tied to the embeddings)".to_owned()
                } else {
                    String::new()
                };
                errs.push(ErrorKind::MissingTensor { tensor: name_of(spec.id), hint });
            }
            continue;
        };
        let t = &files.tensors[i];
        if t.shape.0 != spec.shape {
            errs.push(ErrorKind::ShapeMismatch {
                tensor: t.name.clone(),
                expected: Shape(spec.shape.clone()),
                found: t.shape.clone(),
                why: spec.why.clone(),
            });
        }
        // Stacked experts are matrices too.
        let matrix = spec.shape.len() >= 2;
        let dtype_ok = if matrix { t.dtype.is_supported_weight() } else { t.dtype.is_float() };
        if !dtype_ok {
            let (role, supported) = if matrix {
                ("a weight matrix", crate::quant::weight_dtype_names())
            } else {
                ("a vector (norm, bias, rope factors)", "F32, F16, BF16".to_string())
            };
            errs.push(ErrorKind::UnsupportedDtype { tensor: t.name.clone(), dtype: t.dtype.to_string(), role: role.into(), supported });
        }
        index.insert(spec.id, i);
    }

    let embd = TensorId::global(Part::TokenEmbd, Param::Weight);
    let output = TensorId::global(Part::Output, Param::Weight);
    if cfg.tied_embeddings {
        if let Some(i) = index.get(embd) {
            index.insert(output, i);
        }
        if by_id.contains_key(&output) {
            warnings.push(format!("{} is present but the head is tied to the embeddings; it is ignored", name_of(output)));
        }
    }

    // Tensors the config does not account for: past the last layer (an error: the
    // config and the file disagree), or roles this configuration does not use.
    let expected_ids: std::collections::HashSet<TensorId> = expected.iter().map(|s| s.id).collect();
    let mut extra: Vec<(&TensorId, &usize)> = by_id.iter().filter(|(id, _)| !expected_ids.contains(id)).collect();
    extra.sort();
    for (id, &i) in extra {
        let name = &files.tensors[i].name;
        match (id.layer, id.expert) {
            (Some(layer), _) if layer >= cfg.n_layers => {
                errs.push(ErrorKind::LayerOutOfRange { tensor: name.clone(), layer: layer.into(), n_layers: cfg.n_layers })
            }
            _ if *id == output && cfg.tied_embeddings => {}
            (_, Some(expert)) if cfg.n_experts > 0 && expert >= cfg.n_experts => {
                errs.push(ErrorKind::ExpertOutOfRange { tensor: name.clone(), expert, n_experts: cfg.n_experts })
            }
            _ => warnings.push(format!("tensor {name:?} is not used by this {} configuration and is ignored", cfg.architecture)),
        }
    }
}

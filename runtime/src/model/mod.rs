//! The metadata loader: GGUF or safetensors + config.json -> [`ModelConfig`] + a tensor
//! index by canonical role, with every shape checked before any compute.
//!
//! Two steps, so that `strata inspect` can show what it could read of a broken file:
//! [`ModelFiles`] (structure: headers, tensor tables, raw metadata) and [`analyze`]
//! (architecture, config, tensor shapes and dtypes). [`load`] does both and fails on any
//! error.

pub mod config;
pub mod experts;
pub mod gguf;
mod reader;
pub mod safetensors;
pub mod tensors;
mod validate;

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::arch::TensorId;
use crate::error::{Error, ErrorKind, Result, Shape};
use crate::quant::DType;
use crate::source::ByteSource;

pub use experts::ExpertError;
pub use config::{Activation, Field, LayerAttention, ModelConfig, NormKind, Provenance, RopeScaling, RopeStyle, Source};
pub use gguf::GgufHeader;
pub use tensors::{expected_shape, expected_tensors, TensorSpec};
pub use validate::{analyze, Analysis};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Gguf,
    Safetensors,
}

/// One tensor of the model, wherever it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// The name in the file.
    pub name: String,
    pub dtype: DType,
    /// Row-major (outermost first): `[out, in]` for weights, `[n]` for vectors.
    pub shape: Shape,
    /// Index into [`ModelFiles::files`].
    pub file: usize,
    /// Absolute byte offset of the data in that file.
    pub offset: u64,
    pub nbytes: u64,
}

/// The structure of a model's files: parsed headers, nothing interpreted yet.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub format: Format,
    /// What the user named (a file or a directory).
    pub path: String,
    /// Data files: the GGUF file, or the safetensors shards.
    pub files: Vec<String>,
    pub tensors: Vec<TensorEntry>,
    pub gguf: Option<GgufHeader>,
    pub hf_config: Option<Json>,
    pub generation_config: Option<Json>,
    /// Bytes read to parse all headers (the tensor data is not read).
    pub header_bytes_read: u64,
    pub file_bytes: u64,
}

impl ModelFiles {
    /// A GGUF model from any byte source (a native file, memory, a browser file).
    pub fn from_gguf(src: &dyn ByteSource) -> Result<ModelFiles> {
        let before = src.bytes_read();
        let h = GgufHeader::read(src)?;
        let tensors = h
            .tensors
            .iter()
            .map(|t| TensorEntry {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape(),
                file: 0,
                offset: h.data_offset + t.offset,
                nbytes: t.nbytes,
            })
            .collect();
        Ok(ModelFiles {
            format: Format::Gguf,
            path: src.name().to_owned(),
            files: vec![src.name().to_owned()],
            tensors,
            file_bytes: h.file_len,
            gguf: Some(h),
            hf_config: None,
            generation_config: None,
            header_bytes_read: src.bytes_read() - before,
        })
    }

    /// A safetensors model from its parts: config.json text, optional
    /// generation_config.json text, and the shards (one for a single-file model). With
    /// an index (`model.safetensors.index.json` text), every tensor of its `weight_map`
    /// must be in the shard it names.
    pub fn from_safetensors(
        path: &str,
        config_json: &str,
        generation_json: Option<&str>,
        index_json: Option<&str>,
        shards: &[&dyn ByteSource],
    ) -> Result<ModelFiles> {
        let parse = |what: &str, file: &str, text: &str| -> Result<Json> {
            let v: Json = serde_json::from_str(text)
                .map_err(|e| Error::new(file, ErrorKind::Json { what: what.into(), message: e.to_string() }))?;
            if !v.is_object() {
                return Err(Error::new(file, ErrorKind::Json { what: what.into(), message: "expected a JSON object".into() }));
            }
            Ok(v)
        };
        let hf_config = parse("config.json", &format!("{path}/config.json"), config_json)?;
        let generation_config = generation_json
            .map(|g| parse("generation_config.json", &format!("{path}/generation_config.json"), g))
            .transpose()?;
        let mut tensors = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut header_bytes_read = 0;
        let mut file_bytes = 0;
        for (i, shard) in shards.iter().enumerate() {
            let before = shard.bytes_read();
            let h = safetensors::StHeader::read(*shard)?;
            header_bytes_read += shard.bytes_read() - before;
            file_bytes += shard.len();
            for t in h.tensors {
                if seen.contains_key(&t.name) {
                    return Err(Error::new(shard.name(), ErrorKind::DuplicateTensor { name: t.name }));
                }
                seen.insert(t.name.clone(), i);
                tensors.push(TensorEntry { name: t.name, dtype: t.dtype, shape: Shape(t.shape), file: i, offset: t.offset, nbytes: t.nbytes });
            }
        }
        if let Some(index) = index_json {
            let index_file = format!("{path}/model.safetensors.index.json");
            let v = parse("model.safetensors.index.json", &index_file, index)?;
            let map = v.get("weight_map").and_then(Json::as_object).ok_or_else(|| {
                Error::new(&index_file, ErrorKind::Json { what: "model.safetensors.index.json".into(), message: "no \"weight_map\" object".into() })
            })?;
            for (name, shard) in map {
                let shard = shard.as_str().unwrap_or_default();
                let found = seen.get(name).map(|&i| shards[i].name());
                let expected_ok = found.is_some_and(|f| f.rsplit(['/', '\\']).next() == Some(shard));
                if !expected_ok {
                    return Err(Error::new(&index_file, ErrorKind::MissingTensor {
                        tensor: name.clone(),
                        hint: format!(" in shard {shard:?} named by the weight_map{}", found.map(|f| format!(" (found in {f})")).unwrap_or_default()),
                    }));
                }
            }
        }
        Ok(ModelFiles {
            format: Format::Safetensors,
            path: path.to_owned(),
            files: shards.iter().map(|s| s.name().to_owned()).collect(),
            tensors,
            gguf: None,
            hf_config: Some(hf_config),
            generation_config,
            header_bytes_read,
            file_bytes,
        })
    }

    /// Bytes and tensor count by dtype, largest first.
    pub fn bytes_by_dtype(&self) -> Vec<(DType, usize, u64)> {
        let mut m: HashMap<DType, (usize, u64)> = HashMap::new();
        for t in &self.tensors {
            let e = m.entry(t.dtype).or_default();
            e.0 += 1;
            e.1 += t.nbytes;
        }
        let mut v: Vec<_> = m.into_iter().map(|(d, (n, b))| (d, n, b)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        v
    }
}

/// Canonical role -> tensor. The tied output head resolves to the embedding entry itself.
#[derive(Clone, Debug, Default)]
pub struct TensorIndex {
    map: HashMap<TensorId, usize>,
}

impl TensorIndex {
    /// Position in [`ModelFiles::tensors`].
    pub fn get(&self, id: TensorId) -> Option<usize> {
        self.map.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn insert(&mut self, id: TensorId, i: usize) {
        self.map.insert(id, i);
    }
}

/// A model whose config and every tensor shape passed validation.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub files: ModelFiles,
    pub config: ModelConfig,
    pub index: TensorIndex,
    pub warnings: Vec<String>,
}

impl LoadedModel {
    /// The tensor of a role. With tied embeddings, `Output` returns the embedding entry.
    pub fn tensor(&self, id: TensorId) -> Option<&TensorEntry> {
        self.index.get(id).map(|i| &self.files.tensors[i])
    }
}

/// Opens a model natively: a `.gguf` file, a `.safetensors` file (config.json beside it),
/// a `model.safetensors.index.json`, or a directory holding either.
#[cfg(any(unix, windows))]
pub fn open(path: impl AsRef<std::path::Path>) -> Result<ModelFiles> {
    native::open(path.as_ref())
}

/// Opens and validates a model: the config and every tensor shape and dtype.
#[cfg(any(unix, windows))]
pub fn load(path: impl AsRef<std::path::Path>) -> Result<LoadedModel, crate::Errors> {
    let files = open(path)?;
    analyze(files).into_model()
}

#[cfg(any(unix, windows))]
mod native {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::source::FileSource;

    fn io(path: &Path, op: &str, e: std::io::Error) -> Error {
        Error::new(path.display().to_string(), ErrorKind::Io { op: op.into(), message: e.to_string() })
    }

    fn read_text(path: &Path) -> Result<String> {
        // config files are small; refuse anything that is not (a wrong path, say).
        const MAX: u64 = 64 << 20;
        let len = crate::source::regular_file(path)?.len();
        if len > MAX {
            return Err(Error::new(path.display().to_string(), ErrorKind::TooLong { what: "JSON file".into(), len, max: MAX }));
        }
        let bytes = fs::read(path).map_err(|e| io(path, "read", e))?;
        String::from_utf8(bytes).map_err(|e| Error::new(path.display().to_string(), ErrorKind::BadUtf8 { what: "JSON file".into(), offset: e.utf8_error().valid_up_to() as u64 }))
    }

    fn optional_text(path: &Path) -> Result<Option<String>> {
        if path.exists() { read_text(path).map(Some) } else { Ok(None) }
    }

    pub(super) fn open(path: &Path) -> Result<ModelFiles> {
        let name = path.display().to_string();
        let meta = fs::metadata(path).map_err(|e| io(path, "open", e))?;
        if !meta.is_dir() {
            // A FIFO or a device would block the open or never end: refuse it first.
            crate::source::regular_file(path)?;
        }
        if meta.is_dir() {
            let index = path.join("model.safetensors.index.json");
            let single = path.join("model.safetensors");
            if index.exists() {
                return open_safetensors(path, Some(&index));
            }
            if single.exists() {
                return open_safetensors(path, None);
            }
            let ggufs: Vec<PathBuf> = fs::read_dir(path)
                .map_err(|e| io(path, "list", e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect();
            return match ggufs.as_slice() {
                [one] => open(one),
                [] => Err(Error::new(name, ErrorKind::UnknownFormat { reason: "directory holds no model.safetensors, model.safetensors.index.json or .gguf file".into() })),
                many => Err(Error::new(name, ErrorKind::UnknownFormat { reason: format!("directory holds {} .gguf files; name one", many.len()) })),
            };
        }
        let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if file_name.ends_with(".index.json") {
            return open_safetensors(&dir, Some(path));
        }
        if file_name.ends_with(".safetensors") {
            return open_safetensors_file(&dir, path);
        }
        // Anything else must be GGUF; the magic decides (a bad one is a BadMagic error).
        let src = FileSource::open(path)?;
        ModelFiles::from_gguf(&src)
    }

    fn dir_name(dir: &Path) -> String {
        if dir.as_os_str().is_empty() { ".".into() } else { dir.display().to_string() }
    }

    /// config.json (and generation_config.json) in `dir`; a missing one is reported
    /// against `about`, the file or directory the user named.
    fn config_texts(dir: &Path, about: &Path) -> Result<(String, Option<String>)> {
        let config = dir.join("config.json");
        if !config.exists() {
            return Err(Error::new(about.display().to_string(), ErrorKind::MissingKey { key: format!("config.json beside it ({})", Path::new(&dir_name(dir)).join("config.json").display()) }));
        }
        Ok((read_text(&config)?, optional_text(&dir.join("generation_config.json"))?))
    }

    fn open_safetensors_file(dir: &Path, file: &Path) -> Result<ModelFiles> {
        let (config, generation) = config_texts(dir, file)?;
        let src = FileSource::open(file)?;
        ModelFiles::from_safetensors(&dir_name(dir), &config, generation.as_deref(), None, &[&src])
    }

    fn open_safetensors(dir: &Path, index: Option<&Path>) -> Result<ModelFiles> {
        let (config, generation) = config_texts(dir, index.unwrap_or(dir))?;
        let Some(index) = index else {
            return open_safetensors_file(dir, &dir.join("model.safetensors"));
        };
        let index_text = read_text(index)?;
        let v: Json = serde_json::from_str(&index_text).map_err(|e| {
            Error::new(index.display().to_string(), ErrorKind::Json { what: "model.safetensors.index.json".into(), message: e.to_string() })
        })?;
        let mut shard_names: Vec<String> = v
            .get("weight_map")
            .and_then(Json::as_object)
            .map(|m| m.values().filter_map(Json::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        shard_names.sort();
        shard_names.dedup();
        let mut sources = Vec::new();
        for shard in &shard_names {
            // A shard is a plain file name beside the index: no paths, no "..".
            if shard.contains(['/', '\\']) || shard == ".." || shard.is_empty() {
                return Err(Error::new(index.display().to_string(), ErrorKind::BadValue {
                    key: "weight_map shard".into(),
                    value: format!("{shard:?}"),
                    reason: "must be a file name in the same directory".into(),
                }));
            }
            sources.push(FileSource::open(dir.join(shard))?);
        }
        let refs: Vec<&dyn ByteSource> = sources.iter().map(|s| s as &dyn ByteSource).collect();
        ModelFiles::from_safetensors(&dir_name(dir), &config, generation.as_deref(), Some(&index_text), &refs)
    }
}

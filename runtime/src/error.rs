//! One typed error for everything the loader can refuse. Every error names the file it
//! is about and says what was expected and what was found.

use std::fmt;

/// A row-major shape (`[out, in]` for a weight matrix, `[n]` for a vector), the order
/// PyTorch and safetensors use. GGUF stores dims innermost-first; the loader reverses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<u64>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// What went wrong, without the file (see [`Error`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot {op}: {message}")]
    Io { op: String, message: String },
    #[error("is a {kind}, not a regular file: strata reads models and their config files with positioned reads (copy it to a file first)")]
    NotRegularFile { kind: String },
    #[error("not a model file: {reason}")]
    UnknownFormat { reason: String },
    #[error("truncated: {what} needs bytes {offset}..{end} but the file has {file_len} bytes")]
    Truncated { what: String, offset: u64, end: u64, file_len: u64 },
    #[error("bad magic {found:?}: expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version}: strata reads versions 2 and 3{hint}")]
    UnsupportedVersion { version: u32, hint: String },
    #[error("{what} claims {claimed} entries but at most {max} fit in the {remaining} bytes left in the file (the file is truncated or its header is corrupt)")]
    CountTooLarge { what: String, claimed: u64, max: u64, remaining: u64 },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    BadUtf8 { what: String, offset: u64 },
    #[error("metadata key {key:?}: unknown value type {type_id}")]
    BadValueType { key: String, type_id: u32 },
    #[error("metadata key {key:?}: boolean byte {value} is neither 0 nor 1")]
    BadBool { key: String, value: u8 },
    #[error("metadata key {key:?}: arrays nested deeper than {max}")]
    NestingTooDeep { key: String, max: u32 },
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    #[error("tensor {name:?} appears twice")]
    DuplicateTensor { name: String },
    #[error("tensor {tensor:?} has {n_dims} dimensions; at most {max} are allowed")]
    TooManyDims { tensor: String, n_dims: u32, max: u32 },
    #[error("tensor {tensor:?}: unknown ggml type id {type_id}")]
    UnknownGgmlType { tensor: String, type_id: u32 },
    #[error("tensor {tensor:?}: unsupported safetensors dtype {dtype}")]
    UnknownSafetensorsDtype { tensor: String, dtype: String },
    #[error("general.alignment = {alignment}: must be a non-zero power of two")]
    BadAlignment { alignment: u64 },
    #[error("tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor:?}: data bytes {start}..{end} lie past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds { tensor: String, start: u64, end: u64, file_len: u64 },
    #[error("tensors {first:?} and {second:?} overlap: {first:?} ends at byte {first_end}, {second:?} starts at byte {second_start}")]
    OverlappingTensors { first: String, second: String, first_end: u64, second_start: u64 },
    #[error("tensor {tensor:?}: {dtype} with shape {shape} has no valid byte size ({reason})")]
    BadTensorSize { tensor: String, dtype: String, shape: Shape, reason: String },
    #[error("{what} is {len} bytes long; the limit is {max}")]
    TooLong { what: String, len: u64, max: u64 },
    #[error("safetensors header: {message}")]
    Safetensors { message: String },
    #[error("{what}: invalid JSON: {message}")]
    Json { what: String, message: String },
    #[error("required {key} is missing")]
    MissingKey { key: String },
    #[error("{key}: expected {expected}, found {found}")]
    BadKeyType { key: String, expected: String, found: String },
    #[error("{key} = {value}: {reason}")]
    BadValue { key: String, value: String, reason: String },
    #[error("unknown architecture {name:?}; strata supports {supported}")]
    UnknownArchitecture { name: String, supported: String },
    #[error("tensor {tensor:?}: dtype {dtype} is not supported for {role} (supported: {supported})")]
    UnsupportedDtype { tensor: String, dtype: String, role: String, supported: String },
    #[error("required tensor {tensor:?} is missing{hint}")]
    MissingTensor { tensor: String, hint: String },
    #[error("tensor {tensor:?}: expected shape {expected} ({why}), found {found}")]
    ShapeMismatch { tensor: String, expected: Shape, found: Shape, why: String },
    #[error("tensor {tensor:?} belongs to layer {layer} but the model has {n_layers} layers")]
    LayerOutOfRange { tensor: String, layer: u64, n_layers: u32 },
    #[error("tensor {tensor:?} is expert {expert} but the model has {n_experts} experts")]
    ExpertOutOfRange { tensor: String, expert: u32, n_experts: u32 },
    #[error("invalid config: {message}")]
    InvalidConfig { message: String },
    /// A valid model strata cannot run yet: what it needs, and the key that says so.
    #[error("{key} = {value}: {feature} is not supported yet")]
    UnsupportedFeature { key: String, value: String, feature: String },
}

/// An error about one file (or model directory). The kind is boxed so that `Result`s in
/// the parser's hot loop stay small.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// The file, shard or directory the error is about.
    pub file: String,
    pub kind: Box<ErrorKind>,
}

impl Error {
    pub fn new(file: impl Into<String>, kind: ErrorKind) -> Self {
        Error { file: file.into(), kind: Box::new(kind) }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.kind)
    }
}

impl std::error::Error for Error {}

/// Every problem validation found (a model is checked completely, not up to the first
/// problem, so that a user sees everything wrong at once). Never empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    /// True when any error is of the kind `pred` accepts.
    pub fn any(&self, pred: impl Fn(&ErrorKind) -> bool) -> bool {
        self.0.iter().any(|e| pred(e.kind()))
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Errors(vec![e])
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

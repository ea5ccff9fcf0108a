//! GGUF reader (versions 2 and 3), written for strata: strict, bounded, and lazy.
//!
//! Layout (little-endian):
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count x  { key: string, type: u32, value }
//! tensor_count x { name: string, n_dims: u32, dims: u64 x n_dims, type: u32, offset: u64 }
//! padding to `general.alignment` (default 32) | tensor data
//! ```
//! A string is a u64 length and UTF-8 bytes; an array is an element type u32, a u64
//! count and the elements. Only the header is read; the data section is never touched.

use std::collections::HashMap;

use crate::error::{ErrorKind, Result, Shape};
use crate::model::reader::Reader;
use crate::quant::DType;
use crate::source::ByteSource;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Keys are short identifiers; the GGUF spec limits them to 65535 bytes.
const MAX_KEY_LEN: u64 = 65_535;
/// A single string value (a chat template, a token); generous, but bounded.
const MAX_STRING_LEN: u64 = 64 << 20;
/// Nested arrays beyond this depth are refused (no recursion bomb).
const MAX_NESTING: u32 = 8;

/// A metadata value, kept with its exact GGUF type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A typed array: every element has the declared type.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Strings),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// GGUF value type ids.
mod ty {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Smallest encoding of one value of a type: bounds what a claimed count can be.
fn min_size(type_id: u32) -> u64 {
    match type_id {
        ty::U8 | ty::I8 | ty::BOOL => 1,
        ty::U16 | ty::I16 => 2,
        ty::U32 | ty::I32 | ty::F32 => 4,
        ty::STRING => 8,
        ty::ARRAY => 12,
        _ => 8, // U64 I64 F64; unknown types are rejected before this matters
    }
}

impl Value {
    /// The GGUF type name, for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::U8(_) => "u8".into(),
            Value::I8(_) => "i8".into(),
            Value::U16(_) => "u16".into(),
            Value::I16(_) => "i16".into(),
            Value::U32(_) => "u32".into(),
            Value::I32(_) => "i32".into(),
            Value::F32(_) => "f32".into(),
            Value::Bool(_) => "bool".into(),
            Value::String(_) => "string".into(),
            Value::Array(a) => format!("array of {} {}", a.len(), a.elem_type_name()),
            Value::U64(_) => "u64".into(),
            Value::I64(_) => "i64".into(),
            Value::F64(_) => "f64".into(),
        }
    }

    /// Any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A float (f32/f64) or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem_type_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "u8",
            Array::I8(_) => "i8",
            Array::U16(_) => "u16",
            Array::I16(_) => "i16",
            Array::U32(_) => "u32",
            Array::I32(_) => "i32",
            Array::F32(_) => "f32",
            Array::Bool(_) => "bool",
            Array::String(_) => "string",
            Array::Array(_) => "array",
            Array::U64(_) => "u64",
            Array::I64(_) => "i64",
            Array::F64(_) => "f64",
        }
    }

    /// Integer elements as u64 (negative values give `None`).
    pub fn to_u64s(&self) -> Option<Vec<u64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> Option<u64>) -> Option<Vec<u64>> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Array::U8(v) => conv(v, |x| Some(x.into())),
            Array::U16(v) => conv(v, |x| Some(x.into())),
            Array::U32(v) => conv(v, |x| Some(x.into())),
            Array::U64(v) => conv(v, Some),
            Array::I8(v) => conv(v, |x| u64::try_from(x).ok()),
            Array::I16(v) => conv(v, |x| u64::try_from(x).ok()),
            Array::I32(v) => conv(v, |x| u64::try_from(x).ok()),
            Array::I64(v) => conv(v, |x| u64::try_from(x).ok()),
            Array::Bool(v) => conv(v, |x| Some(x.into())),
            _ => None,
        }
    }

    pub fn as_strings(&self) -> Option<&Strings> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }
}

/// A list of strings in one buffer: a tokenizer's 262k token texts as 262k `String`s
/// cost a 24-byte header and a heap block each (about 10 MB for Gemma 3's vocabulary,
/// held by the header and again by the tokenizer); here the text and one end offset each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Strings {
    text: String,
    /// `ends[i]`: where string `i` ends in `text` (string `i` starts at `ends[i - 1]`).
    ends: Vec<usize>,
}

impl Strings {
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        let mut v = Strings::default();
        it.into_iter().for_each(|s| v.push(s.as_ref()));
        v
    }
}

/// One entry of the GGUF tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (row) length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Exact byte size from the dtype's block geometry.
    pub nbytes: u64,
}

impl GgufTensor {
    /// Row-major shape (outermost first), the order safetensors and PyTorch use.
    pub fn shape(&self) -> Shape {
        Shape(self.dims.iter().rev().copied().collect())
    }
}

/// The parsed header of a GGUF file.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<GgufTensor>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub file_len: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Reads and checks the header of a GGUF file: magic, version, every metadata value,
    /// every tensor info, alignment, bounds and overlaps of the tensor data.
    pub fn read(src: &dyn ByteSource) -> Result<GgufHeader> {
        let mut r = Reader::new(src);
        let magic = r.array::<4>(&|| "magic".into())?;
        if magic != MAGIC {
            return Err(r.err(ErrorKind::BadMagic { found: magic }));
        }
        let version = r.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (this is a big-endian GGUF; strata reads little-endian files)".into()
            } else if version == 1 {
                " (version 1 used 32-bit counts; convert the file with a current llama.cpp)".into()
            } else {
                String::new()
            };
            return Err(r.err(ErrorKind::UnsupportedVersion { version, hint }));
        }
        let n_tensors = r.u64(&|| "tensor count".into())?;
        let n_kv = r.u64(&|| "metadata key count".into())?;
        // Each key-value needs >= 13 bytes (8 key length + 4 type + 1 value); each tensor info
        // >= 24 (8 name length + 4 n_dims + 4 type + 8 offset). Claims that cannot fit in the
        // file are refused before anything is parsed or allocated.
        check_count(&r, "metadata key count", n_kv, 13)?;
        check_count(&r, "tensor count", n_tensors, 24)?;

        let mut metadata = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n_kv {
            let key = r.string(MAX_KEY_LEN, &|| format!("key of metadata entry {i}"))?;
            let type_id = r.u32(&|| format!("type of metadata key {key:?}"))?;
            let value = read_value(&mut r, &key, type_id, 0)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(r.err(ErrorKind::DuplicateKey { key }));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) => u64::from(*a),
            Some((key, other)) => {
                return Err(r.err(ErrorKind::BadKeyType {
                    key: key.clone(),
                    expected: "u32".into(),
                    found: other.type_name(),
                }))
            }
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(r.err(ErrorKind::BadAlignment { alignment }));
        }

        let mut tensors = Vec::new();
        let mut names = HashMap::new();
        for i in 0..n_tensors {
            let name = r.string(MAX_KEY_LEN, &|| format!("name of tensor {i}"))?;
            let n_dims = r.u32(&|| format!("dimension count of tensor {name:?}"))?;
            if n_dims > MAX_DIMS {
                return Err(r.err(ErrorKind::TooManyDims { tensor: name, n_dims, max: MAX_DIMS }));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
            }
            let type_id = r.u32(&|| format!("type of tensor {name:?}"))?;
            let dtype = DType::from_ggml_id(type_id)
                .ok_or_else(|| r.err(ErrorKind::UnknownGgmlType { tensor: name.clone(), type_id }))?;
            let offset = r.u64(&|| format!("data offset of tensor {name:?}"))?;
            let nbytes = dtype.tensor_bytes(&dims).ok_or_else(|| {
                let shape = Shape(dims.iter().rev().copied().collect());
                let (block, _) = dtype.block();
                let reason = if dims.first().is_some_and(|d| d % block != 0) {
                    format!("row length {} is not a multiple of the block size {block}", dims[0])
                } else {
                    "the byte size overflows 64 bits".into()
                };
                r.err(ErrorKind::BadTensorSize { tensor: name.clone(), dtype: dtype.to_string(), shape, reason })
            })?;
            if names.insert(name.clone(), tensors.len()).is_some() {
                return Err(r.err(ErrorKind::DuplicateTensor { name }));
            }
            tensors.push(GgufTensor { name, dims, dtype, offset, nbytes });
        }

        let file_len = r.file_len();
        let data_offset = r.pos().div_ceil(alignment) * alignment;
        check_tensor_layout(&r, &tensors, alignment, data_offset, file_len)?;
        Ok(GgufHeader { version, metadata, index, tensors, alignment, data_offset, file_len })
    }
}

fn check_count(r: &Reader, what: &str, claimed: u64, min_entry: u64) -> Result<()> {
    let max = r.remaining() / min_entry;
    if claimed > max {
        return Err(r.err(ErrorKind::CountTooLarge {
            what: what.into(),
            claimed,
            max,
            remaining: r.remaining(),
        }));
    }
    Ok(())
}

fn read_value(r: &mut Reader, key: &str, type_id: u32, depth: u32) -> Result<Value> {
    let what = || format!("value of {key:?}");
    Ok(match type_id {
        ty::U8 => Value::U8(r.u8(&what)?),
        ty::I8 => Value::I8(r.u8(&what)? as i8),
        ty::U16 => Value::U16(r.u16(&what)?),
        ty::I16 => Value::I16(r.u16(&what)? as i16),
        ty::U32 => Value::U32(r.u32(&what)?),
        ty::I32 => Value::I32(r.u32(&what)? as i32),
        ty::F32 => Value::F32(f32::from_bits(r.u32(&what)?)),
        ty::U64 => Value::U64(r.u64(&what)?),
        ty::I64 => Value::I64(r.u64(&what)? as i64),
        ty::F64 => Value::F64(f64::from_bits(r.u64(&what)?)),
        ty::BOOL => Value::Bool(read_bool(r, key)?),
        ty::STRING => Value::String(r.string(MAX_STRING_LEN, &what)?),
        ty::ARRAY => Value::Array(read_array(r, key, depth)?),
        _ => return Err(r.err(ErrorKind::BadValueType { key: key.into(), type_id })),
    })
}

fn read_bool(r: &mut Reader, key: &str) -> Result<bool> {
    match r.u8(&|| format!("value of {key:?}"))? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(r.err(ErrorKind::BadBool { key: key.into(), value })),
    }
}

fn read_array(r: &mut Reader, key: &str, depth: u32) -> Result<Array> {
    if depth >= MAX_NESTING {
        return Err(r.err(ErrorKind::NestingTooDeep { key: key.into(), max: MAX_NESTING }));
    }
    let elem = r.u32(&|| format!("element type of array {key:?}"))?;
    if elem > ty::F64 {
        return Err(r.err(ErrorKind::BadValueType { key: key.into(), type_id: elem }));
    }
    let count = r.u64(&|| format!("length of array {key:?}"))?;
    check_count(r, &format!("array {key:?}"), count, min_size(elem))?;
    let what = || format!("elements of array {key:?}");

    // Fixed-size elements are read in one bounds-checked slice.
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            const W: usize = std::mem::size_of::<$t>();
            let bytes = r.bytes(count * W as u64, &what)?;
            Array::$variant(bytes.chunks_exact(W).map(|c| <$t>::from_le_bytes(c.try_into().unwrap())).collect())
        }};
    }
    Ok(match elem {
        ty::U8 => fixed!(U8, u8),
        ty::I8 => fixed!(I8, i8),
        ty::U16 => fixed!(U16, u16),
        ty::I16 => fixed!(I16, i16),
        ty::U32 => fixed!(U32, u32),
        ty::I32 => fixed!(I32, i32),
        ty::F32 => fixed!(F32, f32),
        ty::U64 => fixed!(U64, u64),
        ty::I64 => fixed!(I64, i64),
        ty::F64 => fixed!(F64, f64),
        ty::BOOL => {
            let mut v = Vec::new();
            for _ in 0..count {
                v.push(read_bool(r, key)?);
            }
            Array::Bool(v)
        }
        ty::STRING => {
            let mut v = Strings::default();
            for i in 0..count {
                v.push(r.str(MAX_STRING_LEN, &|| format!("element {i} of array {key:?}"))?);
            }
            Array::String(v)
        }
        _ => {
            let mut v = Vec::new();
            for _ in 0..count {
                v.push(read_array(r, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}

/// Tensor data must be aligned, inside the file and disjoint.
fn check_tensor_layout(
    r: &Reader,
    tensors: &[GgufTensor],
    alignment: u64,
    data_offset: u64,
    file_len: u64,
) -> Result<()> {
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(r.err(ErrorKind::MisalignedTensor { tensor: t.name.clone(), offset: t.offset, alignment }));
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.nbytes));
        match (start, end) {
            (Some(_), Some(end)) if end <= file_len => {}
            _ => {
                return Err(r.err(ErrorKind::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                }))
            }
        }
    }
    check_disjoint(tensors.iter().map(|t| (t.name.as_str(), t.offset, t.nbytes)))
        .map_err(|kind| r.err(kind))
}

/// Fails with `OverlappingTensors` when two `(name, start, len)` ranges intersect.
/// Zero-length tensors overlap nothing.
pub(crate) fn check_disjoint<'a>(
    ranges: impl Iterator<Item = (&'a str, u64, u64)>,
) -> std::result::Result<(), ErrorKind> {
    let mut sorted: Vec<_> = ranges.filter(|r| r.2 > 0).collect();
    sorted.sort_by_key(|&(_, start, _)| start);
    for pair in sorted.windows(2) {
        let (a, a_start, a_len) = pair[0];
        let (b, b_start, _) = pair[1];
        let a_end = a_start + a_len; // bounds already checked: no overflow
        if a_end > b_start {
            return Err(ErrorKind::OverlappingTensors {
                first: a.into(),
                second: b.into(),
                first_end: a_end,
                second_start: b_start,
            });
        }
    }
    Ok(())
}

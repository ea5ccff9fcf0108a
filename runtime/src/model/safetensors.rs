//! safetensors headers, read lazily: the 8-byte header length, then the JSON header,
//! parsed and validated by the `safetensors` crate (contiguous, non-overlapping offsets,
//! sizes that match dtype x shape). The tensor data is never read here.

use crate::error::{ErrorKind, Result, Shape};
use crate::model::reader::Reader;
use crate::quant::DType;
use crate::source::ByteSource;

/// The `safetensors` crate's own header limit.
pub const MAX_HEADER: u64 = 100_000_000;

#[derive(Clone, Debug, PartialEq)]
pub struct StTensor {
    pub name: String,
    pub dtype: DType,
    /// Row-major.
    pub shape: Vec<u64>,
    /// Absolute offset in the file.
    pub offset: u64,
    pub nbytes: u64,
}

#[derive(Clone, Debug)]
pub struct StHeader {
    /// Tensors in data order.
    pub tensors: Vec<StTensor>,
    /// The free-form `__metadata__` map.
    pub metadata: Vec<(String, String)>,
    pub data_offset: u64,
}

impl StHeader {
    pub fn read(src: &dyn ByteSource) -> Result<StHeader> {
        let mut r = Reader::new(src);
        let n = r.u64(&|| "safetensors header length".into())?;
        if n > MAX_HEADER {
            return Err(r.err(ErrorKind::TooLong { what: "safetensors header".into(), len: n, max: MAX_HEADER }));
        }
        let json = r.bytes(n, &|| "safetensors header".into())?;
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(json)
            .map_err(|e| r.err(ErrorKind::Safetensors { message: e.to_string() }))?;
        let data_offset = 8 + n;
        let data_len = meta.data_len() as u64;
        let file_len = r.file_len();
        let end = data_offset + data_len;
        if end > file_len {
            return Err(r.err(ErrorKind::Truncated { what: "tensor data".into(), offset: data_offset, end, file_len }));
        }
        if end < file_len {
            return Err(r.err(ErrorKind::Safetensors {
                message: format!("{} bytes after the last tensor's data (header says data ends at byte {end})", file_len - end),
            }));
        }
        let mut tensors = Vec::new();
        for name in meta.offset_keys() {
            let Some(info) = meta.info(&name) else { continue };
            let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| {
                r.err(ErrorKind::UnknownSafetensorsDtype { tensor: name.clone(), dtype: format!("{:?}", info.dtype) })
            })?;
            let (start, stop) = info.data_offsets;
            let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
            // The crate checked stop - start == elements x size; check ours agrees.
            if dtype.tensor_bytes(&shape.iter().rev().copied().collect::<Vec<_>>()) != Some((stop - start) as u64) {
                return Err(r.err(ErrorKind::BadTensorSize {
                    tensor: name,
                    dtype: dtype.to_string(),
                    shape: Shape(shape),
                    reason: format!("data_offsets span {} bytes", stop - start),
                }));
            }
            tensors.push(StTensor { name, dtype, shape, offset: data_offset + start as u64, nbytes: (stop - start) as u64 });
        }
        let mut metadata: Vec<(String, String)> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
        metadata.sort();
        Ok(StHeader { tensors, metadata, data_offset })
    }
}

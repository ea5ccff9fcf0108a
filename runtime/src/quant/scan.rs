//! Finds NaN and infinities in a tensor's bytes without decoding it: in a plain float
//! tensor every value is a float; in a block-quantised one only the block's scale fields
//! are (the quants are integers), so a block is checked by its f16 (or f32) fields alone.
//! `strata inspect --deep` runs this over every tensor of a model.

use super::DType;

/// The floating-point fields of one block: (byte offset, width in bytes, name).
/// `None` for formats whose layout strata does not scan (it cannot run them either).
fn block_fields(d: DType) -> Option<&'static [(usize, usize, &'static str)]> {
    use DType::*;
    Some(match d {
        F32 => &[(0, 4, "value")],
        F16 | BF16 => &[(0, 2, "value")],
        Q4_0 | Q5_0 | Q8_0 | IQ4NL => &[(0, 2, "scale d")],
        Q4_1 | Q5_1 => &[(0, 2, "scale d"), (2, 2, "min m")],
        Q8_1 => &[(0, 2, "scale d"), (2, 2, "sum s")],
        Q4K | Q5K => &[(0, 2, "super-block scale d"), (2, 2, "super-block min dmin")],
        Q2K => &[(80, 2, "super-block scale d"), (82, 2, "super-block min dmin")],
        Q3K => &[(108, 2, "super-block scale d")],
        Q6K => &[(208, 2, "super-block scale d")],
        Q8K => &[(0, 4, "scale d")],
        IQ4XS => &[(0, 2, "scale d")],
        // E8M0: 0xff is NaN in the OCP MX spec (ggml would read it as 2^127).
        MXFP4 => &[(0, 1, "shared exponent e (E8M0)")],
        _ => return None,
    })
}

/// The floating-point fields of a block of `d` (byte offset, width, name): 4 bytes f32,
/// 2 bytes f16 (BF16: bf16), 1 byte E8M0. Empty for formats strata does not scan. Test
/// generators read it to give random blocks sane scales.
pub fn float_fields(d: DType) -> &'static [(usize, usize, &'static str)] {
    block_fields(d).unwrap_or(&[])
}

/// True when the format's floats can be scanned.
pub fn scannable(d: DType) -> bool {
    block_fields(d).is_some()
}

/// A non-finite number in a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// Block index in the tensor (the element index for plain float tensors).
    pub block: u64,
    /// Which field of the block (`"value"` for plain floats).
    pub field: &'static str,
    pub value: f32,
}

fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Calls `found` for every non-finite field in `bytes`, whole blocks of `d` whose first is
/// block `first_block` of the tensor. Returns false when `d` is not scannable.
pub fn scan(d: DType, bytes: &[u8], first_block: u64, found: &mut dyn FnMut(NonFinite)) -> bool {
    let Some(fields) = block_fields(d) else { return false };
    let block_bytes = d.block().1 as usize;
    for (i, block) in bytes.chunks_exact(block_bytes).enumerate() {
        for &(at, width, field) in fields {
            let raw = &block[at..at + width];
            let value = match (d, width) {
                (_, 1) => if raw[0] == 0xff { f32::NAN } else { 2f32.powi(i32::from(raw[0]) - 127) },
                (DType::BF16, _) => f32::from_bits(u32::from(u16::from_le_bytes([raw[0], raw[1]])) << 16),
                (_, 2) => f16_to_f32(u16::from_le_bytes([raw[0], raw[1]])),
                _ => f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            };
            if !value.is_finite() {
                found(NonFinite { block: first_block + i as u64, field, value });
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_scales_and_values_and_nothing_else() {
        // Two Q4_1 blocks: block 1's min is inf; quant bytes of 0xff are not floats.
        let mut q = vec![0xffu8; 40];
        q[0..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        q[2..4].copy_from_slice(&half::f16::from_f32(-1.0).to_le_bytes());
        q[20..22].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
        q[22..24].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
        let mut hits = Vec::new();
        assert!(scan(DType::Q4_1, &q, 10, &mut |h| hits.push(h)));
        assert_eq!(hits, vec![NonFinite { block: 11, field: "min m", value: f32::INFINITY }]);

        let f: Vec<u8> = [1.0f32, f32::NAN, -2.0, f32::NEG_INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut hits = Vec::new();
        scan(DType::F32, &f, 0, &mut |h| hits.push(h.block));
        assert_eq!(hits, vec![1, 3]);

        // bf16 0x7fc0 is NaN, 0x3f80 is 1.0.
        let b = [0x80, 0x3f, 0xc0, 0x7f];
        let mut hits = Vec::new();
        scan(DType::BF16, &b, 0, &mut |h| hits.push(h.block));
        assert_eq!(hits, vec![1]);

        // Q6_K's scale sits at the end of its 210-byte block.
        let mut k = vec![0u8; 210];
        k[208..210].copy_from_slice(&half::f16::NAN.to_le_bytes());
        let mut hits = Vec::new();
        scan(DType::Q6K, &k, 0, &mut |h| hits.push(h.field));
        assert_eq!(hits, vec!["super-block scale d"]);
        assert!(!scan(DType::IQ2XXS, &[0; 66], 0, &mut |_| panic!()));

        // MXFP4's E8M0 exponent: 0xff is NaN, every other byte a power of two.
        let mut m = vec![0x11u8; 34];
        m[0] = 0x7f;
        m[17] = 0xff;
        let mut hits = Vec::new();
        assert!(scan(DType::MXFP4, &m, 0, &mut |h| hits.push(h.block)));
        assert_eq!(hits, vec![1]);
    }
}

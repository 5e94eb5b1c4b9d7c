//! Weight matrices on the GPU: f16 (vision tower and projector) or GGUF blocks (the LLM), repacked into
//! 4-byte words on upload because WGSL reads storage buffers word by word and GGUF blocks are not
//! word-aligned (ggml's `block_q8_0` is 34 bytes, `block_q4_1` 20).
//!
//! Device layouts (what the `linear_*`, `matvec_*` and `embed_*` kernels read):
//! - F16: `[n, k / 2]` words, element `2·i` in the low half of word `i`, `2·i + 1` in the high half.
//! - Q8_0: `qs` `[n, k / 4]` words, four i8 quants per word (element `4·i + b` in byte `b`), and `scales`
//!   `[ceil(blocks / 2)]` words, the f16 `d` of block `g` (row-major over `[n, k / 32]`) in half `g % 2` of
//!   word `g / 2`. Dequantised `d·q`.
//! - Q4_1: `[n, k / 32, 5]` words per block: the 16 nibble bytes as four words (byte `j` holds element `j`
//!   in its low nibble and `j + 16` in its high nibble, as in GGUF), then one word with `d` in its low half
//!   and `m` in its high half. Dequantised `d·q + m`.
//!
//! [`dequantize_gguf`] is the host-side reference of ggml's `dequantize_row_q8_0` / `dequantize_row_q4_1`.

use half::f16;

use crate::bundle::Quant;
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// A matrix `[n, k]` (n outputs, k inputs) on the GPU.
#[derive(Debug, Clone)]
pub enum Weight {
    /// f16 values, two per word: `data` is `[n, k / 2]` u32.
    F16 { n: usize, k: usize, data: GpuTensor },
    /// GGUF Q8_0: `qs` `[n, k / 4]` u32 of i8 quants, `scales` `[ceil(n·k / 64)]` u32 of f16 pairs.
    Q8_0 { n: usize, k: usize, qs: GpuTensor, scales: GpuTensor },
    /// GGUF Q4_1: `blocks` `[n, k / 32, 5]` u32 (four words of nibbles, then `d | m << 16`).
    Q4_1 { n: usize, k: usize, blocks: GpuTensor },
}

impl Weight {
    /// An f16 matrix from little-endian f16 bytes, row-major `[n, k]`; `k` must be even.
    pub fn from_f16_bytes(ctx: &GpuContext, n: usize, k: usize, bytes: &[u8]) -> Result<Self> {
        if !k.is_multiple_of(2) || n == 0 || k == 0 {
            return Err(WebError::shape("Weight::from_f16_bytes", "n ≥ 1 and an even k ≥ 2", [n, k]));
        }
        if bytes.len() != n * k * 2 {
            return Err(WebError::shape(
                "Weight::from_f16_bytes",
                format!("{} bytes for [{n}, {k}]", n * k * 2),
                bytes.len(),
            ));
        }
        // Two little-endian f16 form one little-endian u32 with the first in the low half: the bytes are
        // already in device order.
        let data = ctx.upload_bytes(&[n, k / 2], DType::U32, bytes)?;
        Ok(Weight::F16 { n, k, data })
    }

    /// An f16 matrix from f32 values (rounded to nearest f16), row-major `[n, k]`; `k` must be even.
    pub fn from_f32(ctx: &GpuContext, n: usize, k: usize, values: &[f32]) -> Result<Self> {
        if values.len() != n * k {
            return Err(WebError::shape("Weight::from_f32", format!("{} values for [{n}, {k}]", n * k), values.len()));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
        Self::from_f16_bytes(ctx, n, k, &bytes)
    }

    /// A quantised matrix from its GGUF blocks: `n·k/32` blocks of `quant`, row-major (each row is `k/32`
    /// consecutive blocks); `k` must be a multiple of 32.
    pub fn from_gguf(ctx: &GpuContext, quant: Quant, n: usize, k: usize, bytes: &[u8]) -> Result<Self> {
        if !k.is_multiple_of(32) || n == 0 || k == 0 {
            return Err(WebError::shape("Weight::from_gguf", "n ≥ 1 and k a positive multiple of 32", [n, k]));
        }
        let blocks = n * k / 32;
        let expected = blocks * quant.block_bytes();
        if bytes.len() != expected {
            return Err(WebError::shape(
                "Weight::from_gguf",
                format!("{expected} bytes of {quant:?} for [{n}, {k}]"),
                bytes.len(),
            ));
        }
        match quant {
            Quant::Q8_0 => {
                let mut qs = Vec::with_capacity(blocks * 32);
                let mut scales = Vec::with_capacity(blocks.next_multiple_of(2) * 2);
                for block in bytes.chunks_exact(34) {
                    scales.extend_from_slice(&block[..2]);
                    qs.extend_from_slice(&block[2..]);
                }
                scales.resize(blocks.next_multiple_of(2) * 2, 0);
                let qs = ctx.upload_bytes(&[n, k / 4], DType::U32, &qs)?;
                let scales = ctx.upload_bytes(&[blocks.div_ceil(2)], DType::U32, &scales)?;
                Ok(Weight::Q8_0 { n, k, qs, scales })
            }
            Quant::Q4_1 => {
                // GGUF order is d, m, qs[16]; the device order qs[16], d, m keeps the nibbles word-aligned.
                let mut words = Vec::with_capacity(blocks * 20);
                for block in bytes.chunks_exact(20) {
                    words.extend_from_slice(&block[4..]);
                    words.extend_from_slice(&block[..4]);
                }
                let blocks = ctx.upload_bytes(&[n, k / 32, 5], DType::U32, &words)?;
                Ok(Weight::Q4_1 { n, k, blocks })
            }
        }
    }

    /// Outputs (`n`).
    pub fn rows(&self) -> usize {
        match self {
            Weight::F16 { n, .. } | Weight::Q8_0 { n, .. } | Weight::Q4_1 { n, .. } => *n,
        }
    }

    /// Inputs (`k`).
    pub fn cols(&self) -> usize {
        match self {
            Weight::F16 { k, .. } | Weight::Q8_0 { k, .. } | Weight::Q4_1 { k, .. } => *k,
        }
    }

    /// Device bytes the matrix occupies (meaningful bytes, not the pooled buffers' size classes).
    pub fn byte_size(&self) -> u64 {
        match self {
            Weight::F16 { data, .. } => data.byte_len(),
            Weight::Q8_0 { qs, scales, .. } => qs.byte_len() + scales.byte_len(),
            Weight::Q4_1 { blocks, .. } => blocks.byte_len(),
        }
    }
}

/// Dequantises GGUF blocks on the host (ggml's `dequantize_row_q8_0`: `d·q`; `dequantize_row_q4_1`:
/// `d·q + m`, element `j < 16` from the low nibble of byte `j` and `j + 16` from its high nibble).
pub fn dequantize_gguf(quant: Quant, bytes: &[u8]) -> Result<Vec<f32>> {
    let size = quant.block_bytes();
    if !bytes.len().is_multiple_of(size) {
        return Err(WebError::shape(
            "dequantize_gguf",
            format!("a multiple of {size} bytes for {quant:?}"),
            bytes.len(),
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / size * 32);
    for block in bytes.chunks_exact(size) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        match quant {
            Quant::Q8_0 => out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8))),
            Quant::Q4_1 => {
                let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
    }
    Ok(out)
}

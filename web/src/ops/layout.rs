//! Data movement: gathering kept rows (tokens) and swapping the token and head axes. Both copy 4-byte
//! words bit for bit, so they serve f32 and u32 tensors alike.

use bytemuck::{Pod, Zeroable};

use super::{flat_groups, to_u32};
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::tensor::{DType, GpuTensor};

/// Parameters of `select_rows` and `heads_first` (`c` unused by the first).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LayoutParams {
    a: u32,
    b: u32,
    c: u32,
    _pad: u32,
}

/// Checks that a tensor holds 4-byte words.
fn expect_words(op: &'static str, x: &GpuTensor) -> Result<()> {
    if x.dtype() == DType::Bytes {
        return Err(WebError::shape(op, "an f32 or u32 tensor", x.dtype()));
    }
    Ok(())
}

/// Rows `rows` of x `[n, …]` → `[rows.len(), …]`.
pub fn select_rows(ctx: &GpuContext, x: &GpuTensor, rows: &[u32]) -> Result<GpuTensor> {
    const OP: &str = "select_rows";
    expect_words(OP, x)?;
    let Some((&n, rest)) = x.shape().split_first() else {
        return Err(WebError::shape(OP, "a tensor of rank ≥ 1", x.shape()));
    };
    if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
        return Err(WebError::shape(OP, format!("row indices below {n}"), bad));
    }
    let c: usize = rest.iter().product();
    let shape: Vec<usize> = std::iter::once(rows.len()).chain(rest.iter().copied()).collect();
    let out = ctx.empty(&shape, x.dtype())?;
    if rows.is_empty() || c == 0 {
        return Ok(out);
    }
    let params = LayoutParams { a: to_u32(OP, rows.len())?, b: to_u32(OP, c)?, c: 0, _pad: 0 };
    let index = ctx.upload_bytes(&[rows.len()], DType::U32, bytemuck::cast_slice(rows))?;
    ctx.dispatch(OP, &params, &[x, &index, &out], flat_groups(rows.len() * c))?;
    Ok(out)
}

/// x `[a, b, c]` → `[b, a, c]`.
pub fn heads_first(ctx: &GpuContext, x: &GpuTensor) -> Result<GpuTensor> {
    const OP: &str = "heads_first";
    expect_words(OP, x)?;
    let [a, b, c] =
        <[usize; 3]>::try_from(x.shape()).map_err(|_| WebError::shape(OP, "a tensor of rank 3", x.shape()))?;
    let out = ctx.empty(&[b, a, c], x.dtype())?;
    if a * b * c == 0 {
        return Ok(out);
    }
    let params = LayoutParams { a: to_u32(OP, a)?, b: to_u32(OP, b)?, c: to_u32(OP, c)?, _pad: 0 };
    ctx.dispatch(OP, &params, &[x, &out], flat_groups(a * b * c))?;
    Ok(out)
}

//! The DINOv2 ViT of sparsevlm-mini on wgpu, and its projector: image → visual tokens in the LLM's space.
//!
//! Ports Hugging Face transformers' `modeling_dinov2.py` (`Dinov2Embeddings`, `Dinov2Layer` with layer
//! scale, final `layernorm`; patch tokens of the last layer, CLS dropped, as sparsevlm-mini uses them) and
//! LLaVA-1.5's `mlp2x_gelu` projector (`llava/model/multimodal_projector/builder.py`).
//! The patch convolution (stride = kernel = patch) runs as one matrix product over host-side patches.

use crate::bundle::VisionConfig;
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::model::concat_rows;
use crate::model::weights::WeightSource;
use crate::ops;
use crate::tensor::GpuTensor;
use crate::weight::Weight;

#[derive(Debug)]
struct VitLayer {
    norm1: (GpuTensor, GpuTensor),
    q: (Weight, GpuTensor),
    k: (Weight, GpuTensor),
    v: (Weight, GpuTensor),
    out: (Weight, GpuTensor),
    scale1: GpuTensor,
    norm2: (GpuTensor, GpuTensor),
    fc1: (Weight, GpuTensor),
    fc2: (Weight, GpuTensor),
    scale2: GpuTensor,
}

/// The vision tower and projector.
#[derive(Debug)]
pub struct Vision {
    config: VisionConfig,
    patch: (Weight, GpuTensor),
    /// CLS token plus its position embedding. `[1, C]`
    cls: GpuTensor,
    /// Position embeddings of the patches. `[g², C]`
    positions: GpuTensor,
    layers: Vec<VitLayer>,
    norm: (GpuTensor, GpuTensor),
    projector: [(Weight, GpuTensor); 2],
}

fn linear(src: &WeightSource<'_>, ctx: &GpuContext, name: &str, n: usize, k: usize) -> Result<(Weight, GpuTensor)> {
    Ok((src.matrix(ctx, &format!("{name}.weight"), n, k)?, src.vector(ctx, &format!("{name}.bias"), n)?))
}

fn norm(src: &WeightSource<'_>, ctx: &GpuContext, name: &str, n: usize) -> Result<(GpuTensor, GpuTensor)> {
    Ok((src.vector(ctx, &format!("{name}.weight"), n)?, src.vector(ctx, &format!("{name}.bias"), n)?))
}

impl Vision {
    /// Loads the tower (`vision.*`) and the projector (`projector.*`) of a bundle.
    pub fn load(ctx: &GpuContext, src: &WeightSource<'_>) -> Result<Self> {
        let c = src.config.vision.clone();
        let llm_hidden = src.config.llm.hidden;
        let (h, p) = (c.hidden, c.patch_size);
        if c.heads == 0 || !h.is_multiple_of(c.heads) || p == 0 || !c.image_size.is_multiple_of(p) {
            return Err(WebError::Weights(format!("inconsistent vision configuration: {c:?}")));
        }
        let g = c.image_size / p;
        let patch_k = 3 * p * p;
        let conv = src.host_f32("vision.embeddings.patch_embeddings.projection.weight", &[h, 3, p, p])?;
        let patch = (
            Weight::from_f32(ctx, h, patch_k, &conv)?,
            src.vector(ctx, "vision.embeddings.patch_embeddings.projection.bias", h)?,
        );
        let cls = src.host_f32("vision.embeddings.cls_token", &[1, 1, h])?;
        let pos = src.host_f32("vision.embeddings.position_embeddings", &[1, 1 + g * g, h])?;
        let cls_row: Vec<f32> = cls.iter().zip(&pos[..h]).map(|(a, b)| a + b).collect();
        let layers = (0..c.layers)
            .map(|i| {
                let n = format!("vision.encoder.layer.{i}");
                Ok(VitLayer {
                    norm1: norm(src, ctx, &format!("{n}.norm1"), h)?,
                    q: linear(src, ctx, &format!("{n}.attention.attention.query"), h, h)?,
                    k: linear(src, ctx, &format!("{n}.attention.attention.key"), h, h)?,
                    v: linear(src, ctx, &format!("{n}.attention.attention.value"), h, h)?,
                    out: linear(src, ctx, &format!("{n}.attention.output.dense"), h, h)?,
                    scale1: src.vector(ctx, &format!("{n}.layer_scale1.lambda1"), h)?,
                    norm2: norm(src, ctx, &format!("{n}.norm2"), h)?,
                    fc1: linear(src, ctx, &format!("{n}.mlp.fc1"), c.intermediate, h)?,
                    fc2: linear(src, ctx, &format!("{n}.mlp.fc2"), h, c.intermediate)?,
                    scale2: src.vector(ctx, &format!("{n}.layer_scale2.lambda1"), h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch,
            cls: ctx.upload(&[1, h], &cls_row)?,
            positions: ctx.upload(&[g * g, h], &pos[h..])?,
            layers,
            norm: norm(src, ctx, "vision.layernorm", h)?,
            projector: [
                linear(src, ctx, "projector.linear_1", llm_hidden, h)?,
                linear(src, ctx, "projector.linear_2", llm_hidden, llm_hidden)?,
            ],
            config: c,
        })
    }

    /// Side of the square input in pixels.
    pub fn image_size(&self) -> usize {
        self.config.image_size
    }

    /// Number of visual tokens.
    pub fn n_tokens(&self) -> usize {
        let g = self.config.image_size / self.config.patch_size;
        g * g
    }

    /// Visual tokens in the LLM's embedding space from normalised pixels `[3, S, S]` → `[g², D]`.
    pub fn forward(&self, ctx: &GpuContext, pixels: &[f32]) -> Result<GpuTensor> {
        let c = &self.config;
        let (s, p, h) = (c.image_size, c.patch_size, c.hidden);
        if pixels.len() != 3 * s * s {
            return Err(WebError::shape("vision", format!("{} pixel values ([3, {s}, {s}])", 3 * s * s), pixels.len()));
        }
        let patches = ctx.upload(&[self.n_tokens(), 3 * p * p], &patchify(pixels, s, p))?;
        let tokens = ops::linear(ctx, &patches, &self.patch.0, Some(&self.patch.1))?; // [g², C]
        let tokens = ops::add(ctx, &tokens, &self.positions)?;
        let mut x = concat_rows(ctx, &[&self.cls, &tokens])?; // [1 + g², C]
        let n = x.shape()[0];
        let (heads, head_dim) = (c.heads, h / c.heads);
        for layer in &self.layers {
            let y = ops::layer_norm(ctx, &x, &layer.norm1.0, &layer.norm1.1, c.layer_norm_eps)?;
            let q = ops::linear(ctx, &y, &layer.q.0, Some(&layer.q.1))?.reshape(&[n, heads, head_dim])?;
            let k = ops::linear(ctx, &y, &layer.k.0, Some(&layer.k.1))?.reshape(&[n, heads, head_dim])?;
            let v = ops::linear(ctx, &y, &layer.v.0, Some(&layer.v.1))?.reshape(&[n, heads, head_dim])?;
            let (attn, _) = ops::attention(ctx, &q, &k, &v, false)?; // [n, heads, head_dim]
            let attn = ops::linear(ctx, &attn.reshape(&[n, h])?, &layer.out.0, Some(&layer.out.1))?;
            x = ops::add_scaled(ctx, &x, &attn, &layer.scale1)?;
            let y = ops::layer_norm(ctx, &x, &layer.norm2.0, &layer.norm2.1, c.layer_norm_eps)?;
            let y = ops::gelu(ctx, &ops::linear(ctx, &y, &layer.fc1.0, Some(&layer.fc1.1))?)?;
            let y = ops::linear(ctx, &y, &layer.fc2.0, Some(&layer.fc2.1))?;
            x = ops::add_scaled(ctx, &x, &y, &layer.scale2)?;
        }
        let x = ops::layer_norm(ctx, &x, &self.norm.0, &self.norm.1, c.layer_norm_eps)?;
        let patch_rows: Vec<u32> = (1..n as u32).collect();
        let x = ops::select_rows(ctx, &x, &patch_rows)?; // [g², C]
        let [(w1, b1), (w2, b2)] = &self.projector;
        let x = ops::gelu(ctx, &ops::linear(ctx, &x, w1, Some(b1))?)?;
        ops::linear(ctx, &x, w2, Some(b2)) // [g², D]
    }
}

/// Non-overlapping `p × p` patches of `[3, s, s]` pixels, row-major over the grid, each flattened as
/// `(channel, y, x)` like the convolution weight `[C, 3, p, p]`. → `[(s/p)², 3·p·p]`
pub fn patchify(pixels: &[f32], s: usize, p: usize) -> Vec<f32> {
    let g = s / p;
    let mut out = Vec::with_capacity(g * g * 3 * p * p);
    for gy in 0..g {
        for gx in 0..g {
            for ch in 0..3 {
                for y in 0..p {
                    let row = ch * s * s + (gy * p + y) * s + gx * p;
                    out.extend_from_slice(&pixels[row..row + p]);
                }
            }
        }
    }
    out
}

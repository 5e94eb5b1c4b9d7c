//! The DINOv2 ViT backbone of sparsevlm-mini (a DINOv2-S/14: 12 layers, d = 384, 6 heads, MLP 1536).
//!
//! Ports transformers' `models/dinov2/modeling_dinov2.py` (`Dinov2Embeddings` with
//! `interpolate_pos_encoding`, `Dinov2Layer`: pre-norm attention and GELU MLP, each scaled by a
//! `Dinov2LayerScale`, and the final `layernorm` of `Dinov2Model`), with HF `Dinov2Model` weight names, as
//! written by [`crate::mini::onnx::convert_dinov2`]. No pooler, no mask token, no SwiGLU variant.
//!
//! Position embeddings. The checkpoint holds them for a `g × g` grid (37 × 37, i.e. 518 px) plus CLS. For
//! another input size, HF resizes the grid with `F.interpolate(mode="bicubic", align_corners=False,
//! antialias=False, size=(h, w))`; the ONNX export of the same code is a `Resize` node with
//! `mode = cubic`, `coordinate_transformation_mode = half_pixel`, `cubic_coeff_a = −0.75`,
//! `exclude_outside = 0` and explicit `sizes`. Both compute, per axis, a separable 4-tap Keys cubic
//! convolution with edge replication. candle has no bicubic resize, so [`cubic_resize_matrix`] builds that
//! filter as a dense `[out, in]` weight matrix per axis and the resize is two matrix products
//! (`P' = Wy · P · Wxᵀ` per channel). candle-transformers' `dinov2.rs` resizes with nearest neighbours,
//! which is why this file exists.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, layer_norm, linear, Conv2d, Conv2dConfig, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::vit::self_attention;

/// The Keys cubic coefficient of PyTorch's bicubic interpolation and of the ONNX graph (`cubic_coeff_a`).
pub const CUBIC_A: f64 = -0.75;

/// The shape of a DINOv2 backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dinov2Config {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    /// MLP inner width.
    pub mlp: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub layer_norm_eps: f64,
    /// Side of the square patch grid the position embeddings were trained for (37 for 518 px).
    pub position_grid: usize,
}

impl Dinov2Config {
    /// DINOv2-S/14 as in sparsevlm-mini's ONNX file.
    pub fn dinov2_small() -> Self {
        Dinov2Config {
            layers: 12,
            hidden: 384,
            heads: 6,
            mlp: 1536,
            patch_size: 14,
            channels: 3,
            layer_norm_eps: 1e-6,
            position_grid: 37,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads.max(1)
    }

    /// Number of patch tokens for an `h × w` image (the patch conv floors).
    pub fn n_patches(&self, h: usize, w: usize) -> usize {
        (h / self.patch_size) * (w / self.patch_size)
    }

    /// Checks that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Input(format!("invalid DINOv2 config: {m}")));
        if [self.layers, self.hidden, self.heads, self.mlp, self.patch_size, self.channels, self.position_grid]
            .contains(&0)
        {
            return bad(format!("every size must be positive: {self:?}"));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return bad(format!("hidden {} is not a multiple of heads {}", self.hidden, self.heads));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return bad(format!("layer_norm_eps {} must be positive", self.layer_norm_eps));
        }
        Ok(())
    }
}

/// Keys' cubic convolution kernel with coefficient `a` at distance `t`.
fn keys_cubic(t: f64, a: f64) -> f64 {
    let t = t.abs();
    if t <= 1.0 {
        ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    } else {
        0.0
    }
}

/// The 1-D bicubic resize from `n_in` to `n_out` samples as a row-major `[n_out, n_in]` matrix.
///
/// Output sample `i` sits at source coordinate `x = (i + ½)·n_in/n_out − ½` (`half_pixel`, i.e.
/// `align_corners = False`); with `f = ⌊x⌋` and `s = x − f` its weights are `keys(s + 1), keys(s),
/// keys(1 − s), keys(2 − s)` on samples `f − 1 … f + 2`, each index clamped into `[0, n_in − 1]` (edge
/// replication, as PyTorch's `upsample_bicubic2d` and onnxruntime with `exclude_outside = 0` do). For
/// `n_in == n_out` the matrix is the identity. Computed in f64, returned in f32.
pub fn cubic_resize_matrix(n_in: usize, n_out: usize, a: f64) -> Vec<f32> {
    if n_in == 0 {
        return Vec::new();
    }
    let mut m = vec![0f64; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    let last = n_in as i64 - 1;
    for i in 0..n_out {
        let x = (i as f64 + 0.5) * scale - 0.5;
        let f = x.floor();
        let s = x - f;
        for k in -1i64..=2 {
            let j = (f as i64 + k).clamp(0, last) as usize;
            m[i * n_in + j] += keys_cubic(s - k as f64, a);
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Resizes a `[g_in_h, g_in_w, C]` grid to `[h, w, C]` bicubically (see [`cubic_resize_matrix`]). f32.
pub fn resize_grid_bicubic(grid: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let (gh, gw, c) = grid.dims3()?;
    if (gh, gw) == (h, w) {
        return Ok(grid.clone());
    }
    let dev = grid.device();
    let grid = grid.to_dtype(DType::F32)?;
    let wy = Tensor::from_vec(cubic_resize_matrix(gh, h, CUBIC_A), (h, gh), dev)?; // [h, gh]
    let wx = Tensor::from_vec(cubic_resize_matrix(gw, w, CUBIC_A), (w, gw), dev)?; // [w, gw]
    let rows = wy.matmul(&grid.reshape((gh, gw * c))?)?.reshape((h, gw, c))?; // [h, gw, C]
    let wx = wx.unsqueeze(0)?.broadcast_as((h, w, gw))?.contiguous()?; // [h, w, gw]
    Ok(wx.matmul(&rows)?) // [h, w, C]
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    scale1: Tensor, // [C]
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    scale2: Tensor, // [C]
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Dinov2Config) -> Result<Self> {
        let a = vb.pp("attention");
        Ok(Layer {
            norm1: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("norm1"))?,
            q: linear(c.hidden, c.hidden, a.pp("attention.query"))?,
            k: linear(c.hidden, c.hidden, a.pp("attention.key"))?,
            v: linear(c.hidden, c.hidden, a.pp("attention.value"))?,
            out: linear(c.hidden, c.hidden, a.pp("output.dense"))?,
            scale1: vb.pp("layer_scale1").get(c.hidden, "lambda1")?,
            norm2: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("norm2"))?,
            fc1: linear(c.hidden, c.mlp, vb.pp("mlp.fc1"))?,
            fc2: linear(c.mlp, c.hidden, vb.pp("mlp.fc2"))?,
            scale2: vb.pp("layer_scale2").get(c.hidden, "lambda1")?,
            heads: c.heads,
        })
    }

    /// `[b, n, C]` → `[b, n, C]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.norm1.forward(x)?;
        let attn = self_attention(&h, &self.q, &self.k, &self.v, self.heads)?; // [b, n, C]
        let x = (x + self.out.forward(&attn)?.broadcast_mul(&self.scale1)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?.gelu_erf()?; // [b, n, mlp]
        Ok((x + self.fc2.forward(&h)?.broadcast_mul(&self.scale2)?)?)
    }
}

/// The DINOv2 backbone up to its final LayerNorm (`Dinov2Model.last_hidden_state`).
#[derive(Debug, Clone)]
pub struct Dinov2 {
    patch: Conv2d,
    cls_token: Tensor, // [1, 1, C]
    pos_cls: Tensor,   // [1, 1, C]
    pos_grid: Tensor,  // [g, g, C], f32
    layers: Vec<Layer>,
    norm: LayerNorm,
    config: Dinov2Config,
}

impl Dinov2 {
    /// Loads from `vb` positioned at the `Dinov2Model` root (`embeddings.*`, `encoder.*`, `layernorm.*`).
    pub fn load(vb: VarBuilder, config: &Dinov2Config) -> Result<Self> {
        let c = config;
        c.validate()?;
        let e = vb.pp("embeddings");
        let conv = Conv2dConfig { stride: c.patch_size, ..Default::default() };
        let g = c.position_grid;
        let pos = e.get((1, 1 + g * g, c.hidden), "position_embeddings")?; // [1, 1 + g², C]
        let layers =
            (0..c.layers).map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), c)).collect::<Result<Vec<_>>>()?;
        Ok(Dinov2 {
            patch: conv2d(c.channels, c.hidden, c.patch_size, conv, e.pp("patch_embeddings.projection"))?,
            cls_token: e.get((1, 1, c.hidden), "cls_token")?,
            pos_cls: pos.narrow(1, 0, 1)?,
            pos_grid: pos.narrow(1, 1, g * g)?.reshape((g, g, c.hidden))?.to_dtype(DType::F32)?,
            layers,
            norm: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("layernorm"))?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &Dinov2Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.cls_token.device()
    }

    pub fn dtype(&self) -> DType {
        self.cls_token.dtype()
    }

    /// The position embeddings for an `h × w` patch grid, CLS first: `[1, 1 + h·w, C]` in the model dtype.
    pub fn position_embeddings(&self, h: usize, w: usize) -> Result<Tensor> {
        let c = self.config.hidden;
        let grid = resize_grid_bicubic(&self.pos_grid, h, w)?.reshape((1, h * w, c))?.to_dtype(self.dtype())?;
        Ok(Tensor::cat(&[&self.pos_cls, &grid], 1)?)
    }

    /// `[b, 3, H, W]` (normalised pixels) → `[b, 1 + n, C]`: CLS then the `(H/p)·(W/p)` patch tokens in
    /// row-major order, after the final LayerNorm.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, ch, hp, wp) = pixels.dims4()?;
        let p = self.config.patch_size;
        if ch != self.config.channels || hp < p || wp < p {
            return Err(Error::Input(format!(
                "DINOv2 expects pixels [b, {}, H >= {p}, W >= {p}], got {:?}",
                self.config.channels,
                pixels.dims()
            )));
        }
        let c = self.config.hidden;
        let patches = self.patch.forward(&pixels.to_dtype(self.dtype())?)?; // [b, C, h, w]
        let (h, w) = (patches.dim(2)?, patches.dim(3)?);
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [b, n, C]
        let cls = self.cls_token.expand((b, 1, c))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?; // [b, 1 + n, C]
        let mut x = x.broadcast_add(&self.position_embeddings(h, w)?)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(self.norm.forward(&x)?)
    }

    /// The patch tokens without CLS: `[b, 3, H, W]` → `[b, n, C]` (576 tokens at 336 px for a /14 model).
    pub fn patch_tokens(&self, pixels: &Tensor) -> Result<Tensor> {
        let x = self.forward(pixels)?;
        let n = x.dim(1)? - 1;
        Ok(x.narrow(1, 1, n)?.contiguous()?)
    }
}

//! The CLIP ViT vision tower of LLaVA-1.5, stopping at the selected layer.
//!
//! Ports transformers 4.37 `models/clip/modeling_clip.py` (`CLIPVisionEmbeddings`, `CLIPEncoderLayer`,
//! quick-GELU MLP) as LLaVA uses it (`llava/model/multimodal_encoder/clip_encoder.py`): the hidden state
//! of `mm_vision_select_layer` (−2: the output of the second-to-last layer) with the CLS token dropped.
//! Only the layers up to the selected one run. candle-transformers' `ClipVisionTower` indexes its hidden
//! states differently (its list has no embedding entry), so the tower is written here.

use candle_core::{Module, Tensor};
use candle_nn::{
    conv2d_no_bias, embedding, layer_norm, linear, Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear, VarBuilder,
};

use crate::config::{VisionActivation, VisionConfig};
use crate::error::Result;
use crate::models::vit::self_attention;

#[derive(Debug, Clone)]
struct EncoderLayer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    activation: VisionActivation,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, c: &VisionConfig) -> Result<Self> {
        let a = vb.pp("self_attn");
        Ok(EncoderLayer {
            ln1: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("layer_norm1"))?,
            q: linear(c.hidden, c.hidden, a.pp("q_proj"))?,
            k: linear(c.hidden, c.hidden, a.pp("k_proj"))?,
            v: linear(c.hidden, c.hidden, a.pp("v_proj"))?,
            out: linear(c.hidden, c.hidden, a.pp("out_proj"))?,
            ln2: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear(c.hidden, c.intermediate, vb.pp("mlp.fc1"))?,
            fc2: linear(c.intermediate, c.hidden, vb.pp("mlp.fc2"))?,
            heads: c.heads,
            activation: c.activation,
        })
    }

    /// `[b, n, C]` → `[b, n, C]`
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.ln1.forward(x)?;
        let attn = self_attention(&h, &self.q, &self.k, &self.v, self.heads)?; // [b, n, C]
        let x = (x + self.out.forward(&attn)?)?;
        let h = self.fc1.forward(&self.ln2.forward(&x)?)?;
        let h = match self.activation {
            VisionActivation::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
            VisionActivation::Gelu => h.gelu_erf()?,
        };
        Ok((x + self.fc2.forward(&h)?)?)
    }
}

/// The vision tower up to the selected layer.
#[derive(Debug, Clone)]
pub struct ClipVision {
    patch: Conv2d,
    class_embedding: Tensor, // [C]
    positions: Embedding,    // [n_patches + 1, C]
    pre_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    config: VisionConfig,
}

impl ClipVision {
    /// Loads from `vb` positioned at `vision_model`.
    pub fn load(vb: VarBuilder, config: &VisionConfig) -> Result<Self> {
        let c = config;
        let e = vb.pp("embeddings");
        let conv = Conv2dConfig { stride: c.patch_size, ..Default::default() };
        let layers = (0..c.layers_needed())
            .map(|i| EncoderLayer::load(vb.pp(format!("encoder.layers.{i}")), c))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipVision {
            patch: conv2d_no_bias(c.channels, c.hidden, c.patch_size, conv, e.pp("patch_embedding"))?,
            class_embedding: e.get(c.hidden, "class_embedding")?,
            positions: embedding(c.n_patches() + 1, c.hidden, e.pp("position_embedding"))?,
            pre_norm: layer_norm(c.hidden, c.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers,
            config: c.clone(),
        })
    }

    /// Patch features of the selected layer. `[b, 3, H, W]` → `[b, n_patches, C]` (CLS dropped for `patch`)
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let b = pixels.dim(0)?;
        let c = self.config.hidden;
        let patches = self.patch.forward(&pixels.to_dtype(self.class_embedding.dtype())?)?; // [b, C, h, w]
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [b, n, C]
        let cls = self.class_embedding.reshape((1, 1, c))?.expand((b, 1, c))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?; // [b, n + 1, C]
        let x = x.broadcast_add(&self.positions.embeddings().unsqueeze(0)?)?;
        let mut x = self.pre_norm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        if self.config.drop_cls {
            x = x.narrow(1, 1, self.config.n_patches())?;
        }
        Ok(x.contiguous()?)
    }

    pub fn config(&self) -> &VisionConfig {
        &self.config
    }
}

/// The multimodal projector: `linear`, or `mlp{N}x_gelu` (Linear, then (exact GELU, Linear) × (N − 1)).
#[derive(Debug, Clone)]
pub struct Projector {
    layers: Vec<Linear>,
}

impl Projector {
    /// `names` are the prefixes of the linear layers, in order.
    pub fn load(vb: &VarBuilder, names: &[String], dims: &[(usize, usize)]) -> Result<Self> {
        let layers = names
            .iter()
            .zip(dims)
            .map(|(n, &(i, o))| linear(i, o, vb.pp(n.as_str())))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Projector { layers })
    }

    /// `[.., mm_hidden]` → `[.., hidden]`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = x.gelu_erf()?;
            }
            x = layer.forward(&x)?;
        }
        Ok(x)
    }
}

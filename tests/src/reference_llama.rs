//! A plain f32 LLaMA decoder that drives a [`Sparsifier`] the way a real backend does.
//!
//! Follows `transformers` 4.37 `modeling_llama.py` (RMSNorm, rotate-half RoPE, causal softmax attention,
//! SwiGLU MLP) and the SparseVLM decoder loop (`modelling_sparse_llama.py`): at a pruning layer it hands
//! the sparsifier the rater rows' queries, every key and the rater rows' log-sum-exp (or the softmax rows),
//! continues with the compacted hidden states and the sparsifier's positions, keeps every layer's own KV
//! cache, and decodes with per-layer positions. It exists to check decisions against the golden fixtures;
//! it is written for clarity, not speed.

use std::path::Path;

use ndarray::{s, Array1, Array2};
use serde::Deserialize;
use sparsevlm_core::{CpuReference, CpuTensor, ModelDims, RaterAttention, ScoreSource, Sparsifier, TokenOrigin};

use crate::fixtures::{read_python_json, read_safetensors, Tensor};
use crate::{FixtureError, Result};

#[derive(Debug, Deserialize)]
struct TextConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    rope_theta: Option<f64>,
    rms_norm_eps: f32,
    vocab_size: usize,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    text_config: Option<TextConfig>,
    #[serde(flatten)]
    flat: Option<TextConfig>,
}

#[derive(Debug)]
struct Layer {
    input_norm: Array1<f32>,
    post_norm: Array1<f32>,
    q: Array2<f32>,    // [D, D]      (out, in)
    k: Array2<f32>,    // [kv, D]
    v: Array2<f32>,    // [kv, D]
    o: Array2<f32>,    // [D, D]
    gate: Array2<f32>, // [M, D]
    up: Array2<f32>,   // [M, D]
    down: Array2<f32>, // [D, M]
}

/// The reference decoder with its weights (upcast from the checkpoint's f16 to f32).
#[derive(Debug)]
pub struct ReferenceLlama {
    pub dims: ModelDims,
    rms_eps: f32,
    embed: Array2<f32>,   // [vocab, D]
    lm_head: Array2<f32>, // [vocab, D]
    norm: Array1<f32>,
    layers: Vec<Layer>,
    inv_freq: Vec<f32>, // [head_dim / 2]
}

/// Which form of the rater attention to hand to the sparsifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionForm {
    QkLse,
    Probs,
}

/// What a generation produced.
#[derive(Debug)]
pub struct Generation {
    /// Logits of the last prefill position. `[vocab]`
    pub prefill_logits: Vec<f32>,
    /// Greedy tokens.
    pub tokens: Vec<u32>,
    /// Logits behind each greedy token (the first one is `prefill_logits`). `[n][vocab]`
    pub step_logits: Vec<Vec<f32>>,
    /// Merged tokens created at each pruning layer, in cluster order: `(layer, [C][D])`.
    pub merged: Vec<(usize, Vec<Vec<f32>>)>,
}

/// Per-layer KV cache: post-RoPE keys and values. `[n_keys, kv_width]` each.
struct KvCache {
    k: Array2<f32>,
    v: Array2<f32>,
}

/// Queries, keys, values and output of one attention call.
struct AttentionOut {
    q: Array2<f32>,   // [n, D] post-RoPE
    k: Array2<f32>,   // [n, kv] post-RoPE
    v: Array2<f32>,   // [n, kv]
    out: Array2<f32>, // [n, D] before o_proj
    lse: Array2<f32>, // [H, n]
}

fn matrix(t: &Tensor) -> Result<Array2<f32>> {
    Array2::from_shape_vec((t.shape[0], t.shape[1]), t.data.clone())
        .map_err(|e| FixtureError::Parse { path: "weights".into(), message: e.to_string() })
}

impl ReferenceLlama {
    /// Loads the language model of a LLaVA checkpoint directory in either layout (`llava-hf` keys
    /// `language_model.model.*`, original LLaVA keys `model.*`).
    pub fn load(dir: &Path) -> Result<Self> {
        let config: ConfigJson = read_python_json(&dir.join("config.json"))?;
        let c = config
            .text_config
            .or(config.flat)
            .ok_or_else(|| FixtureError::Missing { what: "text config".into(), path: dir.display().to_string() })?;
        let tensors = read_safetensors(&dir.join("model.safetensors"))?;
        let (prefix, head) = if tensors.contains_key("language_model.model.embed_tokens.weight") {
            ("language_model.model.", "language_model.lm_head.weight")
        } else {
            ("model.", "lm_head.weight")
        };
        let get = |name: &str| {
            tensors
                .get(name)
                .ok_or_else(|| FixtureError::Missing { what: name.into(), path: dir.display().to_string() })
        };
        let vector = |name: &str| get(name).map(|t| Array1::from(t.data.clone()));
        let mut layers = Vec::new();
        for i in 0..c.num_hidden_layers {
            let p = format!("{prefix}layers.{i}.");
            layers.push(Layer {
                input_norm: vector(&format!("{p}input_layernorm.weight"))?,
                post_norm: vector(&format!("{p}post_attention_layernorm.weight"))?,
                q: matrix(get(&format!("{p}self_attn.q_proj.weight"))?)?,
                k: matrix(get(&format!("{p}self_attn.k_proj.weight"))?)?,
                v: matrix(get(&format!("{p}self_attn.v_proj.weight"))?)?,
                o: matrix(get(&format!("{p}self_attn.o_proj.weight"))?)?,
                gate: matrix(get(&format!("{p}mlp.gate_proj.weight"))?)?,
                up: matrix(get(&format!("{p}mlp.up_proj.weight"))?)?,
                down: matrix(get(&format!("{p}mlp.down_proj.weight"))?)?,
            });
        }
        let dims = ModelDims {
            n_layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            rope_theta: c.rope_theta.unwrap_or(1e4),
        };
        dims.validate()?;
        let d = dims.head_dim();
        // inv_freq = 1 / θ^(2i/d), as transformers computes it in f32.
        let inv_freq = (0..d / 2).map(|i| (1.0 / dims.rope_theta.powf(2.0 * i as f64 / d as f64)) as f32).collect();
        let embed = matrix(get(&format!("{prefix}embed_tokens.weight"))?)?;
        if embed.nrows() != c.vocab_size {
            return Err(FixtureError::Parse { path: dir.display().to_string(), message: "vocab size mismatch".into() });
        }
        Ok(ReferenceLlama {
            rms_eps: c.rms_norm_eps,
            embed,
            lm_head: matrix(get(head)?)?,
            norm: vector(&format!("{prefix}norm.weight"))?,
            layers,
            inv_freq,
            dims,
        })
    }

    /// The decoder input: token embeddings, with `image_features` (`[n_visual, D]`) in the visual rows.
    pub fn embed_prompt(&self, rows: &[Option<u32>], image_features: &[f32]) -> Array2<f32> {
        let d = self.dims.hidden;
        let mut x = Array2::zeros((rows.len(), d));
        let mut visual = 0;
        for (i, row) in rows.iter().enumerate() {
            match row {
                Some(id) => x.row_mut(i).assign(&self.embed.row(*id as usize)),
                None => {
                    let features = &image_features[visual * d..(visual + 1) * d];
                    x.row_mut(i).iter_mut().zip(features).for_each(|(x, f)| *x = *f);
                    visual += 1;
                }
            }
        }
        x
    }

    fn rms_norm(&self, x: &Array2<f32>, weight: &Array1<f32>) -> Array2<f32> {
        let mut out = x.clone();
        for mut row in out.rows_mut() {
            let var = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
            let inv = 1.0 / (var + self.rms_eps).sqrt();
            row.iter_mut().zip(weight).for_each(|(v, w)| *v = w * (*v * inv));
        }
        out
    }

    /// Rotate-half RoPE of every head of `x` (`[n, heads·d]`) at `positions`.
    fn rope(&self, x: &mut Array2<f32>, positions: &[i64]) {
        let d = self.dims.head_dim();
        let half = d / 2;
        for (mut row, &p) in x.rows_mut().into_iter().zip(positions) {
            let (cos, sin): (Vec<f32>, Vec<f32>) = self
                .inv_freq
                .iter()
                .map(|&f| {
                    let angle = (p as f32 * f) as f64;
                    (angle.cos() as f32, angle.sin() as f32)
                })
                .unzip();
            for head in row.as_slice_mut().into_iter().flat_map(|r| r.chunks_exact_mut(d)) {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * cos[i] - b * sin[i];
                    head[i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }

    /// Causal self-attention of `h` (normed, `[n, D]`). In decoding, `cache` receives the new keys and
    /// values first and the queries attend over all of it.
    fn attention(
        &self,
        layer: &Layer,
        h: &Array2<f32>,
        positions: &[i64],
        cache: Option<&mut KvCache>,
    ) -> Result<AttentionOut> {
        let (heads, kv_heads, d) = (self.dims.n_heads, self.dims.n_kv_heads, self.dims.head_dim());
        let mut q = h.dot(&layer.q.t()); // [n, D]
        let mut k = h.dot(&layer.k.t()); // [n, kv]
        let v = h.dot(&layer.v.t()); // [n, kv]
        self.rope(&mut q, positions);
        self.rope(&mut k, positions);
        let shape_error =
            |e: ndarray::ShapeError| FixtureError::Parse { path: "kv cache".into(), message: e.to_string() };
        let (keys, values) = match cache {
            Some(c) => {
                for (kr, vr) in k.rows().into_iter().zip(v.rows()) {
                    c.k.push_row(kr).map_err(shape_error)?;
                    c.v.push_row(vr).map_err(shape_error)?;
                }
                (c.k.view(), c.v.view())
            }
            None => (k.view(), v.view()),
        };
        let n = h.nrows();
        let offset = keys.nrows() - n; // query i sees keys 0..=offset + i
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = Array2::zeros((n, heads * d));
        let mut lse = Array2::zeros((heads, n));
        for head in 0..heads {
            let kvh = head / (heads / kv_heads);
            let qh = q.slice(s![.., head * d..(head + 1) * d]);
            let kh = keys.slice(s![.., kvh * d..(kvh + 1) * d]);
            let vh = values.slice(s![.., kvh * d..(kvh + 1) * d]);
            let mut scores = qh.dot(&kh.t()) * scale; // [n, n_keys]
            for (i, mut row) in scores.rows_mut().into_iter().enumerate() {
                let visible = offset + i + 1;
                let max = row.iter().take(visible).copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().take(visible).map(|&x| ((x - max) as f64).exp()).sum();
                lse[[head, i]] = max + sum.ln() as f32;
                for (j, x) in row.iter_mut().enumerate() {
                    *x = if j < visible { ((*x - max) as f64).exp() as f32 / sum as f32 } else { 0.0 };
                }
            }
            out.slice_mut(s![.., head * d..(head + 1) * d]).assign(&scores.dot(&vh));
        }
        Ok(AttentionOut { q, k, v, out, lse })
    }

    fn mlp(&self, layer: &Layer, x: &Array2<f32>) -> Array2<f32> {
        let h = self.rms_norm(x, &layer.post_norm);
        let mut gate = h.dot(&layer.gate.t()); // [n, M]
        let up = h.dot(&layer.up.t());
        gate.zip_mut_with(&up, |g, u| *g = *g / (1.0 + (-*g).exp()) * u);
        gate.dot(&layer.down.t())
    }

    fn logits(&self, x: &Array2<f32>) -> Vec<f32> {
        let last = x.slice(s![x.nrows() - 1.., ..]).to_owned();
        self.rms_norm(&last, &self.norm).dot(&self.lm_head.t()).into_raw_vec_and_offset().0
    }

    /// The rater attention of layer `layer_idx` on `h_in` (normed input of that layer), for `rows`.
    fn rater_inputs(&self, att: &AttentionOut, rows: &[usize], form: AttentionForm) -> Result<Vec<CpuTensor>> {
        let (heads, kv_heads, d) = (self.dims.n_heads, self.dims.n_kv_heads, self.dims.head_dim());
        let n = att.k.nrows();
        let mut q = Vec::with_capacity(heads * rows.len() * d); // [h, r, d]
        for head in 0..heads {
            for &r in rows {
                q.extend(att.q.slice(s![r, head * d..(head + 1) * d]).iter());
            }
        }
        let mut k = Vec::with_capacity(kv_heads * n * d); // [h_kv, n, d]
        for head in 0..kv_heads {
            for j in 0..n {
                k.extend(att.k.slice(s![j, head * d..(head + 1) * d]).iter());
            }
        }
        let lse: Vec<f32> =
            (0..heads).flat_map(|h| rows.iter().map(move |&r| (h, r))).map(|(h, r)| att.lse[[h, r]]).collect();
        let q = CpuTensor::new(vec![heads, rows.len(), d], q)?;
        let k = CpuTensor::new(vec![kv_heads, n, d], k)?;
        let lse = CpuTensor::new(vec![heads, rows.len()], lse)?;
        if form == AttentionForm::QkLse {
            return Ok(vec![q, k, lse]);
        }
        // probs[h, i, j] = exp(q·k·scale − lse), zero above the diagonal.   // [h, r, n]
        let scale = 1.0 / (d as f32).sqrt();
        let mut probs = Vec::with_capacity(heads * rows.len() * n);
        for head in 0..heads {
            let kvh = head / (heads / kv_heads);
            for (i, &r) in rows.iter().enumerate() {
                let qv = &q.data()[(head * rows.len() + i) * d..(head * rows.len() + i + 1) * d];
                for j in 0..n {
                    let kv = &k.data()[(kvh * n + j) * d..(kvh * n + j + 1) * d];
                    let dot: f32 = qv.iter().zip(kv).map(|(a, b)| a * b).sum();
                    probs.push(if j <= r { (dot * scale - lse.data()[head * rows.len() + i]).exp() } else { 0.0 });
                }
            }
        }
        Ok(vec![CpuTensor::new(vec![heads, rows.len(), n], probs)?])
    }

    /// Prefill with sparsification, then `n_new` greedy tokens.
    pub fn generate(
        &self,
        x0: Array2<f32>,
        sparsifier: &mut Sparsifier,
        n_new: usize,
        form: AttentionForm,
    ) -> Result<Generation> {
        let cpu = CpuReference;
        if sparsifier.needs_raters() {
            let embeddings = CpuTensor::new(vec![x0.nrows(), x0.ncols()], x0.clone().into_raw_vec_and_offset().0)?;
            sparsifier.select_raters(&cpu, &embeddings)?;
        }
        let mut x = x0;
        let mut caches: Vec<KvCache> = Vec::with_capacity(self.layers.len());
        let mut merged = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let positions = sparsifier.positions().to_vec();
            let att = self.attention(layer, &self.rms_norm(&x, &layer.input_norm), &positions, None)?;
            let y = &x + &att.out.dot(&layer.o.t());
            let y = &y + &self.mlp(layer, &y);
            caches.push(KvCache { k: att.k.clone(), v: att.v.clone() });
            x = y;
            let Some(request) = sparsifier.request(l)? else { continue };
            let source_att = match request.source {
                ScoreSource::ThisLayer => att,
                ScoreSource::NextLayer => {
                    let next = &self.layers[l + 1];
                    self.attention(next, &self.rms_norm(&x, &next.input_norm), &positions, None)?
                }
            };
            let inputs = self.rater_inputs(&source_att, &request.rater_rows, form)?;
            let attention = match inputs.as_slice() {
                [q, k, lse] => RaterAttention::QkLse { q, k, lse },
                [probs, ..] => RaterAttention::Probs { probs },
                [] => return Err(FixtureError::Missing { what: "rater attention".into(), path: "decoder".into() }),
            };
            let hidden = CpuTensor::new(vec![x.nrows(), x.ncols()], x.clone().into_raw_vec_and_offset().0)?;
            if let Some(pruned) = sparsifier.prune(&cpu, l, Some(attention), &hidden)? {
                let rows = pruned.plan.compaction.n_out();
                x = Array2::from_shape_vec((rows, self.dims.hidden), pruned.hidden.into_data())
                    .map_err(|e| FixtureError::Parse { path: "compaction".into(), message: e.to_string() })?;
                let new_tokens = pruned
                    .plan
                    .origins
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| matches!(o, TokenOrigin::Merged { layer, .. } if *layer == l));
                merged.push((l, new_tokens.map(|(row, _)| x.row(row).to_vec()).collect()));
            }
        }
        let prefill_logits = self.logits(&x);
        let mut step_logits = vec![prefill_logits.clone()];
        let mut tokens = vec![argmax(&prefill_logits)];
        for step in 0..n_new.saturating_sub(1) {
            let token = tokens[tokens.len() - 1] as usize;
            let mut x = self.embed.slice(s![token..token + 1, ..]).to_owned();
            for (l, layer) in self.layers.iter().enumerate() {
                let position = [sparsifier.decode_position(l, step)];
                let h = self.rms_norm(&x, &layer.input_norm);
                let att = self.attention(layer, &h, &position, Some(&mut caches[l]))?;
                let y = &x + &att.out.dot(&layer.o.t());
                x = &y + &self.mlp(layer, &y);
            }
            let logits = self.logits(&x);
            tokens.push(argmax(&logits));
            step_logits.push(logits);
        }
        Ok(Generation { prefill_logits, tokens, step_logits, merged })
    }
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32
}

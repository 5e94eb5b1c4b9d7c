//! The LLaMA decoder of LLaVA-1.5 (Vicuna) with SparseVLM hooks.
//!
//! Ports transformers 4.37 `models/llama/modeling_llama.py` (RMSNorm, rotate-half RoPE, grouped-query
//! attention, SwiGLU MLP) in the style of candle-transformers' `models/llama.rs`, with the three changes
//! SparseVLM needs (the decoder loop of the official `modelling_sparse_llama.py`):
//! - explicit per-token positions (renumbered or preserved after pruning, algorithm.md §2.7 / §4.1);
//! - a KV cache per layer, whose lengths differ once pruning starts;
//! - a pruning hook: after a pruning layer, the rater rows' queries, the layer's keys and the rater rows'
//!   log-sum-exp go to the [`Sparsifier`], never an `[H, L, L]` matrix, and the compacted hidden states
//!   continue into the next layer. During decoding every layer uses the sparsifier's position.

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::kv_cache::KvCache;
use candle_nn::{embedding, linear_no_bias, rms_norm, Embedding, Linear, RmsNorm, VarBuilder};
use sparsevlm_core::rope::rope_tables;
use sparsevlm_core::{RaterAttention, ScoreSource, Sparsifier};

use crate::config::TextConfig;
use crate::error::{Error, Result};
use crate::models::train_ops::{frozen_linear, softmax_last_dim};
use crate::numerics::CandleNumerics;
use crate::profile::span;

/// Cosine and sine tables of rotate-half RoPE for every position up to `len`.
#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor, // [len, head_dim / 2]
    sin: Tensor, // [len, head_dim / 2]
    len: usize,
}

impl Rope {
    fn new(head_dim: usize, theta: f64, len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let positions: Vec<i64> = (0..len as i64).collect();
        let (cos, sin) = rope_tables(&positions, head_dim, theta);
        let shape = (len, head_dim / 2);
        Ok(Rope {
            cos: Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
            len,
        })
    }

    /// Tables gathered at `positions`. `[n, head_dim / 2]` each.
    fn at(&self, positions: &[i64]) -> Result<(Tensor, Tensor)> {
        if let Some(&p) = positions.iter().find(|&&p| p < 0 || p as usize >= self.len) {
            return Err(Error::Input(format!("position {p} is outside the model's {} positions", self.len)));
        }
        let idx: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let idx = Tensor::new(idx.as_slice(), self.cos.device())?;
        Ok((self.cos.index_select(&idx, 0)?, self.sin.index_select(&idx, 0)?))
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// Post-RoPE queries and keys of one attention call, kept for the pruning hook.
struct QueryKey {
    q: Tensor, // [1, h, n, d]
    k: Tensor, // [1, h_kv, n_keys, d]
    /// Log-sum-exp of every query's scaled causal scores, when the fused attention computed it. `[n, h]` f32
    lse: Option<Tensor>,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let d = cfg.head_dim();
        Ok(Attention {
            q: linear_no_bias(cfg.hidden, cfg.heads * d, vb.pp("q_proj"))?,
            k: linear_no_bias(cfg.hidden, cfg.kv_heads * d, vb.pp("k_proj"))?,
            v: linear_no_bias(cfg.hidden, cfg.kv_heads * d, vb.pp("v_proj"))?,
            o: linear_no_bias(cfg.heads * d, cfg.hidden, vb.pp("o_proj"))?,
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: d,
        })
    }

    /// Post-RoPE queries and keys of `x` (normed, `[1, n, D]`). `[1, h, n, d]` and `[1, h_kv, n, d]`.
    fn query_key(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, n, _) = x.dims3()?;
        let q = self.q.forward(x)?.reshape((b, n, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let k = self.k.forward(x)?.reshape((b, n, self.kv_heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        Ok((q, k))
    }

    /// Causal attention of `x` (`[1, n, D]`) over the layer cache plus itself. `[1, n, D]`
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
        fused: bool,
    ) -> Result<(Tensor, QueryKey)> {
        let (b, n, _) = x.dims3()?;
        let device = x.device();
        let (q, k, v) = span("qkv+rope", device, || {
            let (q, k) = self.query_key(x, cos, sin)?;
            let v = self.v.forward(x)?.reshape((b, n, self.kv_heads, self.head_dim))?.transpose(1, 2)?.contiguous()?;
            Ok::<_, Error>((q, k, v))
        })?;
        let (k_all, v_all) = span("kv-cache", device, || Ok::<_, Error>(cache.append(&k, &v)?))?; // [1, h_kv, n_keys, d]
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        #[cfg(feature = "cuda")]
        if fused && crate::ops::cuda::attention_supported(&q, &k_all, &v_all) {
            // Flash-style kernel over the cache in place: no [h, n, n_keys] scores. out [1, n, h·d], lse [n, h]
            let (out, lse) =
                span("attention", device, || crate::ops::cuda::attention(&q, &k_all, &v_all, true, scale as f32))?;
            let out = span("o_proj", device, || self.o.forward(&out))?;
            return Ok((out, QueryKey { q, k: k_all, lse: Some(lse) }));
        }
        let n_keys = k_all.dim(2)?;
        let group = self.heads / self.kv_heads;
        let (kr, vr) = (repeat_kv(&k_all, group)?, repeat_kv(&v_all, group)?);
        let _ = fused; // only the CUDA build has the fused attention
        let scores = (q.to_dtype(DType::F32)?.matmul(&kr.to_dtype(DType::F32)?.t()?)? * scale)?; // [1, h, n, n_keys]
        let scores = if n > 1 { scores.broadcast_add(&causal_mask(n, n_keys, x.device())?)? } else { scores };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(vr.dtype())?;
        let out = probs.matmul(&vr)?.transpose(1, 2)?.reshape((b, n, self.heads * self.head_dim))?;
        let out = span("o_proj", device, || self.o.forward(&out))?;
        Ok((out, QueryKey { q, k: k_all, lse: None }))
    }
}

impl Attention {
    /// Differentiable self-attention over the whole sequence under `mask` (`[n, n]`, 0 or −∞; training, no
    /// cache).
    fn forward_train(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let split = |t: Tensor, heads: usize| -> candle_core::Result<Tensor> {
            t.reshape((b, n, heads, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = candle_nn::rotary_emb::rope_slow(&split(frozen_linear(x, self.q.weight())?, self.heads)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_slow(&split(frozen_linear(x, self.k.weight())?, self.kv_heads)?, cos, sin)?;
        let v = split(frozen_linear(x, self.v.weight())?, self.kv_heads)?;
        let group = self.heads / self.kv_heads;
        let (k, v) = (repeat_kv(&k, group)?, repeat_kv(&v, group)?);
        // The scale is applied to q ([b, h, n, d]) rather than to the scores ([b, h, n, n]).
        let q = (q / (self.head_dim as f64).sqrt())?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(&mask.to_dtype(q.dtype())?)?; // [b, h, n, n]
        let probs = softmax_last_dim(&scores)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, self.heads * self.head_dim))?;
        frozen_linear(&out, self.o.weight())
    }
}

/// `0` where query `i` may see key `j` (`j ≤ i + n_keys − n`), `−∞` elsewhere. `[n, n_keys]`
fn causal_mask(n: usize, n_keys: usize, device: &Device) -> Result<Tensor> {
    let offset = n_keys - n;
    let mask: Vec<f32> =
        (0..n).flat_map(|i| (0..n_keys).map(move |j| if j <= i + offset { 0.0 } else { f32::NEG_INFINITY })).collect();
    Ok(Tensor::from_vec(mask, (n, n_keys), device)?)
}

/// `[b, h_kv, n, d]` → `[b, h_kv·group, n, d]` (each kv head serves `group` query heads).
fn repeat_kv(x: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, h, n, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, h, group, n, d))?.reshape((b, h * group, n, d))?)
}

#[derive(Debug, Clone)]
struct Block {
    attn: Attention,
    gate: Linear,
    up: Linear,
    down: Linear,
    input_norm: RmsNorm,
    post_norm: RmsNorm,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let eps = cfg.rms_norm_eps;
        Ok(Block {
            attn: Attention::load(vb.pp("self_attn"), cfg)?,
            gate: linear_no_bias(cfg.hidden, cfg.intermediate, vb.pp("mlp.gate_proj"))?,
            up: linear_no_bias(cfg.hidden, cfg.intermediate, vb.pp("mlp.up_proj"))?,
            down: linear_no_bias(cfg.intermediate, cfg.hidden, vb.pp("mlp.down_proj"))?,
            input_norm: rms_norm(cfg.hidden, eps, vb.pp("input_layernorm"))?,
            post_norm: rms_norm(cfg.hidden, eps, vb.pp("post_attention_layernorm"))?,
        })
    }

    fn forward_train(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward_train(&self.input_norm.forward_diff(x)?, cos, sin, mask)?)?;
        let h = self.post_norm.forward_diff(&x)?;
        let gated = (frozen_linear(&h, self.gate.weight())?.silu()? * frozen_linear(&h, self.up.weight())?)?;
        Ok((x + frozen_linear(&gated, self.down.weight())?)?)
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: &mut KvCache,
        fused: bool,
    ) -> Result<(Tensor, QueryKey)> {
        let device = x.device();
        let normed = span("norms+residuals", device, || self.input_norm.forward(x))?;
        let (attn, qk) = self.attn.forward(&normed, cos, sin, cache, fused)?;
        let (x, h) = span("norms+residuals", device, || {
            let x = (x + attn)?;
            let h = self.post_norm.forward(&x)?;
            Ok::<_, candle_core::Error>((x, h))
        })?;
        let mlp = span("mlp", device, || self.down.forward(&(self.gate.forward(&h)?.silu()? * self.up.forward(&h)?)?))?;
        let x = span("norms+residuals", device, || x + mlp)?;
        Ok((x, qk))
    }
}

/// The decoder.
#[derive(Debug, Clone)]
pub struct Llama {
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    /// Whether CUDA runs our fused kernels (attention and selection), else plain candle ops.
    fused: bool,
    pub config: TextConfig,
}

/// One KV cache per layer, each allocated when its layer first runs, for the tokens that layer holds after
/// the prefill plus the decoding room: a layer after a pruning layer never holds the dense length.
#[derive(Debug, Clone)]
pub struct LayerCaches {
    caches: Vec<Option<KvCache>>,
    decode_room: usize,
}

impl LayerCaches {
    /// Per-layer lengths (0 for a layer that has not run).
    pub fn lens(&self) -> Vec<usize> {
        self.caches.iter().map(|c| c.as_ref().map_or(0, KvCache::current_seq_len)).collect()
    }

    /// Bytes of the key and value buffers allocated so far, over every layer (measured from the
    /// buffers themselves, not computed from the lengths).
    pub fn allocated_bytes(&self) -> usize {
        self.caches
            .iter()
            .flatten()
            .flat_map(|c| [c.k_cache().all_data(), c.v_cache().all_data()])
            .flatten()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Layer `l`'s cache, allocated on its first use for `n_first` tokens plus the decoding room.
    fn layer(&mut self, l: usize, n_first: usize) -> Result<&mut KvCache> {
        let room = self.decode_room;
        let n_layers = self.caches.len();
        let slot =
            self.caches.get_mut(l).ok_or_else(|| Error::Input(format!("layer {l} of a {n_layers}-layer cache")))?;
        Ok(slot.get_or_insert_with(|| KvCache::new(2, n_first + room)))
    }
}

impl Llama {
    /// Loads the decoder from `vb` (`prefix`: where `embed_tokens` lives, `head`: the `lm_head` prefix).
    pub fn load(vb: &VarBuilder, prefix: &str, head: &str, cfg: &TextConfig) -> Result<Self> {
        let m = vb.pp(prefix.trim_end_matches('.'));
        let embed = embedding(cfg.vocab, cfg.hidden, m.pp("embed_tokens"))?;
        let blocks =
            (0..cfg.layers).map(|i| Block::load(m.pp(format!("layers.{i}")), cfg)).collect::<Result<Vec<_>>>()?;
        let norm = rms_norm(cfg.hidden, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            linear_no_bias(cfg.hidden, cfg.vocab, vb.pp(head.trim_end_matches('.')))?
        };
        let rope =
            Rope::new(cfg.head_dim(), cfg.rope_theta, cfg.max_position_embeddings.max(4096), vb.dtype(), vb.device())?;
        Ok(Llama { embed, blocks, norm, lm_head, rope, fused: true, config: cfg.clone() })
    }

    /// Uses our fused CUDA kernels (the default) or plain candle ops.
    pub fn set_fused_kernels(&mut self, on: bool) {
        self.fused = on;
    }

    /// Whether the fused CUDA kernels are on.
    pub fn fused_kernels(&self) -> bool {
        self.fused
    }

    /// Fresh, unallocated caches; each layer's holds its prefill length plus `decode_room` tokens.
    pub fn caches(&self, decode_room: usize) -> LayerCaches {
        LayerCaches { caches: vec![None; self.blocks.len()], decode_room }
    }

    /// Token embeddings. `[n]` ids → `[n, D]`
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(ids, self.embed.embeddings().device())?;
        Ok(self.embed.forward(&ids)?)
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(1)?;
        let last = x.i((.., n - 1..n, ..))?;
        span("lm_head", x.device(), || {
            Ok(self.lm_head.forward(&self.norm.forward(&last)?)?.flatten_all()?.to_dtype(DType::F32)?)
        })
    }

    /// Prefill of `x` (`[L, D]`, the spliced prompt embeddings) with sparsification. Returns the logits
    /// of the last position, `[vocab]`.
    pub fn prefill(
        &self,
        x: Tensor,
        sparsifier: &mut Sparsifier,
        numerics: &CandleNumerics,
        caches: &mut LayerCaches,
    ) -> Result<Tensor> {
        Ok(self.prefill_timed(x, sparsifier, numerics, caches)?.0)
    }

    /// [`Llama::prefill`], also returning the milliseconds spent selecting tokens (rater selection, rater
    /// inputs, scoring, top-k, recycling and compaction), measured between device synchronisations.
    pub fn prefill_timed(
        &self,
        x: Tensor,
        sparsifier: &mut Sparsifier,
        numerics: &CandleNumerics,
        caches: &mut LayerCaches,
    ) -> Result<(Tensor, f64)> {
        let device = x.device().clone();
        let mut selection = std::time::Duration::ZERO;
        if sparsifier.needs_raters() {
            let started = std::time::Instant::now();
            sparsifier.select_raters(numerics, &x)?;
            selection += started.elapsed();
        }
        let mut x = x.unsqueeze(0)?; // [1, L, D]
                                     // RoPE tables at the current positions, gathered again only after a pruning layer changes them.
        let mut tables: Option<(Vec<i64>, Tensor, Tensor)> = None;
        for (l, block) in self.blocks.iter().enumerate() {
            let positions = sparsifier.positions();
            let (cos, sin) = match &tables {
                Some((p, cos, sin)) if p.as_slice() == positions => (cos.clone(), sin.clone()),
                _ => {
                    let (cos, sin) = span("rope-tables", &device, || self.rope.at(positions))?;
                    tables = Some((positions.to_vec(), cos.clone(), sin.clone()));
                    (cos, sin)
                }
            };
            let cache = caches.layer(l, x.dim(1)?)?;
            let (y, qk) = block.forward(&x, &cos, &sin, cache, self.fused)?;
            x = y;
            let Some(request) = sparsifier.request(l)? else { continue };
            device.synchronize()?;
            let started = std::time::Instant::now();
            let hidden = x.squeeze(0)?; // [L, D]
            let pruned = if request.needs_attention {
                let qk = match request.source {
                    ScoreSource::ThisLayer => qk,
                    ScoreSource::NextLayer => {
                        let next = &self.blocks[l + 1];
                        let (q, k) = next.attn.query_key(&next.input_norm.forward(&x)?, &cos, &sin)?;
                        QueryKey { q, k, lse: None }
                    }
                };
                let (q, k, lse) = span("rater-inputs", &device, || rater_inputs(&qk, &request.rater_rows))?;
                let attention = RaterAttention::QkLse { q: &q, k: &k, lse: &lse };
                span("prune", &device, || Ok::<_, Error>(sparsifier.prune(numerics, l, Some(attention), &hidden)?))?
            } else {
                span("prune", &device, || Ok::<_, Error>(sparsifier.prune(numerics, l, None, &hidden)?))?
            };
            if let Some(p) = pruned {
                x = p.hidden.unsqueeze(0)?;
            }
            device.synchronize()?;
            selection += started.elapsed();
        }
        Ok((self.logits(&x)?, selection.as_secs_f64() * 1e3))
    }

    /// Differentiable dense forward of `x` (`[1, L, D]`) at positions `0..L`, for training the projector:
    /// only differentiable ops, no cache, no pruning. Returns the final normed hidden states `[1, L, D]`.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(1)?;
        let positions: Vec<i64> = (0..n as i64).collect();
        self.forward_masked(x, &positions, &causal_mask(n, n, x.device())?)
    }

    /// Differentiable dense forward of `x` (`[1, n, D]`) at explicit `positions` under an attention `mask`
    /// (`[n, n]`, 0 where a query may see a key, −∞ elsewhere). Several sequences packed into one share
    /// a prefix this way (training). Returns the final normed hidden states `[1, n, D]`.
    pub fn forward_masked(&self, x: &Tensor, positions: &[i64], mask: &Tensor) -> Result<Tensor> {
        let n = x.dim(1)?;
        if positions.len() != n || mask.dims() != [n, n] {
            return Err(Error::Input(format!(
                "a packed forward of {n} tokens got {} positions and a {:?} mask",
                positions.len(),
                mask.dims()
            )));
        }
        let (cos, sin) = self.rope.at(positions)?;
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward_train(&x, &cos, &sin, mask)?;
        }
        Ok(self.norm.forward_diff(&x)?)
    }

    /// Logits of hidden states (differentiable with respect to `hidden` only). `[.., D]` → `[.., vocab]`
    pub fn lm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        frozen_linear(hidden, self.lm_head.weight())
    }

    /// One decoding step for the `step`-th generated token. Returns `[vocab]` logits.
    pub fn decode(&self, token: u32, step: usize, sparsifier: &Sparsifier, caches: &mut LayerCaches) -> Result<Tensor> {
        let mut x = self.embed(&[token])?.unsqueeze(0)?; // [1, 1, D]
        let device = x.device().clone();
        // Every layer's position for this token in one gather (layers differ after renumbering). [layers, d/2]
        let positions: Vec<i64> = (0..self.blocks.len()).map(|l| sparsifier.decode_position(l, step)).collect();
        let (cos_all, sin_all) = span("rope-tables", &device, || self.rope.at(&positions))?;
        for (l, block) in self.blocks.iter().enumerate() {
            let (cos, sin) = (cos_all.narrow(0, l, 1)?, sin_all.narrow(0, l, 1)?);
            x = block.forward(&x, &cos, &sin, caches.layer(l, 1)?, self.fused)?.0;
        }
        self.logits(&x)
    }
}

/// The rater rows' queries, every key and the rater rows' log-sum-exp over their causal rows, in f32:
/// `[h, r, d]`, `[h_kv, n, d]`, `[h, r]`. The log-sum-exp comes from the fused attention when it ran, else
/// from the rater rows' scores (`[h, r, n]`, never `[h, n, n]`).
fn rater_inputs(qk: &QueryKey, rows: &[usize]) -> Result<(Tensor, Tensor, Tensor)> {
    let q = qk.q.squeeze(0)?.to_dtype(DType::F32)?; // [h, n, d]
    let k = qk.k.squeeze(0)?.to_dtype(DType::F32)?; // [h_kv, n, d]
    let (h, _, d) = q.dims3()?;
    let (h_kv, n, _) = k.dims3()?;
    let idx = Tensor::new(rows.iter().map(|&r| r as u32).collect::<Vec<_>>().as_slice(), q.device())?;
    let q_r = q.index_select(&idx, 1)?.contiguous()?; // [h, r, d]
    if let Some(lse) = &qk.lse {
        let lse_r = lse.index_select(&idx, 0)?.t()?.contiguous()?; // [h, r]
        return Ok((q_r, k.contiguous()?, lse_r));
    }
    let k_rep = repeat_kv(&k.unsqueeze(0)?, h / h_kv)?.squeeze(0)?; // [h, n, d]
    let scores = (q_r.matmul(&k_rep.t()?)? / (d as f64).sqrt())?; // [h, r, n]
    let mask: Vec<f32> =
        rows.iter().flat_map(|&r| (0..n).map(move |j| if j <= r { 0.0 } else { f32::NEG_INFINITY })).collect();
    let scores = scores.broadcast_add(&Tensor::from_vec(mask, (rows.len(), n), q.device())?)?;
    let max = scores.max_keepdim(D::Minus1)?;
    let lse = (scores.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + max)?.squeeze(D::Minus1)?; // [h, r]
    Ok((q_r, k.contiguous()?, lse))
}

//! The SmolLM2 decoder (LLaMA architecture) on wgpu, with per-layer KV caches, explicit positions and the
//! SparseVLM pruning hook.
//!
//! Ports Hugging Face transformers' `modeling_llama.py` (RMSNorm, rotate-half RoPE, GQA attention, SwiGLU)
//! with the three changes of the native decoder (`native-cuda/src/models/llama.rs`): each layer owns a KV
//! cache whose length depends on the pruning before it; every token carries the position the sparsifier
//! gives it; after a pruning layer the rater rows' queries, the keys and the rater log-sum-exp go to the
//! core's sparsifier, which returns the compacted hidden states (official code: `modelling_sparse_llama.py`).

use sparsevlm_core::rope::rope_tables;
use sparsevlm_core::{ModelDims, RaterAttention, ScoreSource, Sparsifier};

use crate::bundle::LlmConfig;
use crate::context::GpuContext;
use crate::error::{Result, WebError};
use crate::model::weights::WeightSource;
use crate::numerics::WgpuNumerics;
use crate::ops;
use crate::tensor::{DType, GpuTensor};
use crate::weight::Weight;

#[derive(Debug)]
struct Block {
    input_norm: GpuTensor,
    q: Weight,
    k: Weight,
    v: Weight,
    o: Weight,
    post_norm: GpuTensor,
    gate: Weight,
    up: Weight,
    down: Weight,
}

/// One layer's key and value cache, `[capacity, kv_heads, head_dim]` each, allocated when the layer first
/// runs for the tokens it holds after the prefill plus the decoding room: a layer after a pruning layer
/// never holds the dense length.
#[derive(Debug)]
pub struct KvCache {
    buffers: Option<(GpuTensor, GpuTensor)>,
    len: usize,
    decode_room: usize,
}

impl KvCache {
    /// Bytes of the key and value buffers allocated (0 before the layer runs).
    pub fn allocated_bytes(&self) -> u64 {
        self.buffers.as_ref().map_or(0, |(k, v)| k.byte_len() + v.byte_len())
    }
}

/// Post-RoPE queries and keys of a layer, and the queries' log-sum-exp: `[n, h, d]`, `[n, h_kv, d]`, `[n, h]`.
struct QueryKey {
    q: GpuTensor,
    k: GpuTensor,
    lse: GpuTensor,
}

/// The decoder.
#[derive(Debug)]
pub struct Llm {
    pub config: LlmConfig,
    embed: Weight,
    blocks: Vec<Block>,
    norm: GpuTensor,
    lm_head: Weight,
}

impl Llm {
    /// Loads the decoder tensors (`model.*`, `lm_head.weight` when untied) of a bundle.
    pub fn load(ctx: &GpuContext, src: &WeightSource<'_>) -> Result<Self> {
        let c = src.config.llm.clone();
        if c.heads == 0 || c.kv_heads == 0 || !c.hidden.is_multiple_of(c.heads) || !c.heads.is_multiple_of(c.kv_heads) {
            return Err(WebError::Weights(format!("inconsistent decoder configuration: {c:?}")));
        }
        let (h, kv) = (c.hidden, c.hidden / c.heads * c.kv_heads);
        let blocks = (0..c.layers)
            .map(|i| {
                let n = format!("model.layers.{i}");
                Ok(Block {
                    input_norm: src.vector(ctx, &format!("{n}.input_layernorm.weight"), h)?,
                    q: src.matrix(ctx, &format!("{n}.self_attn.q_proj.weight"), h, h)?,
                    k: src.matrix(ctx, &format!("{n}.self_attn.k_proj.weight"), kv, h)?,
                    v: src.matrix(ctx, &format!("{n}.self_attn.v_proj.weight"), kv, h)?,
                    o: src.matrix(ctx, &format!("{n}.self_attn.o_proj.weight"), h, h)?,
                    post_norm: src.vector(ctx, &format!("{n}.post_attention_layernorm.weight"), h)?,
                    gate: src.matrix(ctx, &format!("{n}.mlp.gate_proj.weight"), c.intermediate, h)?,
                    up: src.matrix(ctx, &format!("{n}.mlp.up_proj.weight"), c.intermediate, h)?,
                    down: src.matrix(ctx, &format!("{n}.mlp.down_proj.weight"), h, c.intermediate)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = src.matrix(ctx, "model.embed_tokens.weight", c.vocab, h)?;
        let lm_head = if c.tied_embeddings { embed.clone() } else { src.matrix(ctx, "lm_head.weight", c.vocab, h)? };
        Ok(Self { norm: src.vector(ctx, "model.norm.weight", h)?, embed, blocks, lm_head, config: c })
    }

    /// The dimensions the sparsifier plans with.
    pub fn dims(&self) -> ModelDims {
        let c = &self.config;
        ModelDims {
            n_layers: c.layers,
            hidden: c.hidden,
            intermediate: c.intermediate,
            n_heads: c.heads,
            n_kv_heads: c.kv_heads,
            rope_theta: f64::from(c.rope_theta),
        }
    }

    fn head_dim(&self) -> usize {
        self.config.hidden / self.config.heads
    }

    /// Unallocated caches, one per layer; each holds its layer's prefill length plus `decode_room` tokens.
    pub fn caches(&self, decode_room: usize) -> Vec<KvCache> {
        (0..self.blocks.len()).map(|_| KvCache { buffers: None, len: 0, decode_room }).collect()
    }

    /// Token embeddings. `[n]` ids → `[n, D]`
    pub fn embed(&self, ctx: &GpuContext, ids: &[u32]) -> Result<GpuTensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.config.vocab) {
            return Err(WebError::Input(format!("token id {bad} is outside the vocabulary of {}", self.config.vocab)));
        }
        ops::embed(ctx, &self.embed, ids)
    }

    /// Queries (after RoPE) and keys of `block` for the normed input `y` `[n, D]`.
    fn query_key(
        &self,
        ctx: &GpuContext,
        block: &Block,
        y: &GpuTensor,
        rope: &(GpuTensor, GpuTensor),
    ) -> Result<(GpuTensor, GpuTensor)> {
        let (n, d) = (y.shape()[0], self.head_dim());
        let q = ops::linear(ctx, y, &block.q, None)?.reshape(&[n, self.config.heads, d])?;
        let k = ops::linear(ctx, y, &block.k, None)?.reshape(&[n, self.config.kv_heads, d])?;
        Ok((ops::rope(ctx, &q, &rope.0, &rope.1)?, ops::rope(ctx, &k, &rope.0, &rope.1)?))
    }

    /// One decoder layer over `x` `[n, D]` at `positions`, appending to `cache`.
    fn block(
        &self,
        ctx: &GpuContext,
        block: &Block,
        x: &GpuTensor,
        positions: &[i64],
        cache: &mut KvCache,
    ) -> Result<(GpuTensor, QueryKey)> {
        let c = &self.config;
        let (n, d) = (x.shape()[0], self.head_dim());
        let rope = self.rope(ctx, positions)?;
        let y = ops::rms_norm(ctx, x, &block.input_norm, c.rms_norm_eps)?;
        let (q, k) = self.query_key(ctx, block, &y, &rope)?;
        let v = ops::linear(ctx, &y, &block.v, None)?.reshape(&[n, c.kv_heads, d])?;
        let (cache_k, cache_v) = match &mut cache.buffers {
            Some(buffers) => &*buffers,
            empty @ None => {
                let shape = [n + cache.decode_room, c.kv_heads, d];
                &*empty.insert((ctx.empty(&shape, DType::F32)?, ctx.empty(&shape, DType::F32)?))
            }
        };
        let capacity = cache_k.shape()[0];
        if cache.len + n > capacity {
            return Err(WebError::Input(format!("the KV cache holds {capacity} tokens; {} do not fit", cache.len + n)));
        }
        let row_bytes = (c.kv_heads * d * 4) as u64;
        ctx.copy(&k, 0, cache_k, cache.len as u64 * row_bytes, k.byte_len());
        ctx.copy(&v, 0, cache_v, cache.len as u64 * row_bytes, v.byte_len());
        cache.len += n;
        let keys = cache_k.prefix(cache.len)?;
        let values = cache_v.prefix(cache.len)?;
        let (attn, lse) = ops::attention(ctx, &q, &keys, &values, true)?; // [n, h, d], [n, h]
        let attn = ops::linear(ctx, &attn.reshape(&[n, c.hidden])?, &block.o, None)?;
        let x = ops::add(ctx, x, &attn)?;
        let y = ops::rms_norm(ctx, &x, &block.post_norm, c.rms_norm_eps)?;
        let gated =
            ops::silu_mul(ctx, &ops::linear(ctx, &y, &block.gate, None)?, &ops::linear(ctx, &y, &block.up, None)?)?;
        let x = ops::add(ctx, &x, &ops::linear(ctx, &gated, &block.down, None)?)?;
        Ok((x, QueryKey { q, k: keys, lse }))
    }

    fn rope(&self, ctx: &GpuContext, positions: &[i64]) -> Result<(GpuTensor, GpuTensor)> {
        let d = self.head_dim();
        let (cos, sin) = rope_tables(positions, d, f64::from(self.config.rope_theta));
        Ok((ctx.upload(&[positions.len(), d / 2], &cos)?, ctx.upload(&[positions.len(), d / 2], &sin)?))
    }

    /// Prefill of the spliced prompt embeddings `x` `[L, D]` with sparsification. Returns the hidden state
    /// of the last position after the final norm, `[1, D]`.
    pub async fn prefill(
        &self,
        ctx: &GpuContext,
        x: GpuTensor,
        sparsifier: &mut Sparsifier,
        caches: &mut [KvCache],
    ) -> Result<GpuTensor> {
        let numerics = WgpuNumerics::new(ctx);
        if sparsifier.needs_raters() {
            sparsifier.select_raters_async(&numerics, &x).await?;
        }
        let mut x = x;
        for (l, (block, cache)) in self.blocks.iter().zip(caches.iter_mut()).enumerate() {
            let positions = sparsifier.positions().to_vec();
            let (y, qk) = self.block(ctx, block, &x, &positions, cache)?;
            x = y;
            let Some(request) = sparsifier.request(l)? else { continue };
            let pruned = if request.needs_attention {
                let qk = match request.source {
                    ScoreSource::ThisLayer => qk,
                    ScoreSource::NextLayer => {
                        let next = self.blocks.get(l + 1).ok_or_else(|| {
                            WebError::Input(format!("layer {l} scores with the next layer, which does not exist"))
                        })?;
                        let rope = self.rope(ctx, &positions)?;
                        let y = ops::rms_norm(ctx, &x, &next.input_norm, self.config.rms_norm_eps)?;
                        let (q, k) = self.query_key(ctx, next, &y, &rope)?;
                        // The next layer's values are not needed: its log-sum-exp depends on Q and K only.
                        let (_, lse) = ops::attention(ctx, &q, &k, &k, true)?;
                        QueryKey { q, k, lse }
                    }
                };
                let (q, k, lse) = self.rater_inputs(ctx, &qk, &request.rater_rows)?;
                let attention = RaterAttention::QkLse { q: &q, k: &k, lse: &lse };
                sparsifier.prune_async(&numerics, l, Some(attention), &x).await?
            } else {
                sparsifier.prune_async(&numerics, l, None, &x).await?
            };
            if let Some(p) = pruned {
                x = p.hidden;
            }
        }
        let last = x.shape()[0] - 1;
        let x = ops::select_rows(ctx, &x, &[last as u32])?;
        ops::rms_norm(ctx, &x, &self.norm, self.config.rms_norm_eps)
    }

    /// The rater rows' queries `[h, r, d]`, every key `[h_kv, n, d]` and the rater rows' log-sum-exp `[h, r]`.
    fn rater_inputs(
        &self,
        ctx: &GpuContext,
        qk: &QueryKey,
        rows: &[usize],
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        let rows: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let r = rows.len();
        let h = self.config.heads;
        let q = ops::heads_first(ctx, &ops::select_rows(ctx, &qk.q, &rows)?)?; // [h, r, d]
        let k = ops::heads_first(ctx, &qk.k)?; // [h_kv, n, d]
        let lse = ops::select_rows(ctx, &qk.lse, &rows)?.reshape(&[r, h, 1])?; // [r, h, 1]
        let lse = ops::heads_first(ctx, &lse)?.reshape(&[h, r])?;
        Ok((q, k, lse))
    }

    /// One decoding step for `token`, the `step`-th generated token. Returns the final normed hidden
    /// state `[1, D]`.
    pub fn decode(
        &self,
        ctx: &GpuContext,
        token: u32,
        step: usize,
        sparsifier: &Sparsifier,
        caches: &mut [KvCache],
    ) -> Result<GpuTensor> {
        let mut x = self.embed(ctx, &[token])?;
        for (l, (block, cache)) in self.blocks.iter().zip(caches.iter_mut()).enumerate() {
            x = self.block(ctx, block, &x, &[sparsifier.decode_position(l, step)], cache)?.0;
        }
        ops::rms_norm(ctx, &x, &self.norm, self.config.rms_norm_eps)
    }

    /// Logits of a final hidden state. `[1, D]` → `[1, vocab]`
    pub fn logits(&self, ctx: &GpuContext, hidden: &GpuTensor) -> Result<GpuTensor> {
        ops::linear(ctx, hidden, &self.lm_head, None)
    }
}

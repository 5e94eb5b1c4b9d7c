//! The per-request sparsifier: the state machine a decoder calls at each layer.
//!
//! Ports the pruning branch of the decoder loop of `modelling_sparse_llama.py` (`LlamaDynamicvitModel.forward`,
//! V1 L215–300, V15/V20 L200–320): raters once on the input embeddings, then at each pruning layer the
//! significance, keep count, top-k, recycling, compaction and new positions (algorithm.md §1 skeleton).
//!
//! The protocol, for one prompt:
//! 1. [`Sparsifier::new`] resolves the method for this prompt's layout.
//! 2. If [`Sparsifier::needs_raters`], call [`Sparsifier::select_raters`] with the layer-0 input embeddings.
//! 3. After every decoder layer `l`, ask [`Sparsifier::request`]. When it returns a request, hand the rater
//!    rows' attention (Q, all K and LSE of layer `l`, or of layer `l + 1` computed on the output when the
//!    request says [`ScoreSource::NextLayer`]) and the layer output to [`Sparsifier::prune`]. Continue with
//!    the compacted hidden states and [`Sparsifier::positions`]. Layer `l`'s own KV cache keeps every token.
//! 4. During decoding, [`Sparsifier::decode_position`] gives each layer's RoPE position.

use crate::accounting::Accounting;
use crate::error::{Result, SparseError};
use crate::gravity::GravityTable;
use crate::layout::TokenLayout;
use crate::method::SparseConfig;
use crate::model::ModelDims;
use crate::numerics::{
    complete_now, AsyncNumerics, GravityInputs, Numerics, RaterAttention, RaterQuery, Ready, Reduction,
};
use crate::plan::{CompactionPlan, PositionMode, PrunePlan, TokenOrigin};
use crate::raters::{self, RaterSelection};
use crate::recipe::{KeepRule, Recipe, ScoreSource, Scorer, Stage};
use crate::recycle::{self, Clustering};
use crate::schedule::{self, KeepDecision, VisualCounts};
use crate::score;
use crate::trace::{LayerEvent, PruneTrace};
use crate::{rank, rng, select};

/// What the decoder must provide at a pruning layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    pub layer: usize,
    /// Whose queries and keys score the visual tokens.
    pub source: ScoreSource,
    /// Rows whose queries and log-sum-exp are needed (empty when no attention is needed).
    pub rater_rows: Vec<usize>,
    /// Rows of the visual tokens (their keys).
    pub visual_rows: Vec<usize>,
    /// False for the random baseline, which needs only the hidden states.
    pub needs_attention: bool,
}

/// The result of a pruning layer that removed tokens.
#[derive(Debug)]
pub struct Pruned<T> {
    pub plan: PrunePlan,
    /// Input of the next layer. `[L', hidden]`
    pub hidden: T,
}

#[derive(Debug)]
enum RaterState {
    NotNeeded,
    Pending,
    Selected(RaterSelection),
}

/// The sparsification state of one prompt.
#[derive(Debug)]
pub struct Sparsifier {
    dims: ModelDims,
    layout: TokenLayout,
    recipe: Recipe,
    gravity: Option<GravityTable>,
    raters: RaterState,
    origins: Vec<TokenOrigin>,
    positions: Vec<i64>,
    visual_rows: Vec<usize>,
    next_stage: usize,
    trace: PruneTrace,
}

impl Sparsifier {
    /// Resolves `config` for a prompt with `layout` on a model with `dims`.
    pub fn new(config: &SparseConfig, dims: &ModelDims, layout: TokenLayout) -> Result<Self> {
        let recipe = Recipe::resolve(config, dims, layout.n_visual())?;
        let seq_len = layout.seq_len();
        let gravity =
            recipe.gravity.then(|| GravityTable::new(dims.head_dim(), dims.rope_theta, seq_len, recipe.gravity_floor));
        let raters = if recipe.scorer == Scorer::TextRaters && !recipe.stages.is_empty() {
            RaterState::Pending
        } else {
            RaterState::NotNeeded
        };
        let mut trace = PruneTrace {
            recipe: recipe.clone(),
            seq_len,
            n_visual: layout.n_visual(),
            raters: None,
            skipped: None,
            events: Vec::new(),
        };
        if recipe.scorer == Scorer::LastToken && layout.text_after_images().is_empty() {
            trace.skipped = Some("the prompt ends with an image: no token after it can rate the visual tokens".into());
        }
        Ok(Sparsifier {
            dims: dims.clone(),
            visual_rows: layout.visual_indices(),
            origins: (0..seq_len).map(TokenOrigin::Input).collect(),
            positions: (0..seq_len as i64).collect(),
            layout,
            recipe,
            gravity,
            raters,
            next_stage: 0,
            trace,
        })
    }

    /// The model dimensions this prompt was resolved for.
    pub fn dims(&self) -> &ModelDims {
        &self.dims
    }

    /// The prompt's layout before pruning.
    pub fn layout(&self) -> &TokenLayout {
        &self.layout
    }

    /// The resolved method.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Whether [`Sparsifier::select_raters`] must run before the first layer.
    pub fn needs_raters(&self) -> bool {
        matches!(self.raters, RaterState::Pending)
    }

    /// Selects the text raters from the input embeddings of the whole prompt (`[seq_len, hidden]`).
    pub fn select_raters<N: Numerics>(&mut self, numerics: &N, embeddings: &N::Tensor) -> Result<()> {
        complete_now(self.select_raters_async(&Ready(numerics), embeddings))?
    }

    /// [`Sparsifier::select_raters`] with numerics that answer asynchronously.
    pub async fn select_raters_async<N: AsyncNumerics>(&mut self, numerics: &N, embeddings: &N::Tensor) -> Result<()> {
        if !self.needs_raters() {
            return Err(SparseError::Protocol("raters are not needed or were already selected".into()));
        }
        let text: Vec<usize> = self.layout.text_after_images().collect();
        let visual = self.layout.visual_indices();
        let logits = numerics.rater_logits(embeddings, &visual, &text).await?;
        match raters::select_raters(&logits, visual.len(), text.len())? {
            Some(selection) => {
                self.trace.raters = Some(selection.clone());
                self.raters = RaterState::Selected(selection);
            }
            None => {
                self.trace.skipped = Some("no text follows the image: there are no raters".into());
                self.raters = RaterState::NotNeeded;
            }
        }
        Ok(())
    }

    fn active(&self) -> bool {
        self.trace.skipped.is_none() && self.next_stage < self.recipe.stages.len()
    }

    /// What layer `layer` must hand over, or `None` if its output is not pruned.
    pub fn request(&self, layer: usize) -> Result<Option<ScoreRequest>> {
        if !self.active() || self.recipe.stages[self.next_stage].layer != layer {
            return Ok(None);
        }
        let stage = self.recipe.stages[self.next_stage];
        let needs_attention = !matches!(self.recipe.scorer, Scorer::Random { .. });
        let rater_rows = if needs_attention { self.rater_rows()? } else { Vec::new() };
        Ok(Some(ScoreRequest {
            layer,
            source: stage.source,
            rater_rows,
            visual_rows: self.visual_rows.clone(),
            needs_attention,
        }))
    }

    fn rater_rows(&self) -> Result<Vec<usize>> {
        match (&self.recipe.scorer, &self.raters) {
            (Scorer::LastToken, _) => Ok(vec![self.origins.len() - 1]),
            (_, RaterState::Selected(sel)) => {
                let text_start = self.layout.text_after_images().start;
                sel.raters
                    .iter()
                    .map(|&r| {
                        let origin = TokenOrigin::Input(text_start + r);
                        self.origins.iter().position(|&o| o == origin).ok_or_else(|| {
                            SparseError::Protocol(format!(
                                "rater token {} is missing from the sequence",
                                text_start + r
                            ))
                        })
                    })
                    .collect()
            }
            (_, RaterState::Pending) => Err(SparseError::Protocol(
                "select_raters must run on the input embeddings before the first pruning layer".into(),
            )),
            (_, RaterState::NotNeeded) => Err(SparseError::Protocol("this prompt has no raters".into())),
        }
    }

    /// Prunes the output of `layer`. Returns `None` when the keep rule decided to keep everything.
    ///
    /// # Shapes
    /// `hidden`: the layer output `[seq_len, hidden]`; `attention` as [`RaterAttention`] describes, with
    /// the rows of [`ScoreRequest::rater_rows`] (it may be `None` for the random baseline).
    pub fn prune<N: Numerics>(
        &mut self,
        numerics: &N,
        layer: usize,
        attention: Option<RaterAttention<'_, N::Tensor>>,
        hidden: &N::Tensor,
    ) -> Result<Option<Pruned<N::Tensor>>> {
        complete_now(self.prune_async(&Ready(numerics), layer, attention, hidden))?
    }

    /// [`Sparsifier::prune`] with numerics that answer asynchronously.
    pub async fn prune_async<N: AsyncNumerics>(
        &mut self,
        numerics: &N,
        layer: usize,
        attention: Option<RaterAttention<'_, N::Tensor>>,
        hidden: &N::Tensor,
    ) -> Result<Option<Pruned<N::Tensor>>> {
        let request = self.request(layer)?.ok_or_else(|| {
            SparseError::Protocol(format!("layer {layer} is not the next pruning layer of this prompt"))
        })?;
        let stage = self.recipe.stages[self.next_stage];
        self.next_stage += 1;
        let v_in = self.visual_rows.len();
        let mut event = LayerEvent {
            layer,
            source: stage.source,
            v_in,
            seq_len_in: self.origins.len(),
            rater_rows: request.rater_rows.clone(),
            scores: Vec::new(),
            heads: Vec::new(),
            head_mass: Vec::new(),
            rank: None,
            singular_values: None,
            decision: KeepDecision { keep: v_in, prune: false },
            kept_slots: Vec::new(),
            kept_origins: Vec::new(),
            n_dropped: 0,
            recycled_slots: Vec::new(),
            clustering: None,
            visual_after: Vec::new(),
            positions_out: Vec::new(),
            seq_len_out: self.origins.len(),
            gravity_clamped: 0,
        };
        self.score(numerics, &stage, &request, attention, &mut event).await?;
        event.decision = match stage.keep {
            KeepRule::Fixed(k) => schedule::table_keep(k, v_in, self.recipe.compat),
            KeepRule::Rank { scale, bias } => {
                schedule::rank_keep(event.rank.unwrap_or(0), scale, bias, v_in, self.recipe.compat)
            }
            KeepRule::Video => schedule::video_keep(event.rank.unwrap_or(0), v_in, self.recipe.compat),
        };
        if !event.decision.prune {
            event.kept_slots = (0..v_in).collect();
            event.kept_origins = self.visual_rows.iter().map(|&r| self.origins[r]).collect();
            event.visual_after = event.kept_origins.clone();
            event.positions_out = self.positions.clone();
            self.trace.events.push(event);
            return Ok(None);
        }

        // Top-k, then the dropped complement (ascending slots).   // [v_in]
        let kept = select::top_k_sorted(&event.scores, event.decision.keep);
        let mut is_kept = vec![false; v_in];
        kept.iter().for_each(|&s| is_kept[s] = true);
        let dropped: Vec<usize> = (0..v_in).filter(|&s| !is_kept[s]).collect();
        event.n_dropped = dropped.len();

        // Recycling: cluster the best dropped tokens of this layer's output into merged tokens.
        let mut groups: Vec<Vec<usize>> = Vec::new(); // rows of the current sequence
        let mut centre_rows: Vec<usize> = Vec::new();
        if self.recipe.recycle && !dropped.is_empty() {
            let n_rec = schedule::recycle_count(dropped.len());
            let recycled = recycle::recycled_tokens(&event.scores, &dropped, n_rec);
            let rows: Vec<usize> = recycled.iter().map(|&s| self.visual_rows[s]).collect();
            let dist = numerics.pairwise_distances(hidden, &rows).await?;
            let clustering: Clustering = recycle::dpc_knn(&dist, rows.len(), schedule::cluster_count(n_rec))?;
            groups = clustering.groups().iter().map(|g| g.iter().map(|&i| rows[i]).collect()).collect();
            centre_rows = clustering.centers.iter().map(|&c| rows[c]).collect();
            event.recycled_slots = recycled;
            event.clustering = Some(clustering);
        }

        let plan = self.build_plan(layer, &is_kept, &groups, &centre_rows);
        let hidden = numerics.compact(hidden, &plan.compaction).await?;
        event.kept_origins = kept.iter().map(|&s| self.origins[self.visual_rows[s]]).collect();
        event.kept_slots = kept;
        event.visual_after = plan.visual_rows.iter().map(|&r| plan.origins[r]).collect();
        event.positions_out = plan.positions.clone();
        event.seq_len_out = plan.positions.len();
        self.origins = plan.origins.clone();
        self.positions = plan.positions.clone();
        self.visual_rows = plan.visual_rows.clone();
        self.trace.events.push(event);
        Ok(Some(Pruned { plan, hidden }))
    }

    /// Fills `event.scores` (and heads, rank) from the attention, or from the seeded generator.
    async fn score<N: AsyncNumerics>(
        &self,
        numerics: &N,
        stage: &Stage,
        request: &ScoreRequest,
        attention: Option<RaterAttention<'_, N::Tensor>>,
        event: &mut LayerEvent,
    ) -> Result<()> {
        let v_in = request.visual_rows.len();
        if let Scorer::Random { seed } = self.recipe.scorer {
            event.scores = rng::random_scores(seed, stage.layer, v_in);
            return Ok(());
        }
        let attention = attention.ok_or_else(|| {
            SparseError::Protocol(format!("pruning layer {} needs the rater rows' attention", stage.layer))
        })?;
        let rank_rule = matches!(stage.keep, KeepRule::Rank { .. } | KeepRule::Video);
        let rater_positions: Vec<i64> = request.rater_rows.iter().map(|&r| self.positions[r]).collect();
        let visual_positions: Vec<i64> = request.visual_rows.iter().map(|&r| self.positions[r]).collect();
        let gravity = self.gravity.as_ref().map(|table| GravityInputs {
            rater_positions: &rater_positions,
            visual_positions: &visual_positions,
            table,
        });
        if let Some(g) = &gravity {
            event.gravity_clamped = rater_positions
                .iter()
                .flat_map(|&p| visual_positions.iter().map(move |&q| p - q))
                .filter(|&delta| g.table.is_clamped(delta))
                .count();
        }
        let n_r = request.rater_rows.len();
        let query = RaterQuery {
            n_raters: n_r,
            visual_keys: &request.visual_rows,
            n_heads: self.dims.n_heads,
            n_kv_heads: self.dims.n_kv_heads,
            head_dim: self.dims.head_dim(),
            scale: 1.0 / (self.dims.head_dim() as f32).sqrt(),
            gravity,
            reduction: if rank_rule { Reduction::RatersOverHeads } else { Reduction::HeadsOverRaters },
        };
        let probs = numerics.rater_probs(attention, &query).await?;
        if rank_rule {
            // P = head-mean rater×visual matrix [r, v]; its rank sets K, its column means are the scores.
            event.scores = score::mean_over_raters(&probs, n_r, v_in)?;
            let sv = rank::singular_values(&probs, n_r, v_in);
            let tol = rank::rank_tolerance(&sv, n_r, v_in);
            event.rank = Some(sv.iter().filter(|&&s| s > tol).count());
            event.singular_values = Some(sv);
        } else {
            let sig = score::aggregate_heads(&probs, self.dims.n_heads, v_in, n_r, self.recipe.heads)?;
            event.scores = sig.scores;
            event.heads = sig.heads;
            event.head_mass = sig.head_mass;
        }
        Ok(())
    }

    /// Builds `[pre ; kept visual ; merged ; text]` with the new positions.
    fn build_plan(&self, layer: usize, is_kept: &[bool], groups: &[Vec<usize>], centre_rows: &[usize]) -> PrunePlan {
        let n_in = self.origins.len();
        let last_visual = self.visual_rows.last().copied();
        let mut slot_of_row = vec![None; n_in];
        for (slot, &row) in self.visual_rows.iter().enumerate() {
            slot_of_row[row] = Some(slot);
        }
        let mut compaction = CompactionPlan::new(n_in);
        let mut origins = Vec::new();
        let mut old_positions = Vec::new();
        let mut visual_rows = Vec::new();
        for (row, slot) in slot_of_row.iter().enumerate() {
            match *slot {
                Some(slot) if is_kept[slot] => {
                    visual_rows.push(compaction.n_out());
                    compaction.push_copy(row);
                    origins.push(self.origins[row]);
                    old_positions.push(self.positions[row]);
                }
                Some(_) => {}
                None => {
                    compaction.push_copy(row);
                    origins.push(self.origins[row]);
                    old_positions.push(self.positions[row]);
                }
            }
            if Some(row) == last_visual {
                for (cluster, (group, &centre)) in groups.iter().zip(centre_rows).enumerate() {
                    visual_rows.push(compaction.n_out());
                    compaction.push_mean(group);
                    origins.push(TokenOrigin::Merged { layer, cluster });
                    old_positions.push(self.positions[centre]);
                }
            }
        }
        let positions = match self.recipe.positions {
            PositionMode::Renumber => (0..origins.len() as i64).collect(),
            PositionMode::Preserve => old_positions,
        };
        PrunePlan { layer, compaction, positions, visual_rows, origins }
    }

    /// Position ids of the current sequence. `[seq_len]`
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Origins of the current rows. `[seq_len]`
    pub fn origins(&self) -> &[TokenOrigin] {
        &self.origins
    }

    /// Rows of the current sequence that are visual.
    pub fn visual_rows(&self) -> &[usize] {
        &self.visual_rows
    }

    /// Length of the current sequence.
    pub fn seq_len(&self) -> usize {
        self.origins.len()
    }

    /// Sequence length entering `layer` (= its KV-cache length after prefill).
    pub fn kv_len(&self, layer: usize) -> usize {
        self.trace.events.iter().rfind(|e| e.layer < layer).map_or(self.layout.seq_len(), |e| e.seq_len_out)
    }

    /// KV-cache length of every layer after prefill. `[n_layers]`
    pub fn kv_lens(&self) -> Vec<usize> {
        (0..self.dims.n_layers).map(|l| self.kv_len(l)).collect()
    }

    /// RoPE position of the `step`-th generated token (0 = the first one fed back) in `layer`:
    /// that layer's cache length plus `step` with renumbered positions (algorithm.md §2.8), and the
    /// global `L + step` with preserved positions (§4.1 item 5).
    pub fn decode_position(&self, layer: usize, step: usize) -> i64 {
        let base = match self.recipe.positions {
            PositionMode::Renumber => self.kv_len(layer),
            PositionMode::Preserve => self.layout.seq_len(),
        };
        (base + step) as i64
    }

    /// Visual tokens entering and leaving every layer, from the events so far.
    pub fn visual_counts(&self) -> VisualCounts {
        let mut entering = Vec::with_capacity(self.dims.n_layers);
        let mut after = Vec::with_capacity(self.dims.n_layers);
        let mut v = self.layout.n_visual();
        for layer in 0..self.dims.n_layers {
            entering.push(v);
            if let Some(e) = self.trace.events.iter().find(|e| e.layer == layer) {
                v = e.visual_after.len();
            }
            after.push(v);
        }
        VisualCounts { entering, after }
    }

    /// Equivalent tokens, FLOPs and KV size of this prefill.
    pub fn accounting(&self) -> Accounting {
        let counts = self.visual_counts();
        Accounting::new(&self.dims, &self.kv_lens(), &counts.entering, &counts.after)
    }

    /// Everything decided so far.
    pub fn trace(&self) -> &PruneTrace {
        &self.trace
    }
}

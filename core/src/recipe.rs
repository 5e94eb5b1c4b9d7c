//! Resolving a [`SparseConfig`] for one prompt into concrete pruning stages.
//!
//! A recipe says, for every pruning layer, how many visual tokens to keep (or which rule decides), where
//! the scoring attention comes from, and the method-wide choices: scorer, head aggregation, gravity,
//! recycling and position mode (algorithm.md §10 and §11.1).

use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};
use crate::method::{BaselineKeep, Budget, Method, SparseConfig};
use crate::model::ModelDims;
use crate::plan::PositionMode;
use crate::schedule::{self, TableFamily, OFFICIAL_VISUAL_TOKENS, V15_LAYERS, V1_LAYERS, VIDEO_LAYERS};
use crate::score::HeadAggregation;
use crate::solver::{self, Profile, SolveProblem};

/// How the keep count of one pruning layer is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum KeepRule {
    /// A fixed count (tables, solved schedules, baselines).
    Fixed(usize),
    /// v1: `int(scale·rank + bias)`.
    Rank { scale: f32, bias: f32 },
    /// Video: `rank`.
    Video,
}

/// Which layer's attention scores the visual tokens at a pruning boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoreSource {
    /// The pruning layer's own attention (SparseVLM, FastV).
    ThisLayer,
    /// Queries and keys of the next layer computed on this layer's output (PyramidDrop).
    NextLayer,
}

/// Who rates the visual tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scorer {
    /// SparseVLM's text raters, chosen once on the input embeddings.
    TextRaters,
    /// The last token of the prompt (FastV, PyramidDrop at inference).
    LastToken,
    /// Seeded uniform random scores.
    Random { seed: u64 },
}

/// One pruning boundary: the output of `layer` is pruned before layer `layer + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub layer: usize,
    pub keep: KeepRule,
    pub source: ScoreSource,
}

/// A method resolved for one prompt on one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub label: String,
    pub stages: Vec<Stage>,
    pub scorer: Scorer,
    pub heads: HeadAggregation,
    pub gravity: bool,
    pub recycle: bool,
    pub positions: PositionMode,
    pub compat: bool,
    pub gravity_floor: Option<f32>,
}

impl Recipe {
    /// Resolves `config` for a model with `dims` and a prompt with `n_visual` visual tokens.
    pub fn resolve(config: &SparseConfig, dims: &ModelDims, n_visual: usize) -> Result<Recipe> {
        dims.validate()?;
        if n_visual == 0 {
            return Err(SparseError::InvalidLayout("the prompt has no visual tokens".into()));
        }
        let mut recipe = Recipe {
            label: config.label(),
            stages: Vec::new(),
            scorer: Scorer::TextRaters,
            heads: HeadAggregation::Mean,
            gravity: false,
            recycle: true,
            positions: PositionMode::Renumber,
            compat: config.compat_quirks,
            gravity_floor: config.gravity_floor,
        };
        let layers_or = |default: &[usize]| config.layers.clone().unwrap_or_else(|| default.to_vec());
        let this_layer = |layers: &[usize], rule: KeepRule| -> Vec<Stage> {
            layers.iter().map(|&layer| Stage { layer, keep: rule, source: ScoreSource::ThisLayer }).collect()
        };
        match &config.method {
            Method::Dense => {}
            Method::SparseVlmV15 { budget } => {
                let layers = layers_or(&V15_LAYERS);
                recipe.apply_budget(budget, &layers, dims, n_visual, TableFamily::V15)?;
            }
            Method::SparseVlmV20 { budget, priority_heads } => {
                let k = priority_heads.unwrap_or(((14 * dims.n_heads) as f64 / 32.0).round() as usize).max(1);
                if k > dims.n_heads {
                    return Err(SparseError::InvalidConfig(format!(
                        "{k} priority heads requested but the model has {} heads",
                        dims.n_heads
                    )));
                }
                recipe.heads = HeadAggregation::TopK { k };
                recipe.gravity = true;
                recipe.recycle = false;
                recipe.positions = PositionMode::Preserve;
                let layers = layers_or(&V15_LAYERS);
                recipe.apply_budget(budget, &layers, dims, n_visual, TableFamily::V20)?;
            }
            Method::SparseVlmV1 { scale, bias } => {
                if !(scale.is_finite() && bias.is_finite()) {
                    return Err(SparseError::InvalidConfig(format!("scale {scale} and bias {bias} must be finite")));
                }
                recipe.stages = this_layer(&layers_or(&V1_LAYERS), KeepRule::Rank { scale: *scale, bias: *bias });
            }
            Method::SparseVlmVideo => recipe.stages = this_layer(&layers_or(&VIDEO_LAYERS), KeepRule::Video),
            Method::FastV { k, keep } => {
                if *k == 0 || *k >= dims.n_layers {
                    return Err(SparseError::InvalidConfig(format!(
                        "FastV needs 1 <= K < {} (it prunes after layer K - 1 using that layer's attention), got {k}",
                        dims.n_layers
                    )));
                }
                recipe.scorer = Scorer::LastToken;
                recipe.recycle = false;
                recipe.positions = PositionMode::Preserve;
                recipe.apply_baseline(keep, &[*k - 1], ScoreSource::ThisLayer, dims, n_visual)?;
            }
            Method::PDrop { layers, keep } => {
                let n = dims.n_layers;
                let layers = layers.clone().unwrap_or_else(|| vec![n / 4, n / 2, 3 * n / 4]);
                if layers.is_empty() || layers.iter().any(|&l| l == 0 || l >= dims.n_layers) {
                    return Err(SparseError::InvalidConfig(format!(
                        "PyramidDrop stage layers must lie in 1..{}, got {layers:?}",
                        dims.n_layers
                    )));
                }
                recipe.scorer = Scorer::LastToken;
                recipe.recycle = false;
                let boundaries: Vec<usize> = layers.iter().map(|l| l - 1).collect();
                recipe.apply_baseline(keep, &boundaries, ScoreSource::NextLayer, dims, n_visual)?;
            }
            Method::Random { budget, seed } => {
                recipe.scorer = Scorer::Random { seed: *seed };
                recipe.recycle = false;
                recipe.positions = PositionMode::Preserve;
                let layers = layers_or(&V15_LAYERS);
                recipe.apply_budget(budget, &layers, dims, n_visual, TableFamily::V20)?;
            }
        }
        recipe.check_layers(dims)?;
        Ok(recipe)
    }

    fn check_layers(&self, dims: &ModelDims) -> Result<()> {
        for pair in self.stages.windows(2) {
            if pair[0].layer >= pair[1].layer {
                return Err(SparseError::InvalidConfig("pruning layers must be strictly ascending".into()));
            }
        }
        for stage in &self.stages {
            let needed = stage.layer + usize::from(stage.source == ScoreSource::NextLayer);
            if needed >= dims.n_layers || stage.layer + 1 >= dims.n_layers {
                return Err(SparseError::InvalidConfig(format!(
                    "pruning after layer {} leaves no layer to run in a {}-layer decoder",
                    stage.layer, dims.n_layers
                )));
            }
        }
        Ok(())
    }

    fn set_fixed(&mut self, layers: &[usize], keep: &[usize], source: ScoreSource) {
        self.stages =
            layers.iter().zip(keep).map(|(&layer, &k)| Stage { layer, keep: KeepRule::Fixed(k), source }).collect();
    }

    fn apply_budget(
        &mut self,
        budget: &Budget,
        layers: &[usize],
        dims: &ModelDims,
        n_visual: usize,
        family: TableFamily,
    ) -> Result<()> {
        let profile = Profile::Tables(family);
        match budget {
            Budget::Explicit(keep) => {
                if keep.len() != layers.len() || keep.contains(&0) {
                    return Err(SparseError::InvalidConfig(format!(
                        "explicit keep counts {keep:?} must be positive, one per pruning layer {layers:?}"
                    )));
                }
                self.set_fixed(layers, keep, ScoreSource::ThisLayer);
            }
            Budget::Tokens(b) | Budget::Solve(b) => {
                let b = *b;
                check_budget(b, n_visual)?;
                if b as usize >= n_visual {
                    return Ok(());
                }
                let official =
                    matches!(budget, Budget::Tokens(_)) && n_visual == OFFICIAL_VISUAL_TOKENS && layers == V15_LAYERS;
                if let Some(table) = schedule::official_table(family, b).filter(|_| official) {
                    self.set_fixed(layers, &table, ScoreSource::ThisLayer);
                } else {
                    self.solve(b, layers, dims, n_visual, profile, ScoreSource::ThisLayer)?;
                }
            }
        }
        Ok(())
    }

    fn apply_baseline(
        &mut self,
        keep: &BaselineKeep,
        boundaries: &[usize],
        source: ScoreSource,
        dims: &ModelDims,
        n_visual: usize,
    ) -> Result<()> {
        match keep {
            BaselineKeep::Ratio(r) => {
                if !(r.is_finite() && *r > 0.0 && *r <= 1.0) {
                    return Err(SparseError::InvalidConfig(format!("keep ratio must be in (0, 1], got {r}")));
                }
                // PyramidDrop: keep_length = int(V · λ^(stage+1)); FastV: int(V · ratio).
                let counts: Vec<usize> = (0..boundaries.len())
                    .map(|s| ((n_visual as f64 * (*r as f64).powi(s as i32 + 1)) as usize).max(1))
                    .collect();
                self.set_fixed(boundaries, &counts, source);
            }
            BaselineKeep::Budget(b) => {
                check_budget(*b, n_visual)?;
                if *b as usize >= n_visual {
                    return Ok(());
                }
                self.solve(*b, boundaries, dims, n_visual, Profile::Geometric, source)?;
            }
        }
        Ok(())
    }

    fn solve(
        &mut self,
        target: u32,
        layers: &[usize],
        dims: &ModelDims,
        n_visual: usize,
        profile: Profile,
        source: ScoreSource,
    ) -> Result<()> {
        let problem =
            SolveProblem { n_visual, n_layers: dims.n_layers, layers: layers.to_vec(), recycle: self.recycle, profile };
        let solved = solver::solve(&problem, target)?;
        self.recycle = solved.recycle;
        self.set_fixed(&solved.layers, &solved.keep, source);
        Ok(())
    }
}

/// A budget must lie in `1..=n_visual`; `n_visual` itself means no pruning.
fn check_budget(budget: u32, n_visual: usize) -> Result<()> {
    if budget == 0 || budget as usize > n_visual {
        return Err(SparseError::BudgetOutOfRange { budget: budget as i64, n_visual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_budgets_use_the_tables() {
        let r = Recipe::resolve(&SparseConfig::v15(128), &ModelDims::llava_15_7b(), 576).unwrap();
        let keeps: Vec<_> = r.stages.iter().map(|s| s.keep).collect();
        assert_eq!(keeps, [303, 110, 36].map(KeepRule::Fixed));
        let r = Recipe::resolve(&SparseConfig::v20(96), &ModelDims::llava_15_7b(), 576).unwrap();
        assert_eq!(r.stages[1].keep, KeepRule::Fixed(54));
        assert_eq!(r.heads, HeadAggregation::TopK { k: 14 });
        assert!(r.gravity && !r.recycle && r.positions == PositionMode::Preserve);
    }

    #[test]
    fn baselines_resolve_to_their_official_cuts() {
        let dims = ModelDims::llava_15_7b();
        let f = Recipe::resolve(&SparseConfig::fastv(2, 0.5), &dims, 576).unwrap();
        assert_eq!(f.stages, vec![Stage { layer: 1, keep: KeepRule::Fixed(288), source: ScoreSource::ThisLayer }]);
        let p = Recipe::resolve(&SparseConfig::pdrop(), &dims, 576).unwrap();
        let got: Vec<_> = p.stages.iter().map(|s| (s.layer, s.keep)).collect();
        assert_eq!(got, vec![(7, KeepRule::Fixed(288)), (15, KeepRule::Fixed(144)), (23, KeepRule::Fixed(72))]);
        assert!(p.stages.iter().all(|s| s.source == ScoreSource::NextLayer));
    }

    #[test]
    fn budgets_out_of_range_and_bad_layers() {
        let dims = ModelDims::llava_15_7b();
        assert!(Recipe::resolve(&SparseConfig::v15(0), &dims, 576).is_err());
        // The visual count itself keeps everything; more is out of range.
        assert!(Recipe::resolve(&SparseConfig::v15(576), &dims, 576).unwrap().stages.is_empty());
        assert!(matches!(
            Recipe::resolve(&SparseConfig::v15(577), &dims, 576),
            Err(SparseError::BudgetOutOfRange { budget: 577, n_visual: 576 })
        ));
        assert!(Recipe::resolve(&SparseConfig::fastv(0, 0.5), &dims, 576).is_err());
        let mut deep = SparseConfig::v15(192);
        deep.layers = Some(vec![2, 6, 31]);
        assert!(Recipe::resolve(&deep, &dims, 576).is_err());
        let mut v20 = SparseConfig::v20(192);
        v20.method = Method::SparseVlmV20 { budget: Budget::Tokens(192), priority_heads: Some(40) };
        assert!(Recipe::resolve(&v20, &dims, 576).is_err());
    }
}

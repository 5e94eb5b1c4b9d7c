//! Schedule planning without a model: resolve a method and budget for a model preset and report the
//! per-layer counts and costs (algorithm.md §3.2 tables, §7.1 FLOPs).
//!
//! Only methods whose keep counts are fixed in advance can be planned: the v1.5/v2.0 tables and solved
//! budgets, FastV, PyramidDrop and random. The rank rules of v1 and the video variant depend on the
//! attention of the actual prompt.

use serde::Serialize;
use sparsevlm_core::schedule::simulate_fixed;
use sparsevlm_core::{accounting, Accounting, KeepRule, ModelDims, Recipe, SparseConfig, SparseError};

use crate::report::saved_percent;

/// A planned prefill.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub method: String,
    pub n_visual: usize,
    pub n_text: usize,
    /// `(layer, keep)` of every pruning layer.
    pub stages: Vec<(usize, usize)>,
    pub recycle: bool,
    /// Visual tokens entering and leaving each layer.
    pub visual_in: Vec<usize>,
    pub visual_after: Vec<usize>,
    pub pruned: Accounting,
    pub dense: Accounting,
}

/// Plans `config` on a model with `dims` for a prompt of `n_visual` image tokens and `n_text` others.
pub fn plan(config: &SparseConfig, dims: &ModelDims, n_visual: usize, n_text: usize) -> Result<Plan, SparseError> {
    let recipe = Recipe::resolve(config, dims, n_visual)?;
    let mut stages = Vec::with_capacity(recipe.stages.len());
    for stage in &recipe.stages {
        match stage.keep {
            KeepRule::Fixed(k) => stages.push((stage.layer, k)),
            KeepRule::Rank { .. } | KeepRule::Video => {
                return Err(SparseError::InvalidConfig(format!(
                    "{} decides its keep counts from the prompt's attention (rank rule) and cannot be planned \
                     without a model",
                    recipe.label
                )))
            }
        }
    }
    let counts = simulate_fixed(n_visual, dims.n_layers, &stages, recipe.recycle, recipe.compat);
    Ok(Plan {
        method: recipe.label.clone(),
        n_visual,
        n_text,
        stages,
        recycle: recipe.recycle,
        pruned: Accounting::new(dims, &accounting::seq_lens(n_text, &counts.entering), &counts.entering, &counts.after),
        dense: Accounting::dense(dims, n_visual, n_text),
        visual_in: counts.entering,
        visual_after: counts.after,
    })
}

impl Plan {
    /// A plain-text report: the schedule, a per-layer bar chart of visual tokens, and the savings.
    pub fn render(&self, dims: &ModelDims) -> String {
        let mut out = String::new();
        let push = |out: &mut String, line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        push(
            &mut out,
            format!(
                "{}: {} visual + {} other tokens, {} layers",
                self.method, self.n_visual, self.n_text, dims.n_layers
            ),
        );
        if self.stages.is_empty() {
            push(&mut out, "no pruning".into());
        }
        for &(layer, keep) in &self.stages {
            push(
                &mut out,
                format!(
                    "  after layer {layer:>2}: keep {keep}{}",
                    if self.recycle { " + recycled clusters" } else { "" }
                ),
            );
        }
        push(&mut out, String::new());
        push(&mut out, "layer  visual tokens processed".into());
        let width = 50.0 / self.n_visual.max(1) as f64;
        for (layer, &v) in self.visual_in.iter().enumerate() {
            let bar = "#".repeat((v as f64 * width).round() as usize);
            push(&mut out, format!("{layer:>5}  {v:>5} {bar}"));
        }
        let pct = saved_percent;
        let (p, d) = (&self.pruned, &self.dense);
        push(&mut out, String::new());
        push(&mut out, format!("equivalent tokens (paper, outputs): {:.2}", p.equivalent_tokens));
        push(&mut out, format!("equivalent tokens (layer inputs):   {:.2}", p.equivalent_tokens_input));
        push(
            &mut out,
            format!(
                "prefill FLOPs (paper formula, MACs): {:.3} T vs {:.3} T dense (-{:.1}%)",
                p.paper_flops / 1e12,
                d.paper_flops / 1e12,
                pct(p.paper_flops, d.paper_flops)
            ),
        );
        push(
            &mut out,
            format!(
                "prefill FLOPs (true):                {:.3} T vs {:.3} T dense (-{:.1}%)",
                p.true_flops / 1e12,
                d.true_flops / 1e12,
                pct(p.true_flops, d.true_flops)
            ),
        );
        let mib = |a: &Accounting| a.kv_bytes(dims, 2) as f64 / (1024.0 * 1024.0);
        push(
            &mut out,
            format!(
                "KV cache after prefill (16-bit):     {:.1} MiB vs {:.1} MiB dense (-{:.1}%)",
                mib(p),
                mib(d),
                pct(mib(p), mib(d))
            ),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_the_paper_numbers() {
        // algorithm.md §7.3: 576 visual + 118 other tokens, v1.5 at 64 -> 1.314 T vs 4.621 T.
        let p = plan(&SparseConfig::v15(64), &ModelDims::llava_15_7b(), 576, 118).unwrap();
        assert!((p.pruned.paper_flops / 1e12 - 1.314).abs() < 5e-4);
        assert!((p.dense.paper_flops / 1e12 - 4.621).abs() < 5e-4);
        assert_eq!(p.stages, vec![(2, 66), (6, 30), (15, 17)]);
        assert!(p.render(&ModelDims::llava_15_7b()).contains("equivalent tokens (paper, outputs): 64.81"));
    }

    #[test]
    fn rank_methods_cannot_be_planned() {
        assert!(plan(&SparseConfig::v1(13.5, 0.0), &ModelDims::llava_15_7b(), 576, 118).is_err());
    }
}

//! Training the multimodal projector with the vision tower and the LLM frozen (LLaVA's first stage,
//! `llava/train/train.py` with `tune_mm_mlp_adapter`): image features go through the projector into the
//! prompt, the LLM runs dense and differentiable, and the loss is the cross-entropy of the answer tokens
//! only. Only the projector's weights receive gradients (AdamW).

use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::models::clip::Projector;
use crate::models::llava::Llava;

/// One training example.
#[derive(Debug, Clone)]
pub struct Example {
    /// Frozen vision-tower output. `[n_patches, vision_hidden]`
    pub features: Tensor,
    /// Prompt ids with the model's image placeholder.
    pub prompt: Vec<i64>,
    /// Target tokens (the answer and the stop token).
    pub answer: Vec<u32>,
}

/// A projector under training.
pub struct ProjectorTrainer {
    varmap: VarMap,
    projector: Projector,
    optimizer: AdamW,
}

impl std::fmt::Debug for ProjectorTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProjectorTrainer {{ {} variables }}", self.varmap.all_vars().len())
    }
}

/// Names of the projector's layers in the saved file.
fn layer_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("linear_{i}")).collect()
}

impl ProjectorTrainer {
    /// A freshly initialised projector for `model` (seeded), trained with AdamW at `lr`.
    pub fn new(model: &Llava, lr: f64, seed: u64) -> Result<Self> {
        let device = model.device();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let shapes = model.projector_shapes();
        let projector = Projector::load(&vb, &layer_names(shapes.len()), &shapes)?;
        seeded_init(&varmap, &shapes, seed)?;
        let params = ParamsAdamW { lr, weight_decay: 0.0, ..ParamsAdamW::default() };
        let optimizer = AdamW::new(varmap.all_vars(), params)?;
        Ok(ProjectorTrainer { varmap, projector, optimizer })
    }

    /// The mean answer-token cross-entropy of one example (differentiable w.r.t. the projector).
    pub fn loss(&self, model: &Llava, example: &Example) -> Result<Tensor> {
        if example.answer.is_empty() {
            return Err(Error::Input("a training example needs at least one answer token".into()));
        }
        let llm = model.llm();
        let projected = self.projector.forward(&example.features.to_dtype(DType::F32)?)?; // [n, D]
        let (prompt, _) = model.prompt_inputs(&example.prompt, &projected)?; // [Lp, D]
        let answer = llm.embed(&example.answer)?.to_dtype(prompt.dtype())?; // [La, D]
        let x = Tensor::cat(&[&prompt, &answer], 0)?.unsqueeze(0)?; // [1, L, D]
        let hidden = llm.forward_train(&x)?; // [1, L, D]
        let (lp, la) = (prompt.dim(0)?, answer.dim(0)?);
        // Position t predicts token t + 1: the answer is predicted from positions lp − 1 .. lp + la − 2.
        let logits = llm.lm_logits(&hidden.narrow(1, lp - 1, la)?.squeeze(0)?)?.to_dtype(DType::F32)?; // [La, V]
        let targets = Tensor::new(example.answer.as_slice(), logits.device())?;
        Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
    }

    /// One optimisation step on `batch`; returns the mean loss.
    pub fn step(&mut self, model: &Llava, batch: &[Example]) -> Result<f32> {
        if batch.is_empty() {
            return Err(Error::Input("an empty training batch".into()));
        }
        let mut total: Option<Tensor> = None;
        for example in batch {
            let loss = self.loss(model, example)?;
            total = Some(match total {
                Some(t) => (t + loss)?,
                None => loss,
            });
        }
        let Some(total) = total else { return Err(Error::Input("an empty training batch".into())) };
        let mean = (total / batch.len() as f64)?;
        self.optimizer.backward_step(&mean)?;
        Ok(mean.to_scalar::<f32>()?)
    }

    /// The projector as trained so far.
    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Saves the projector (`linear_1.weight`, `linear_1.bias`, ...) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.varmap.save(path).map_err(|e| Error::checkpoint(path, e.to_string()))
    }
}

/// Re-initialises the projector like PyTorch's `nn.Linear` (`U(−1/√in, 1/√in)` for weights and biases)
/// from a seeded generator, so that runs are reproducible (candle cannot seed its CPU generator).
fn seeded_init(varmap: &VarMap, shapes: &[(usize, usize)], seed: u64) -> Result<()> {
    let mut rng = sparsevlm_core::rng::SplitMix64::new(seed);
    let data = varmap.data().lock().map_err(|_| Error::Input("projector variables are poisoned".into()))?;
    for (i, name) in layer_names(shapes.len()).iter().enumerate() {
        let bound = 1.0 / (shapes[i].0 as f32).sqrt();
        for suffix in ["weight", "bias"] {
            let key = format!("{name}.{suffix}");
            let var = data.get(&key).ok_or_else(|| Error::Input(format!("projector has no {key}")))?;
            let n = var.elem_count();
            let values: Vec<f32> = (0..n).map(|_| (2.0 * rng.next_f32() - 1.0) * bound).collect();
            var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
        }
    }
    Ok(())
}

/// Loads a saved projector for a model whose projector has `shapes`.
pub fn load_projector(
    path: &Path,
    shapes: &[(usize, usize)],
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Projector> {
    let files = [path.to_path_buf()];
    let vb = crate::loader::open(&files, dtype, device, indicatif::ProgressBar::hidden())?;
    Projector::load(&vb, &layer_names(shapes.len()), shapes)
        .map_err(|e| Error::checkpoint(path, format!("not a projector for this model: {e}")))
}

//! Training the multimodal projector with the vision tower and the LLM frozen (LLaVA's first stage,
//! `llava/train/train.py` with `tune_mm_mlp_adapter`): image features go through the projector into the
//! prompt, the LLM runs dense and differentiable, and the loss is the cross-entropy of the answer tokens
//! only. Only the projector's weights receive gradients; the frozen LLM gets activation gradients only.
//!
//! Two ways to compute the loss, which agree: one question at a time ([`ProjectorTrainer::loss`], the
//! reference) and all the questions about one image packed over a shared prefix ([`packed`], the fast
//! path the training loop in [`run`] uses).

pub mod adamw;
pub mod packed;
pub mod run;

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::models::clip::Projector;
use crate::models::llava::Llava;
use adamw::{AdamW, AdamWParams};
use packed::{packed_loss, ImageGroup};

/// One training example: one question about one image.
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
    shapes: Vec<(usize, usize)>,
}

impl std::fmt::Debug for ProjectorTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProjectorTrainer {{ {:?}, {} steps }}", self.shapes, self.optimizer.steps())
    }
}

/// Names of the projector's layers in the saved file.
fn layer_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("linear_{i}")).collect()
}

/// Names of the projector's tensors, in a fixed order (`linear_1.weight`, `linear_1.bias`, ...).
fn tensor_names(n: usize) -> Vec<String> {
    layer_names(n).iter().flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")]).collect()
}

impl ProjectorTrainer {
    /// A freshly initialised projector for `model` (seeded), trained with AdamW.
    pub fn new(model: &Llava, seed: u64) -> Result<Self> {
        let device = model.device();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let shapes = model.projector_shapes();
        let projector = Projector::load(&vb, &layer_names(shapes.len()), &shapes)?;
        seeded_init(&varmap, &shapes, seed)?;
        let optimizer = AdamW::new(Self::vars_of(&varmap, &shapes)?, AdamWParams::default())?;
        Ok(ProjectorTrainer { varmap, projector, optimizer, shapes })
    }

    fn vars_of(varmap: &VarMap, shapes: &[(usize, usize)]) -> Result<Vec<Var>> {
        let data = varmap.data().lock().map_err(|_| Error::Input("projector variables are poisoned".into()))?;
        tensor_names(shapes.len())
            .iter()
            .map(|name| data.get(name).cloned().ok_or_else(|| Error::Input(format!("projector has no {name}"))))
            .collect()
    }

    /// The trained variables in the order of [`tensor_names`].
    pub fn vars(&self) -> Result<Vec<Var>> {
        Self::vars_of(&self.varmap, &self.shapes)
    }

    /// The mean answer-token cross-entropy of one example (differentiable w.r.t. the projector): the
    /// reference the packed loss is checked against.
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

    /// The mean loss over every question of `groups` (each image's questions packed over one prefix) and
    /// its gradients with respect to the projector. Each image runs forward and backward on its own, so
    /// memory holds one image's graph at a time.
    pub fn packed_gradients(&self, model: &Llava, groups: &[ImageGroup]) -> Result<(f32, GradStore)> {
        let total: usize = groups.iter().map(|g| g.questions.len()).sum();
        if total == 0 {
            return Err(Error::Input("an empty training batch".into()));
        }
        let mut loss_sum = 0.0f32;
        let mut grads: Option<GradStore> = None;
        for group in groups {
            // Weighted by its share of the questions, the groups' losses add up to the mean over questions.
            let loss = (packed_loss(model, &self.projector, group)? * (group.questions.len() as f64 / total as f64))?;
            loss_sum += loss.to_scalar::<f32>()?;
            let g = loss.backward()?;
            match &mut grads {
                Some(all) => all.extend(g)?,
                None => grads = Some(g),
            }
        }
        let grads = grads.ok_or_else(|| Error::Input("an empty training batch".into()))?;
        Ok((loss_sum, grads))
    }

    /// The mean loss of `batch`, one question at a time, and its gradients (the reference path).
    pub fn gradients(&self, model: &Llava, batch: &[Example]) -> Result<(f32, GradStore)> {
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
        Ok((mean.to_scalar::<f32>()?, mean.backward()?))
    }

    /// One optimisation step on `batch`, one question at a time; returns the mean loss.
    pub fn step(&mut self, model: &Llava, batch: &[Example], lr: f64) -> Result<f32> {
        let (loss, grads) = self.gradients(model, batch)?;
        self.optimizer.step(&grads, lr)?;
        Ok(loss)
    }

    /// Matrix-product FLOPs of one training pass over `groups` (see [`packed::training_flops`]).
    pub fn packed_flops(&self, model: &Llava, groups: &[ImageGroup]) -> Result<f64> {
        let (cfg, image) = (&model.config.text, model.config.image_token);
        groups.iter().try_fold(0.0, |total, g| {
            let packing = packed::Packing::new(&g.questions, image, g.features.dim(0)?, cfg.vocab)?;
            Ok(total + packing.flops(cfg))
        })
    }

    /// One optimisation step on image groups, packed; returns the mean loss over their questions.
    pub fn step_packed(&mut self, model: &Llava, groups: &[ImageGroup], lr: f64) -> Result<f32> {
        let (loss, grads) = self.packed_gradients(model, groups)?;
        self.optimizer.step(&grads, lr)?;
        Ok(loss)
    }

    /// Optimisation steps taken.
    pub fn steps(&self) -> usize {
        self.optimizer.steps()
    }

    /// The projector as trained so far.
    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    /// Saves the projector (`linear_1.weight`, `linear_1.bias`, ...) as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.varmap.save(path).map_err(|e| Error::checkpoint(path, e.to_string()))
    }

    /// Starts from the weights of a saved projector (`linear_1.weight`, ...) instead of the seeded
    /// initialisation: a run that continues training a projector with a fresh optimiser and schedule.
    pub fn load_weights(&mut self, path: &Path) -> Result<()> {
        let device = self.projector_device();
        let tensors =
            candle_core::safetensors::load(path, &device).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        for (name, var) in tensor_names(self.shapes.len()).iter().zip(self.vars()?) {
            let value =
                tensors.get(name).ok_or_else(|| Error::checkpoint(path, format!("not a projector: no {name}")))?;
            if value.shape() != var.shape() {
                return Err(Error::checkpoint(
                    path,
                    format!("{name} has shape {:?}, not {:?}", value.shape(), var.shape()),
                ));
            }
            var.set(&value.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// Saves the projector and the optimiser's state (moments and step count) as safetensors.
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut tensors = std::collections::HashMap::new();
        for ((name, var), (m, v)) in
            tensor_names(self.shapes.len()).iter().zip(self.vars()?).zip(self.optimizer.moments())
        {
            tensors.insert(name.clone(), var.as_tensor().clone());
            tensors.insert(format!("adamw.m.{name}"), m.clone());
            tensors.insert(format!("adamw.v.{name}"), v.clone());
        }
        let steps = Tensor::new(&[self.optimizer.steps() as u32], &candle_core::Device::Cpu)?;
        tensors.insert("adamw.steps".to_owned(), steps);
        candle_core::safetensors::save(&tensors, path).map_err(|e| Error::checkpoint(path, e.to_string()))
    }

    /// Restores what [`ProjectorTrainer::save_state`] wrote.
    pub fn load_state(&mut self, path: &Path) -> Result<()> {
        let device = self.projector_device();
        let tensors =
            candle_core::safetensors::load(path, &device).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let get = |name: &str| {
            tensors.get(name).cloned().ok_or_else(|| Error::checkpoint(path, format!("the checkpoint has no {name}")))
        };
        let mut moments = Vec::new();
        let names = tensor_names(self.shapes.len());
        for (name, var) in names.iter().zip(self.vars()?) {
            let value = get(name)?;
            if value.shape() != var.shape() {
                return Err(Error::checkpoint(
                    path,
                    format!("{name} has shape {:?}, not {:?}", value.shape(), var.shape()),
                ));
            }
            var.set(&value)?;
            moments.push((get(&format!("adamw.m.{name}"))?, get(&format!("adamw.v.{name}"))?));
        }
        let steps = get("adamw.steps")?.to_vec1::<u32>()?;
        let steps = *steps.first().ok_or_else(|| Error::checkpoint(path, "adamw.steps is empty"))? as usize;
        self.optimizer.restore(moments, steps)
    }

    fn projector_device(&self) -> candle_core::Device {
        self.vars().ok().and_then(|v| v.first().map(|v| v.device().clone())).unwrap_or(candle_core::Device::Cpu)
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

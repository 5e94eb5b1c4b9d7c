//! AdamW (Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019) with its state in the
//! open, so that a training run can be checkpointed and resumed exactly.
//!
//! The update is PyTorch's `torch.optim.AdamW` (and candle-nn's `AdamW`, whose moments are private and so
//! cannot be saved): `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
//! `θ ← θ·(1 − lr·λ) − lr · m̂ / (√v̂ + ε)` with the bias corrections `m̂ = m / (1−β1^t)`, `v̂ = v / (1−β2^t)`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// Hyper-parameters (PyTorch's defaults but the learning rate, which the caller sets per step).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        AdamWParams { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// The optimiser: the variables it updates, their first and second moments, and the step count.
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<Var>,
    /// First and second moments, one pair per variable.
    moments: Vec<(Tensor, Tensor)>,
    step: usize,
    params: AdamWParams,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let moments =
            vars.iter().map(|v| Ok((v.zeros_like()?, v.zeros_like()?))).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW { vars, moments, step: 0, params })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update at learning rate `lr`. Every variable must have a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let AdamWParams { beta1, beta2, eps, weight_decay } = self.params;
        let scale_m = 1.0 / (1.0 - beta1.powi(self.step as i32));
        let scale_v = 1.0 / (1.0 - beta2.powi(self.step as i32));
        for (var, (m, v)) in self.vars.iter().zip(self.moments.iter_mut()) {
            let g = grads.get(var).ok_or_else(|| Error::Input("a trained variable received no gradient".into()))?;
            *m = ((&*m * beta1)? + (g * (1.0 - beta1))?)?;
            *v = ((&*v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let update = ((&*m * scale_m)? / ((&*v * scale_v)?.sqrt()? + eps)?)?;
            let next = ((var.as_tensor() * (1.0 - lr * weight_decay))? - (update * lr)?)?;
            var.set(&next)?;
        }
        Ok(())
    }

    /// The moments, for a checkpoint: `(first, second)` per variable, in the variables' order.
    pub fn moments(&self) -> &[(Tensor, Tensor)] {
        &self.moments
    }

    /// Restores the state saved by [`AdamW::moments`] and [`AdamW::steps`].
    pub fn restore(&mut self, moments: Vec<(Tensor, Tensor)>, step: usize) -> Result<()> {
        if moments.len() != self.vars.len()
            || moments.iter().zip(&self.vars).any(|((m, v), var)| m.shape() != var.shape() || v.shape() != var.shape())
        {
            return Err(Error::Input("the optimiser state does not match the projector".into()));
        }
        self.moments = moments;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_adamw() {
        use candle_nn::Optimizer;
        let init = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &Device::Cpu).unwrap();
        let (a, b) = (Var::from_tensor(&init).unwrap(), Var::from_tensor(&init).unwrap());
        let params = AdamWParams { weight_decay: 0.01, ..AdamWParams::default() };
        let mut ours = AdamW::new(vec![a.clone()], params).unwrap();
        let reference = candle_nn::ParamsAdamW { lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], reference).unwrap();
        for _ in 0..5 {
            let ga = (a.as_tensor().sqr().unwrap().sum_all().unwrap()).backward().unwrap();
            ours.step(&ga, 0.1).unwrap();
            let gb = (b.as_tensor().sqr().unwrap().sum_all().unwrap()).backward().unwrap();
            theirs.step(&gb).unwrap();
        }
        let (x, y) =
            (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        for (x, y) in x.iter().zip(&y) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        assert_eq!(ours.steps(), 5);
    }
}

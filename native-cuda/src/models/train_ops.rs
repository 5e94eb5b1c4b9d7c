//! Two ops of the training forward pass that candle's autograd makes costly on the CPU.
//!
//! **A linear layer whose weight is frozen**, whose backward pass computes the input's gradient only.
//! candle's autograd differentiates a matrix product with respect to both operands, whether or not the
//! weight is trainable (`candle-core/src/backprop.rs`, `Op::Matmul`), so a frozen LLM would pay a weight
//! gradient (as many FLOPs as the input gradient, plus a weight-sized buffer) for every linear layer
//! on every step. Training the projector needs activation gradients only; this op supplies exactly
//! those: forward `y = x · Wᵀ`, backward `∂L/∂x = ∂L/∂y · W`.
//!
//! **A softmax over the last dimension with a backward pass.** candle-nn's fused `softmax_last_dim` has
//! none, and the differentiable composite (`max`, `sub`, `exp`, `sum`, `div`) keeps five score-sized
//! tensors per layer alive for the backward pass, about 35 MB each for a packed sequence of 1,000 tokens
//! and 9 heads. This op keeps only its output: `∂L/∂x = p ⊙ (g − Σ(g ⊙ p))`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::error::Result;

/// `x · Wᵀ` with a constant `W` (`[out, in]`).
struct FrozenMatmul {
    weight: Tensor,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = untracked(storage, layout)?;
        let y = x.broadcast_matmul(&self.weight.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.weight)?))
    }
}

/// Softmax over the last dimension, with the backward pass computed from the output alone.
struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = untracked(storage, layout)?;
        let p = candle_nn::ops::softmax_last_dim(&x)?;
        Ok((CpuStorage::F32(p.flatten_all()?.to_vec1::<f32>()?), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let gp = (grad_res * res)?;
        let total = gp.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some((gp - res.broadcast_mul(&total)?)?))
    }
}

/// A fresh, untracked f32 tensor holding a contiguous CPU storage: candle's ops run on it without recording
/// anything.
fn untracked(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Tensor> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("training ops run in f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("training ops need a contiguous input");
    };
    Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)
}

/// Whether the training ops apply (CPU, f32); elsewhere candle's own ops are used.
fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Softmax over the last dimension, differentiable, keeping only its output for the backward pass (on the
/// CPU in f32; elsewhere candle-nn's differentiable softmax).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if applies(x) {
        return Ok(x.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(Softmax)))?);
    }
    Ok(candle_nn::ops::softmax(x, candle_core::D::Minus1)?)
}

/// `x · Wᵀ` for a frozen `weight` (`[out, in]`): on the CPU in f32 the backward pass computes the input's
/// gradient only; elsewhere candle's matrix product is used as is. `[.., in]` → `[.., out]`
pub fn frozen_linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if applies(x) && weight.dtype() == candle_core::DType::F32 {
        let op = FrozenMatmul { weight: weight.detach() };
        return Ok(x.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?);
    }
    Ok(x.broadcast_matmul(&weight.t()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_input_gradient_match_the_plain_product() {
        let device = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (7, 5), &device).unwrap();
        let x0 = Tensor::randn(0f32, 1.0, (2, 3, 5), &device).unwrap();
        let target = Tensor::randn(0f32, 1.0, (2, 3, 7), &device).unwrap();
        let (a, b) = (Var::from_tensor(&x0).unwrap(), Var::from_tensor(&x0).unwrap());
        let ya = frozen_linear(a.as_tensor(), &w).unwrap();
        let yb = b.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
        let diff = (&ya - &yb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5);
        let loss = |y: &Tensor| (y * &target).unwrap().sum_all().unwrap();
        let (ga, gb) = (loss(&ya).backward().unwrap(), loss(&yb).backward().unwrap());
        let (ga, gb) = (ga.get(a.as_tensor()).unwrap(), gb.get(b.as_tensor()).unwrap());
        let diff = (ga - gb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "input gradients differ by {diff}");
    }

    #[test]
    fn softmax_and_its_gradient_match_the_composite() {
        let device = Device::Cpu;
        let mask = Tensor::new(&[[0f32, f32::NEG_INFINITY, 0.0], [0.0, 0.0, 0.0]], &device).unwrap();
        let x0 = Tensor::randn(0f32, 2.0, (4, 2, 3), &device).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (4, 2, 3), &device).unwrap();
        let (a, b) = (Var::from_tensor(&x0).unwrap(), Var::from_tensor(&x0).unwrap());
        let pa = softmax_last_dim(&a.as_tensor().broadcast_add(&mask).unwrap()).unwrap();
        let pb = candle_nn::ops::softmax(&b.as_tensor().broadcast_add(&mask).unwrap(), candle_core::D::Minus1).unwrap();
        let diff = (&pa - &pb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6);
        let loss = |p: &Tensor| (p * &weights).unwrap().sum_all().unwrap();
        let (ga, gb) = (loss(&pa).backward().unwrap(), loss(&pb).backward().unwrap());
        let (ga, gb) = (ga.get(a.as_tensor()).unwrap(), gb.get(b.as_tensor()).unwrap());
        let diff = (ga - gb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "softmax gradients differ by {diff}");
    }
}

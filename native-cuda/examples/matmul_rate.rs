//! The CPU's f32 matrix-product rate through candle (the gemm crate), at the shapes of sparsevlm-mini's
//! training pass: a packed sequence of about 800 tokens through SmolLM2-135M's linear layers. The training
//! throughput in docs/mini.md is stated against this rate.
//!
//! `cargo run --release -p sparsevlm-candle --example matmul_rate`

use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> candle_core::Result<()> {
    let n = 800;
    // (in, out) of the q/o, k/v, gate/up and down projections of SmolLM2-135M.
    let shapes = [(576, 576), (576, 192), (576, 1536), (1536, 576)];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let mut total_flop = 0.0;
    let mut total_s = 0.0;
    for (k, m) in shapes {
        let x = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
        let w = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let _ = x.matmul(&w.t()?)?; // warm-up
        let reps = 20;
        let started = Instant::now();
        for _ in 0..reps {
            let _ = x.matmul(&w.t()?)?;
        }
        let s = started.elapsed().as_secs_f64();
        let flop = 2.0 * (n * k * m * reps) as f64;
        println!("[{n} x {k}] · [{k} x {m}]: {:.1} GFLOP/s", flop / s / 1e9);
        total_flop += flop;
        total_s += s;
    }
    println!("overall: {:.1} GFLOP/s on {threads} threads", total_flop / total_s / 1e9);
    Ok(())
}

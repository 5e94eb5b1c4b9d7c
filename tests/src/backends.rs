//! The backends a consistency check runs on: the CPU reference always, wgpu when an adapter exists.
//!
//! A backend that is missing prints `SKIP: <reason>` and the check returns without asserting anything,
//! which never counts as a pass for that backend. `just test` sets `SPARSEVLM_REQUIRE_WGPU=1`, which turns
//! a missing wgpu adapter into a failure, so that CI cannot skip the wgpu suite silently.

use std::sync::OnceLock;

use sparsevlm_wgpu::GpuContext;

/// Whether the environment demands a wgpu adapter.
fn wgpu_required() -> bool {
    std::env::var("SPARSEVLM_REQUIRE_WGPU").is_ok_and(|v| v == "1")
}

/// A wgpu context for `check`, or `None` after printing `SKIP: <reason>`.
///
/// # Panics
/// When no adapter exists and `SPARSEVLM_REQUIRE_WGPU=1`.
pub fn wgpu(check: &str) -> Option<GpuContext> {
    // Creating an instance is cheap; finding out once whether one exists avoids repeating the message.
    static PROBE: OnceLock<Result<String, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        GpuContext::new_blocking().map(|c| format!("{:?}", c.adapter_info().name)).map_err(|e| e.to_string())
    });
    match probe {
        Ok(_) => match GpuContext::new_blocking() {
            Ok(ctx) => Some(ctx),
            Err(e) => skip_or_fail(check, &e.to_string()),
        },
        Err(e) => skip_or_fail(check, e),
    }
}

fn skip_or_fail(check: &str, reason: &str) -> Option<GpuContext> {
    if wgpu_required() {
        panic!("{check}: SPARSEVLM_REQUIRE_WGPU=1 but wgpu has no adapter: {reason}");
    }
    println!("SKIP: {check} on wgpu: {reason}");
    None
}

/// Seeded uniform values in `[lo, hi)`.
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = sparsevlm_core::rng::SplitMix64::new(seed);
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

/// Seeded standard normal values times `scale`.
pub fn normal(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = sparsevlm_core::rng::SplitMix64::new(seed);
    (0..n).map(|_| scale * rng.next_normal()).collect()
}

/// The first CUDA device for `check`.
///
/// The CUDA suite only runs in a build with the `cuda` feature (`just test-cuda`); without it its tests
/// are `#[ignore]`d with a `SKIP:` reason, so that `cargo test` reports them as ignored, never as passed.
///
/// # Panics
/// When no CUDA device can be opened: a CUDA build fails loudly without a GPU.
pub fn cuda(check: &str) -> candle_core::Device {
    match candle_core::Device::new_cuda(0) {
        Ok(device) => device,
        Err(e) => panic!("{check}: this is a CUDA build but no CUDA device opens: {e}"),
    }
}

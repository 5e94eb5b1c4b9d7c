//! Every CUDA kernel compiles with NVRTC, as the CUDA backend compiles it at run time, for the production
//! card (A100, compute_80) and the test card (H100, compute_90). NVRTC needs no GPU: the CPU suite loads
//! NVIDIA's libnvrtc from the pinned PyPI wheel (`just nvrtc`). Without it the check prints `SKIP:`;
//! `just test` sets `SPARSEVLM_REQUIRE_NVRTC=1`, which turns a missing libnvrtc into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(unsafe_code)] // one FFI probe: whether the NVRTC library can be loaded

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use sparsevlm_kernels::KERNELS;

#[test]
fn every_cuda_kernel_compiles_with_nvrtc() {
    // SAFETY: only tries to load the shared library; nothing is called when it is absent.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        if std::env::var("SPARSEVLM_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
            panic!("SPARSEVLM_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (run `just nvrtc`, set LD_LIBRARY_PATH)");
        }
        println!("SKIP: NVRTC compilation of the CUDA kernels: libnvrtc cannot be loaded");
        return;
    }
    let with_cuda: Vec<_> = KERNELS.iter().filter(|k| k.cuda.is_some()).collect();
    for expected in ["attention", "compact", "pairwise_distances", "rater_probs", "rater_probs_reduce", "top_k"] {
        assert!(with_cuda.iter().any(|k| k.name == expected), "{expected} has no CUDA twin");
    }
    for kernel in with_cuda {
        for arch in ["compute_80", "compute_90"] {
            let options = CompileOptions { options: vec![format!("--gpu-architecture={arch}")], ..Default::default() };
            let ptx = compile_ptx_with_opts(kernel.cuda.unwrap(), options)
                .unwrap_or_else(|e| panic!("{} does not compile for {arch}: {e}", kernel.name))
                .to_src();
            assert!(
                ptx.contains(&format!(".entry {}(", kernel.name)),
                "{}'s PTX for {arch} has no entry named after the kernel",
                kernel.name
            );
        }
    }
}

//! # sparsevlm-kernels
//!
//! The CUDA (`cuda/*.cu`, compiled at run time with NVRTC) and WGSL (`wgsl/*.wgsl`) twins of every
//! sparsevlm kernel, exposed as one table so that both backends, and the tests that check the twins
//! against each other, load them from one place. `README.md` lists the kernels and what each implements.

/// One kernel and its two twins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// Shared entry name: `extern "C" __global__` in CUDA and `@compute fn` in WGSL.
    pub name: &'static str,
    /// CUDA C++ source, compiled with NVRTC (`None` until the CUDA twin is written).
    pub cuda: Option<&'static str>,
    /// WGSL source: one module whose compute entry point is `name`, using every binding it declares
    /// (binding 0 is the parameter uniform, then the storage buffers in call order).
    pub wgsl: &'static str,
}

pub mod params;

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// Looks a kernel up by its entry name.
pub fn kernel(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name)
}

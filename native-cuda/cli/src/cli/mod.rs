//! The `sparsevlm` command line: one module per command, each a `run_*`-style function.

pub mod bench;
pub mod common;
pub mod demo;
pub mod eval;
pub mod inspect;
pub mod mini;
pub mod run;
pub mod scenes;
pub mod train;
pub mod wgpu;

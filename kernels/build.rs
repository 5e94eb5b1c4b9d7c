//! Generates the kernel table from the files in `wgsl/` and `cuda/`: every `wgsl/NAME.wgsl` is one kernel
//! whose compute entry point is `NAME`; `cuda/NAME.cu` is its CUDA twin when it exists.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    println!("cargo:rerun-if-changed=wgsl");
    println!("cargo:rerun-if-changed=cuda");
    let mut names: Vec<String> = std::fs::read_dir(root.join("wgsl"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".wgsl")).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut table = String::from("/// Every kernel of the project, generated from `wgsl/` and `cuda/` by `build.rs`.\npub const KERNELS: &[Kernel] = &[\n");
    for name in &names {
        let wgsl = root.join("wgsl").join(format!("{name}.wgsl"));
        let cuda = root.join("cuda").join(format!("{name}.cu"));
        println!("cargo:rerun-if-changed={}", wgsl.display());
        let cuda_src = if Path::new(&cuda).exists() {
            format!("Some(include_str!({:?}))", cuda.display().to_string())
        } else {
            "None".to_string()
        };
        let _ = writeln!(
            table,
            "    Kernel {{ name: {name:?}, cuda: {cuda_src}, wgsl: include_str!({:?}) }},",
            wgsl.display().to_string()
        );
    }
    table.push_str("];\n");
    let out = std::env::var("OUT_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    if let Err(e) = std::fs::write(out.join("kernels.rs"), table) {
        panic!("writing the kernel table: {e}");
    }
}

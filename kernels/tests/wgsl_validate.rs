//! Every WGSL kernel parses and validates with naga (wgpu's shader translator) under WebGPU's baseline:
//! no optional capability (no f16 type, no subgroups; `unpack2x16float` is core WGSL, which wgpu grants every
//! WebGPU-compliant adapter as the downlevel flag `SHADER_F16_IN_F32`), at most 256 invocations per workgroup, at most 16 KiB of
//! workgroup memory, a compute entry point named after its file, and binding 0 the parameter uniform.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, ShaderStage};
use sparsevlm_kernels::{kernel, KERNELS};

const MAX_INVOCATIONS: u32 = 256;
const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;

#[test]
fn every_wgsl_kernel_validates_within_webgpu_defaults() {
    assert!(KERNELS.len() >= 20, "the table lists every kernel file ({} found)", KERNELS.len());
    for k in KERNELS {
        let module =
            naga::front::wgsl::parse_str(k.wgsl).unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(k.wgsl)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16_IN_FLOAT32)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(k.wgsl)));
        let _ = info;

        let entries: Vec<_> = module.entry_points.iter().filter(|e| e.stage == ShaderStage::Compute).collect();
        assert_eq!(entries.len(), 1, "{}: one compute entry point", k.name);
        let entry = entries[0];
        assert_eq!(entry.name, k.name, "the entry point is named after its file");
        let invocations: u32 = entry.workgroup_size.iter().product();
        assert!(invocations <= MAX_INVOCATIONS, "{}: {invocations} invocations per workgroup", k.name);

        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let shared: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum();
        assert!(shared <= MAX_WORKGROUP_BYTES, "{}: {shared} bytes of workgroup memory", k.name);

        let params = module
            .global_variables
            .iter()
            .find(|(_, v)| v.binding.as_ref().is_some_and(|b| b.group == 0 && b.binding == 0));
        let (_, params) = params.unwrap_or_else(|| panic!("{}: binding 0 holds the parameters", k.name));
        assert_eq!(params.space, AddressSpace::Uniform, "{}: binding 0 is a uniform", k.name);
        let size = layouter[params.ty].size;
        assert!(
            size % 16 == 0 && size <= 256,
            "{}: parameters of {size} bytes (a multiple of 16, at most 256)",
            k.name
        );
    }
}

#[test]
fn every_kernel_file_is_in_the_table_once() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wgsl");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .collect();
    files.sort();
    let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
    assert_eq!(names, files);
    assert!(kernel("rater_probs").is_some());
    assert!(kernel("no_such_kernel").is_none());
}

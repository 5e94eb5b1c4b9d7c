// fill: writes one value into every element of a buffer (initialises accumulators).
// Shapes: out [n]. Launch: ceil(n / 256) workgroups of 256 (x; y adds 65535 * 256 per row).

struct Params {
    n: u32,
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.n) {
        out[i] = p.value;
    }
}

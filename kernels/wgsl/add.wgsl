// add: out = a + b, element by element.
// Shapes: a [n] f32, b [n] f32, out [n] f32 (any shape, flattened).
// Launch: ceil(n / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256). No reduction.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.n) {
        out[i] = a[i] + b[i];
    }
}

// add_scaled: out[r, c] = x[r, c] + gamma[c] · y[r, c] (a residual through DINOv2's layer scale,
// Dinov2LayerScale in Hugging Face transformers' modeling_dinov2).
// Shapes: x [m, n] f32, y [m, n] f32, gamma [n] f32, out [m, n] f32; len = m·n.
// Launch: ceil(len / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256).
// No reduction.

struct Params {
    len: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn add_scaled(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.len) {
        out[i] = x[i] + gamma[i % p.n] * y[i];
    }
}

// silu_mul: out = silu(gate) ⊙ up with silu(g) = g / (1 + exp(−g)), the SwiGLU of LlamaMLP in Hugging
// Face transformers' modeling_llama (down_proj(act_fn(gate_proj(x)) * up_proj(x))).
// Shapes: gate [n] f32, up [n] f32, out [n] f32 (any shape, flattened).
// Launch: ceil(n / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256). No reduction.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.n) {
        let g = gate[i];
        out[i] = g / (1.0 + exp(-g)) * up[i];
    }
}

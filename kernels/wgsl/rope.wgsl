// rope: rotary position embedding in Hugging Face's rotate-half form (apply_rotary_pos_emb in
// transformers' modeling_llama): for each head and i < d/2, with x1 = x[.., i] and x2 = x[.., i + d/2],
// out[.., i] = x1·cos − x2·sin and out[.., i + d/2] = x2·cos + x1·sin, cos/sin of token t's angle i.
// Shapes: x [n, h, d] f32, cos [n, d/2] f32, sin [n, d/2] f32 (tables from the host), out [n, h, d] f32.
// d even.
// Launch: ceil(n·h·d/2 / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256); one
// pair (token, head, i) per invocation. No reduction.

struct Params {
    n: u32,
    h: u32,
    d: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half_d = p.d / 2u;
    let j = gid.x + gid.y * 65535u * 256u;
    if (j >= p.n * p.h * half_d) {
        return;
    }
    let i = j % half_d;
    let th = j / half_d;
    let token = th / p.h;
    let base = th * p.d;
    let c = cos_t[token * half_d + i];
    let s = sin_t[token * half_d + i];
    let x1 = x[base + i];
    let x2 = x[base + i + half_d];
    out[base + i] = x1 * c - x2 * s;
    out[base + i + half_d] = x2 * c + x1 * s;
}

// select_rows: out[i, :] = x[rows[i], :], a gather of whole rows (kept tokens), copied bit for bit.
// Shapes: x [n, c] of 4-byte words (f32 or u32), rows [r] u32 (< n, checked on the host), out [r, c].
// Launch: ceil(r·c / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256); one word
// per invocation. No reduction.

struct Params {
    r: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn select_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.r * p.c) {
        out[i] = x[rows[i / p.c] * p.c + i % p.c];
    }
}

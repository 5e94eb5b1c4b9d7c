// heads_first: out[j, i, :] = x[i, j, :], swapping the two outer axes ([tokens, heads, d] ↔
// [heads, tokens, d]), copied bit for bit.
// Shapes: x [a, b, c] of 4-byte words (f32 or u32), out [b, a, c].
// Launch: ceil(a·b·c / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256); one
// output word per invocation. No reduction.

struct Params {
    a: u32,
    b: u32,
    c: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn heads_first(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x + gid.y * 65535u * 256u;
    if (o < p.a * p.b * p.c) {
        let cc = o % p.c;
        let i = (o / p.c) % p.a;
        let j = o / (p.c * p.a);
        out[o] = x[(i * p.b + j) * p.c + cc];
    }
}

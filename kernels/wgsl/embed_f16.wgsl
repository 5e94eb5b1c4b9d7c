// embed_f16: out[t, c] = table[ids[t], c] for an f16 table, two values per word.
// Shapes: w [vocab, k / 2] u32 (element 2·i low half, 2·i + 1 high half of word i), ids [t] u32 (< vocab,
// checked on the host), out [t, k] f32. k even.
// Launch: ceil(t·k / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256); one
// output element per invocation. No reduction.

struct Params {
    t: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn embed_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i >= p.t * p.k) {
        return;
    }
    let e = ids[i / p.k] * p.k + i % p.k;
    let v = unpack2x16float(w[e / 2u]);
    out[i] = select(v.x, v.y, (e & 1u) == 1u);
}

// embed_q8_0: out[t, c] = table[ids[t], c] for a table in GGUF Q8_0 blocks (token embeddings).
// Shapes: qs [vocab, k / 4] u32 (four i8 quants per word, element 4·i + b in byte b), scales
// [ceil(vocab·k / 64)] u32 (f16 d of block g = row·k/32 + block in half g % 2 of word g / 2; value = d·q),
// ids [t] u32 (< vocab, checked on the host), out [t, k] f32. k % 32 == 0.
// Launch: ceil(t·k / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256); one
// output element per invocation. No reduction.

struct Params {
    t: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn embed_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i >= p.t * p.k) {
        return;
    }
    let row = ids[i / p.k];
    let c = i % p.k;
    let e = row * p.k + c;
    let g = e / 32u;
    let s = unpack2x16float(scales[g >> 1u]);
    let d = select(s.x, s.y, (g & 1u) == 1u);
    let q = bitcast<i32>(qs[e / 4u] << (24u - 8u * (e & 3u))) >> 24u;
    out[i] = d * f32(q);
}

// compact: applies a compaction plan (algorithm.md §2.6 step 3): the next layer's input is
// [pre ; kept visual ; merged ; text], each output row a weighted sum of its CSR group of input rows,
//   out[o, c] = Σ_{m ∈ members[offsets[o] .. offsets[o + 1]]} hidden[m, c] · weight[o]
// (a copy has one member and weight 1; a merged token the official mean weight 1 / (count + 1e-6)).
//
// Shapes: hidden [n_in, width] f32; offsets [n_out + 1] u32; members [Σ group sizes] u32 (checked on the host);
// weight [n_out] f32; out [n_out, width] f32.
// Launch: ceil(n_out · width / 256) workgroups of 256, one thread per output element; element
// e = global x + 65535 · 256 · global y.
// Reduction order: each thread adds its group's weighted members sequentially, in plan order (as the CPU
// reference does, in f32).

struct Params {
    n_out: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hidden: array<f32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> members: array<u32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn compact(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x + gid.y * 65535u * 256u;
    if (e >= p.n_out * p.width) {
        return;
    }
    let o = e / p.width;
    let c = e % p.width;
    let w = weight[o];
    var acc = 0.0;
    for (var m = offsets[o]; m < offsets[o + 1u]; m += 1u) {
        acc += hidden[members[m] * p.width + c] * w;
    }
    out[e] = acc;
}

// gelu: out = x · Φ(x) = x/2 · (1 + erf(x / √2)), the exact GELU of torch.nn.GELU() (DINOv2's MLP and
// the mlp2x_gelu projector). WGSL has no erf: 1 + erf(z) is evaluated as 2 − erfc(|z|) for z ≥ 0 and
// erfc(|z|) for z < 0, with erfc(a) = t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·exp(−a²), t = 1/(1 + p·a)
// (Abramowitz & Stegun 7.1.26, |error of erf| ≤ 1.5e-7); the erfc form keeps the negative tail free of
// cancellation.
// Shapes: x [n] f32, out [n] f32 (any shape, flattened).
// Launch: ceil(n / 256) workgroups of 256, spread over y past 65535 (index = x + y·65535·256). No reduction.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn erfc_pos(a: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * exp(-a * a);
}

@compute @workgroup_size(256)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 256u;
    if (i < p.n) {
        let v = x[i];
        let e = erfc_pos(abs(v) * 0.70710678118654752);
        let one_plus_erf = select(e, 2.0 - e, v >= 0.0);
        out[i] = 0.5 * v * one_plus_erf;
    }
}

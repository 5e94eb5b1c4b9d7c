//! The wgpu context on its own: dispatch, readback, pooling and clear errors.

use bytemuck::{Pod, Zeroable};
use sparsevlm_tests::backends;
use sparsevlm_wgpu::{DType, WebError};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct FillParams {
    n: u32,
    value: f32,
    _pad: [u32; 2],
}

#[test]
fn fill_writes_every_element_of_odd_and_multi_row_sizes() {
    let Some(ctx) = backends::wgpu("fill") else { return };
    for n in [1usize, 255, 257, 1000] {
        let out = ctx.empty(&[n], DType::F32).unwrap();
        ctx.dispatch(
            "fill",
            &FillParams { n: n as u32, value: 2.5, _pad: [0; 2] },
            &[&out],
            [(n as u32).div_ceil(256), 1, 1],
        )
        .unwrap();
        let got = ctx.read_blocking(&out).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(|&v| v == 2.5), "n = {n}");
    }
    ctx.take_error().unwrap();
}

#[test]
fn upload_roundtrips_and_buffers_return_to_the_pool() {
    let Some(ctx) = backends::wgpu("upload") else { return };
    let data = backends::normal(3, 777, 1.0);
    let t = ctx.upload(&[7, 111], &data).unwrap();
    assert_eq!(ctx.read_blocking(&t).unwrap(), data);
    assert_eq!(t.reshape(&[777]).unwrap().shape(), &[777]);
    assert!(t.reshape(&[778]).is_err());
    drop(t);
    let before = format!("{:?}", ctx);
    assert!(before.contains("GpuContext"));
    let again = ctx.upload(&[777], &data).unwrap();
    assert_eq!(ctx.read_blocking(&again).unwrap(), data);
}

#[test]
fn bad_calls_are_errors_not_panics() {
    let Some(ctx) = backends::wgpu("errors") else { return };
    assert!(matches!(ctx.upload(&[3, 3], &[0.0; 8]), Err(WebError::Shape { .. })));
    let out = ctx.empty(&[4], DType::F32).unwrap();
    let params = FillParams { n: 4, value: 0.0, _pad: [0; 2] };
    assert!(matches!(ctx.dispatch("no_such_kernel", &params, &[&out], [1, 1, 1]), Err(WebError::UnknownKernel(_))));
    assert!(matches!(ctx.dispatch("fill", &params, &[&out], [0, 1, 1]), Err(WebError::Shape { .. })));
    // A wrong binding count is a validation error reported by the device, not a panic.
    ctx.dispatch("fill", &params, &[&out, &out], [1, 1, 1]).unwrap();
    assert!(matches!(ctx.take_error(), Err(WebError::Gpu(_))));
}

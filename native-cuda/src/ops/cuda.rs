//! The CUDA side of [`super`]: our kernels from `kernels/cuda/`, compiled at run time with NVRTC (through
//! cudarc, which candle re-exports) for the compute capability of the device at hand, loaded once per
//! device, and launched on candle's stream so that they order with candle's own kernels.
//!
//! Launching a kernel is `unsafe` in cudarc (the argument list must match the kernel's signature); each
//! launch below passes the `#[repr(C)]` parameter struct its `.cu` file declares, then the buffers in the
//! order of the kernel's parameters, with sizes checked on the host.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytemuck::Pod;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape, Storage, Tensor};
use sparsevlm_core::{CompactionPlan, Reduction};
use sparsevlm_kernels::params::{
    CompactParams, PairwiseDistancesParams, RaterProbsParams, RaterProbsReduceParams, TopKParams,
};

use super::RaterProbsOp;

type Result<T> = candle_core::Result<T>;

/// PTX text by (kernel name, compute capability).
type PtxCache = HashMap<(String, (i32, i32)), Arc<str>>;

/// PTX of each kernel per compute capability, compiled once per process. Launches ask for it every time
/// (candle loads the module only when the device lacks it), so it is shared, never copied.
fn ptx(name: &str, capability: (i32, i32)) -> Result<Arc<str>> {
    static CACHE: OnceLock<Mutex<PtxCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (name.to_owned(), capability);
    if let Some(ptx) = cache.lock().map_err(|_| candle_core::Error::Msg("PTX cache poisoned".into()))?.get(&key) {
        return Ok(Arc::clone(ptx));
    }
    let source = sparsevlm_kernels::kernel(name)
        .and_then(|k| k.cuda)
        .ok_or_else(|| candle_core::Error::Msg(format!("kernel {name} has no CUDA source")))?;
    let options = CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{}{}", capability.0, capability.1)],
        ..Default::default()
    };
    let ptx: Arc<str> = compile_ptx_with_opts(source, options)
        .map_err(|e| candle_core::Error::Msg(format!("NVRTC could not compile {name}: {e}")))?
        .to_src()
        .into();
    cache.lock().map_err(|_| candle_core::Error::Msg("PTX cache poisoned".into()))?.insert(key, Arc::clone(&ptx));
    Ok(ptx)
}

/// Compiles (once) and loads (once per device) kernel `name`.
fn function(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    let capability = dev.cuda_stream().context().compute_capability().w()?;
    let ptx = ptx(name, capability)?;
    Ok(dev.get_or_load_custom_func(name, &format!("sparsevlm_{name}"), &ptx)?.into_cuda_function())
}

/// Launches `args` (built by the caller on candle's stream).
fn launch(mut args: LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    // SAFETY: every caller pushes exactly the parameters of the kernel it loaded, in order: the
    // `#[repr(C)]` twin of the kernel's parameter struct, then device buffers whose lengths it checked.
    unsafe { args.launch(cfg) }.w()?;
    Ok(())
}

/// Compiles every kernel that has a CUDA twin for `capability`; returns each name with its PTX size (tests).
pub fn compile_all(capability: (i32, i32)) -> Result<Vec<(&'static str, usize)>> {
    sparsevlm_kernels::KERNELS
        .iter()
        .filter(|k| k.cuda.is_some())
        .map(|k| ptx(k.name, capability).map(|p| (k.name, p.len())))
        .collect()
}

/// A kernel's parameter struct (`sparsevlm_kernels::params`), passed by value as its first argument.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
struct Params<T>(T);
// SAFETY: `T: Pod` is plain data without padding or pointers, and `repr(transparent)` keeps its layout, which
// is the `.cu` file's parameter struct.
unsafe impl<T: Pod> DeviceRepr for Params<T> {}

fn f32_view<'a>(
    (s, l): (&'a CudaStorage, &Layout),
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    let Some((start, end)) = l.contiguous_offsets() else { candle_core::bail!("sparsevlm ops take contiguous inputs") };
    Ok(s.as_cuda_slice::<f32>()?.slice(start..end))
}

fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

fn wrap(slice: candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

pub(super) fn rater_probs(
    op: &RaterProbsOp,
    q: (&CudaStorage, &Layout),
    k: (&CudaStorage, &Layout),
    lse: (&CudaStorage, &Layout),
) -> Result<(CudaStorage, Shape)> {
    let dev = q.0.device.clone();
    let (h, r, v) = (op.n_heads, op.n_raters, op.visual_keys.len());
    let n_keys = k.1.dims()[1];
    let keys: Vec<u32> = op.visual_keys.iter().map(|&j| j as u32).collect();
    let keys = dev.clone_htod(&keys)?;
    // probs[h, r, v] of the rater rows on the visual keys.
    let mut probs = dev.alloc_zeros::<f32>(h * r * v)?;
    let params = Params(RaterProbsParams {
        n_heads: h as u32,
        n_kv_heads: op.n_kv_heads as u32,
        n_raters: r as u32,
        n_keys: n_keys as u32,
        n_visual: v as u32,
        head_dim: op.head_dim as u32,
        scale: op.scale,
        _pad0: 0,
    });
    let (qv, kv, lv) = (f32_view(q)?, f32_view(k)?, f32_view(lse)?);
    let f = function(&dev, "rater_probs")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&params).arg(&qv).arg(&kv).arg(&lv).arg(&keys).arg(&mut probs);
    let cfg =
        LaunchConfig { grid_dim: (blocks(v, 256), r as u32, h as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch(b, cfg)?;

    let divisor = match &op.gravity {
        Some(g) => dev.clone_htod(&g.divisor())?,
        None => dev.alloc_zeros::<f32>(1)?,
    };
    let rows = match op.reduction {
        Reduction::HeadsOverRaters => h,
        Reduction::RatersOverHeads => r,
    };
    let mut out = dev.alloc_zeros::<f32>(rows * v)?;
    let params = Params(RaterProbsReduceParams {
        n_heads: h as u32,
        n_raters: r as u32,
        n_cols: v as u32,
        n_visual: v as u32,
        over_heads: u32::from(op.reduction == Reduction::RatersOverHeads),
        gather: 0,
        gravity: u32::from(op.gravity.is_some()),
        _pad0: 0,
    });
    let f = function(&dev, "rater_probs_reduce")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&params).arg(&probs).arg(&keys).arg(&divisor).arg(&mut out);
    let cfg = LaunchConfig { grid_dim: (blocks(v, 32), rows as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch(b, cfg)?;
    Ok((wrap(out, &dev), Shape::from((rows, v))))
}

pub(super) fn top_k_ranks(scores: (&CudaStorage, &Layout)) -> Result<(CudaStorage, Shape)> {
    let dev = scores.0.device.clone();
    let view = f32_view(scores)?;
    let n = view.len();
    // SAFETY: f32 and u32 have the same size and alignment; the kernel reads the raw bits.
    let bits =
        unsafe { view.transmute::<u32>(n) }.ok_or_else(|| candle_core::Error::Msg("scores as u32 bits".into()))?;
    let mut rank = dev.alloc_zeros::<u32>(n.max(1))?;
    let params = Params(TopKParams { n: n as u32, n_tiles: n.div_ceil(256) as u32, _pad0: 0, _pad1: 0 });
    let f = function(&dev, "top_k")?;
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&params).arg(&bits).arg(&mut rank);
    let cfg = LaunchConfig { grid_dim: (blocks(n, 256).max(1), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch(b, cfg)?;
    Ok((CudaStorage::wrap_cuda_slice(rank, dev), Shape::from(n)))
}

pub(super) fn pairwise_distances(rows: &[usize], hidden: (&CudaStorage, &Layout)) -> Result<(CudaStorage, Shape)> {
    let dev = hidden.0.device.clone();
    let width = hidden.1.dims()[1];
    let view = f32_view(hidden)?;
    let m = rows.len();
    let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let idx = dev.clone_htod(&idx)?;
    let mut out = dev.alloc_zeros::<f32>((m * m).max(1))?;
    let params = Params(PairwiseDistancesParams { n_rows: m as u32, hidden: width as u32, _pad0: 0, _pad1: 0 });
    if m > 0 {
        let f = function(&dev, "pairwise_distances")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&params).arg(&view).arg(&idx).arg(&mut out);
        let cfg = LaunchConfig { grid_dim: (m as u32, m as u32, 1), block_dim: (64, 1, 1), shared_mem_bytes: 0 };
        launch(b, cfg)?;
    }
    Ok((wrap(out, &dev), Shape::from((m, m))))
}

pub(super) fn compact(plan: &CompactionPlan, hidden: (&CudaStorage, &Layout)) -> Result<(CudaStorage, Shape)> {
    let dev = hidden.0.device.clone();
    let width = hidden.1.dims()[1];
    let view = f32_view(hidden)?;
    let n_out = plan.n_out();
    let offsets = dev.clone_htod(&plan.offsets)?;
    let members = dev.clone_htod(if plan.members.is_empty() { &[0u32][..] } else { &plan.members })?;
    let weight = dev.clone_htod(if plan.weight.is_empty() { &[0f32][..] } else { &plan.weight })?;
    let mut out = dev.alloc_zeros::<f32>((n_out * width).max(1))?;
    if n_out * width > 0 {
        let params = Params(CompactParams { n_out: n_out as u32, width: width as u32, _pad0: 0, _pad1: 0 });
        let f = function(&dev, "compact")?;
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&params).arg(&view).arg(&offsets).arg(&members).arg(&weight).arg(&mut out);
        let cfg =
            LaunchConfig { grid_dim: (blocks(n_out * width, 256), 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch(b, cfg)?;
    }
    Ok((wrap(out, &dev), Shape::from((n_out, width))))
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct AttentionParams {
    nq: u32,
    nk: u32,
    h: u32,
    hkv: u32,
    d: u32,
    causal: u32,
    scale: f32,
    bf16: u32,
    q_head_stride: u32,
    q_row_stride: u32,
    k_head_stride: u32,
    k_row_stride: u32,
    v_head_stride: u32,
    v_row_stride: u32,
    split: u32,
    splits: u32,
}
// SAFETY: as above.
unsafe impl DeviceRepr for AttentionParams {}

/// Up to this many queries, [`attention`] splits each query's keys over blocks of `SPLIT_KEYS` keys.
const SPLIT_MAX_QUERIES: usize = 4;
const SPLIT_KEYS: usize = 128;

/// Head and row strides of a `[1, heads, rows, d]` tensor whose rows are contiguous (a KV-cache view
/// included), or `None`.
fn head_row_strides(t: &Tensor) -> Option<(usize, usize)> {
    let stride = t.stride();
    (t.rank() == 4 && stride[3] == 1).then(|| (stride[1], stride[2]))
}

/// The f32 outputs and work buffers of one attention launch.
struct AttentionBuffers<'a> {
    lse: &'a mut CudaSlice<f32>,
    scratch: &'a mut CudaSlice<f32>,
    tickets: &'a mut CudaSlice<u32>,
}

/// Launches `attention` on q, k and v of element type `T` (bf16 or f32) from the given element offsets;
/// returns the output, `out_len` elements of `T`.
#[allow(clippy::too_many_arguments)]
fn launch_attention<T: DeviceRepr + ValidAsZeroBits>(
    dev: &CudaDevice,
    f: &CudaFunction,
    cfg: LaunchConfig,
    params: &AttentionParams,
    (q, k, v): (&CudaSlice<T>, &CudaSlice<T>, &CudaSlice<T>),
    (q_offset, k_offset, v_offset): (usize, usize, usize),
    out_len: usize,
    buffers: &mut AttentionBuffers<'_>,
) -> Result<CudaSlice<T>> {
    let mut out = dev.alloc_zeros::<T>(out_len)?;
    let (q, k, v) = (q.slice(q_offset..), k.slice(k_offset..), v.slice(v_offset..));
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(f);
    b.arg(params).arg(&q).arg(&k).arg(&v).arg(&mut out);
    b.arg(&mut *buffers.lse).arg(&mut *buffers.scratch).arg(&mut *buffers.tickets);
    launch(b, cfg)?;
    Ok(out)
}

/// Whether [`attention`] takes these tensors (else the caller uses the matmul-softmax path).
pub fn attention_supported(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    let d = q.dim(3).unwrap_or(0);
    q.device().is_cuda()
        && matches!(q.dtype(), DType::BF16 | DType::F32)
        && k.dtype() == q.dtype()
        && v.dtype() == q.dtype()
        && d > 0
        && d <= 128
        && d.is_multiple_of(16)
        && q.dim(0).ok() == Some(1)
        && [q, k, v].iter().all(|t| head_row_strides(t).is_some())
}

/// Flash-style causal (or full) attention with grouped-query heads, reading the KV cache in place.
/// Returns the output `[1, nq, h·d]` in q's dtype and the log-sum-exp of every query's scaled scores
/// `[nq, h]` f32.
///
/// # Shapes
/// `q`: `[1, h, nq, d]`; `k`, `v`: `[1, hkv, nk, d]` with contiguous rows (any head stride).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, scale: f32) -> Result<(Tensor, Tensor)> {
    if !attention_supported(q, k, v) {
        candle_core::bail!("flash attention does not take q {:?} {:?}, k {:?}", q.dims(), q.dtype(), k.dims());
    }
    let (_, h, nq, d) = q.dims4()?;
    let (_, hkv, nk, kd) = k.dims4()?;
    if kd != d || v.dims4()? != (1, hkv, nk, d) || hkv == 0 || h % hkv != 0 || (causal && nk < nq) || nq == 0 {
        candle_core::bail!("attention shapes: q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims());
    }
    let (qs, ks, vs) = (head_row_strides(q), head_row_strides(k), head_row_strides(v));
    let (Some(qs), Some(ks), Some(vs)) = (qs, ks, vs) else { candle_core::bail!("attention needs contiguous rows") };
    let bf16 = q.dtype() == DType::BF16;
    // A few queries over a long cache (decoding): split the keys within the block instead of tiling queries.
    let split = nq <= SPLIT_MAX_QUERIES;
    let splits = if split { nk.div_ceil(SPLIT_KEYS).max(1) } else { 1 };
    let params = AttentionParams {
        nq: nq as u32,
        nk: nk as u32,
        h: h as u32,
        hkv: hkv as u32,
        d: d as u32,
        causal: u32::from(causal),
        scale,
        bf16: u32::from(bf16),
        q_head_stride: qs.0 as u32,
        q_row_stride: qs.1 as u32,
        k_head_stride: ks.0 as u32,
        k_row_stride: ks.1 as u32,
        v_head_stride: vs.0 as u32,
        v_row_stride: vs.1 as u32,
        split: u32::from(split),
        splits: splits as u32,
    };
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (Storage::Cuda(qc), Storage::Cuda(kc), Storage::Cuda(vc)) = (&*q_storage, &*k_storage, &*v_storage) else {
        candle_core::bail!("attention takes CUDA tensors")
    };
    let dev = qc.device.clone();
    let mut lse = dev.alloc_zeros::<f32>(nq * h)?;
    // Partials and tickets of the split blocks (one element each when unused).
    let partials = if splits > 1 { nq * h * splits * (d + 2) } else { 1 };
    let mut scratch = dev.alloc_zeros::<f32>(partials)?;
    let mut tickets = dev.alloc_zeros::<u32>(if splits > 1 { nq * h } else { 1 })?;
    let f = function(&dev, "attention")?;
    let grid_x = if split { nq as u32 } else { blocks(nq, 32) };
    let cfg = LaunchConfig { grid_dim: (grid_x, h as u32, splits as u32), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
    let offsets = (q_layout.start_offset(), k_layout.start_offset(), v_layout.start_offset());
    let mut buffers = AttentionBuffers { lse: &mut lse, scratch: &mut scratch, tickets: &mut tickets };
    let out_storage = match (&qc.slice, &kc.slice, &vc.slice) {
        (CudaStorageSlice::BF16(q), CudaStorageSlice::BF16(k), CudaStorageSlice::BF16(v)) => {
            let out = launch_attention(&dev, &f, cfg, &params, (q, k, v), offsets, nq * h * d, &mut buffers)?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        }
        (CudaStorageSlice::F32(q), CudaStorageSlice::F32(k), CudaStorageSlice::F32(v)) => {
            let out = launch_attention(&dev, &f, cfg, &params, (q, k, v), offsets, nq * h * d, &mut buffers)?;
            CudaStorage::wrap_cuda_slice(out, dev.clone())
        }
        _ => candle_core::bail!("attention needs q, k and v of one dtype, bf16 or f32"),
    };
    drop((q_storage, k_storage, v_storage));
    let none = candle_core::op::BackpropOp::none();
    let out = Tensor::from_storage(Storage::Cuda(out_storage), (1, nq, h * d), none.clone(), false);
    let lse = Tensor::from_storage(Storage::Cuda(wrap(lse, &dev)), (nq, h), none, false);
    Ok((out, lse))
}

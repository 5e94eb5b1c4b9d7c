//! The GPU context, created once and reused: device and queue, compiled pipelines, a buffer pool, one
//! uniform arena for kernel parameters, and a command encoder that batches dispatches until a readback.
//!
//! Follows the shape of wgpu's `repeated_compute` example and ratchet's design notes (buffer creation and
//! first bind are expensive in WebGPU, so buffers are pooled and pipelines compiled once). Limits stay at
//! WebGPU's defaults, so the code that runs natively on Vulkan also runs in browsers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytemuck::Pod;

use crate::error::{Result, WebError};
use crate::tensor::{BufferPool, GpuTensor};

/// Bytes reserved per dispatch in the parameter arena (WebGPU's `minUniformBufferOffsetAlignment`).
const PARAM_SLOT: u64 = 256;
/// Dispatches recorded before the encoder is submitted (the arena holds one slot per dispatch).
const SLOTS: u64 = 256;

/// Dispatches recorded but not yet submitted.
struct Pending {
    encoder: wgpu::CommandEncoder,
    /// Parameter bytes of each recorded dispatch, at `slot * PARAM_SLOT` in the arena.
    params: Vec<u8>,
    slots: u64,
    /// Tensors the recorded dispatches use, kept alive (out of the pool) until submission.
    keep_alive: Vec<GpuTensor>,
}

/// A wgpu device with everything needed to run kernels on it.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    pipelines: RefCell<HashMap<&'static str, wgpu::ComputePipeline>>,
    pub(crate) pool: Rc<BufferPool>,
    arena: wgpu::Buffer,
    pending: RefCell<Option<Pending>>,
    /// Validation and out-of-memory errors the device reported (instead of wgpu's default panic).
    errors: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.info.name).field("backend", &self.info.backend).finish()
    }
}

impl GpuContext {
    /// Opens the first adapter the platform offers (Vulkan or the browser's WebGPU), with WebGPU's default
    /// limits and no optional feature.
    pub async fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| WebError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("sparsevlm"),
                required_features: wgpu::Features::empty(),
                required_limits: wgpu::Limits::default(),
                ..Default::default()
            })
            .await
            .map_err(|e| WebError::Device(e.to_string()))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(e.to_string());
            }
        }));
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel parameters"),
            size: PARAM_SLOT * SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pool = Rc::new(BufferPool::new(device.clone()));
        Ok(Self {
            device,
            queue,
            info,
            pipelines: RefCell::new(HashMap::new()),
            pool,
            arena,
            pending: RefCell::new(None),
            errors,
        })
    }

    /// Opens a context, blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// The adapter in use (name, backend, device type).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Records one dispatch of `kernel` with its parameter struct (binding 0, a uniform) and its storage
    /// buffers (bindings 1, 2, … in order). Every kernel uses all of its bindings, so the pipeline's layout
    /// is derived from the shader.
    pub fn dispatch<P: Pod>(
        &self,
        kernel: &'static str,
        params: &P,
        buffers: &[&GpuTensor],
        groups: [u32; 3],
    ) -> Result<()> {
        let bytes = bytemuck::bytes_of(params);
        if bytes.len() as u64 > PARAM_SLOT {
            return Err(WebError::shape("dispatch", format!("parameters of at most {PARAM_SLOT} bytes"), bytes.len()));
        }
        let max_groups = self.device.limits().max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g == 0 || g > max_groups) {
            return Err(WebError::shape(kernel, format!("1..={max_groups} workgroups per dimension"), groups));
        }
        self.ensure_pipeline(kernel)?;
        let pipelines = self.pipelines.borrow();
        let pipeline = pipelines.get(kernel).ok_or_else(|| WebError::UnknownKernel(kernel.into()))?;

        let mut pending_ref = self.pending.borrow_mut();
        if pending_ref.as_ref().is_some_and(|p| p.slots == SLOTS) {
            let full = pending_ref.take();
            drop(pending_ref);
            self.submit(full);
            pending_ref = self.pending.borrow_mut();
        }
        let pending = pending_ref.get_or_insert_with(|| Pending {
            encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kernels") }),
            params: Vec::with_capacity((PARAM_SLOT * 16) as usize),
            slots: 0,
            keep_alive: Vec::new(),
        });
        let offset = pending.slots * PARAM_SLOT;
        pending.params.resize(offset as usize, 0);
        pending.params.extend_from_slice(bytes);
        pending.params.resize((offset + PARAM_SLOT) as usize, 0);
        pending.slots += 1;

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, t) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: t.binding() });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        {
            let mut pass = pending
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel), timestamp_writes: None });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        pending.keep_alive.extend(buffers.iter().map(|t| (*t).clone()));
        Ok(())
    }

    /// Records a byte copy between two tensors (KV-cache appends).
    pub fn copy(&self, src: &GpuTensor, src_offset: u64, dst: &GpuTensor, dst_offset: u64, bytes: u64) {
        let mut pending_ref = self.pending.borrow_mut();
        let pending = pending_ref.get_or_insert_with(|| Pending {
            encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("kernels") }),
            params: Vec::new(),
            slots: 0,
            keep_alive: Vec::new(),
        });
        pending.encoder.copy_buffer_to_buffer(src.buffer(), src_offset, dst.buffer(), dst_offset, bytes);
        pending.keep_alive.push(src.clone());
        pending.keep_alive.push(dst.clone());
    }

    /// Submits everything recorded so far.
    pub fn flush(&self) {
        let pending = self.pending.borrow_mut().take();
        self.submit(pending);
    }

    fn submit(&self, pending: Option<Pending>) {
        let Some(pending) = pending else { return };
        if !pending.params.is_empty() {
            self.queue.write_buffer(&self.arena, 0, &pending.params);
        }
        self.queue.submit(Some(pending.encoder.finish()));
        // Buffers go back to the pool only now: later uploads (queue writes) run after this submission.
        drop(pending.keep_alive);
    }

    fn ensure_pipeline(&self, kernel: &'static str) -> Result<()> {
        if self.pipelines.borrow().contains_key(kernel) {
            return Ok(());
        }
        let source = sparsevlm_kernels::kernel(kernel).ok_or_else(|| WebError::UnknownKernel(kernel.into()))?;
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel),
            source: wgpu::ShaderSource::Wgsl(source.wgsl.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module: &module,
            entry_point: Some(source.name),
            compilation_options: Default::default(),
            cache: None,
        });
        self.pipelines.borrow_mut().insert(kernel, pipeline);
        Ok(())
    }

    /// Uploads `data` into a new tensor of `shape`.
    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(WebError::shape("upload", format!("{n} values for shape {shape:?}"), data.len()));
        }
        self.upload_bytes(shape, crate::tensor::DType::F32, bytemuck::cast_slice(data))
    }

    /// Uploads raw bytes (f32, u32 or packed weights) into a new tensor.
    pub fn upload_bytes(&self, shape: &[usize], dtype: crate::tensor::DType, bytes: &[u8]) -> Result<GpuTensor> {
        // Submitted work may still read a pooled buffer that this upload would reuse.
        self.flush();
        let tensor = GpuTensor::new(&self.pool, shape, dtype, bytes.len() as u64)?;
        let mut padded;
        let bytes = if bytes.len().is_multiple_of(4) {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(bytes.len().next_multiple_of(4), 0);
            &padded
        };
        if !bytes.is_empty() {
            self.queue.write_buffer(tensor.buffer(), 0, bytes);
        }
        Ok(tensor)
    }

    /// A new uninitialised tensor, for kernel outputs.
    pub fn empty(&self, shape: &[usize], dtype: crate::tensor::DType) -> Result<GpuTensor> {
        let n: usize = shape.iter().product();
        GpuTensor::new(&self.pool, shape, dtype, (n * dtype.size()) as u64)
    }

    /// Reads a tensor's raw bytes back, submitting pending work first. Always asynchronous: the browser
    /// cannot block on a readback.
    pub async fn read_bytes(&self, tensor: &GpuTensor) -> Result<Vec<u8>> {
        let bytes = tensor.byte_len().next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pending = self.pending.borrow_mut().take();
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(tensor.buffer(), 0, &staging, 0, bytes);
        }
        self.submit(pending);
        self.queue.submit(Some(encoder.finish()));
        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |result| {
            // The receiver is dropped only when the caller gave up waiting; nothing is lost then.
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| WebError::Readback(e.to_string()))?;
        receiver
            .await
            .map_err(|_| WebError::Readback("the device was lost before the buffer mapped".into()))?
            .map_err(|e| WebError::Readback(e.to_string()))?;
        let out = {
            let view = staging.slice(..).get_mapped_range().map_err(|e| WebError::Readback(e.to_string()))?;
            view[..tensor.byte_len() as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Waits until the GPU has finished everything recorded so far (for honest timings).
    pub async fn sync(&self) -> Result<()> {
        self.flush();
        let (sender, receiver) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = sender.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| WebError::Readback(e.to_string()))?;
        receiver.await.map_err(|_| WebError::Readback("the device was lost while waiting for it".into()))
    }

    /// Reads an f32 tensor back.
    pub async fn read(&self, tensor: &GpuTensor) -> Result<Vec<f32>> {
        if tensor.dtype() != crate::tensor::DType::F32 {
            return Err(WebError::shape("read", "an f32 tensor", tensor.dtype()));
        }
        let bytes = self.read_bytes(tensor).await?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Reads an f32 tensor back, blocking (native only; tests and the CLI).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, tensor: &GpuTensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read(tensor))
    }

    /// Submits pending work and reports the first validation or out-of-memory error the device raised
    /// since the last check, if any.
    pub fn take_error(&self) -> Result<()> {
        self.flush();
        let first = match self.errors.lock() {
            Ok(mut errors) => errors.drain(..).next(),
            Err(_) => Some("the error log was poisoned".to_string()),
        };
        first.map_or(Ok(()), |e| Err(WebError::Gpu(e)))
    }
}

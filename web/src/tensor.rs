//! Device tensors: a pooled storage buffer with a shape and an element type.
//!
//! Buffers come from a pool keyed by power-of-two size classes and return to it when the last handle
//! drops, so a forward pass allocates nothing after its first run (ratchet's buffer pooling).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{Result, WebError};

/// Element types the kernels read. Quantised weights are byte blobs whose layout the kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
    /// Raw bytes (packed f16 pairs, quantised blocks).
    Bytes,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::Bytes => 1,
        }
    }
}

/// Smallest buffer the pool hands out.
const MIN_BUFFER: u64 = 256;

/// Free storage buffers by size class.
pub struct BufferPool {
    device: wgpu::Device,
    free: RefCell<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let free: usize = self.free.borrow().values().map(Vec::len).sum();
        f.debug_struct("BufferPool").field("free_buffers", &free).finish()
    }
}

impl BufferPool {
    pub(crate) fn new(device: wgpu::Device) -> Self {
        Self { device, free: RefCell::new(HashMap::new()) }
    }

    fn take(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let class = bytes.max(MIN_BUFFER).next_power_of_two();
        let max = self.device.limits().max_storage_buffer_binding_size;
        if class > max {
            return Err(WebError::shape("buffer", format!("at most {max} bytes per buffer"), bytes));
        }
        if let Some(buffer) = self.free.borrow_mut().get_mut(&class).and_then(Vec::pop) {
            return Ok(buffer);
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pooled"),
            size: class,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    fn give_back(&self, buffer: wgpu::Buffer) {
        self.free.borrow_mut().entry(buffer.size()).or_default().push(buffer);
    }

    /// Number of buffers waiting for reuse.
    pub fn free_buffers(&self) -> usize {
        self.free.borrow().values().map(Vec::len).sum()
    }
}

/// A buffer that returns to its pool when dropped.
struct Pooled {
    buffer: Option<wgpu::Buffer>,
    pool: Rc<BufferPool>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

/// A tensor on the GPU. Cloning shares the buffer.
#[derive(Clone)]
pub struct GpuTensor {
    storage: Rc<Pooled>,
    shape: Vec<usize>,
    dtype: DType,
    bytes: u64,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTensor").field("shape", &self.shape).field("dtype", &self.dtype).finish()
    }
}

impl GpuTensor {
    pub(crate) fn new(pool: &Rc<BufferPool>, shape: &[usize], dtype: DType, bytes: u64) -> Result<Self> {
        let buffer = pool.take(bytes)?;
        Ok(Self {
            storage: Rc::new(Pooled { buffer: Some(buffer), pool: Rc::clone(pool) }),
            shape: shape.to_vec(),
            dtype,
            bytes,
        })
    }

    /// The shape, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Meaningful bytes (the buffer may be larger).
    pub fn byte_len(&self) -> u64 {
        self.bytes
    }

    /// The same buffer seen with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(WebError::shape("reshape", format!("{} elements", self.len()), shape));
        }
        Ok(Self { shape: shape.to_vec(), ..self.clone() })
    }

    /// The first `rows` rows (outermost dimension) of the same buffer: a view, no copy (KV-cache prefixes).
    pub fn prefix(&self, rows: usize) -> Result<Self> {
        let Some((&outer, inner)) = self.shape.split_first() else {
            return Err(WebError::shape("prefix", "a tensor with at least one dimension", &self.shape));
        };
        if rows > outer {
            return Err(WebError::shape("prefix", format!("at most {outer} rows"), rows));
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(inner);
        let bytes = (shape.iter().product::<usize>() * self.dtype.size()) as u64;
        Ok(Self { shape, bytes, ..self.clone() })
    }

    /// Checks the shape, for kernels that validate their inputs.
    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(WebError::shape(op, format!("{shape:?}"), &self.shape));
        }
        Ok(())
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        // The option is emptied only in `drop`.
        match &self.storage.buffer {
            Some(b) => b,
            None => unreachable!("a live tensor always holds its buffer"),
        }
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer().as_entire_binding()
    }
}

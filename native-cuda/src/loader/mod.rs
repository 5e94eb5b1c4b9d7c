//! Finding and opening checkpoint weights: single or sharded safetensors (with
//! `model.safetensors.index.json`), a clear error for pickle-only checkpoints, a progress bar while
//! tensors load, and random weights for speed measurements without files.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The safetensors files of a checkpoint directory.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::checkpoint(dir, "not a directory"));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let parsed: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::checkpoint(&index, e.to_string()))?;
        let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
        let files: Vec<PathBuf> = shards.into_iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(Error::checkpoint(missing, "shard listed in model.safetensors.index.json is missing"));
        }
        return Ok(files);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let with_ext =
        |ext: &str| names.iter().filter(|p| p.extension().is_some_and(|e| e == ext)).cloned().collect::<Vec<_>>();
    let safetensors = with_ext("safetensors");
    if !safetensors.is_empty() {
        return Ok(safetensors);
    }
    if !with_ext("bin").is_empty() || !with_ext("pt").is_empty() {
        return Err(Error::checkpoint(
            dir,
            "only PyTorch pickle weights (*.bin) were found; sparsevlm reads safetensors. Convert them with \
             transformers: `AutoModelForVision2Seq.from_pretrained(dir).save_pretrained(out, \
             safe_serialization=True)` (or `LlavaLlamaForCausalLM` for original LLaVA checkpoints)",
        ));
    }
    Err(Error::checkpoint(dir, "no *.safetensors weights found"))
}

/// A memory-mapped safetensors backend that advances a progress bar as tensors are read.
struct ProgressBackend {
    inner: MmapedSafetensors,
    bar: ProgressBar,
}

impl SimpleBackend for ProgressBackend {
    fn get(&self, s: Shape, name: &str, h: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = SimpleBackend::get(&self.inner, s, name, h, dtype, dev)?;
        self.bar.inc((t.elem_count() * dtype.size_in_bytes()) as u64);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = SimpleBackend::get_unchecked(&self.inner, name, dtype, dev)?;
        self.bar.inc((t.elem_count() * dtype.size_in_bytes()) as u64);
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        SimpleBackend::contains_tensor(&self.inner, name)
    }
}

/// A progress bar for loading `total_bytes`, hidden when `show` is false.
/// The `__metadata__` map of a safetensors file, read from its header alone (no tensor data); `None` when
/// the header has no string map there.
pub fn safetensors_metadata(path: &Path) -> Result<Option<std::collections::HashMap<String, String>>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(Error::checkpoint(path, format!("safetensors header of {len} bytes is implausible")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::checkpoint(path, format!("invalid safetensors header: {e}")))?;
    Ok(header.get("__metadata__").and_then(|m| serde_json::from_value(m.clone()).ok()))
}

/// The f64 nearest to the shortest decimal that round-trips `v` (an f32 `1e-6` gives `1e-6`, not
/// `9.99999997e-7`), so configuration JSON shows the value a model was written with.
pub fn f32_decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

pub fn progress_bar(total_bytes: u64, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}

/// A progress bar over `total` steps or items with a message (the loss, say), the elapsed time and the time
/// left; hidden unless `show`.
pub fn steps_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = "{msg:>12} [{bar:40}] {pos}/{len} ({elapsed} elapsed, {eta} left)";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Opens safetensors files as a [`VarBuilder`] in `dtype` on `device`, reporting progress on `bar`.
pub fn open(files: &[PathBuf], dtype: DType, device: &Device, bar: ProgressBar) -> Result<VarBuilder<'static>> {
    #[allow(unsafe_code)]
    // SAFETY: the files are memory-mapped read-only; like every safetensors reader we rely on them not
    // being modified while the model is loaded.
    let inner = unsafe { MmapedSafetensors::multi(files) }
        .map_err(|e| Error::checkpoint(files.first().cloned().unwrap_or_default(), e.to_string()))?;
    Ok(VarBuilder::from_backend(Box::new(ProgressBackend { inner, bar }), dtype, device.clone()))
}

/// Total size of the files, for the progress bar.
pub fn total_bytes(files: &[PathBuf]) -> u64 {
    files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
}

/// Random weights for speed measurements: every tensor is a window of one shared pool of
/// `N(0, 0.02²)` values (weights of the same architecture run at the same speed whatever their values).
pub struct RandomBackend {
    pool: Vec<f32>,
}

impl std::fmt::Debug for RandomBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RandomBackend {{ pool: {} values }}", self.pool.len())
    }
}

impl RandomBackend {
    pub fn new(seed: u64) -> Self {
        let mut rng = sparsevlm_core::rng::SplitMix64::new(seed);
        let pool = (0..(1 << 20)).map(|_| 0.02 * rng.next_normal()).collect();
        RandomBackend { pool }
    }

    fn tensor(&self, shape: Shape, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let offset = name.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % self.pool.len();
        let data: Vec<f32> = self.pool.iter().cycle().skip(offset).take(n).copied().collect();
        let t = Tensor::from_vec(data, shape, dev)?;
        if name.ends_with("norm.weight") || name.contains("layernorm") || name.contains("layer_norm") {
            // Normalisation gains near 1 keep activations in range.
            return (t + 1.0)?.to_dtype(dtype);
        }
        t.to_dtype(dtype)
    }
}

impl SimpleBackend for RandomBackend {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.tensor(s, name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A [`VarBuilder`] over random weights.
pub fn random(dtype: DType, device: &Device, seed: u64) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomBackend::new(seed)), dtype, device.clone())
}

/// The first of `prefixes` under which `probe` exists (e.g. `"language_model.model."`).
pub fn find_prefix(vb: &VarBuilder, prefixes: &[&'static str], probe: &str) -> Option<&'static str> {
    prefixes.iter().copied().find(|p| vb.contains_tensor(&format!("{p}{probe}")))
}

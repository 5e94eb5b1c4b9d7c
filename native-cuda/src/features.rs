//! A disk cache of frozen vision-tower features, so that training and evaluation encode each image once.
//!
//! The vision tower never changes while the projector trains, so an image's features (`[n_patches,
//! vision_hidden]`) are a pure function of the backbone's weights, the preprocessing and the image's bytes.
//! The cache keys them by exactly that: a folder per backbone (the SHA-256 of its weights file and of the
//! preprocessing settings) holding one f16 safetensors file per image, named by the SHA-256 of the image file. A
//! changed backbone or image can never be served stale features.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::mini::fetch::file_sha256;
use crate::models::llava::Llava;
use crate::preprocess::{self, PreprocessConfig};

/// Vision features on disk (f16) and in memory (as computed, for this run).
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    preprocess: PreprocessConfig,
    memory: HashMap<PathBuf, Tensor>,
    /// Images encoded by the tower in this run (the rest came from the cache).
    pub computed: usize,
}

impl FeatureCache {
    /// The cache under `root` for the backbone whose weights are in `backbone`, with `preprocess`.
    pub fn new(root: &Path, backbone: &Path, preprocess: PreprocessConfig) -> Result<Self> {
        let weights = file_sha256(backbone)?;
        let settings: String =
            Sha256::digest(format!("{preprocess:?}").as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let dir = root.join(format!("{}-{settings}", &weights[..16]));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(FeatureCache { dir, preprocess, memory: HashMap::new(), computed: 0 })
    }

    /// The folder holding this backbone's features.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The vision-tower features of the image at `image`, in f32. `[n_patches, vision_hidden]`
    pub fn features(&mut self, model: &Llava, image: &Path) -> Result<Tensor> {
        if let Some(f) = self.memory.get(image) {
            return Ok(f.clone());
        }
        let file = self.dir.join(format!("{}.safetensors", file_sha256(image)?));
        let features = match Self::read(&file, model) {
            Some(f) => f,
            None => {
                let pre = preprocess::preprocess(&preprocess::load_image(image)?, &self.preprocess)?;
                let pixels = Tensor::from_vec(pre.pixels, (1, 3, pre.height, pre.width), model.device())?;
                let f = model.vision_features(&pixels)?.detach().to_dtype(DType::F16)?;
                let partial = file.with_extension("partial");
                f.save_safetensors("features", &partial).map_err(|e| Error::checkpoint(&partial, e.to_string()))?;
                std::fs::rename(&partial, &file).map_err(|e| Error::io(&file, e))?;
                self.computed += 1;
                f
            }
        };
        let features = features.to_dtype(DType::F32)?;
        self.memory.insert(image.to_path_buf(), features.clone());
        Ok(features)
    }

    /// A cached entry, if it is readable and has the tower's shape (anything else is recomputed).
    fn read(file: &Path, model: &Llava) -> Option<Tensor> {
        let tensors = candle_core::safetensors::load(file, model.device()).ok()?;
        let f = tensors.get("features")?;
        let v = &model.config.vision;
        (f.dims() == [v.n_patches(), v.hidden]).then(|| f.clone())
    }
}

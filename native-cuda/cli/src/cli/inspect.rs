//! `sparsevlm inspect`: a checkpoint summary (layout, dimensions, files, tensors, tokenizer) without
//! loading the weights: only the safetensors headers are read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sparsevlm_candle::config::{Layout, LlavaConfig};
use sparsevlm_candle::loader;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Original layout: the CLIP directory, if `mm_vision_tower` does not name a local one.
    #[arg(long)]
    pub vision_tower: Option<PathBuf>,
}

/// `(dtype, shape)` of every tensor in a safetensors file, from its header.
fn header(path: &Path) -> Result<BTreeMap<String, (String, Vec<usize>)>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).with_context(|| format!("{} is too short for safetensors", path.display()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{}: implausible safetensors header of {len} bytes", path.display());
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text).with_context(|| format!("{}: truncated header", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: bad header", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, info) in json.as_object().into_iter().flatten().filter(|(n, _)| *n != "__metadata__") {
        let dtype = info["dtype"].as_str().unwrap_or("?").to_owned();
        let shape = info["shape"].as_array().map(|a| a.iter().filter_map(|d| d.as_u64()).map(|d| d as usize).collect());
        out.insert(name.clone(), (dtype, shape.unwrap_or_default()));
    }
    Ok(out)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let dir = &args.model;
    let config = LlavaConfig::load(dir, args.vision_tower.as_deref())?;
    let mut files = loader::safetensors_files(dir)?;
    if let (Layout::Original, Some(vdir)) = (config.layout, &config.vision_dir) {
        files.extend(loader::safetensors_files(vdir).unwrap_or_default());
    }
    let t = &config.text;
    let v = &config.vision;
    println!("checkpoint: {}", dir.display());
    println!("layout: {:?}", config.layout);
    println!(
        "LLM: {} layers, hidden {}, MLP {}, {} heads ({} key/value), head dim {}, vocab {}, RoPE θ {}",
        t.layers,
        t.hidden,
        t.intermediate,
        t.heads,
        t.kv_heads,
        t.head_dim(),
        t.vocab,
        t.rope_theta
    );
    println!(
        "vision: CLIP {} layers, hidden {}, {} heads, {}px / {} = {} patches, feature layer {}, {:?}",
        v.layers,
        v.hidden,
        v.heads,
        v.image_size,
        v.patch_size,
        v.n_patches(),
        v.select_layer,
        v.activation
    );
    println!("projector: {:?}; image token id {}", config.projector, config.image_token);
    if let Some(vdir) = &config.vision_dir {
        println!("vision tower directory: {}", vdir.display());
    }
    let mut params: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    let mut n_tensors = 0;
    for f in &files {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        println!("file: {} ({})", f.display(), human(size));
        for (name, (dtype, shape)) in header(f)? {
            let n: usize = shape.iter().product();
            let part = if name.contains("vision") {
                "vision tower"
            } else if name.contains("projector") {
                "projector"
            } else {
                "language model"
            };
            *params.entry(part).or_default() += n;
            *dtypes.entry(dtype).or_default() += 1;
            n_tensors += 1;
        }
    }
    println!("tensors: {n_tensors}, dtypes {dtypes:?}");
    for (part, n) in &params {
        println!("parameters, {part}: {:.3} M", *n as f64 / 1e6);
    }
    let tokenizer = if dir.join("tokenizer.json").exists() {
        "tokenizer.json"
    } else if dir.join("tokenizer.model").exists() {
        "only a sentencepiece tokenizer.model: run and score need tokenizer.json (or exact --input-ids)"
    } else {
        "none (use exact --input-ids)"
    };
    println!("tokenizer: {tokenizer}");
    Ok(())
}

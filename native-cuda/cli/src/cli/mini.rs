//! `sparsevlm fetch-mini` (get and convert sparsevlm-mini's parts) and `sparsevlm export-web` (write its
//! web bundle).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use sparsevlm_candle::mini::bundle::export_bundle;
use sparsevlm_candle::mini::fetch;
use sparsevlm_candle::mini::model::{converted_backbone, MiniParts, ProjectorSource};
use sparsevlm_candle::mini::tiny::write_tiny_mini;

use super::common::CacheArgs;

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn fetch_mini(args: &FetchArgs) -> Result<()> {
    let cache = args.cache.dir();
    fetch::fetch_all(&cache)?;
    let backbone = converted_backbone(&cache)?;
    println!("sparsevlm-mini parts are in {}", cache.display());
    println!("DINOv2 backbone: {}", backbone.display());
    Ok(())
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output folder (default: `web` inside the parts cache, `web-tiny` with --tiny).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A trained projector (default: an untrained projector, seeded by --seed).
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// Seed of the untrained projector (of the whole generated model with --tiny).
    #[arg(long, default_value_t = 0, conflicts_with = "projector")]
    pub seed: u64,
    /// Export a tiny generated model (random weights, 64 visual tokens) instead of sparsevlm-mini: a
    /// bundle of a few hundred kilobytes for browser tests, with nothing to fetch.
    #[arg(long, conflicts_with = "projector")]
    pub tiny: bool,
    #[command(flatten)]
    pub cache: CacheArgs,
}

pub fn export_web(args: &ExportArgs) -> Result<()> {
    let cache = args.cache.dir();
    if args.tiny {
        let out = args.out.clone().unwrap_or_else(|| cache.join("web-tiny"));
        return export_tiny(&out, args.seed);
    }
    let projector = match &args.projector {
        Some(path) => ProjectorSource::File(path.clone()),
        None => {
            eprintln!("no --projector: exporting an untrained projector (seed {})", args.seed);
            ProjectorSource::Untrained { seed: args.seed }
        }
    };
    let parts = MiniParts::cached(&cache, projector)?;
    let out = args.out.clone().unwrap_or_else(|| cache.join("web"));
    let started = Instant::now();
    let config = export_bundle(&parts, &out)?;
    let weights = out.join(sparsevlm_wgpu::bundle::WEIGHTS_FILE);
    let size = std::fs::metadata(&weights).with_context(|| format!("reading {}", weights.display()))?.len();
    println!("{}", config.description);
    println!(
        "web bundle written to {} ({:.1} MB, {} quantised matrices, {} visual tokens; {:.0} s)",
        out.display(),
        size as f64 / 1e6,
        config.quantised.len(),
        config.n_visual(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the tiny generated mini model's parts into a temporary folder and exports them to `out`.
fn export_tiny(out: &Path, seed: u64) -> Result<()> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let parts_dir = std::env::temp_dir().join(format!("sparsevlm-tiny-{}-{nanos}", std::process::id()));
    let exported = write_tiny_mini(&parts_dir, seed)
        .map_err(anyhow::Error::from)
        .and_then(|tiny| Ok(export_bundle(&tiny.parts(), out)?));
    // The parts are only a step towards the bundle: remove them whether or not the export worked.
    let _ = std::fs::remove_dir_all(&parts_dir);
    let config = exported?;
    let weights = out.join(sparsevlm_wgpu::bundle::WEIGHTS_FILE);
    let size = std::fs::metadata(&weights).with_context(|| format!("reading {}", weights.display()))?.len();
    println!("{}", config.description);
    println!(
        "tiny web bundle written to {} ({:.0} kB, {} visual tokens, seed {seed})",
        out.display(),
        size as f64 / 1e3,
        config.n_visual()
    );
    Ok(())
}

//! Readers for the golden fixtures (`tests/fixtures/`, described by its README).
//!
//! Layout: `<split>/<case>/case.json` (the prompt), `inputs.safetensors` (input ids, pixels, projector
//! output), and per run `<mode>.json` + `<mode>.safetensors`. Every split directory with cases is read,
//! so additional fixture splits are picked up without code changes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sparsevlm_core::{Budget, Method, SparseConfig, TokenLayout, TokenOrigin};

use crate::{FixtureError, Result};

/// The fixture root, `tests/fixtures`.
///
/// `SPARSEVLM_FIXTURES` overrides it, for test binaries run from another directory.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SPARSEVLM_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// A tensor read from a safetensors file, converted to f32 (or kept as i64 for integer tensors).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub ints: Vec<i64>,
}

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = fs::read(path).map_err(|source| FixtureError::Io { path: path.display().to_string(), source })?;
    let parse = |message: String| FixtureError::Parse { path: path.display().to_string(), message };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| parse(e.to_string()))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let (data, ints) = match view.dtype() {
            safetensors::Dtype::F32 => {
                (raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(), Vec::new())
            }
            safetensors::Dtype::F16 => {
                (raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(), Vec::new())
            }
            safetensors::Dtype::I64 => {
                let ints: Vec<i64> = raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect();
                (ints.iter().map(|&i| i as f32).collect(), ints)
            }
            other => return Err(parse(format!("tensor {name} has unsupported dtype {other:?}"))),
        };
        out.insert(name, Tensor { shape: view.shape().to_vec(), data, ints });
    }
    Ok(out)
}

/// Reads JSON written by Python, whose bare `NaN` / `Infinity` become `null`.
pub fn read_python_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        fs::read_to_string(path).map_err(|source| FixtureError::Io { path: path.display().to_string(), source })?;
    let mut clean = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else {
            let bare = ["-Infinity", "Infinity", "NaN"].into_iter().find(|w| rest.starts_with(w));
            if let Some(word) = bare {
                clean.push_str("null");
                rest = &rest[word.len()..];
                continue;
            }
        }
        clean.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&clean)
        .map_err(|e| FixtureError::Parse { path: path.display().to_string(), message: e.to_string() })
}

/// `case.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseMeta {
    pub v_start: usize,
    pub n_visual: usize,
    pub n_text_after_image: usize,
    pub seq_len: usize,
    pub input_ids_orig: Vec<i64>,
}

/// One prompt of the fixtures.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub split: String,
    pub dir: PathBuf,
    pub meta: CaseMeta,
}

/// Every case under the fixture root, sorted by split and name.
pub fn cases() -> Result<Vec<Case>> {
    let root = fixtures_dir();
    let mut out = Vec::new();
    for split in sorted_dirs(&root)? {
        for dir in sorted_dirs(&split)? {
            let case_json = dir.join("case.json");
            if !case_json.exists() {
                continue;
            }
            let name = file_name(&dir);
            out.push(Case { name, split: file_name(&split), meta: read_python_json(&case_json)?, dir });
        }
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|source| FixtureError::Io { path: dir.display().to_string(), source })?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    Ok(dirs)
}

impl Case {
    /// The run modes stored for this case (`dense`, `v15_b192`, ...), sorted.
    pub fn modes(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|source| FixtureError::Io { path: self.dir.display().to_string(), source })?;
        let mut modes: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| file_name(&e.path()))
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|n| n != "case")
            .collect();
        modes.sort();
        Ok(modes)
    }

    pub fn inputs(&self) -> Result<HashMap<String, Tensor>> {
        read_safetensors(&self.dir.join("inputs.safetensors"))
    }

    pub fn run(&self, mode: &str) -> Result<Run> {
        Ok(Run {
            mode: mode.to_owned(),
            meta: read_python_json(&self.dir.join(format!("{mode}.json")))?,
            tensors: read_safetensors(&self.dir.join(format!("{mode}.safetensors")))?,
        })
    }

    /// The single-image layout of the prompt: pre-prompt, 576 visual tokens, text after.
    pub fn layout(&self) -> Result<TokenLayout> {
        Ok(TokenLayout::single_image(self.meta.v_start, self.meta.n_visual, self.meta.n_text_after_image)?)
    }

    /// Input ids with the visual tokens expanded: `None` for the 576 visual rows.
    pub fn token_rows(&self) -> Vec<Option<u32>> {
        let mut rows = Vec::with_capacity(self.meta.seq_len);
        for &id in &self.meta.input_ids_orig {
            if id < 0 {
                rows.extend(std::iter::repeat_n(None, self.meta.n_visual));
            } else {
                rows.push(Some(id as u32));
            }
        }
        rows
    }
}

/// An entry of `visual_block_after` / `kept_origin`: an input position or a merged token `"m{layer}.{c}"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FixtureOrigin {
    Input(usize),
    Merged(String),
}

impl FixtureOrigin {
    pub fn to_origin(&self) -> Option<TokenOrigin> {
        match self {
            FixtureOrigin::Input(i) => Some(TokenOrigin::Input(*i)),
            FixtureOrigin::Merged(s) => {
                let (layer, cluster) = s.strip_prefix('m')?.split_once('.')?;
                Some(TokenOrigin::Merged { layer: layer.parse().ok()?, cluster: cluster.parse().ok()? })
            }
        }
    }
}

/// Centres and assignment under an alternative deterministic DPC rule.
#[derive(Debug, Clone, Deserialize)]
pub struct DpcAlternative {
    pub centers: Vec<usize>,
    pub assign: Vec<usize>,
}

/// One entry of `prune_events`.
#[derive(Debug, Clone, Deserialize)]
pub struct PruneEvent {
    pub layer: usize,
    pub v_cur_in: usize,
    pub seq_len_in: usize,
    pub raters_rel: Vec<usize>,
    pub raters_abs_at_layer: Vec<usize>,
    pub s_flag: bool,
    pub keep_count: usize,
    pub kept_slots: Vec<usize>,
    pub kept_origin: Vec<FixtureOrigin>,
    pub n_dropped: usize,
    pub rank: Option<usize>,
    pub head_mass: Option<Vec<f32>>,
    pub heads_selected: Option<Vec<usize>>,
    pub n_recycled: Option<usize>,
    pub n_clusters: Option<usize>,
    pub recycled_slots: Option<Vec<usize>>,
    pub cluster_centers: Option<Vec<usize>>,
    pub cluster_assign: Option<Vec<usize>>,
    pub dpc_alt_no_noise_index_tiebreak: Option<DpcAlternative>,
    pub dpc_centers_same_without_noise: Option<bool>,
    pub v_cur_out: usize,
    pub visual_block_after: Vec<FixtureOrigin>,
    pub position_ids_out: Vec<i64>,
    pub seq_len_out: usize,
}

/// The run-level JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct RunMeta {
    pub greedy_tokens: Vec<u32>,
    pub kv_len_after_prefill: Vec<usize>,
    pub layers_seq_len_in: Vec<usize>,
    pub visual_count_after_layer: Vec<usize>,
    pub equal_tokens_recomputed: Option<f64>,
    pub flops_recomputed: Option<f64>,
    pub decode_positions_step1: Option<Vec<i64>>,
    pub decode_positions_last_step: Option<Vec<i64>>,
    pub rater_replica_idx_rel: Option<Vec<usize>>,
    pub priority_heads: Option<usize>,
    #[serde(default)]
    pub prune_events: Vec<PruneEvent>,
}

/// One stored run of the official code.
#[derive(Debug, Clone)]
pub struct Run {
    pub mode: String,
    pub meta: RunMeta,
    pub tensors: HashMap<String, Tensor>,
}

impl Run {
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| FixtureError::Missing { what: name.to_owned(), path: self.mode.clone() })
    }
}

/// The configuration that reproduces a fixture mode, with the official edge-case behaviour
/// (`official_quirks`): `dense`, `v15_b{B}`, `v15_b64_dpcidx`, `v20_1_0_b{B}` (the v1.5 rule in the
/// v2.0 code base), `v20_2_0_b{B}_h{k}` and `v1_s{scale}_b{bias}`.
pub fn mode_config(mode: &str) -> Option<SparseConfig> {
    let budget = |s: &str| s.parse::<u32>().ok();
    let config = if mode == "dense" {
        SparseConfig::dense()
    } else if let Some(rest) = mode.strip_prefix("v15_b") {
        SparseConfig::v15(budget(rest.trim_end_matches("_dpcidx"))?)
    } else if let Some(rest) = mode.strip_prefix("v20_1_0_b") {
        SparseConfig::v15(budget(rest)?)
    } else if let Some(rest) = mode.strip_prefix("v20_2_0_b") {
        let (b, h) = rest.split_once("_h")?;
        let mut c = SparseConfig::v20(budget(b)?);
        c.method = Method::SparseVlmV20 { budget: Budget::Tokens(budget(b)?), priority_heads: h.parse().ok() };
        c
    } else if let Some(rest) = mode.strip_prefix("v1_s") {
        let (scale, bias) = rest.split_once("_b")?;
        SparseConfig::v1(scale.parse().ok()?, bias.parse().ok()?)
    } else {
        return None;
    };
    Some(config.official_quirks())
}

/// Whether a mode's layer-`layer` cluster order (and everything after it) was decided by the official
/// code's random density noise rather than by a deterministic rule (golden README §3.3).
pub fn noise_decided_after(run: &Run) -> Option<usize> {
    run.meta
        .prune_events
        .iter()
        .find(|e| e.dpc_centers_same_without_noise == Some(false) && e.n_clusters.unwrap_or(0) >= 2)
        .map(|e| e.layer)
        .filter(|_| !run.mode.ends_with("_dpcidx"))
}

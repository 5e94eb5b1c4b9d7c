//! Optional per-stage timing of the decoder, for finding where prefill and decode time goes
//! (`SPARSEVLM_PROFILE=1`, printed by `sparsevlm bench`).
//!
//! Each stage is bracketed by device synchronisations, so the totals are device time plus launch latency
//! per stage, and the whole run gets slower: use it to compare stages, never as the benchmark's numbers.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;

/// Whether `SPARSEVLM_PROFILE=1` is set (read once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("SPARSEVLM_PROFILE").is_ok_and(|v| v == "1"))
}

type Totals = BTreeMap<(&'static str, &'static str), (Duration, usize)>;

fn totals() -> &'static Mutex<Totals> {
    static TOTALS: OnceLock<Mutex<Totals>> = OnceLock::new();
    TOTALS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn phase() -> &'static Mutex<&'static str> {
    static PHASE: OnceLock<Mutex<&'static str>> = OnceLock::new();
    PHASE.get_or_init(|| Mutex::new("run"))
}

/// Names the phase (`prefill`, `decode`) that the following stages belong to.
pub fn set_phase(name: &'static str) {
    if enabled() {
        if let Ok(mut p) = phase().lock() {
            *p = name;
        }
    }
}

/// Runs `stage`, adding its synchronised duration to `name` when profiling is on.
pub fn span<T, E: From<candle_core::Error>>(
    name: &'static str,
    device: &Device,
    stage: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if !enabled() {
        return stage();
    }
    device.synchronize()?;
    let started = Instant::now();
    let out = stage()?;
    device.synchronize()?;
    let elapsed = started.elapsed();
    let current = phase().lock().map(|p| *p).unwrap_or("run");
    if let Ok(mut totals) = totals().lock() {
        let entry = totals.entry((current, name)).or_default();
        entry.0 += elapsed;
        entry.1 += 1;
    }
    Ok(out)
}

/// The totals since the last call, one line per phase and stage (`ms total / calls = µs per call`), and resets
/// them. Empty when profiling is off.
pub fn take_report() -> String {
    let Ok(mut totals) = totals().lock() else { return String::new() };
    let lines: Vec<String> = totals
        .iter()
        .map(|((phase, name), (total, calls))| {
            let ms = total.as_secs_f64() * 1e3;
            format!("  {phase:<8} {name:<18} {ms:>9.2} ms / {calls:>6} = {:>8.1} µs", 1e3 * ms / (*calls).max(1) as f64)
        })
        .collect();
    totals.clear();
    lines.join("\n")
}

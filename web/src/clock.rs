//! Milliseconds for timings: `performance.now()` in the browser (where `std::time::Instant` panics),
//! `Instant` natively.

/// A start time.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
    #[cfg(target_arch = "wasm32")]
    start: f64,
}

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        return Self { start: std::time::Instant::now() };
        #[cfg(target_arch = "wasm32")]
        return Self { start: now_ms() };
    }

    /// Milliseconds since the start.
    pub fn ms(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.start.elapsed().as_secs_f64() * 1e3;
        #[cfg(target_arch = "wasm32")]
        return now_ms() - self.start;
    }
}

#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    use wasm_bindgen::JsCast;
    // `performance` exists in windows and workers; `Date.now()` is the coarse fallback.
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            let now: js_sys::Function = now.dyn_into().ok()?;
            now.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

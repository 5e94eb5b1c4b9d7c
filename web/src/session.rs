//! The browser API: one `Session` that loads sparsevlm-mini with progress and answers questions about
//! images with a chosen pruning method and budget, streaming the answer.
//!
//! The weights are fetched once and kept in the browser's Cache API, so a second visit loads from disk.

use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::bundle::{TOKENIZER_FILE, WEIGHTS_FILE};
use crate::context::GpuContext;
use crate::image_input;
use crate::model::mini::{method_config, AnswerOptions, MiniModel};
use crate::model::sampler::Decoding;
use crate::report::AnswerReport;

/// Name of the Cache API store that keeps the downloaded bundle.
const CACHE_NAME: &str = "sparsevlm-mini-v1";

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

struct Inner {
    ctx: GpuContext,
    model: MiniModel,
}

/// A loaded model on the browser's GPU.
#[wasm_bindgen]
pub struct Session {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("context", &self.inner.ctx).finish()
    }
}

/// Calls `callback(fraction, label)`, ignoring a callback that throws.
fn report(callback: &Function, fraction: f64, label: &str) {
    let _ = callback.call2(&JsValue::NULL, &JsValue::from_f64(fraction), &JsValue::from_str(label));
}

/// The global `caches` and `fetch` of a window or a worker.
fn global() -> Object {
    js_sys::global()
}

async fn call_promise(target: &JsValue, method: &str, args: &[&JsValue]) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(target, &method.into())?.dyn_into()?;
    let promise: Promise = match args {
        [] => f.call0(target)?,
        [a] => f.call1(target, a)?,
        [a, b] => f.call2(target, a, b)?,
        _ => return Err(js_error("too many arguments")),
    }
    .dyn_into()?;
    JsFuture::from(promise).await
}

/// Downloads `url` (from the cache when it holds it), reporting `(fraction of this file, label)`.
async fn fetch_bytes(url: &str, label: &str, progress: &Function) -> Result<Vec<u8>, JsValue> {
    let global = global();
    let caches = Reflect::get(&global, &"caches".into()).ok().filter(|c| !c.is_undefined());
    let cache = match &caches {
        Some(caches) => call_promise(caches, "open", &[&CACHE_NAME.into()]).await.ok(),
        None => None,
    };
    let cached = match &cache {
        Some(cache) => call_promise(cache, "match", &[&url.into()]).await.ok().filter(|r| !r.is_undefined()),
        None => None,
    };
    let from_cache = cached.is_some();
    let response: web_sys::Response = match cached {
        Some(r) => r.dyn_into()?,
        None => call_promise(&global, "fetch", &[&url.into()]).await?.dyn_into()?,
    };
    if !response.ok() {
        return Err(js_error(format!(
            "{url}: HTTP {} (run `just fetch-mini` and `sparsevlm export-web`)",
            response.status()
        )));
    }
    if let (Some(cache), false) = (&cache, from_cache) {
        let copy = response.clone()?;
        // Caching is best effort: a full disk only means the next visit downloads again.
        let _ = call_promise(cache, "put", &[&url.into(), &copy.into()]).await;
    }
    let total: Option<f64> = response.headers().get("content-length").ok().flatten().and_then(|v| v.parse().ok());
    let body = response.body().ok_or_else(|| js_error(format!("{url}: empty response")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into()?;
    let mut bytes = Vec::with_capacity(total.unwrap_or(0.0) as usize);
    let verb = if from_cache { "reading cached" } else { "downloading" };
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        bytes.extend_from_slice(&value.to_vec());
        let fraction = total.map_or(0.0, |t| (bytes.len() as f64 / t).min(1.0));
        report(progress, fraction, &format!("{verb} {label}: {:.1} MB", bytes.len() as f64 / 1e6));
    }
    Ok(bytes)
}

#[wasm_bindgen]
impl Session {
    /// Loads `{base_url}/sparsevlm-mini.safetensors` and `{base_url}/tokenizer.json`. `on_progress(fraction,
    /// label)` hears the download (0–0.9) and the upload to the GPU (0.9–1). Rejects with a readable
    /// message when WebGPU is missing or a file cannot be fetched.
    pub fn load(base_url: String, on_progress: Function) -> Promise {
        future_to_promise(async move {
            let base = base_url.trim_end_matches('/');
            let ctx = GpuContext::new().await.map_err(js_error)?;
            let weights = fetch_bytes(&format!("{base}/{WEIGHTS_FILE}"), "weights", &on_progress).await?;
            let tokenizer = fetch_bytes(&format!("{base}/{TOKENIZER_FILE}"), "tokenizer", &on_progress).await?;
            report(&on_progress, 0.9, "uploading the weights to the GPU");
            let model =
                MiniModel::load(&ctx, &weights, &tokenizer, &mut |f, label| report(&on_progress, 0.9 + 0.1 * f, label))
                    .map_err(js_error)?;
            Ok(Session { inner: Rc::new(Inner { ctx, model }) }.into())
        })
    }

    /// Loads from bytes the page already holds.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(weights: Uint8Array, tokenizer: Uint8Array, on_progress: Function) -> Promise {
        future_to_promise(async move {
            let ctx = GpuContext::new().await.map_err(js_error)?;
            let model = MiniModel::load(&ctx, &weights.to_vec(), &tokenizer.to_vec(), &mut |f, label| {
                report(&on_progress, f, label)
            })
            .map_err(js_error)?;
            Ok(Session { inner: Rc::new(Inner { ctx, model }) }.into())
        })
    }

    /// What the model is and where its weights come from.
    pub fn description(&self) -> String {
        self.inner.model.config.description.clone()
    }

    /// The GPU adapter in use, e.g. "SwiftShader Device (WebGPU)".
    pub fn adapter(&self) -> String {
        let info = self.inner.ctx.adapter_info();
        // Browsers reveal little about the adapter; show what there is.
        let names: Vec<&str> = [info.name.as_str(), info.driver.as_str(), info.driver_info.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let kind = match info.device_type {
            wgpu::DeviceType::Cpu => "software",
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Other => "GPU",
        };
        if names.is_empty() {
            format!("WebGPU, {kind}")
        } else {
            format!("{} (WebGPU, {kind})", names.join(", "))
        }
    }

    /// Visual tokens per image (the largest budget).
    #[wasm_bindgen(js_name = visualTokens)]
    pub fn visual_tokens(&self) -> usize {
        self.inner.model.config.n_visual()
    }

    /// Answers `question` about `image` (PNG or JPEG bytes) with `method` (`dense`, `v1.5`, `v2.0`, `fastv`,
    /// `pdrop`, `random`) at `budget` retained visual tokens. `on_text(delta)` hears the answer as it grows.
    /// Resolves to the answer report: per pruning layer the kept patches and their scores, the timings,
    /// the equivalent tokens and FLOPs against dense.
    pub fn ask(
        &self,
        image: Uint8Array,
        question: String,
        method: String,
        budget: u32,
        max_new_tokens: u32,
        on_text: Function,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let model = &inner.model;
            let n_visual = model.config.n_visual();
            let (config, label) = method_config(&method, budget, n_visual).map_err(js_error)?;
            let rgb = image_input::decode(&image.to_vec()).map_err(js_error)?;
            let (pixels, _) = image_input::pixels(&rgb, &model.config.vision).map_err(js_error)?;
            let options = AnswerOptions { max_new_tokens: max_new_tokens.max(1) as usize, decoding: Decoding::Greedy };
            let mut stream = |delta: &str| {
                let _ = on_text.call1(&JsValue::NULL, &JsValue::from_str(delta));
            };
            let answer =
                model.answer(&inner.ctx, &pixels, &question, &config, &options, &mut stream).await.map_err(js_error)?;
            let grid = model.config.vision.image_size / model.config.vision.patch_size;
            let report = AnswerReport::new(&answer, label, grid);
            let json = serde_json::to_string(&report).map_err(js_error)?;
            js_sys::JSON::parse(&json)
        })
    }
}

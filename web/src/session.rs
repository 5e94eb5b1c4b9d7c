//! The browser API: one `Session` that loads sparsevlm-mini with progress and answers questions about
//! images with a chosen pruning method and budget, streaming the answer.
//!
//! The weights are fetched once and kept in the browser's Cache API, so a second visit loads from disk. The
//! bundle's `manifest.json` is fetched first, past every cache; the files go into a store named by the
//! bundle's content hash (`sparsevlm-mini-<16 hex digits>`), so a re-exported bundle is downloaded again,
//! and the stores of other bundles are deleted. Downloaded files are checked against the manifest's sizes
//! and SHA-256 (Web Crypto) before they are stored.

use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::RequestCache;

use crate::bundle::{BundleManifest, FileDigest, MANIFEST_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use crate::context::GpuContext;
use crate::image_input;
use crate::model::mini::{method_config, AnswerOptions, MiniModel};
use crate::report::AnswerReport;
use sparsevlm_core::Decoding;

/// Prefix of the Cache API stores that keep downloaded bundles; the rest of a name is the bundle's
/// [`BundleManifest::short_hash`].
const CACHE_PREFIX: &str = "sparsevlm-mini-";

/// What to tell the user when the bundle itself is wrong or missing.
const EXPORT_HINT: &str = "export the bundle again with `sparsevlm export-web` (`just web` does it)";

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// The message of a thrown JS value (an `Error`'s message, a string, or its debug form).
fn describe(e: &JsValue) -> String {
    if let Some(error) = e.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
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

/// The global `caches`, `crypto` and `fetch` of a window or a worker.
fn global() -> Object {
    js_sys::global()
}

/// `global[name]`, when it is there (`caches` and `crypto.subtle` exist only in secure contexts).
fn property(target: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(target, &name.into()).ok().filter(|v| !v.is_undefined() && !v.is_null())
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

/// `fetch(url, {cache})`, with a readable error when the request cannot be made at all.
async fn fetch(url: &str, cache: RequestCache) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_cache(cache);
    let response = call_promise(&global(), "fetch", &[&url.into(), &init.into()])
        .await
        .map_err(|e| js_error(format!("cannot fetch {url}: {}", describe(&e))))?;
    response.dyn_into()
}

/// Fetches the bundle's manifest past every cache (the browser's HTTP cache and the Cache API).
async fn fetch_manifest(base: &str) -> Result<BundleManifest, JsValue> {
    let url = format!("{base}/{MANIFEST_FILE}");
    let response = fetch(&url, RequestCache::NoStore).await?;
    if response.status() == 404 {
        return Err(js_error(format!(
            "{url} is missing (HTTP 404): the model folder holds no bundle, or one exported by an older \
             sparsevlm without {MANIFEST_FILE}; {EXPORT_HINT}"
        )));
    }
    if !response.ok() {
        return Err(js_error(format!("{url}: HTTP {}", response.status())));
    }
    let text = JsFuture::from(response.text()?).await?;
    let text = text.as_string().ok_or_else(|| js_error(format!("{url}: the response is not text")))?;
    BundleManifest::from_json(&text)
        .map_err(|e| js_error(format!("{url} is not a bundle manifest ({e}); {EXPORT_HINT}")))
}

/// Opens the Cache API store of this bundle and deletes the stores of other bundles, best effort: `None`
/// where the browser offers no Cache API (an insecure context) or refuses it.
async fn open_store(manifest: &BundleManifest) -> Option<JsValue> {
    let caches = property(&global(), "caches")?;
    let name = format!("{CACHE_PREFIX}{}", manifest.short_hash());
    if let Ok(keys) = call_promise(&caches, "keys", &[]).await {
        if let Ok(keys) = keys.dyn_into::<Array>() {
            for key in keys.iter() {
                let stale = key.as_string().is_some_and(|k| k.starts_with(CACHE_PREFIX) && k != name);
                if stale {
                    let _ = call_promise(&caches, "delete", &[&key]).await;
                }
            }
        }
    }
    call_promise(&caches, "open", &[&name.into()]).await.ok()
}

/// The SHA-256 of `data` in hex, by Web Crypto; `None` where it is not offered (an insecure context).
async fn sha256_hex(data: &Uint8Array) -> Result<Option<String>, JsValue> {
    let Some(subtle) = property(&global(), "crypto").and_then(|c| property(&c, "subtle")) else {
        return Ok(None);
    };
    let digest = call_promise(&subtle, "digest", &[&"SHA-256".into(), data]).await?;
    let bytes = Uint8Array::new(&digest).to_vec();
    Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Where one file's download sits in the whole load's progress bar.
struct Progress<'a> {
    callback: &'a Function,
    start: f64,
    span: f64,
}

/// Reads `response`'s body, reporting `verb label: N MB` and the fraction of `expected` bytes read.
async fn read_body(
    response: &web_sys::Response,
    url: &str,
    expected: u64,
    label: &str,
    verb: &str,
    progress: &Progress<'_>,
) -> Result<Vec<u8>, JsValue> {
    let body = response.body().ok_or_else(|| js_error(format!("{url}: empty response")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into()?;
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())?.dyn_into()?;
        bytes.extend_from_slice(&value.to_vec());
        let fraction = if expected > 0 { (bytes.len() as f64 / expected as f64).min(1.0) } else { 1.0 };
        let label = format!("{verb} {label}: {:.1} MB", bytes.len() as f64 / 1e6);
        report(progress.callback, progress.start + progress.span * fraction, &label);
    }
    Ok(bytes)
}

/// Loads the bundle file `url` that the manifest describes as `expected`: from the bundle's Cache API
/// store when it holds it, else downloaded past the HTTP cache, checked against the manifest and stored.
async fn fetch_file(
    url: &str,
    label: &str,
    expected: &FileDigest,
    store: Option<&JsValue>,
    progress: &Progress<'_>,
) -> Result<Vec<u8>, JsValue> {
    if let Some(store) = store {
        let cached = call_promise(store, "match", &[&url.into()]).await.ok().filter(|r| !r.is_undefined());
        if let Some(response) = cached.and_then(|r| r.dyn_into::<web_sys::Response>().ok()) {
            let bytes = read_body(&response, url, expected.bytes, label, "reading cached", progress).await;
            match bytes {
                Ok(bytes) if bytes.len() as u64 == expected.bytes => return Ok(bytes),
                // A damaged entry: drop it and download the file again.
                _ => {
                    let _ = call_promise(store, "delete", &[&url.into()]).await;
                }
            }
        }
    }
    // The Cache API store is the cache; without one, the HTTP cache may keep the file but must revalidate it.
    let mode = if store.is_some() { RequestCache::NoStore } else { RequestCache::NoCache };
    let response = fetch(url, mode).await?;
    if !response.ok() {
        return Err(js_error(format!("{url}: HTTP {} ({EXPORT_HINT})", response.status())));
    }
    let bytes = read_body(&response, url, expected.bytes, label, "downloading", progress).await?;
    let changed = |what: String| {
        js_error(format!(
            "{url} does not match {MANIFEST_FILE} ({what}): the bundle was re-exported while the page loaded \
             it, or copied incompletely; reload the page, or {EXPORT_HINT}"
        ))
    };
    if bytes.len() as u64 != expected.bytes {
        return Err(changed(format!("{} bytes, the manifest says {}", bytes.len(), expected.bytes)));
    }
    let array = Uint8Array::from(bytes.as_slice());
    if let Some(sha256) = sha256_hex(&array).await? {
        if sha256 != expected.sha256 {
            return Err(changed(format!("SHA-256 {sha256}, the manifest says {}", expected.sha256)));
        }
    }
    if let Some(store) = store {
        // Caching is best effort: a full disk only means the next visit downloads again.
        if let Ok(copy) = web_sys::Response::new_with_opt_buffer_source(Some(&array)) {
            let _ = call_promise(store, "put", &[&url.into(), &copy.into()]).await;
        }
    }
    Ok(bytes)
}

#[wasm_bindgen]
impl Session {
    /// Loads the bundle in `base_url`: `manifest.json` first (never from a cache), then
    /// `sparsevlm-mini.safetensors` and `tokenizer.json` from the bundle's Cache API store or the network.
    /// `on_progress(fraction, label)` hears the download (0–0.9) and the upload to the GPU (0.9–1). Rejects
    /// with a readable message when WebGPU is missing, the manifest is missing (the bundle must be exported
    /// again), or a file cannot be fetched or does not match the manifest.
    pub fn load(base_url: String, on_progress: Function) -> Promise {
        future_to_promise(async move {
            let base = base_url.trim_end_matches('/');
            let ctx = GpuContext::new().await.map_err(js_error)?;
            report(&on_progress, 0.0, "reading the bundle's manifest");
            let manifest = fetch_manifest(base).await?;
            let store = open_store(&manifest).await;
            let listed = |name: &str| {
                manifest.files.get(name).ok_or_else(|| js_error(format!("{MANIFEST_FILE} does not list {name}")))
            };
            let (weights_digest, tokenizer_digest) = (listed(WEIGHTS_FILE)?, listed(TOKENIZER_FILE)?);
            let total = (weights_digest.bytes + tokenizer_digest.bytes).max(1) as f64;
            let weights_span = 0.9 * weights_digest.bytes as f64 / total;
            let progress = Progress { callback: &on_progress, start: 0.0, span: weights_span };
            let url = format!("{base}/{WEIGHTS_FILE}");
            let weights = fetch_file(&url, "weights", weights_digest, store.as_ref(), &progress).await?;
            let progress = Progress { callback: &on_progress, start: weights_span, span: 0.9 - weights_span };
            let url = format!("{base}/{TOKENIZER_FILE}");
            let tokenizer = fetch_file(&url, "tokenizer", tokenizer_digest, store.as_ref(), &progress).await?;
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

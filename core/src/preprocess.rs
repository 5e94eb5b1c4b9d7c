//! LLaVA-1.5 image preprocessing, bit-exact with the Python pipeline, on plain 8-bit RGB buffers.
//!
//! Ports, for `image_aspect_ratio = "pad"` (LLaVA-1.5, SparseVLM's evaluation setting):
//! - `Image.open(path).convert("RGB")` (LLaVA `model_vqa_loader.py`, `run_llava.py`): decoding belongs to
//!   the backend; an [`Rgb8Image`] is the converted image (gray replicated, alpha dropped, as
//!   [`Rgb8Image::from_rgba`] does);
//! - LLaVA `llava/mm_utils.py::expand2square` and `process_images`: pad to a square with the mean
//!   colour `tuple(int(x * 255) for x in image_mean)`, the image centred with an integer-division offset;
//! - transformers 4.37 `CLIPImageProcessor.preprocess`: resize so the shortest edge is `shortest_edge`
//!   with `PIL.Image.BICUBIC`, centre-crop to `crop_size`, rescale by 1/255 (f64, then f32), normalise
//!   with `image_mean`/`image_std` in f32.
//!
//! The bicubic resize is a port of Pillow's `libImaging/Resample.c` (`precompute_coeffs`,
//! `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`/`Vertical_8bpc`): separable, horizontal pass
//! first, 22-bit fixed-point weights, and an 8-bit clip after each pass. It reproduces PIL exactly, where
//! `image::imageops` (f32, vertical pass first, no intermediate rounding) differs from PIL by up to 26
//! 8-bit levels next to sharp edges when upscaling (0.04–0.18 levels on average), as measured on the
//! reference images. The native crate's `tests/preprocess_reference.rs` checks the whole pipeline against
//! reference values made by the official code (`tests/fixtures/preprocess/`).
//!
//! Everything here is integer and IEEE arithmetic in a fixed order, so every backend (native or
//! WebAssembly) produces the same bits.

use serde::Deserialize;
use thiserror::Error;

/// Mean of OpenAI CLIP (also transformers' `OPENAI_CLIP_MEAN`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Standard deviation of OpenAI CLIP (transformers' `OPENAI_CLIP_STD`).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The padded square may not be larger than this many pixels on a side (805 MB as RGB).
pub const MAX_SQUARE_SIDE: usize = 16_384;

/// Errors of the preprocessing math and of its configuration.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PreprocessError {
    #[error("image has no pixels ({width}x{height})")]
    EmptyImage { width: usize, height: usize },
    #[error("image of {width}x{height} is too large: at most {MAX_SQUARE_SIDE} px a side is supported")]
    TooLarge { width: usize, height: usize },
    #[error("a {width}x{height} image of {channels} channels has {actual} bytes, expected {expected}")]
    BufferLength { width: usize, height: usize, channels: usize, expected: usize, actual: usize },
    #[error("unsupported preprocessor config: {0}")]
    ConfigUnsupported(String),
    #[error("invalid preprocessor config: {0}")]
    ConfigInvalid(String),
}

/// An 8-bit RGB image: `data` is row-major interleaved RGB, `[height, width, 3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

/// Checks that a buffer of `actual` bytes holds `width x height` pixels of `channels` bytes.
fn check_len(width: usize, height: usize, channels: usize, actual: usize) -> Result<(), PreprocessError> {
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    match expected.ok_or(PreprocessError::TooLarge { width, height })? {
        expected if expected == actual => Ok(()),
        expected => Err(PreprocessError::BufferLength { width, height, channels, expected, actual }),
    }
}

impl Rgb8Image {
    /// Wraps `data`, row-major interleaved RGB; its length must be `width * height * 3`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self, PreprocessError> {
        check_len(width, height, 3, data.len())?;
        Ok(Self { width, height, data })
    }

    /// Converts row-major interleaved RGBA (a canvas `ImageData`, for instance) by dropping alpha, as
    /// PIL's `convert("RGB")` does (no compositing over a background).
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self, PreprocessError> {
        check_len(width, height, 4, rgba.len())?;
        let data = rgba.chunks_exact(4).flat_map(|px| [px[0], px[1], px[2]]).collect();
        Ok(Self { width, height, data })
    }

    /// An image filled with one colour.
    pub fn from_pixel(width: usize, height: usize, rgb: [u8; 3]) -> Result<Self, PreprocessError> {
        match width.checked_mul(height).filter(|&n| n <= usize::MAX / 3) {
            Some(n) => Ok(Self { width, height, data: rgb.repeat(n) }),
            None => Err(PreprocessError::TooLarge { width, height }),
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The pixels, row-major interleaved RGB.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixel buffer, row-major interleaved RGB.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y * self.width + x) * 3;
        Some([self.data[at], self.data[at + 1], self.data[at + 2]])
    }
}

/// What `CLIPImageProcessor` needs for LLaVA: a shortest-edge bicubic resize, a centre crop, rescale,
/// normalise.
///
/// Deserialising reads a HF `preprocessor_config.json` ([`HfPreprocessorConfig`], resolved by
/// [`PreprocessConfig::from_hf`]), so any serde format reader, `serde_json::from_str` included, reads one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "HfPreprocessorConfig")]
pub struct PreprocessConfig {
    /// `size["shortest_edge"]`: the shorter image side after resizing.
    pub shortest_edge: usize,
    /// `crop_size` as (height, width).
    pub crop_size: (usize, usize),
    /// Per-channel RGB mean, in [0, 1] units; also gives the padding colour.
    pub image_mean: [f32; 3],
    /// Per-channel RGB standard deviation.
    pub image_std: [f32; 3],
    /// `rescale_factor` (1/255).
    pub rescale_factor: f64,
}

impl Default for PreprocessConfig {
    /// CLIP ViT-L/14-336, the vision tower of LLaVA-1.5.
    fn default() -> Self {
        Self::clip(336)
    }
}

/// `size` / `crop_size` in a HF preprocessor config: an int or a dict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HfSize {
    Int(usize),
    Dict { shortest_edge: Option<usize>, height: Option<usize>, width: Option<usize> },
}

/// The fields of a HF `preprocessor_config.json` that matter here. Absent fields take
/// `CLIPImageProcessor`'s defaults, as transformers does; other fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HfPreprocessorConfig {
    pub image_processor_type: Option<String>,
    pub feature_extractor_type: Option<String>,
    pub size: Option<HfSize>,
    pub crop_size: Option<HfSize>,
    /// Parsed as f64 and cast, as numpy's `np.array(mean, dtype=np.float32)` does.
    pub image_mean: Option<Vec<f64>>,
    pub image_std: Option<Vec<f64>>,
    pub rescale_factor: Option<f64>,
    pub resample: Option<u32>,
    pub do_resize: Option<bool>,
    pub do_center_crop: Option<bool>,
    pub do_rescale: Option<bool>,
    pub do_normalize: Option<bool>,
    pub do_convert_rgb: Option<bool>,
}

impl TryFrom<HfPreprocessorConfig> for PreprocessConfig {
    type Error = PreprocessError;

    fn try_from(raw: HfPreprocessorConfig) -> Result<Self, PreprocessError> {
        Self::from_hf(raw)
    }
}

impl PreprocessConfig {
    /// OpenAI CLIP settings at a given resolution (224 for ViT-L/14, 336 for ViT-L/14-336).
    pub fn clip(size: usize) -> Self {
        Self {
            shortest_edge: size,
            crop_size: (size, size),
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
            rescale_factor: 1.0 / 255.0,
        }
    }

    /// Resolves a parsed HF config; absent fields take `CLIPImageProcessor`'s defaults.
    pub fn from_hf(raw: HfPreprocessorConfig) -> Result<Self, PreprocessError> {
        let kind = raw.image_processor_type.as_deref().or(raw.feature_extractor_type.as_deref());
        if let Some(kind) = kind {
            if kind != "CLIPImageProcessor" && kind != "CLIPFeatureExtractor" {
                return Err(PreprocessError::ConfigUnsupported(format!(
                    "image processor {kind:?} (only CLIPImageProcessor is implemented)"
                )));
            }
        }
        if let Some(r) = raw.resample.filter(|&r| r != 3) {
            return Err(PreprocessError::ConfigUnsupported(format!("resample {r} (only 3 = bicubic is implemented)")));
        }
        let flags = [
            ("do_resize", raw.do_resize),
            ("do_center_crop", raw.do_center_crop),
            ("do_rescale", raw.do_rescale),
            ("do_normalize", raw.do_normalize),
            ("do_convert_rgb", raw.do_convert_rgb),
        ];
        if let Some((name, _)) = flags.iter().find(|(_, v)| *v == Some(false)) {
            return Err(PreprocessError::ConfigUnsupported(format!("{name} = false")));
        }
        let defaults = Self::clip(224);
        let shortest_edge = match raw.size {
            None => defaults.shortest_edge,
            Some(HfSize::Int(n)) | Some(HfSize::Dict { shortest_edge: Some(n), .. }) => n,
            Some(HfSize::Dict { height: Some(h), width: Some(w), .. }) if h == w => h,
            Some(other) => {
                return Err(PreprocessError::ConfigUnsupported(format!(
                    "size {other:?} (need an int, {{\"shortest_edge\": n}} or a square {{\"height\", \"width\"}})"
                )))
            }
        };
        let crop_size = match raw.crop_size {
            None => defaults.crop_size,
            Some(HfSize::Int(n)) => (n, n),
            Some(HfSize::Dict { height: Some(h), width: Some(w), .. }) => (h, w),
            Some(other) => {
                return Err(PreprocessError::ConfigInvalid(format!(
                    "crop_size {other:?} (need an int or {{\"height\", \"width\"}})"
                )))
            }
        };
        let triple = |name: &str, v: Option<Vec<f64>>, default: [f32; 3]| match v {
            None => Ok(default),
            Some(v) if v.len() == 3 => Ok([v[0] as f32, v[1] as f32, v[2] as f32]),
            Some(v) => Err(PreprocessError::ConfigInvalid(format!("{name} has {} values, expected 3", v.len()))),
        };
        let config = Self {
            shortest_edge,
            crop_size,
            image_mean: triple("image_mean", raw.image_mean, defaults.image_mean)?,
            image_std: triple("image_std", raw.image_std, defaults.image_std)?,
            rescale_factor: raw.rescale_factor.unwrap_or(defaults.rescale_factor),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks sizes and statistics.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let invalid = |m: String| Err(PreprocessError::ConfigInvalid(m));
        let limit = MAX_SQUARE_SIDE;
        if self.shortest_edge == 0 || self.shortest_edge > limit {
            return invalid(format!("shortest_edge {} is outside 1..={limit}", self.shortest_edge));
        }
        let (ch, cw) = self.crop_size;
        if ch == 0 || cw == 0 || ch > limit || cw > limit {
            return invalid(format!("crop_size {ch}x{cw} is outside 1..={limit}"));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return invalid(format!("image_mean {:?} is not finite", self.image_mean));
        }
        if self.image_std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return invalid(format!("image_std {:?} must be finite and positive", self.image_std));
        }
        if !self.rescale_factor.is_finite() || self.rescale_factor <= 0.0 {
            return invalid(format!("rescale_factor {} must be finite and positive", self.rescale_factor));
        }
        Ok(())
    }

    /// The padding colour of `expand2square`: `tuple(int(x * 255) for x in image_mean)`.
    pub fn background(&self) -> [u8; 3] {
        // int() truncates toward zero; clamp keeps out-of-range means from wrapping.
        self.image_mean.map(|m| (f64::from(m) * 255.0).clamp(0.0, 255.0) as u8)
    }
}

/// The model input for one image, and the square it was made from.
#[derive(Debug, Clone)]
pub struct PreprocessedImage {
    /// Normalised pixels, channel-first. Shape `[3, height, width]`.
    pub pixels: Vec<f32>,
    /// Output height (`crop_size.0`).
    pub height: usize,
    /// Output width (`crop_size.1`).
    pub width: usize,
    /// The padded square before resizing, for drawing heatmaps.
    pub square: Rgb8Image,
}

/// Port of LLaVA `process_images` (pad) + `CLIPImageProcessor.preprocess`.
///
/// # Shapes
/// any `W x H` image -> `pixels [3, crop_h, crop_w]`, `square [S, S]` with `S = max(W, H)`.
pub fn preprocess(image: &Rgb8Image, config: &PreprocessConfig) -> Result<PreprocessedImage, PreprocessError> {
    config.validate()?;
    let square = expand2square(image, config.background())?;
    let (out_h, out_w) = shortest_edge_size(square.height(), square.width(), config.shortest_edge);
    let resized = resize_bicubic(&square, out_w, out_h)?; // [out_h, out_w, 3] u8
    let pixels = crop_and_normalize(&resized, config)?;
    let (height, width) = config.crop_size;
    Ok(PreprocessedImage { pixels, height, width, square })
}

/// Port of LLaVA `mm_utils.py::expand2square`: the image pasted at `(0, (w - h) // 2)` (landscape) or
/// `((h - w) // 2, 0)` (portrait) on a `max(w, h)` square of `background`.
pub fn expand2square(image: &Rgb8Image, background: [u8; 3]) -> Result<Rgb8Image, PreprocessError> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(PreprocessError::EmptyImage { width: w, height: h });
    }
    let side = w.max(h);
    if side > MAX_SQUARE_SIDE {
        return Err(PreprocessError::TooLarge { width: w, height: h });
    }
    if w == h {
        return Ok(image.clone());
    }
    let (x0, y0) = if w > h { (0, (w - h) / 2) } else { ((h - w) / 2, 0) };
    let mut square = Rgb8Image::from_pixel(side, side, background)?;
    for (y, src_row) in image.data.chunks_exact(w * 3).enumerate() {
        let at = ((y0 + y) * side + x0) * 3;
        square.data[at..at + w * 3].copy_from_slice(src_row);
    }
    Ok(square)
}

/// Port of transformers `image_transforms.get_resize_output_image_size(default_to_square=False)`:
/// `(height, width)` with the shorter side set to `shortest_edge` and the longer one scaled and truncated.
pub fn shortest_edge_size(height: usize, width: usize, shortest_edge: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    if short == shortest_edge || short == 0 {
        return (height, width);
    }
    let new_long = (shortest_edge as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (new_long, shortest_edge)
    } else {
        (shortest_edge, new_long)
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow `bicubic_filter` (a = -0.5), support 2.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Resampling taps for one axis: for output `i`, source indices `start[i]..start[i] + len[i]` with
/// fixed-point weights `weights[i * ksize..][..len[i]]`.
struct Taps {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

/// Port of Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` for the bicubic filter.
fn precompute_taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut taps = Taps { ksize, start: vec![0; out_size], len: vec![0; out_size], weights: vec![0; out_size * ksize] };
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C `(int)` truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = bicubic_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut taps.weights[xx * ksize..xx * ksize + n];
        for (dst, &w) in row.iter_mut().zip(&k[..n]) {
            let w = if ww != 0.0 { w / ww } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        taps.start[xx] = xmin as usize;
        taps.len[xx] = n;
    }
    taps
}

/// Pillow `clip8`: the fixed-point sum back to 8 bits.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Port of Pillow `ImagingResample` (bicubic, 8 bits per channel, no box): a horizontal pass then a
/// vertical pass, each rounded to 8 bits; an axis whose size does not change is not resampled.
///
/// # Shapes
/// `image [H, W, 3]` -> `[out_h, out_w, 3]`, row-major interleaved RGB.
pub fn resize_bicubic(image: &Rgb8Image, out_w: usize, out_h: usize) -> Result<Rgb8Image, PreprocessError> {
    let (in_w, in_h) = image.dimensions();
    if in_w == 0 || in_h == 0 || out_w == 0 || out_h == 0 {
        return Err(PreprocessError::EmptyImage { width: in_w, height: in_h });
    }
    if out_w > MAX_SQUARE_SIDE || out_h > MAX_SQUARE_SIDE {
        return Err(PreprocessError::TooLarge { width: out_w, height: out_h });
    }
    let rounding = 1i64 << (PRECISION_BITS - 1);
    let mut data: Vec<u8> = image.data.clone(); // [in_h, in_w, 3]
    let mut width = in_w;
    if out_w != in_w {
        let taps = precompute_taps(in_w, out_w);
        let mut out = vec![0u8; in_h * out_w * 3]; // [in_h, out_w, 3]
        for (src_row, dst_row) in data.chunks_exact(in_w * 3).zip(out.chunks_exact_mut(out_w * 3)) {
            for (xx, dst) in dst_row.chunks_exact_mut(3).enumerate() {
                let (start, k) = (taps.start[xx], &taps.weights[xx * taps.ksize..][..taps.len[xx]]);
                let mut acc = [rounding; 3];
                for (x, &w) in k.iter().enumerate() {
                    let px = &src_row[(start + x) * 3..][..3];
                    for c in 0..3 {
                        acc[c] += i64::from(px[c]) * i64::from(w);
                    }
                }
                for c in 0..3 {
                    dst[c] = clip8(acc[c]);
                }
            }
        }
        data = out;
        width = out_w;
    }
    if out_h != in_h {
        let taps = precompute_taps(in_h, out_h);
        let stride = width * 3;
        let mut out = vec![0u8; out_h * stride]; // [out_h, width, 3]
        let mut acc = vec![0i64; stride];
        for (yy, dst_row) in out.chunks_exact_mut(stride).enumerate() {
            acc.fill(rounding);
            let (start, k) = (taps.start[yy], &taps.weights[yy * taps.ksize..][..taps.len[yy]]);
            for (y, &w) in k.iter().enumerate() {
                let src_row = &data[(start + y) * stride..][..stride];
                for (a, &v) in acc.iter_mut().zip(src_row) {
                    *a += i64::from(v) * i64::from(w);
                }
            }
            for (d, &a) in dst_row.iter_mut().zip(&acc) {
                *d = clip8(a);
            }
        }
        data = out;
    }
    Rgb8Image::new(width, out_h, data)
}

/// Port of transformers `image_transforms.center_crop` to `config.crop_size` (zero padding when the crop
/// is larger), then `rescale` (`uint8 * 1/255` in f64, cast to f32) and `normalize` (`(x - mean) / std`
/// in f32).
///
/// # Shapes
/// `image [H, W, 3]` u8 -> `[3, crop_h, crop_w]` f32.
pub fn crop_and_normalize(image: &Rgb8Image, config: &PreprocessConfig) -> Result<Vec<f32>, PreprocessError> {
    config.validate()?;
    let (crop_h, crop_w) = config.crop_size;
    let (w, h) = (image.width as i64, image.height as i64);
    // Python `(orig - crop) // 2` floors; a negative offset means zero padding of ceil(d / 2).
    let top = (h - crop_h as i64).div_euclid(2);
    let left = (w - crop_w as i64).div_euclid(2);
    let plane = crop_h * crop_w;
    let mut pixels = vec![0f32; 3 * plane]; // [3, crop_h, crop_w]
    for y in 0..crop_h {
        for x in 0..crop_w {
            let (sy, sx) = (y as i64 + top, x as i64 + left);
            let px = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                let at = (sy as usize * image.width + sx as usize) * 3;
                [image.data[at], image.data[at + 1], image.data[at + 2]]
            } else {
                [0, 0, 0]
            };
            for c in 0..3 {
                let v = (f64::from(px[c]) * config.rescale_factor) as f32;
                pixels[c * plane + y * crop_w + x] = (v - config.image_mean[c]) / config.image_std[c];
            }
        }
    }
    Ok(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn gradient(w: usize, h: usize) -> Result<Rgb8Image, PreprocessError> {
        let data = (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 20) as u8, (y * 30) as u8, 7])).collect();
        Rgb8Image::new(w, h, data)
    }

    #[test]
    fn images_are_checked_and_empty_or_oversized_ones_rejected() -> TestResult {
        let err = Rgb8Image::new(4, 3, vec![0; 35]);
        assert!(matches!(err, Err(PreprocessError::BufferLength { channels: 3, expected: 36, actual: 35, .. })));
        assert!(matches!(Rgb8Image::new(usize::MAX, 2, vec![]), Err(PreprocessError::TooLarge { .. })));
        let img = Rgb8Image::new(2, 1, vec![1, 2, 3, 4, 5, 6])?;
        assert_eq!((img.dimensions(), img.pixel(1, 0), img.pixel(2, 0)), ((2, 1), Some([4, 5, 6]), None));
        assert_eq!(Rgb8Image::from_rgba(2, 1, &[1, 2, 3, 0, 4, 5, 6, 255])?, img); // alpha dropped
        assert!(matches!(Rgb8Image::from_rgba(2, 1, &[0; 6]), Err(PreprocessError::BufferLength { channels: 4, .. })));
        let config = PreprocessConfig::default();
        let empty = preprocess(&Rgb8Image::new(0, 4, vec![])?, &config);
        assert!(matches!(empty, Err(PreprocessError::EmptyImage { width: 0, height: 4 })));
        let tall = Rgb8Image::from_pixel(1, MAX_SQUARE_SIDE + 1, [0; 3])?;
        assert!(matches!(preprocess(&tall, &config), Err(PreprocessError::TooLarge { .. })));
        assert!(matches!(resize_bicubic(&img, 0, 3), Err(PreprocessError::EmptyImage { .. })));
        Ok(())
    }

    #[test]
    fn padding_uses_the_truncated_mean_and_floor_offsets() -> TestResult {
        assert_eq!(PreprocessConfig::default().background(), [122, 116, 104]);
        // Landscape 97x62: 35 rows of padding, 17 on top and 18 below.
        let (bg, red) = ([1, 2, 3], [255, 0, 0]);
        let sq = expand2square(&Rgb8Image::from_pixel(97, 62, red)?, bg)?;
        assert_eq!(sq.dimensions(), (97, 97));
        let column: Vec<_> = [16, 17, 78, 79].map(|y| sq.pixel(96, y)).into();
        assert_eq!(column, [Some(bg), Some(red), Some(red), Some(bg)]);
        assert_eq!(expand2square(&gradient(5, 5)?, bg)?, gradient(5, 5)?); // a square is returned as is
                                                                           // Portrait 7x12: 5 columns of padding, 2 left and 3 right.
        let sq = expand2square(&gradient(7, 12)?, bg)?;
        assert_eq!(sq.dimensions(), (12, 12));
        let row: Vec<bool> = (0..12).map(|x| sq.pixel(x, 5) == Some(bg)).collect();
        assert_eq!(row, (0..12).map(|x| !(2..9).contains(&x)).collect::<Vec<_>>());
        assert_eq!((sq.pixel(2, 5), sq.pixel(8, 11)), (Some([0, 150, 7]), Some([120, 74, 7]))); // 330 wraps to 74
        Ok(())
    }

    #[test]
    fn resize_output_size_follows_transformers() {
        assert_eq!(shortest_edge_size(500, 500, 336), (336, 336));
        assert_eq!(shortest_edge_size(480, 640, 336), (336, 448));
        assert_eq!(shortest_edge_size(1000, 301, 336), (1116, 336)); // int(336 * 1000 / 301) = 1116
        assert_eq!(shortest_edge_size(336, 700, 336), (336, 700));
    }

    #[test]
    fn resize_keeps_constants_and_identity_and_weights_sum_to_one() -> TestResult {
        for colour in [[0, 0, 0], [255, 255, 255], [200, 100, 50], [1, 254, 128]] {
            let img = Rgb8Image::from_pixel(13, 29, colour)?;
            for (w, h) in [(336, 336), (5, 7), (13, 100), (40, 29), (1, 1)] {
                assert_eq!(resize_bicubic(&img, w, h)?, Rgb8Image::from_pixel(w, h, colour)?, "{colour:?} {w}x{h}");
            }
        }
        assert_eq!(resize_bicubic(&gradient(9, 7)?, 9, 7)?, gradient(9, 7)?);
        for (inp, out) in [(13, 336), (500, 336), (97, 336), (336, 336)] {
            let taps = precompute_taps(inp, out);
            for i in 0..out {
                let sum: i64 = taps.weights[i * taps.ksize..][..taps.len[i]].iter().map(|&w| i64::from(w)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= taps.len[i] as i64, "{inp}->{out} at {i}: {sum}");
            }
        }
        Ok(())
    }

    #[test]
    fn constant_image_normalises_and_large_crops_pad_with_zero() -> TestResult {
        let img = Rgb8Image::from_pixel(40, 40, [200, 100, 50])?;
        let out = preprocess(&img, &PreprocessConfig::default())?;
        assert_eq!((out.height, out.width, out.pixels.len()), (336, 336, 3 * 336 * 336));
        assert_eq!(out.square, img);
        for (c, v) in [200u8, 100, 50].into_iter().enumerate() {
            let expected = ((f64::from(v) / 255.0) as f32 - CLIP_MEAN[c]) / CLIP_STD[c];
            let plane = &out.pixels[c * 336 * 336..(c + 1) * 336 * 336];
            assert!(plane.iter().all(|&p| p == expected), "channel {c}");
        }
        let cfg = PreprocessConfig { crop_size: (3, 4), ..PreprocessConfig::default() };
        let px = crop_and_normalize(&Rgb8Image::from_pixel(2, 2, [255; 3])?, &cfg)?;
        let (zero, one) = ((0.0 - CLIP_MEAN[0]) / CLIP_STD[0], (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]);
        // transformers pads ceil(1/2) = 1 row on top and ceil(2/2) = 1 column on the left.
        assert_eq!(px[..4], [zero; 4]);
        assert_eq!(px[4..8], [zero, one, one, zero]);
        assert_eq!(px[8..12], [zero, one, one, zero]);
        Ok(())
    }

    #[test]
    fn config_reads_hf_json_and_rejects_what_it_cannot_do() -> TestResult {
        let dict = r#"{"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336},
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3, "rescale_factor": 0.00392156862745098, "image_processor_type": "CLIPImageProcessor"}"#;
        assert_eq!(serde_json::from_str::<PreprocessConfig>(dict)?, PreprocessConfig::default());
        let ints = r#"{"size": 336, "crop_size": 336, "feature_extractor_type": "CLIPFeatureExtractor"}"#;
        assert_eq!(PreprocessConfig::from_hf(serde_json::from_str(ints)?)?, PreprocessConfig::default());
        assert_eq!(serde_json::from_str::<PreprocessConfig>("{}")?, PreprocessConfig::clip(224));
        for bad in [
            r#"{"resample": 2}"#,
            r#"{"image_processor_type": "SiglipImageProcessor"}"#,
            r#"{"do_center_crop": false}"#,
            r#"{"image_std": [0.5, 0.0, 0.5]}"#,
            r#"{"image_mean": [0.5, 0.5]}"#,
            r#"{"size": 0}"#,
            r#"{"size": {"height": 336, "width": 224}}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<PreprocessConfig>(bad).is_err(), "{bad}");
        }
        let raw = HfPreprocessorConfig { resample: Some(2), ..HfPreprocessorConfig::default() };
        assert!(matches!(PreprocessConfig::from_hf(raw), Err(PreprocessError::ConfigUnsupported(_))));
        Ok(())
    }
}

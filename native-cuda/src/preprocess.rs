//! LLaVA-1.5 image preprocessing, bit-exact with the Python pipeline.
//!
//! Ports, for `image_aspect_ratio = "pad"` (LLaVA-1.5, SparseVLM's evaluation setting):
//! - `Image.open(path).convert("RGB")` (LLaVA `model_vqa_loader.py`, `run_llava.py`);
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
//! reference images. `tests/preprocess_reference.rs` checks the whole pipeline against reference values made by the
//! official code (`tests/fixtures/preprocess/`).

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, Rgb, RgbImage};
use serde::Deserialize;
use thiserror::Error;

/// Mean of OpenAI CLIP (also transformers' `OPENAI_CLIP_MEAN`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Standard deviation of OpenAI CLIP (transformers' `OPENAI_CLIP_STD`).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The padded square may not be larger than this many pixels on a side (805 MB as RGB).
pub const MAX_SQUARE_SIDE: u32 = 16_384;

/// Errors of image loading and preprocessing.
#[derive(Debug, Error)]
pub enum PreprocessError {
    #[error("image file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read image {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {} (corrupt or unsupported format): {source}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("image has no pixels ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    #[error("image of {width}x{height} is too large: its padded square exceeds {MAX_SQUARE_SIDE} px a side")]
    TooLarge { width: u32, height: u32 },
    #[error("cannot read preprocessor config {}: {source}", path.display())]
    ConfigIo { path: PathBuf, source: std::io::Error },
    #[error("invalid preprocessor config JSON {}: {source}", path.display())]
    ConfigJson { path: PathBuf, source: serde_json::Error },
    #[error("unsupported preprocessor config: {0}")]
    ConfigUnsupported(String),
    #[error("invalid preprocessor config: {0}")]
    ConfigInvalid(String),
}

/// What `CLIPImageProcessor` needs for LLaVA: a shortest-edge bicubic resize, a centre crop, rescale,
/// normalise.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Int(usize),
    Dict { shortest_edge: Option<usize>, height: Option<usize>, width: Option<usize> },
}

/// The fields of a HF `preprocessor_config.json` that matter here. Absent fields take
/// `CLIPImageProcessor`'s defaults, as transformers does.
#[derive(Debug, Deserialize)]
struct RawConfig {
    image_processor_type: Option<String>,
    feature_extractor_type: Option<String>,
    size: Option<RawSize>,
    crop_size: Option<RawSize>,
    // Parsed as f64 and cast, as numpy's `np.array(mean, dtype=np.float32)` does.
    image_mean: Option<Vec<f64>>,
    image_std: Option<Vec<f64>>,
    rescale_factor: Option<f64>,
    resample: Option<u32>,
    do_resize: Option<bool>,
    do_center_crop: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
    do_convert_rgb: Option<bool>,
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

    /// Reads a HF `preprocessor_config.json` (`CLIPImageProcessor`).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self, PreprocessError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| PreprocessError::ConfigIo { path: path.to_path_buf(), source })?;
        let raw = serde_json::from_str(&text)
            .map_err(|source| PreprocessError::ConfigJson { path: path.to_path_buf(), source })?;
        Self::from_raw(raw)
    }

    /// Parses the text of a HF `preprocessor_config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, PreprocessError> {
        let raw = serde_json::from_str(text)
            .map_err(|source| PreprocessError::ConfigJson { path: PathBuf::from("<string>"), source })?;
        Self::from_raw(raw)
    }

    /// Resolves a parsed config; absent fields take `CLIPImageProcessor`'s defaults.
    fn from_raw(raw: RawConfig) -> Result<Self, PreprocessError> {
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
            Some(RawSize::Int(n)) | Some(RawSize::Dict { shortest_edge: Some(n), .. }) => n,
            Some(RawSize::Dict { height: Some(h), width: Some(w), .. }) if h == w => h,
            Some(other) => {
                return Err(PreprocessError::ConfigUnsupported(format!(
                    "size {other:?} (need an int, {{\"shortest_edge\": n}} or a square {{\"height\", \"width\"}})"
                )))
            }
        };
        let crop_size = match raw.crop_size {
            None => defaults.crop_size,
            Some(RawSize::Int(n)) => (n, n),
            Some(RawSize::Dict { height: Some(h), width: Some(w), .. }) => (h, w),
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
        let limit = MAX_SQUARE_SIDE as usize;
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
    pub fn background(&self) -> Rgb<u8> {
        // int() truncates toward zero; clamp keeps out-of-range means from wrapping.
        Rgb(self.image_mean.map(|m| (f64::from(m) * 255.0).clamp(0.0, 255.0) as u8))
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
    pub square: RgbImage,
}

/// Opens and decodes an image file; the format is sniffed from the content, like PIL.
/// EXIF orientation is not applied (LLaVA does not apply it either).
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage, PreprocessError> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(PreprocessError::NotFound { path: path.to_path_buf() });
    }
    let io_err = |source| PreprocessError::Io { path: path.to_path_buf(), source };
    let reader = ImageReader::open(path).map_err(io_err)?.with_guessed_format().map_err(io_err)?;
    reader.decode().map_err(|source| PreprocessError::Decode { path: path.to_path_buf(), source })
}

/// [`load_image`] then [`preprocess`].
pub fn preprocess_file(
    path: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<PreprocessedImage, PreprocessError> {
    preprocess(&load_image(path)?, config)
}

/// Port of LLaVA `process_images` (pad) + `CLIPImageProcessor.preprocess`.
///
/// # Shapes
/// any `W x H` image -> `pixels [3, crop_h, crop_w]`, `square [S, S]` with `S = max(W, H)`.
pub fn preprocess(image: &DynamicImage, config: &PreprocessConfig) -> Result<PreprocessedImage, PreprocessError> {
    config.validate()?;
    let rgb = image.to_rgb8(); // convert("RGB"): gray is replicated, alpha dropped
    let square = expand2square(&rgb, config.background())?;
    let (out_h, out_w) = shortest_edge_size(square.height() as usize, square.width() as usize, config.shortest_edge);
    let resized = resize_bicubic(&square, out_w, out_h)?; // [out_h, out_w, 3] u8
    let (crop_h, crop_w) = config.crop_size;
    let pixels = crop_and_normalize(&resized, crop_h, crop_w, config);
    Ok(PreprocessedImage { pixels, height: crop_h, width: crop_w, square })
}

/// Port of LLaVA `mm_utils.py::expand2square`: the image pasted at `(0, (w - h) // 2)` (landscape) or
/// `((h - w) // 2, 0)` (portrait) on a `max(w, h)` square of `background`.
pub fn expand2square(image: &RgbImage, background: Rgb<u8>) -> Result<RgbImage, PreprocessError> {
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
    let mut square = RgbImage::from_pixel(side, side, background);
    image::imageops::replace(&mut square, image, i64::from(x0), i64::from(y0));
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
pub fn resize_bicubic(image: &RgbImage, out_w: usize, out_h: usize) -> Result<RgbImage, PreprocessError> {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    if in_w == 0 || in_h == 0 || out_w == 0 || out_h == 0 {
        return Err(PreprocessError::EmptyImage { width: in_w as u32, height: in_h as u32 });
    }
    let limit = MAX_SQUARE_SIDE as usize;
    if out_w > limit || out_h > limit {
        return Err(PreprocessError::TooLarge { width: out_w as u32, height: out_h as u32 });
    }
    let rounding = 1i64 << (PRECISION_BITS - 1);
    let mut data: Vec<u8> = image.as_raw().clone(); // [in_h, in_w, 3]
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
    RgbImage::from_raw(width as u32, out_h as u32, data)
        .ok_or(PreprocessError::EmptyImage { width: width as u32, height: out_h as u32 })
}

/// Port of transformers `image_transforms.center_crop` (zero padding when the crop is larger), then
/// `rescale` (`uint8 * 1/255` in f64, cast to f32) and `normalize` (`(x - mean) / std` in f32).
///
/// # Shapes
/// `image [H, W, 3]` u8 -> `[3, crop_h, crop_w]` f32.
fn crop_and_normalize(image: &RgbImage, crop_h: usize, crop_w: usize, config: &PreprocessConfig) -> Vec<f32> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    // Python `(orig - crop) // 2` floors; a negative offset means zero padding of ceil(d / 2).
    let top = (h - crop_h as i64).div_euclid(2);
    let left = (w - crop_w as i64).div_euclid(2);
    let plane = crop_h * crop_w;
    let mut pixels = vec![0f32; 3 * plane]; // [3, crop_h, crop_w]
    for y in 0..crop_h {
        for x in 0..crop_w {
            let (sy, sx) = (y as i64 + top, x as i64 + left);
            let px = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                image.get_pixel(sx as u32, sy as u32).0
            } else {
                [0, 0, 0]
            };
            for c in 0..3 {
                let v = (f64::from(px[c]) * config.rescale_factor) as f32;
                pixels[c * plane + y * crop_w + x] = (v - config.image_mean[c]) / config.image_std[c];
            }
        }
    }
    pixels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([255, 0, 0]))
    }

    #[test]
    fn background_is_truncated_mean() {
        assert_eq!(PreprocessConfig::default().background(), Rgb([122, 116, 104]));
    }

    #[test]
    fn landscape_padding_uses_floor_offset() -> Result<(), PreprocessError> {
        // 97x62: 35 rows of padding, 17 on top and 18 below.
        let bg = Rgb([1, 2, 3]);
        let sq = expand2square(&solid(97, 62), bg)?;
        assert_eq!(sq.dimensions(), (97, 97));
        assert_eq!(*sq.get_pixel(0, 16), bg);
        assert_eq!(*sq.get_pixel(0, 17), Rgb([255, 0, 0]));
        assert_eq!(*sq.get_pixel(96, 78), Rgb([255, 0, 0]));
        assert_eq!(*sq.get_pixel(96, 79), bg);
        assert_eq!(expand2square(&solid(5, 5), bg)?, solid(5, 5)); // a square is returned as is
        Ok(())
    }

    #[test]
    fn portrait_padding_uses_floor_offset() -> Result<(), PreprocessError> {
        // 7x12: 5 columns of padding, 2 left and 3 right.
        let bg = Rgb([9, 9, 9]);
        let sq = expand2square(&solid(7, 12), bg)?;
        assert_eq!(sq.dimensions(), (12, 12));
        let row: Vec<bool> = (0..12).map(|x| *sq.get_pixel(x, 5) == bg).collect();
        let expected: Vec<bool> = (0..12).map(|x| !(2..9).contains(&x)).collect();
        assert_eq!(row, expected);
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
    fn constant_image_stays_constant_and_normalises() -> Result<(), PreprocessError> {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 40, Rgb([200, 100, 50])));
        let out = preprocess(&img, &PreprocessConfig::default())?;
        assert_eq!((out.height, out.width, out.pixels.len()), (336, 336, 3 * 336 * 336));
        for (c, v) in [200u8, 100, 50].into_iter().enumerate() {
            let expected = ((f64::from(v) / 255.0) as f32 - CLIP_MEAN[c]) / CLIP_STD[c];
            let plane = &out.pixels[c * 336 * 336..(c + 1) * 336 * 336];
            assert!(plane.iter().all(|&p| p == expected), "channel {c}");
        }
        Ok(())
    }

    #[test]
    fn crop_larger_than_image_pads_with_zero() {
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 255, 255]));
        let cfg = PreprocessConfig { crop_size: (3, 4), ..PreprocessConfig::default() };
        let px = crop_and_normalize(&img, 3, 4, &cfg);
        let zero = (0.0 - CLIP_MEAN[0]) / CLIP_STD[0];
        let one = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0];
        // transformers pads ceil(1/2) = 1 row on top and ceil(2/2) = 1 column on the left.
        let row = |y: usize| px[y * 4..y * 4 + 4].to_vec();
        assert_eq!(row(0), vec![zero; 4]);
        assert_eq!(row(1), vec![zero, one, one, zero]);
        assert_eq!(row(2), vec![zero, one, one, zero]);
    }

    #[test]
    fn config_reads_hf_json_in_both_size_forms() -> Result<(), PreprocessError> {
        let dict = r#"{"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336},
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3, "rescale_factor": 0.00392156862745098, "image_processor_type": "CLIPImageProcessor"}"#;
        assert_eq!(PreprocessConfig::from_json_str(dict)?, PreprocessConfig::default());
        let ints = r#"{"size": 336, "crop_size": 336, "feature_extractor_type": "CLIPFeatureExtractor"}"#;
        assert_eq!(PreprocessConfig::from_json_str(ints)?, PreprocessConfig::default());
        assert_eq!(PreprocessConfig::from_json_str("{}")?, PreprocessConfig::clip(224));
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model/llava-orig/preprocessor_config.json");
        assert_eq!(PreprocessConfig::from_json_file(path)?, PreprocessConfig::default());
        Ok(())
    }

    #[test]
    fn config_rejects_what_it_cannot_do() {
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
            assert!(PreprocessConfig::from_json_str(bad).is_err(), "{bad}");
        }
        let missing = PreprocessConfig::from_json_file("/nonexistent/preprocessor_config.json");
        assert!(matches!(missing, Err(PreprocessError::ConfigIo { .. })));
    }

    #[test]
    fn missing_corrupt_and_empty_images_are_errors() -> Result<(), std::io::Error> {
        let missing = load_image("/nonexistent/image.png");
        assert!(matches!(missing, Err(PreprocessError::NotFound { .. })));
        let path = std::env::temp_dir().join(format!("sparsevlm-corrupt-{}.png", std::process::id()));
        // A PNG signature followed by garbage.
        std::fs::write(&path, b"\x89PNG\r\n\x1a\n this is not an image")?;
        let corrupt = load_image(&path);
        std::fs::remove_file(&path)?;
        let err = match corrupt {
            Err(e @ PreprocessError::Decode { .. }) => e,
            other => panic!("expected a decode error, got {other:?}"),
        };
        assert!(err.to_string().contains("corrupt"), "{err}");
        let empty = preprocess(&DynamicImage::ImageRgb8(RgbImage::new(0, 4)), &PreprocessConfig::default());
        assert!(matches!(empty, Err(PreprocessError::EmptyImage { .. })));
        Ok(())
    }

    #[test]
    fn identity_resize_and_weights_sum_to_one() -> Result<(), PreprocessError> {
        let img = RgbImage::from_fn(9, 7, |x, y| Rgb([(x * 20) as u8, (y * 30) as u8, 7]));
        assert_eq!(resize_bicubic(&img, 9, 7)?, img);
        for (inp, out) in [(13, 336), (500, 336), (97, 336), (336, 336)] {
            let taps = precompute_taps(inp, out);
            for i in 0..out {
                let sum: i64 = taps.weights[i * taps.ksize..][..taps.len[i]].iter().map(|&w| i64::from(w)).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= taps.len[i] as i64, "{inp}->{out} at {i}: {sum}");
            }
        }
        Ok(())
    }
}

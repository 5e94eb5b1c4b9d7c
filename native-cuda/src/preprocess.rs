//! LLaVA-1.5 image loading for the native engine: `Image.open(path).convert("RGB")` (LLaVA
//! `model_vqa_loader.py`, `run_llava.py`) with the `image` crate, then the bit-exact preprocessing of
//! [`sparsevlm_core::preprocess`] (LLaVA `mm_utils.py::expand2square`, Pillow's `libImaging/Resample.c`
//! bicubic resize, transformers 4.37 `CLIPImageProcessor.preprocess` crop and normalisation), which the
//! wgpu backend shares.
//!
//! The format is sniffed from the content, like PIL; EXIF orientation is not applied (LLaVA does not
//! apply it either). `tests/preprocess_reference.rs` checks the whole pipeline against reference values
//! made by the official code (`tests/fixtures/preprocess/`).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, RgbImage};
use sparsevlm_core::preprocess as shared;
use thiserror::Error;

pub use sparsevlm_core::preprocess::{
    crop_and_normalize, expand2square, resize_bicubic, shortest_edge_size, HfPreprocessorConfig, HfSize,
    PreprocessConfig, PreprocessedImage, Rgb8Image, CLIP_MEAN, CLIP_STD, MAX_SQUARE_SIDE,
};

/// Errors of image loading and preprocessing.
#[derive(Debug, Error)]
pub enum PreprocessError {
    #[error("image file not found: {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read image {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {} (corrupt or unsupported format): {source}", path.display())]
    Decode { path: PathBuf, source: image::ImageError },
    #[error("cannot decode image bytes (corrupt or unsupported format): {0}")]
    DecodeBytes(#[source] image::ImageError),
    #[error("cannot read preprocessor config {}: {source}", path.display())]
    ConfigIo { path: PathBuf, source: std::io::Error },
    #[error("invalid preprocessor config JSON {}: {source}", path.display())]
    ConfigJson { path: PathBuf, source: serde_json::Error },
    /// The preprocessing itself: an empty or oversized image, or a config it cannot run.
    #[error(transparent)]
    Preprocess(#[from] shared::PreprocessError),
}

/// Reads a HF `preprocessor_config.json` (`CLIPImageProcessor`).
pub fn read_config(path: impl AsRef<Path>) -> Result<PreprocessConfig, PreprocessError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|source| PreprocessError::ConfigIo { path: path.to_path_buf(), source })?;
    parse_config_at(&text, path)
}

/// Parses the text of a HF `preprocessor_config.json`.
pub fn parse_config(text: &str) -> Result<PreprocessConfig, PreprocessError> {
    parse_config_at(text, Path::new("<string>"))
}

fn parse_config_at(text: &str, path: &Path) -> Result<PreprocessConfig, PreprocessError> {
    let raw: HfPreprocessorConfig = serde_json::from_str(text)
        .map_err(|source| PreprocessError::ConfigJson { path: path.to_path_buf(), source })?;
    Ok(PreprocessConfig::from_hf(raw)?)
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

/// Decodes an encoded image (PNG, JPEG) held in memory; the format is sniffed from the content.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, PreprocessError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::DecodeBytes(image::ImageError::IoError(e)))?;
    reader.decode().map_err(PreprocessError::DecodeBytes)
}

/// `convert("RGB")`: gray is replicated and alpha dropped.
pub fn to_rgb8_image(image: &DynamicImage) -> Result<Rgb8Image, PreprocessError> {
    let rgb = image.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    Ok(Rgb8Image::new(width, height, rgb.into_raw())?)
}

/// Back to the `image` crate, for drawing (heatmaps of the padded square).
pub fn to_rgb_image(image: Rgb8Image) -> Result<RgbImage, PreprocessError> {
    let (width, height) = image.dimensions();
    let too_large = || shared::PreprocessError::TooLarge { width, height };
    let w = u32::try_from(width).map_err(|_| too_large())?;
    let h = u32::try_from(height).map_err(|_| too_large())?;
    Ok(RgbImage::from_raw(w, h, image.into_data()).ok_or_else(too_large)?)
}

/// [`load_image`] then [`preprocess`].
pub fn preprocess_file(
    path: impl AsRef<Path>,
    config: &PreprocessConfig,
) -> Result<PreprocessedImage, PreprocessError> {
    preprocess(&load_image(path)?, config)
}

/// Port of LLaVA `process_images` (pad) + `CLIPImageProcessor.preprocess` on a decoded image: see
/// [`sparsevlm_core::preprocess::preprocess`].
///
/// # Shapes
/// any `W x H` image -> `pixels [3, crop_h, crop_w]`, `square [S, S]` with `S = max(W, H)`.
pub fn preprocess(image: &DynamicImage, config: &PreprocessConfig) -> Result<PreprocessedImage, PreprocessError> {
    Ok(shared::preprocess(&to_rgb8_image(image)?, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn config_reads_hf_json_files_and_strings() -> Result<(), PreprocessError> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model/llava-orig/preprocessor_config.json");
        assert_eq!(read_config(path)?, PreprocessConfig::default());
        assert_eq!(parse_config(r#"{"size": 336, "crop_size": 336}"#)?, PreprocessConfig::default());
        assert!(matches!(parse_config("not json"), Err(PreprocessError::ConfigJson { .. })));
        let unsupported = parse_config(r#"{"resample": 2}"#);
        assert!(matches!(unsupported, Err(PreprocessError::Preprocess(shared::PreprocessError::ConfigUnsupported(_)))));
        let missing = read_config("/nonexistent/preprocessor_config.json");
        assert!(matches!(missing, Err(PreprocessError::ConfigIo { .. })));
        Ok(())
    }

    #[test]
    fn missing_corrupt_and_empty_images_are_errors() -> Result<(), std::io::Error> {
        let missing = load_image("/nonexistent/image.png");
        assert!(matches!(missing, Err(PreprocessError::NotFound { .. })));
        let path = std::env::temp_dir().join(format!("sparsevlm-corrupt-{}.png", std::process::id()));
        // A PNG signature followed by garbage.
        let garbage = b"\x89PNG\r\n\x1a\n this is not an image";
        std::fs::write(&path, garbage)?;
        let corrupt = load_image(&path);
        std::fs::remove_file(&path)?;
        let err = match corrupt {
            Err(e @ PreprocessError::Decode { .. }) => e,
            other => panic!("expected a decode error, got {other:?}"),
        };
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(matches!(decode_image(garbage), Err(PreprocessError::DecodeBytes(_))));
        let empty = preprocess(&DynamicImage::ImageRgb8(RgbImage::new(0, 4)), &PreprocessConfig::default());
        assert!(matches!(empty, Err(PreprocessError::Preprocess(shared::PreprocessError::EmptyImage { .. }))));
        Ok(())
    }

    #[test]
    fn decoded_images_convert_to_rgb_and_back() -> Result<(), Box<dyn std::error::Error>> {
        let rgb = RgbImage::from_fn(5, 3, |x, y| Rgb([(x * 40) as u8, (y * 70) as u8, 9]));
        let mut png = Vec::new();
        rgb.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
        let decoded = decode_image(&png)?;
        let shared_image = to_rgb8_image(&decoded)?;
        assert_eq!(shared_image.dimensions(), (5, 3));
        assert_eq!(shared_image.pixel(4, 2), Some([160, 140, 9]));
        assert_eq!(to_rgb_image(shared_image)?, rgb);
        // Gray is replicated and alpha dropped, as PIL's convert("RGB") does.
        let la = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(2, 2, image::LumaA([77, 3])));
        assert_eq!(to_rgb8_image(&la)?.pixel(1, 1), Some([77, 77, 77]));
        let out = preprocess(&decoded, &PreprocessConfig::clip(8))?;
        assert_eq!((out.height, out.width, out.square.dimensions()), (8, 8, (5, 5)));
        Ok(())
    }
}

//! An encoded image (PNG or JPEG bytes) to the vision tower's input, with the same LLaVA-1.5 preprocessing
//! as the native backend (`sparsevlm_core::preprocess`: pad to a square with the mean colour, Pillow's
//! bicubic resize, normalisation) and the bundle's statistics.

use sparsevlm_core::preprocess::{self, PreprocessConfig, Rgb8Image};

use crate::bundle::VisionConfig;
use crate::error::{Result, WebError};

/// The preprocessing of a bundle's vision tower.
pub fn preprocess_config(vision: &VisionConfig) -> PreprocessConfig {
    PreprocessConfig {
        shortest_edge: vision.image_size,
        crop_size: (vision.image_size, vision.image_size),
        image_mean: vision.mean,
        image_std: vision.std,
        rescale_factor: 1.0 / 255.0,
    }
}

/// Decodes PNG or JPEG bytes (the format is sniffed) to RGB, as `Image.open(...).convert("RGB")` does.
pub fn decode(bytes: &[u8]) -> Result<Rgb8Image> {
    if bytes.is_empty() {
        return Err(WebError::Input("the image is empty".into()));
    }
    let image =
        image::load_from_memory(bytes).map_err(|e| WebError::Input(format!("the image cannot be decoded: {e}")))?;
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    Rgb8Image::new(w as usize, h as usize, rgb.into_raw()).map_err(|e| WebError::Input(e.to_string()))
}

/// Normalised pixels `[3, S, S]` and the padded square they were resized from (for overlays).
pub fn pixels(image: &Rgb8Image, vision: &VisionConfig) -> Result<(Vec<f32>, Rgb8Image)> {
    let out = preprocess::preprocess(image, &preprocess_config(vision)).map_err(|e| WebError::Input(e.to_string()))?;
    Ok((out.pixels, out.square))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vision(size: usize) -> VisionConfig {
        VisionConfig {
            layers: 1,
            hidden: 8,
            intermediate: 8,
            heads: 1,
            patch_size: 14,
            image_size: size,
            layer_norm_eps: 1e-6,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    #[test]
    fn example_images_decode_and_preprocess() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        for name in ["easy-vqa-test-0.png", "photo-chelsea.png", "photo-coffee.png", "photo-rocket.jpg"] {
            let image = decode(&std::fs::read(dir.join(name)).unwrap()).unwrap();
            let (pixels, square) = pixels(&image, &vision(112)).unwrap();
            assert_eq!(pixels.len(), 3 * 112 * 112, "{name}");
            assert!(pixels.iter().all(|v| v.is_finite()), "{name}");
            assert_eq!(square.width(), image.width().max(image.height()), "{name}");
        }
    }

    #[test]
    fn bad_images_are_errors() {
        assert!(matches!(decode(&[]), Err(WebError::Input(_))));
        assert!(matches!(decode(b"not an image"), Err(WebError::Input(_))));
        let png =
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/easy-vqa-test-0.png"))
                .unwrap();
        assert!(decode(&png[..png.len() / 2]).is_err(), "a truncated file");
    }
}

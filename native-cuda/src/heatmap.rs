//! Heatmaps of SparseVLM's visual-token selection: which image patches each pruning layer kept.
//!
//! One panel per pruning layer (SparseVLM v1.5 prunes at decoder layers 2, 6 and 15), side by side and
//! wrapped into rows of [`MAX_COLUMNS`]. Each panel is the padded square image that the vision tower saw
//! (`PreprocessedImage::square`), resized to [`PANEL_SIZE`] px and cut into the `grid x grid` patches of
//! CLIP (24 x 24 = 576 for ViT-L/14-336): kept patches at full brightness (optionally tinted by a
//! significance score), pruned ones dimmed to 25 %, patches recycled into merged tokens outlined. Titles
//! are drawn with the `font8x8` bitmap font. No upstream code is ported; the paper's Fig. 1/5 show the
//! same kind of picture.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use thiserror::Error;

/// Side of each panel's image, in pixels.
pub const PANEL_SIZE: u32 = 336;
/// Panels per row before wrapping.
pub const MAX_COLUMNS: usize = 4;
/// Brightness of pruned patches.
pub const PRUNED_BRIGHTNESS: f32 = 0.25;
/// Opacity of the score tint on kept patches.
pub const TINT_ALPHA: f32 = 0.45;

const GAP: u32 = 8;
const TITLE_H: u32 = 24;
const LEGEND_H: u32 = 16;
const OUTLINE: u32 = 2;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const TEXT: Rgb<u8> = Rgb([20, 20, 20]);
const LEGEND_TEXT: Rgb<u8> = Rgb([100, 100, 100]);
const MERGED: Rgb<u8> = Rgb([0, 220, 255]);
/// Score colour map stops: low, middle, high significance.
const RAMP: [[f32; 3]; 3] = [[70.0, 20.0, 130.0], [235.0, 80.0, 40.0], [250.0, 235.0, 60.0]];

/// Errors of heatmap rendering and saving.
#[derive(Debug, Error)]
pub enum HeatmapError {
    #[error("no panels to draw")]
    NoPanels,
    #[error("source image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    #[error("grid {0} is outside 1..={PANEL_SIZE}")]
    BadGrid(usize),
    #[error("panel {panel} ({title:?}): {field} has {len} entries, expected {expected} (grid x grid)")]
    BadLength { panel: usize, title: String, field: &'static str, len: usize, expected: usize },
    #[error("cannot write PNG {}: {source}", path.display())]
    Save { path: PathBuf, source: image::ImageError },
}

/// One pruning layer's selection, in original visual-token order (row-major over the patch grid).
#[derive(Debug, Clone, Default)]
pub struct HeatmapPanel {
    /// Drawn above the panel, e.g. `"layer 2: 300 kept"`.
    pub title: String,
    /// Whether each patch was kept. Shape `[grid * grid]`.
    pub kept: Vec<bool>,
    /// Optional significance per patch, tinting the kept patches. Shape `[grid * grid]`.
    pub scores: Option<Vec<f32>>,
    /// Patches recycled into merged tokens (outlined). Shape `[grid * grid]`, or empty for none.
    pub merged: Vec<bool>,
}

/// Renders the panels side by side (wrapping after [`MAX_COLUMNS`]) with a legend line at the bottom.
///
/// # Shapes
/// `square [S, S]` any size; each panel's `kept`/`scores`/`merged` `[grid * grid]`; output
/// `[rows * (TITLE_H + 336 + GAP) + GAP + LEGEND_H, cols * (336 + GAP) + GAP]`.
pub fn render_heatmap(square: &RgbImage, grid: usize, panels: &[HeatmapPanel]) -> Result<RgbImage, HeatmapError> {
    if panels.is_empty() {
        return Err(HeatmapError::NoPanels);
    }
    let (w, h) = square.dimensions();
    if w == 0 || h == 0 {
        return Err(HeatmapError::EmptyImage { width: w, height: h });
    }
    if grid == 0 || grid > PANEL_SIZE as usize {
        return Err(HeatmapError::BadGrid(grid));
    }
    let n = grid * grid;
    for (i, p) in panels.iter().enumerate() {
        let fields = [("kept", Some(p.kept.len())), ("scores", p.scores.as_ref().map(Vec::len))];
        let merged = (!p.merged.is_empty()).then_some(("merged", Some(p.merged.len())));
        for (field, len) in fields.into_iter().chain(merged) {
            if let Some(len) = len.filter(|&len| len != n) {
                let title = p.title.clone();
                return Err(HeatmapError::BadLength { panel: i, title, field, len, expected: n });
            }
        }
    }
    let base = image::imageops::resize(square, PANEL_SIZE, PANEL_SIZE, FilterType::Triangle);
    let (cols, rows) = grid_shape(panels.len());
    let width = cols as u32 * (PANEL_SIZE + GAP) + GAP;
    let height = rows as u32 * (TITLE_H + PANEL_SIZE + GAP) + GAP + LEGEND_H;
    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    for (i, panel) in panels.iter().enumerate() {
        let (x0, y0) = panel_origin(i);
        draw_panel(&mut canvas, &base, grid, panel, x0, y0);
        let scale = if text_width(&panel.title, 2) <= PANEL_SIZE { 2 } else { 1 };
        let ty = y0 - TITLE_H + (TITLE_H - 8 * scale) / 2;
        draw_text(&mut canvas, &panel.title, x0, ty, scale, x0 + PANEL_SIZE, TEXT);
    }
    let mut legend = String::from("kept: bright  pruned: dim  merged: outline");
    if panels.iter().any(|p| p.scores.is_some()) {
        legend.push_str("  tint: score");
    }
    draw_text(&mut canvas, &legend, GAP, height - LEGEND_H, 1, width, LEGEND_TEXT);
    Ok(canvas)
}

/// Writes an image as PNG.
pub fn save_png(image: &RgbImage, path: impl AsRef<Path>) -> Result<(), HeatmapError> {
    let path = path.as_ref();
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| HeatmapError::Save { path: path.to_path_buf(), source })
}

/// (columns, rows) for `n` panels.
fn grid_shape(n: usize) -> (usize, usize) {
    let cols = n.clamp(1, MAX_COLUMNS);
    (cols, n.div_ceil(cols))
}

/// Top-left corner of panel `i`'s image area on the canvas.
fn panel_origin(i: usize) -> (u32, u32) {
    let (col, row) = ((i % MAX_COLUMNS) as u32, (i / MAX_COLUMNS) as u32);
    (GAP + col * (PANEL_SIZE + GAP), GAP + row * (TITLE_H + PANEL_SIZE + GAP) + TITLE_H)
}

/// Pixel range `[start, end)` of patch row/column `i` in a panel.
fn cell_span(i: usize, grid: usize) -> (u32, u32) {
    let p = PANEL_SIZE as usize;
    ((i * p / grid) as u32, ((i + 1) * p / grid) as u32)
}

/// Scores mapped to [0, 1] by min-max over the finite values; non-finite ones count as the minimum.
fn normalise(scores: &[f32]) -> Vec<f32> {
    let finite = scores.iter().copied().filter(|s| s.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let range = hi - lo;
    scores
        .iter()
        .map(|&s| match (s.is_finite(), range > 0.0) {
            (false, _) => 0.0,
            (true, true) => (s - lo) / range,
            (true, false) => 1.0,
        })
        .collect()
}

/// The score colour map at `t` in [0, 1].
fn ramp(t: f32) -> [f32; 3] {
    let (a, b, f) = if t < 0.5 { (RAMP[0], RAMP[1], t * 2.0) } else { (RAMP[1], RAMP[2], t * 2.0 - 1.0) };
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * f)
}

/// Draws one panel's image area at `(x0, y0)`.
///
/// # Shapes
/// `base [336, 336]`; `panel.kept`/`scores`/`merged` `[grid * grid]` (checked by the caller).
fn draw_panel(canvas: &mut RgbImage, base: &RgbImage, grid: usize, panel: &HeatmapPanel, x0: u32, y0: u32) {
    let tints = panel.scores.as_deref().map(normalise);
    for row in 0..grid {
        let (ya, yb) = cell_span(row, grid);
        for col in 0..grid {
            let (xa, xb) = cell_span(col, grid);
            let idx = row * grid + col;
            let kept = panel.kept[idx];
            let merged = panel.merged.get(idx).copied().unwrap_or(false);
            let tint = tints.as_ref().filter(|_| kept).map(|t| ramp(t[idx]));
            for y in ya..yb {
                for x in xa..xb {
                    let on_outline = x < xa + OUTLINE || x + OUTLINE >= xb || y < ya + OUTLINE || y + OUTLINE >= yb;
                    let px = if merged && on_outline { MERGED } else { shade(*base.get_pixel(x, y), kept, tint) };
                    canvas.put_pixel(x0 + x, y0 + y, px);
                }
            }
        }
    }
}

/// A kept pixel unchanged (or blended with its tint colour), a pruned one dimmed.
fn shade(px: Rgb<u8>, kept: bool, tint: Option<[f32; 3]>) -> Rgb<u8> {
    match (kept, tint) {
        (true, None) => px,
        (true, Some(t)) => Rgb([0, 1, 2].map(|c| (f32::from(px.0[c]) * (1.0 - TINT_ALPHA) + t[c] * TINT_ALPHA) as u8)),
        (false, _) => Rgb(px.0.map(|v| (f32::from(v) * PRUNED_BRIGHTNESS) as u8)),
    }
}

/// The 8x8 glyph of a character: ASCII and Latin-1 from `font8x8`, `?` otherwise.
fn glyph(ch: char) -> [u8; 8] {
    let code = ch as usize;
    let basic = &font8x8::legacy::BASIC_LEGACY;
    match code {
        0..=127 => basic[code],
        0xA0..=0xFF => font8x8::legacy::LATIN_LEGACY[code - 0xA0],
        _ => basic[usize::from(b'?')],
    }
}

/// Width in pixels of `text` at `scale`.
pub(crate) fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32).saturating_mul(8 * scale)
}

/// Draws `text` with its top-left at `(x, y)`, `scale` pixels per font pixel, clipped at `x_max` and at
/// the canvas border.
pub(crate) fn draw_text(canvas: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, x_max: u32, color: Rgb<u8>) {
    let x_max = x_max.min(canvas.width());
    for (i, ch) in text.chars().enumerate() {
        let cx = x + i as u32 * 8 * scale;
        if cx + 8 * scale > x_max {
            break;
        }
        for (gy, bits) in glyph(ch).iter().enumerate() {
            for gx in 0..8u32 {
                if bits & (1 << gx) == 0 {
                    continue; // bit 0 is the leftmost pixel
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (cx + gx * scale + dx, y + gy as u32 * scale + dy);
                        if py < canvas.height() {
                            canvas.put_pixel(px, py, color);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: u32) -> RgbImage {
        RgbImage::from_fn(side, side, |x, y| Rgb([(x * 255 / side) as u8, (y * 255 / side) as u8, 180]))
    }

    fn panel(title: &str, grid: usize, kept: impl Fn(usize) -> bool) -> HeatmapPanel {
        HeatmapPanel { title: title.into(), kept: (0..grid * grid).map(kept).collect(), ..Default::default() }
    }

    /// Centre pixel of patch `idx` of panel 0.
    fn centre(idx: usize, grid: usize) -> (u32, u32) {
        let ((ya, yb), (xa, xb)) = (cell_span(idx / grid, grid), cell_span(idx % grid, grid));
        ((xa + xb) / 2, (ya + yb) / 2)
    }

    #[test]
    fn dimensions_wrap_into_rows() {
        let sq = gradient(100);
        let one = render_heatmap(&sq, 24, &[panel("a", 24, |_| true)]).unwrap();
        assert_eq!(one.dimensions(), (336 + 16, 24 + 336 + 16 + 16));
        let five: Vec<_> = (0..5).map(|i| panel(&format!("p{i}"), 24, |_| true)).collect();
        let img = render_heatmap(&sq, 24, &five).unwrap();
        assert_eq!(img.dimensions(), (4 * 344 + 8, 2 * (24 + 336 + 8) + 8 + 16));
    }

    #[test]
    fn pruned_patches_dim_and_kept_ones_stay() {
        let sq = gradient(500);
        let base = image::imageops::resize(&sq, PANEL_SIZE, PANEL_SIZE, FilterType::Triangle);
        let p = panel("", 24, |i| i % 2 == 0);
        let img = render_heatmap(&sq, 24, &[p]).unwrap();
        let (ox, oy) = panel_origin(0);
        for idx in [0usize, 1, 300, 301, 575] {
            let (x, y) = centre(idx, 24);
            let (got, orig) = (img.get_pixel(ox + x, oy + y).0, base.get_pixel(x, y).0);
            if idx % 2 == 0 {
                assert_eq!(got, orig, "kept patch {idx}");
            } else {
                let sum = |p: [u8; 3]| p.iter().map(|&v| u32::from(v)).sum::<u32>();
                assert!(sum(got) * 3 < sum(orig), "pruned patch {idx}: {got:?} vs {orig:?}");
            }
        }
    }

    #[test]
    fn merged_patches_are_outlined_and_scores_tint() {
        let sq = gradient(64);
        let mut p = panel("", 24, |i| i < 100);
        p.merged = (0..576).map(|i| i == 200).collect();
        p.scores = Some((0..576).map(|i| if i == 5 { f32::NAN } else { i as f32 }).collect());
        let img = render_heatmap(&sq, 24, &[p]).unwrap();
        let (ox, oy) = panel_origin(0);
        let ((ya, _), (xa, _)) = (cell_span(200 / 24, 24), cell_span(200 % 24, 24));
        assert_eq!(*img.get_pixel(ox + xa, oy + ya), MERGED);
        let base = image::imageops::resize(&sq, PANEL_SIZE, PANEL_SIZE, FilterType::Triangle);
        let (x, y) = centre(50, 24);
        assert_ne!(*img.get_pixel(ox + x, oy + y), *base.get_pixel(x, y), "kept patch is tinted");
    }

    #[test]
    fn titles_draw_text_and_empty_titles_do_not() {
        let sq = gradient(50);
        let grid = 24;
        let img = render_heatmap(&sq, grid, &[panel("layer 2: 300 kept", grid, |_| true), panel("", grid, |_| true)])
            .unwrap();
        let ink = |i: usize| {
            let (x0, y0) = panel_origin(i);
            (x0..x0 + PANEL_SIZE)
                .flat_map(|x| (y0 - TITLE_H..y0).map(move |y| (x, y)))
                .filter(|&(x, y)| *img.get_pixel(x, y) != BACKGROUND)
                .count()
        };
        assert!(ink(0) > 100, "title pixels: {}", ink(0));
        assert_eq!(ink(1), 0);
        // A title too long for the panel is clipped, not a panic.
        let long = "x".repeat(500) + "é☃";
        assert!(render_heatmap(&sq, grid, &[panel(&long, grid, |_| true)]).is_ok());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let sq = gradient(20);
        assert!(matches!(render_heatmap(&sq, 24, &[]), Err(HeatmapError::NoPanels)));
        assert!(matches!(render_heatmap(&sq, 0, &[panel("", 1, |_| true)]), Err(HeatmapError::BadGrid(0))));
        let short = render_heatmap(&sq, 24, &[panel("", 23, |_| true)]);
        assert!(matches!(short, Err(HeatmapError::BadLength { field: "kept", len: 529, expected: 576, .. })));
        let mut p = panel("", 24, |_| true);
        p.merged = vec![false; 3];
        assert!(matches!(render_heatmap(&sq, 24, &[p]), Err(HeatmapError::BadLength { field: "merged", .. })));
        let empty = render_heatmap(&RgbImage::new(0, 0), 24, &[panel("", 24, |_| true)]);
        assert!(matches!(empty, Err(HeatmapError::EmptyImage { .. })));
    }

    #[test]
    fn save_png_round_trips() {
        let img = render_heatmap(&gradient(30), 6, &[panel("t", 6, |i| i % 3 == 0)]).unwrap();
        let path = std::env::temp_dir().join(format!("sparsevlm-heatmap-{}.png", std::process::id()));
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, img);
        assert!(matches!(save_png(&img, "/nonexistent/dir/x.png"), Err(HeatmapError::Save { .. })));
    }
}

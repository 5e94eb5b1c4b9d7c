//! Text-guided scenes: a seeded generator of images with two to four shapes and questions that name one
//! of them, written in the easy-VQA layout (`questions.json` with `[question, answer, image_id]` rows and
//! `images/{id}.png`), so that `eval --data` and `train-projector --data` read it like easy-VQA.
//!
//! easy-VQA (Zhou, MIT) has one shape per image, so every patch of the shape matters whatever the question.
//! Here the question decides which patches matter: "What color is the triangle?" needs the triangle's
//! patches and none of the others, which is the situation SparseVLM's text raters are built for.
//!
//! Every scene has distinct kinds and distinct colours, so each shape is named unambiguously by its kind or
//! by its colour. Answers are single words. The same `(n, seed)` always gives the same files.

use std::path::Path;

use image::{Rgb, RgbImage};
use serde::Serialize;
use sparsevlm_core::rng::SplitMix64;

use crate::error::{Error, Result};

/// The seed of the training split. Validation and test come from other seeds, so no scene of theirs is
/// ever trained on.
pub const TRAIN_SEED: u64 = 1;
/// The seed of the validation split.
pub const VALIDATION_SEED: u64 = 2;
/// The seed of the test split, used only to report accuracy.
pub const TEST_SEED: u64 = 3;

/// The side of a scene image in pixels.
pub const SCENE_SIZE: u32 = 128;

/// The shape kinds, by the name questions use.
pub const KINDS: [&str; 4] = ["circle", "rectangle", "triangle", "diamond"];

/// easy-VQA's eight colours with the RGB values scenes are drawn in.
pub const COLOURS: [(&str, [u8; 3]); 8] = [
    ("red", [220, 30, 30]),
    ("green", [40, 160, 50]),
    ("blue", [30, 60, 220]),
    ("black", [15, 15, 15]),
    ("gray", [128, 128, 128]),
    ("teal", [0, 128, 128]),
    ("brown", [130, 80, 30]),
    ("yellow", [235, 200, 20]),
];

/// Light backgrounds; each keeps every colour above clearly visible.
const BACKGROUNDS: [[u8; 3]; 6] =
    [[255, 255, 255], [246, 242, 232], [235, 244, 250], [240, 250, 238], [250, 238, 242], [238, 236, 248]];

/// Spelled-out counts, for "How many shapes are there?".
const COUNT_WORDS: [&str; 5] = ["zero", "one", "two", "three", "four"];

/// One shape of a scene.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Index into [`KINDS`].
    pub kind: usize,
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Centre in pixels.
    pub cx: f32,
    pub cy: f32,
    /// Half-extent in pixels (radius of the circle, half side of the rectangle's longer side, ...).
    pub r: f32,
    /// Width-to-height ratio of rectangles (1 for the other kinds).
    pub aspect: f32,
}

impl Shape {
    fn kind_name(&self) -> &'static str {
        KINDS[self.kind]
    }

    fn colour_name(&self) -> &'static str {
        COLOURS[self.colour].0
    }

    /// Whether the pixel centre `(x, y)` is inside the shape.
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        match KINDS[self.kind] {
            "circle" => dx * dx + dy * dy <= self.r * self.r,
            "rectangle" => {
                let (hw, hh) =
                    if self.aspect >= 1.0 { (self.r, self.r / self.aspect) } else { (self.r * self.aspect, self.r) };
                dx.abs() <= hw && dy.abs() <= hh
            }
            "diamond" => dx.abs() + dy.abs() <= self.r,
            // An upward triangle: apex at the top, base at the bottom, inscribed in the circle of radius r.
            _ => {
                let top = -self.r;
                let bottom = 0.5 * self.r;
                if dy < top || dy > bottom {
                    return false;
                }
                let half_width = (dy - top) / (bottom - top) * self.r * 0.866;
                dx.abs() <= half_width
            }
        }
    }
}

/// One generated scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub background: [u8; 3],
    pub shapes: Vec<Shape>,
}

/// One question about a scene.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneQuestion {
    pub question: String,
    pub answer: String,
}

/// What [`write_scenes`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenesSummary {
    pub images: usize,
    pub questions: usize,
    pub seed: u64,
}

/// A uniform integer in `0..n` (`n > 0`).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// A uniform float in `[lo, hi)`.
fn between(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.next_f32()
}

/// `k` distinct indices out of `0..n`, in random order.
fn distinct(rng: &mut SplitMix64, n: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = i + below(rng, n - i);
        all.swap(i, j);
    }
    all.truncate(k);
    all
}

/// Draws a scene: 2–4 shapes of distinct kinds and colours that do not overlap.
pub fn sample_scene(rng: &mut SplitMix64) -> Scene {
    let size = SCENE_SIZE as f32;
    loop {
        let count = 2 + below(rng, 3);
        let kinds = distinct(rng, KINDS.len(), count);
        let colours = distinct(rng, COLOURS.len(), count);
        let background = BACKGROUNDS[below(rng, BACKGROUNDS.len())];
        let mut shapes: Vec<Shape> = Vec::with_capacity(count);
        let mut placed = true;
        for (&kind, &colour) in kinds.iter().zip(&colours) {
            let r = between(rng, 11.0, 22.0);
            let aspect = if KINDS[kind] == "rectangle" { between(rng, 0.6, 1.6) } else { 1.0 };
            // Rejection sampling of a centre whose bounding circle clears the border and the other shapes.
            let spot = (0..200).find_map(|_| {
                let cx = between(rng, r + 3.0, size - r - 3.0);
                let cy = between(rng, r + 3.0, size - r - 3.0);
                let clear = shapes.iter().all(|s| {
                    let gap = ((s.cx - cx).powi(2) + (s.cy - cy).powi(2)).sqrt();
                    gap > s.r + r + 4.0
                });
                clear.then_some((cx, cy))
            });
            let Some((cx, cy)) = spot else {
                placed = false;
                break;
            };
            shapes.push(Shape { kind, colour, cx, cy, r, aspect });
        }
        if placed {
            return Scene { background, shapes };
        }
    }
}

/// Renders a scene with 4×4 supersampling per pixel (smooth edges, as a photo of a drawing would have).
pub fn render(scene: &Scene) -> RgbImage {
    const SS: usize = 4;
    RgbImage::from_fn(SCENE_SIZE, SCENE_SIZE, |x, y| {
        let mut acc = [0u32; 3];
        for sy in 0..SS {
            for sx in 0..SS {
                let px = x as f32 + (sx as f32 + 0.5) / SS as f32;
                let py = y as f32 + (sy as f32 + 0.5) / SS as f32;
                // Later shapes are drawn on top (shapes never overlap, so the order does not matter).
                let colour = scene
                    .shapes
                    .iter()
                    .rev()
                    .find(|s| s.contains(px, py))
                    .map_or(scene.background, |s| COLOURS[s.colour].1);
                for c in 0..3 {
                    acc[c] += u32::from(colour[c]);
                }
            }
        }
        let n = (SS * SS) as u32;
        Rgb([(acc[0] / n) as u8, (acc[1] / n) as u8, (acc[2] / n) as u8])
    })
}

/// The questions about a scene: the colour of a named kind, the kind of a named colour, presence of a
/// colour-kind pair and of a kind (yes and no balanced), a position, and the count.
pub fn questions(scene: &Scene, rng: &mut SplitMix64) -> Vec<SceneQuestion> {
    let mut out = Vec::new();
    let mut ask = |question: String, answer: &str| out.push(SceneQuestion { question, answer: answer.to_owned() });
    let shapes = &scene.shapes;
    let pick = |rng: &mut SplitMix64| shapes[below(rng, shapes.len())];
    // The colour of two different named kinds, when there are two.
    for &i in &distinct(rng, shapes.len(), 2) {
        let s = shapes[i];
        ask(format!("What color is the {}?", s.kind_name()), s.colour_name());
    }
    let s = pick(rng);
    ask(format!("What is the {} shape?", s.colour_name()), s.kind_name());
    // "Is there a <colour> <kind>?": yes for a real pair, no for a colour and a kind of two different
    // shapes (so the answer depends on which colour belongs to which shape) or an absent colour.
    if rng.next_u64().is_multiple_of(2) {
        let s = pick(rng);
        ask(format!("Is there a {} {}?", s.colour_name(), s.kind_name()), "yes");
    } else {
        let a = pick(rng);
        let colour = if rng.next_u64().is_multiple_of(2) {
            let other: Vec<&Shape> = shapes.iter().filter(|s| s.colour != a.colour).collect();
            other[below(rng, other.len())].colour
        } else {
            let absent: Vec<usize> = (0..COLOURS.len()).filter(|c| shapes.iter().all(|s| s.colour != *c)).collect();
            absent[below(rng, absent.len())]
        };
        ask(format!("Is there a {} {}?", COLOURS[colour].0, a.kind_name()), "no");
    }
    // "Does the image contain a <kind>?", yes or no with equal odds.
    let absent: Vec<usize> = (0..KINDS.len()).filter(|k| shapes.iter().all(|s| s.kind != *k)).collect();
    if absent.is_empty() || rng.next_u64().is_multiple_of(2) {
        ask(format!("Does the image contain a {}?", pick(rng).kind_name()), "yes");
    } else {
        ask(format!("Does the image contain a {}?", KINDS[absent[below(rng, absent.len())]]), "no");
    }
    // Position, only for a shape clearly off the midline (by a fifth of the image).
    let half = SCENE_SIZE as f32 / 2.0;
    let margin = SCENE_SIZE as f32 / 5.0;
    let horizontal: Vec<&Shape> = shapes.iter().filter(|s| (s.cx - half).abs() > margin).collect();
    let vertical: Vec<&Shape> = shapes.iter().filter(|s| (s.cy - half).abs() > margin).collect();
    let by_kind = rng.next_u64().is_multiple_of(2);
    let name = |s: &Shape| if by_kind { s.kind_name().to_owned() } else { format!("{} shape", s.colour_name()) };
    if !horizontal.is_empty() && (vertical.is_empty() || rng.next_u64().is_multiple_of(2)) {
        let s = horizontal[below(rng, horizontal.len())];
        let side = if s.cx < half { "left" } else { "right" };
        ask(format!("Is the {} on the left or on the right?", name(s)), side);
    } else if !vertical.is_empty() {
        let s = vertical[below(rng, vertical.len())];
        let side = if s.cy < half { "top" } else { "bottom" };
        ask(format!("Is the {} at the top or at the bottom?", name(s)), side);
    }
    ask("How many shapes are there?".to_owned(), COUNT_WORDS[shapes.len()]);
    out
}

/// Writes `n` scenes drawn from `seed` into `out` in the easy-VQA layout.
pub fn write_scenes(out: &Path, n: usize, seed: u64) -> Result<ScenesSummary> {
    if n == 0 {
        return Err(Error::Input("the number of scenes must be at least 1".into()));
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    let mut rng = SplitMix64::new(seed ^ 0x5343_454e_4553);
    let mut rows: Vec<(String, String, usize)> = Vec::new();
    for id in 0..n {
        let scene = sample_scene(&mut rng);
        let path = images.join(format!("{id}.png"));
        render(&scene).save(&path).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        for q in questions(&scene, &mut rng) {
            rows.push((q.question, q.answer, id));
        }
    }
    let path = out.join("questions.json");
    let text = serde_json::to_string(&rows).map_err(|e| Error::Input(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(ScenesSummary { images: n, questions: rows.len(), seed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(seed: u64) -> Scene {
        sample_scene(&mut SplitMix64::new(seed))
    }

    #[test]
    fn scenes_have_distinct_kinds_and_colours_without_overlap() {
        for seed in 0..200 {
            let s = scene(seed);
            assert!((2..=4).contains(&s.shapes.len()));
            for (i, a) in s.shapes.iter().enumerate() {
                assert!(a.cx - a.r >= 0.0 && a.cx + a.r <= SCENE_SIZE as f32);
                for b in &s.shapes[i + 1..] {
                    assert_ne!(a.kind, b.kind);
                    assert_ne!(a.colour, b.colour);
                    assert!(((a.cx - b.cx).powi(2) + (a.cy - b.cy).powi(2)).sqrt() > a.r + b.r);
                }
            }
        }
    }

    #[test]
    fn answers_are_true_of_the_scene() {
        for seed in 0..300 {
            let mut rng = SplitMix64::new(seed);
            let s = sample_scene(&mut rng);
            for q in questions(&s, &mut rng) {
                assert!(!q.answer.contains(' '), "{q:?}");
                let words: Vec<&str> = q.question.trim_end_matches('?').split(' ').collect();
                if let Some(kind) = q.question.strip_prefix("What color is the ").map(|r| r.trim_end_matches('?')) {
                    let shape = s.shapes.iter().find(|x| x.kind_name() == kind).unwrap();
                    assert_eq!(q.answer, shape.colour_name());
                } else if q.question.starts_with("Is there a ") {
                    let (colour, kind) = (words[3], words[4]);
                    let real = s.shapes.iter().any(|x| x.colour_name() == colour && x.kind_name() == kind);
                    assert_eq!(q.answer, if real { "yes" } else { "no" }, "{q:?}");
                } else if q.question.starts_with("Does the image contain") {
                    let real = s.shapes.iter().any(|x| x.kind_name() == words[5]);
                    assert_eq!(q.answer, if real { "yes" } else { "no" });
                } else if q.question.starts_with("How many") {
                    assert_eq!(q.answer, COUNT_WORDS[s.shapes.len()]);
                }
            }
        }
    }

    #[test]
    fn rendering_shows_each_shape_in_its_colour() {
        let s = scene(7);
        let image = render(&s);
        for shape in &s.shapes {
            let p = image.get_pixel(shape.cx as u32, shape.cy as u32);
            assert_eq!(p.0, COLOURS[shape.colour].1, "{shape:?}");
        }
        assert_eq!(image.get_pixel(0, 0).0, s.background);
    }

    #[test]
    fn written_sets_are_deterministic_and_readable() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = write_scenes(a.path(), 5, 3).unwrap();
        write_scenes(b.path(), 5, 3).unwrap();
        let qa = std::fs::read(a.path().join("questions.json")).unwrap();
        assert_eq!(qa, std::fs::read(b.path().join("questions.json")).unwrap());
        assert_eq!(
            std::fs::read(a.path().join("images/4.png")).unwrap(),
            std::fs::read(b.path().join("images/4.png")).unwrap()
        );
        let items = crate::data::read_easy_vqa(a.path()).unwrap();
        assert_eq!(items.len(), sa.questions);
        assert!(write_scenes(a.path(), 0, 1).is_err());
    }
}

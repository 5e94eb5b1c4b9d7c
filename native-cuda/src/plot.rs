//! Small line charts drawn directly into a PNG, so that results can be looked at rather than read:
//! accuracy against retained visual tokens (one line per method, log-scale token axis) and training
//! loss curves.

use image::{Rgb, RgbImage};

use crate::heatmap::{draw_text, text_width};

/// One method's points: `(retained tokens, accuracy in 0..=1)`.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const W: u32 = 960;
const H: u32 = 600;
const LEFT: u32 = 80;
const RIGHT: u32 = 250;
const TOP: u32 = 50;
const BOTTOM: u32 = 70;
const COLORS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>, width: i64) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = ((x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64);
        for dx in -(width / 2)..=(width / 2) {
            for dy in -(width / 2)..=(width / 2) {
                let (px, py) = (x + dx, y + dy);
                if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                    img.put_pixel(px as u32, py as u32, color);
                }
            }
        }
    }
}

/// Renders the chart; the token axis spans the points' range on a log scale, accuracy 0–100 %.
pub fn accuracy_plot(title: &str, series: &[Series]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (x_min, x_max) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| *x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min { (x_min, x_max) } else { (1.0, 2.0) };
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let sx = |x: f64| LEFT as f64 + (x.ln() - x_min.ln()) / (x_max.ln() - x_min.ln()) * pw;
    let sy = |y: f64| TOP as f64 + (1.0 - y.clamp(0.0, 1.0)) * ph;
    let (grey, black) = (Rgb([220, 220, 220]), Rgb([0, 0, 0]));
    for i in 0..=10 {
        let y = sy(i as f64 / 10.0);
        line(&mut img, (LEFT as f64, y), (LEFT as f64 + pw, y), grey, 1);
        let label = format!("{}%", i * 10);
        draw_text(&mut img, &label, LEFT - 8 - text_width(&label, 1), y as u32 - 4, 1, LEFT, black);
    }
    let mut ticks: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for &t in &ticks {
        let x = sx(t);
        line(&mut img, (x, TOP as f64), (x, TOP as f64 + ph), grey, 1);
        let label = format!("{t}");
        draw_text(&mut img, &label, (x as u32).saturating_sub(text_width(&label, 1) / 2), H - BOTTOM + 8, 1, W, black);
    }
    line(&mut img, (LEFT as f64, TOP as f64 + ph), (LEFT as f64 + pw, TOP as f64 + ph), black, 1);
    line(&mut img, (LEFT as f64, TOP as f64), (LEFT as f64, TOP as f64 + ph), black, 1);
    draw_text(&mut img, title, LEFT, 16, 2, W, black);
    let axis = "retained visual tokens (log scale)";
    draw_text(&mut img, axis, LEFT + (pw as u32 - text_width(axis, 1)) / 2, H - BOTTOM + 30, 1, W, black);
    for (i, s) in series.iter().enumerate() {
        let color = Rgb(COLORS[i % COLORS.len()]);
        let mut points = s.points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in points.windows(2) {
            line(&mut img, (sx(pair[0].0), sy(pair[0].1)), (sx(pair[1].0), sy(pair[1].1)), color, 2);
        }
        for p in &points {
            line(&mut img, (sx(p.0) - 3.0, sy(p.1)), (sx(p.0) + 3.0, sy(p.1)), color, 5);
        }
        let ly = TOP + 10 + 22 * i as u32;
        line(
            &mut img,
            ((W - RIGHT + 20) as f64, ly as f64 + 4.0),
            ((W - RIGHT + 44) as f64, ly as f64 + 4.0),
            color,
            3,
        );
        draw_text(&mut img, &s.label, W - RIGHT + 52, ly, 1, W - 4, black);
    }
    img
}

/// A training curve: each step's loss (light) and its moving average over 25 steps (dark), against the
/// step, with linear axes from zero.
pub fn loss_plot(title: &str, points: &[(f64, f64)]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let x_max = points.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let y_max = points.iter().map(|p| p.1).filter(|y| y.is_finite()).fold(1e-3f64, f64::max);
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let sx = |x: f64| LEFT as f64 + x / x_max * pw;
    let sy = |y: f64| TOP as f64 + (1.0 - (y / y_max).clamp(0.0, 1.0)) * ph;
    let (grey, black) = (Rgb([220, 220, 220]), Rgb([0, 0, 0]));
    for i in 0..=5 {
        let (x, y) = (i as f64 / 5.0 * x_max, i as f64 / 5.0 * y_max);
        line(&mut img, (LEFT as f64, sy(y)), (LEFT as f64 + pw, sy(y)), grey, 1);
        let label = format!("{y:.2}");
        draw_text(&mut img, &label, LEFT - 8 - text_width(&label, 1), sy(y) as u32 - 4, 1, LEFT, black);
        let label = format!("{x:.0}");
        let at = (sx(x) as u32).saturating_sub(text_width(&label, 1) / 2);
        draw_text(&mut img, &label, at, H - BOTTOM + 8, 1, W, black);
    }
    line(&mut img, (LEFT as f64, TOP as f64 + ph), (LEFT as f64 + pw, TOP as f64 + ph), black, 1);
    line(&mut img, (LEFT as f64, TOP as f64), (LEFT as f64, TOP as f64 + ph), black, 1);
    draw_text(&mut img, title, LEFT, 16, 2, W, black);
    let axis = "optimisation step";
    draw_text(&mut img, axis, LEFT + (pw as u32 - text_width(axis, 1)) / 2, H - BOTTOM + 30, 1, W, black);
    let window = 25usize;
    let smooth: Vec<(f64, f64)> = (0..points.len())
        .map(|i| {
            let w = &points[i.saturating_sub(window - 1)..=i];
            (points[i].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
        })
        .collect();
    for (series, color, width, label, row) in
        [(points, [170, 200, 230], 1, "loss per step", 0u32), (&smooth[..], COLORS[0], 3, "moving average (25)", 1)]
    {
        for pair in series.windows(2) {
            line(&mut img, (sx(pair[0].0), sy(pair[0].1)), (sx(pair[1].0), sy(pair[1].1)), Rgb(color), width);
        }
        let ly = TOP + 10 + 22 * row;
        line(
            &mut img,
            ((W - RIGHT + 20) as f64, ly as f64 + 4.0),
            ((W - RIGHT + 44) as f64, ly as f64 + 4.0),
            Rgb(color),
            3,
        );
        draw_text(&mut img, label, W - RIGHT + 52, ly, 1, W - 4, black);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_in_their_colours() {
        let series = vec![
            Series { label: "a".into(), points: vec![(16.0, 0.2), (576.0, 0.9)] },
            Series { label: "b".into(), points: vec![(16.0, 0.5), (576.0, 0.5)] },
        ];
        let img = accuracy_plot("test", &series);
        assert_eq!(img.dimensions(), (W, H));
        let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
        assert!(has(COLORS[0]) && has(COLORS[1]));
        // Series b is flat at 50 %: its colour sits on the middle row of the plot area.
        let y = (TOP as f64 + 0.5 * (H - TOP - BOTTOM) as f64) as u32;
        let x = LEFT + (W - LEFT - RIGHT) / 2;
        assert_eq!(img.get_pixel(x, y).0, COLORS[1]);
    }
}

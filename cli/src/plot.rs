//! The `stats` PNG: both pair-distance histograms, each as shares of its own pairs, on the
//! same bins, with the margins marked. No text (no font dependency): the JSON line carries
//! the numbers; the picture shows the shapes. Similar pairs blue, dissimilar red (their
//! overlap purple), the axis black, margins as vertical lines: the first green (the
//! positive margin), the second black (the margin), the rest grey and thinner (suggested).

use image::ImageEncoder;
use metric_loss::measure::{Histograms, PairKind};
use plotters::prelude::*;

use crate::Failure;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 480;
const PAD: i32 = 24;

/// The PNG bytes.
pub(crate) fn histograms(h: &Histograms, margins: &[f64]) -> Result<Vec<u8>, Failure> {
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(h, margins, &mut rgb).map_err(|e| Failure::runtime(format!("drawing --png: {e}")))?;
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, WIDTH, HEIGHT, image::ColorType::Rgb8)
        .map_err(|e| Failure::runtime(format!("encoding --png: {e}")))?;
    Ok(png)
}

fn draw(h: &Histograms, margins: &[f64], rgb: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (w, ht) = (WIDTH as i32 - 2 * PAD, HEIGHT as i32 - 2 * PAD);
    let shares = |kind| {
        let n = h.pairs(kind);
        h.counts(kind)
            .0
            .iter()
            .map(|&c| c as f64 / n.max(1) as f64)
            .collect::<Vec<_>>()
    };
    let (s, d) = (shares(PairKind::Similar), shares(PairKind::Dissimilar));
    let top = s.iter().chain(&d).copied().fold(0.0, f64::max).max(1e-300);
    let bins = h.bins() as i32;
    let x = |b: i32| PAD + b * w / bins;
    let y = |share: f64| PAD + ht - (share / top * f64::from(ht)) as i32;
    for (values, color) in [(&s, BLUE.mix(0.45)), (&d, RED.mix(0.45))] {
        for (b, &v) in values.iter().enumerate() {
            if v > 0.0 {
                let b = b as i32;
                root.draw(&Rectangle::new(
                    [(x(b), y(v)), (x(b + 1), PAD + ht)],
                    color.filled(),
                ))?;
            }
        }
    }
    root.draw(&PathElement::new(
        vec![(PAD, PAD + ht), (PAD + w, PAD + ht)],
        BLACK,
    ))?;
    let hi = f64::from(h.hi);
    for (k, &m) in margins.iter().enumerate() {
        if (0.0..=hi).contains(&m) {
            let px = PAD + (m / hi * f64::from(w)) as i32;
            let style = match k {
                0 => GREEN.stroke_width(2),
                1 => BLACK.stroke_width(2),
                _ => RGBColor(128, 128, 128).stroke_width(1),
            };
            root.draw(&PathElement::new(vec![(px, PAD), (px, PAD + ht)], style))?;
        }
    }
    root.present()?;
    Ok(())
}

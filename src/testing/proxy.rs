//! The class-proxy losses' case grid behind `metric-loss check`, and inputs clear of
//! ArcFace's branch.

use super::{Grid, Held, Rng};
use crate::reference::{dot, normalize, row, widen};
use crate::tolerance::Verdict;
use crate::{Embeddings, Gpu, Proxy, ProxyLoss, Result};

/// The settings every grid runs: PML's defaults for both losses, and smaller margins and
/// scales (the tolerance grows with s: a small s checks the tightest).
pub fn settings() -> [Proxy; 4] {
    [
        Proxy::arcface(),
        Proxy::cosface(),
        Proxy {
            loss: ProxyLoss::ArcFace {
                margin_degrees: 10.0,
            },
            scale: 4.0,
        },
        Proxy {
            loss: ProxyLoss::CosFace { margin: 0.2 },
            scale: 2.0,
        },
    ]
}

/// The smallest distance of a query's target cosine from ArcFace's branch point −cos m
/// (infinite for CosFace), in f64.
pub fn branch_margin(cfg: &Proxy, x: &Embeddings<'_>, classes: &[u32], w: &Embeddings<'_>) -> f64 {
    let ProxyLoss::ArcFace { margin_degrees } = cfg.loss else {
        return f64::INFINITY;
    };
    let at = -f64::from(margin_degrees).to_radians().cos();
    let dim = x.dim();
    let (xn, _) = normalize(&widen(x), dim);
    let (wn, _) = normalize(&widen(w), dim);
    classes
        .iter()
        .enumerate()
        .map(|(i, &y)| (dot(row(&xn, i, dim), row(&wn, y as usize, dim)) - at).abs())
        .fold(f64::INFINITY, f64::min)
}

/// Seeded class indices below `classes`.
pub fn class_indices(rng: &mut Rng, rows: usize, classes: usize) -> Vec<u32> {
    (0..rows)
        .map(|_| rng.below(classes as u64) as u32)
        .collect()
}

/// ArcFace and CosFace at every setting of [`settings`] on seeded Gaussian queries of
/// `rows × dim` against `rows / 2 + 3` classes (random class indices; queries on their
/// class's weights, c = 1; queries opposite them, c = −1, past ArcFace's branch): GPU
/// against CPU; queries and weights in the grid's precision.
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut rng = Rng::new(grid.seed);
    let c = rows / 2 + 3;
    let x = Held::new(rng.normals(rows * dim), precision);
    let w = Held::new(rng.normals(c * dim), precision);
    let classes = class_indices(&mut rng, rows, c);
    // Each query its class's weights, scaled; then their negation.
    let on: Vec<f32> = classes
        .iter()
        .flat_map(|&y| {
            w.values()[y as usize * dim..(y as usize + 1) * dim]
                .iter()
                .map(|v| 2.0 * v)
        })
        .collect();
    let opposite: Vec<f32> = on.iter().map(|v| -v).collect();
    let we = w.view(c, dim)?;
    // Doubling and negating f16 values is exact: these stay the grid's values.
    let (on, opposite) = (Held::new(on, precision), Held::new(opposite, precision));
    let inputs: [(&str, &Held); 3] = [
        ("random", &x),
        ("on their class", &on),
        ("opposite their class", &opposite),
    ];
    let mut out = Vec::new();
    for cfg in settings() {
        for (what, data) in inputs {
            let xe = data.view(rows, dim)?;
            let mut v = cfg.batch_check(gpu, &xe, &classes, &we)?;
            v.name = format!("{} {what}", v.name);
            out.push(v);
        }
    }
    Ok(out)
}

//! SigLIP's case grid behind `metric-loss check`.

use super::{Grid, Held, Rng};
use crate::tolerance::Verdict;
use crate::{Gpu, Labels, Result, Siglip};

/// (t′, b) every grid runs: the paper's initialisation (ln 10, −10), a trained model's
/// (t ≈ 112, b ≈ −16.5), no scale and no bias, and the largest scale accepted.
pub const SETTINGS: [(f32, f32); 4] = [
    (std::f32::consts::LN_10, -10.0),
    (4.72, -16.5),
    (0.0, 0.0),
    (9.21, 0.0),
];

/// SigLIP on two independent views, on a view against itself (every pair's similarity as
/// large as a positive's), on the views against B with twice A's rows (extra negatives),
/// and with labels (several positives a row), at every setting of [`SETTINGS`], on seeded
/// Gaussian input of `rows × dim` in the grid's precision: GPU against CPU.
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut rng = Rng::new(grid.seed);
    let a = Held::new(rng.normals(rows * dim), precision);
    let b = Held::new(rng.normals(2 * rows * dim), precision);
    let (ae, be) = (a.view(rows, dim)?, b.view(rows, dim)?);
    let wide = b.view(2 * rows, dim)?;
    let classes = (rows / 4).max(2) as u64;
    let labels: Vec<i64> = (0..3 * rows).map(|_| rng.below(classes) as i64).collect();
    let labels = Labels::new(&labels);
    let mut out = Vec::new();
    let named = |mut v: Verdict, what: &str| {
        v.name = format!("{} {what}", v.name);
        v
    };
    for (t, bias) in SETTINGS {
        let cfg = Siglip::new(t, bias)?;
        out.push(named(cfg.pairs_check(gpu, &ae, &be)?, "views"));
        out.push(named(cfg.pairs_check(gpu, &ae, &ae)?, "itself"));
        out.push(named(cfg.pairs_check(gpu, &ae, &wide)?, "2N rows of B"));
        out.push(named(
            cfg.pairs_labelled_check(gpu, &ae, &wide, &labels)?,
            "labelled",
        ));
    }
    Ok(out)
}

//! The class-proxy losses' case grid behind `metric-loss check`, and inputs clear of
//! ArcFace's branch and of ties between a class's sub-centres.

use super::{Grid, Held, Rng};
use crate::reference::{dot, normalize, row, widen};
use crate::tolerance::Verdict;
use crate::{Embeddings, Gpu, Precision, Proxy, ProxyLoss, Result};

/// The settings every grid runs: PML's defaults for the three losses, and smaller margins
/// and scales (the tolerance grows with s: a small s checks the tightest), sub-centres
/// among them (K = 5 takes the kernels' second block of four).
pub fn settings() -> [Proxy; 7] {
    let arc10 = ProxyLoss::ArcFace {
        margin_degrees: 10.0,
    };
    let cos02 = ProxyLoss::CosFace { margin: 0.2 };
    [
        Proxy::arcface(),
        Proxy::cosface(),
        Proxy::subcenter_arcface(),
        Proxy {
            loss: arc10,
            scale: 4.0,
            sub_centers: 1,
        },
        Proxy {
            loss: cos02,
            scale: 2.0,
            sub_centers: 1,
        },
        Proxy {
            loss: arc10,
            scale: 4.0,
            sub_centers: 2,
        },
        Proxy {
            loss: cos02,
            scale: 2.0,
            sub_centers: 5,
        },
    ]
}

/// Per query and class, the winning sub-centre's cosine and the gap to the next largest
/// (infinite with one sub-centre), in f64.
fn class_cosines(cfg: &Proxy, x: &Embeddings<'_>, w: &Embeddings<'_>) -> Vec<Vec<(f64, f64)>> {
    let (dim, k) = (x.dim(), cfg.sub_centers.max(1) as usize);
    let (xn, _) = normalize(&widen(x), dim);
    let (wn, _) = normalize(&widen(w), dim);
    (0..x.rows())
        .map(|i| {
            (0..w.rows() / k)
                .map(|g| {
                    let mut cos: Vec<f64> = (g * k..(g + 1) * k)
                        .map(|r| dot(row(&xn, i, dim), row(&wn, r, dim)))
                        .collect();
                    cos.sort_by(|a, b| b.total_cmp(a));
                    (cos[0], cos.get(1).map_or(f64::INFINITY, |c| cos[0] - c))
                })
                .collect()
        })
        .collect()
}

/// The smallest distance of a query's target cosine (its class's winning sub-centre's)
/// from ArcFace's branch point −cos m (infinite for CosFace), in f64.
pub fn branch_margin(cfg: &Proxy, x: &Embeddings<'_>, classes: &[u32], w: &Embeddings<'_>) -> f64 {
    let ProxyLoss::ArcFace { margin_degrees } = cfg.loss else {
        return f64::INFINITY;
    };
    let at = -f64::from(margin_degrees).to_radians().cos();
    class_cosines(cfg, x, w)
        .iter()
        .zip(classes)
        .map(|(per_class, &y)| (per_class[y as usize].0 - at).abs())
        .fold(f64::INFINITY, f64::min)
}

/// The smallest gap between the two largest of a class's sub-centre cosines over every
/// query and class (infinite with one sub-centre): which one wins is a decision, clear of
/// rounding when the gap is above [`tie_gap`].
pub fn tie_margin(cfg: &Proxy, x: &Embeddings<'_>, w: &Embeddings<'_>) -> f64 {
    class_cosines(cfg, x, w)
        .iter()
        .flatten()
        .map(|&(_, gap)| gap)
        .fold(f64::INFINITY, f64::min)
}

/// The gap the tests keep between a class's two largest sub-centre cosines at dimension
/// `dim`: four times an f32 cosine's worst rounding (D·2⁻²⁴ each way), at least 1e-5.
pub fn tie_gap(dim: usize) -> f64 {
    (4.0 * dim as f64 * f64::from(f32::EPSILON) / 2.0).max(1e-5)
}

/// Seeded class indices below `classes`.
pub fn class_indices(rng: &mut Rng, rows: usize, classes: usize) -> Vec<u32> {
    (0..rows)
        .map(|_| rng.below(classes as u64) as u32)
        .collect()
}

/// A case for `cfg`: seeded Gaussian queries (`rows × dim`), class weights (`classes · K`
/// rows) and class indices below `classes`, in `precision`, with every query's sub-centre
/// cosines clear of ties ([`tie_gap`]: a query with a tie is drawn again). With K = 1 the
/// draws are those of `Rng::new(seed)`: queries, weights, indices.
pub struct Case {
    /// The queries.
    pub x: Held,
    /// The class weights.
    pub w: Held,
    /// Each query's class index.
    pub classes: Vec<u32>,
}

impl Case {
    /// Draws the case (see [`Case`]).
    pub fn new(
        cfg: &Proxy,
        seed: u64,
        (rows, classes, dim): (usize, usize, usize),
        precision: Precision,
    ) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let k = cfg.sub_centers.max(1) as usize;
        let mut x = rng.normals(rows * dim);
        let w = Held::new(rng.normals(classes * k * dim), precision);
        let ids = class_indices(&mut rng, rows, classes);
        let gap = tie_gap(dim);
        let we = w.named("class weights", classes * k, dim)?;
        let (wn, _) = normalize(&widen(&we), dim);
        // Query i's smallest gap between a class's two largest sub-centre cosines.
        let gap_of = |q: &[f32]| {
            let (qn, _) = normalize(&widen(&Embeddings::new(q, 1, dim)?), dim);
            Ok::<f64, crate::Error>(
                (0..classes)
                    .map(|g| {
                        let mut cos: Vec<f64> = (g * k..(g + 1) * k)
                            .map(|r| dot(&qn, row(&wn, r, dim)))
                            .collect();
                        cos.sort_by(|a, b| b.total_cmp(a));
                        cos.get(1).map_or(f64::INFINITY, |c| cos[0] - c)
                    })
                    .fold(f64::INFINITY, f64::min),
            )
        };
        for i in 0..rows {
            loop {
                let held = Held::new(x[i * dim..(i + 1) * dim].to_vec(), precision);
                if gap_of(held.values())? >= gap {
                    break;
                }
                x[i * dim..(i + 1) * dim].copy_from_slice(&rng.normals(dim));
            }
        }
        Ok(Self {
            x: Held::new(x, precision),
            w,
            classes: ids,
        })
    }
}

/// Every setting of [`settings`] on seeded Gaussian queries of `rows × dim` against
/// `rows / 2 + 3` classes (random class indices; queries on a sub-centre of their class,
/// c = 1; queries opposite it, c = −1, past ArcFace's branch with one sub-centre): GPU
/// against CPU; queries and weights in the grid's precision. The structured queries keep
/// only the cases clear of sub-centre ties (the random ones are drawn clear).
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let c = rows / 2 + 3;
    let mut out = Vec::new();
    for cfg in settings() {
        let k = cfg.sub_centers as usize;
        let case = Case::new(&cfg, grid.seed, (rows, c, dim), precision)?;
        let (classes, w) = (&case.classes, &case.w);
        // Each query a sub-centre of its class (i mod K), scaled; then its negation.
        let on: Vec<f32> = classes
            .iter()
            .enumerate()
            .flat_map(|(i, &y)| {
                let r = y as usize * k + i % k;
                w.values()[r * dim..(r + 1) * dim].iter().map(|v| 2.0 * v)
            })
            .collect();
        let opposite: Vec<f32> = on.iter().map(|v| -v).collect();
        let we = w.named("class weights", c * k, dim)?;
        // Doubling and negating f16 values is exact: these stay the grid's values.
        let (on, opposite) = (Held::new(on, precision), Held::new(opposite, precision));
        let inputs: [(&str, &Held); 3] = [
            ("random", &case.x),
            ("on their class", &on),
            ("opposite their class", &opposite),
        ];
        for (what, data) in inputs {
            let xe = data.view(rows, dim)?;
            if tie_margin(&cfg, &xe, &we) < tie_gap(dim) {
                continue;
            }
            let mut v = cfg.batch_check(gpu, &xe, classes, &we)?;
            v.name = format!("{} {what}", v.name);
            out.push(v);
        }
    }
    Ok(out)
}

//! The test harness (feature `testing`): seeded inputs, inputs whose discrete decisions are
//! clear of f32 rounding, the case grids behind `metric-loss check`, the f64 references with
//! f64 gradients, the tolerance rule's internals, and the fuzz targets' bodies. For this
//! crate's tests, benches, examples and CLI; not part of the library's API.

pub mod fuzz;
pub mod outside;
pub mod proxy;
pub mod siglip;
pub mod softmax;
pub mod triplet;
pub mod weighting;

pub use crate::losses::contrastive::reference as contrastive_reference;
pub use crate::losses::contrastive::tolerance::{
    against_distances, batch_distances, loss_scale, pair_distances,
};
pub use crate::losses::proxy::reference as proxy_reference;
pub use crate::losses::sigmoid::reference as siglip_reference;
pub use crate::losses::softmax::reference as softmax_reference;
pub use crate::losses::triplet::reference as triplet_reference;
pub use crate::losses::weighting::reference as weighting_reference;
pub use crate::reference::{normalize, widen, Reference, NORM_EPS};
pub use crate::tolerance::scales::{
    contribution_scale, distance_operands, min_norm, spread, Spread,
};

use crate::tolerance::{Tolerance, Verdict, F32_ROUNDOFF};
use crate::{
    Contrastive, ContrastiveOutput, Distance, Embeddings, Gpu, Hinge, Labels, Precision, Reduction,
    Result,
};

/// [`Contrastive::batch_check`]'s comparison of given outputs (e.g. of the device-resident
/// path against the reference).
pub fn contrastive_batch_verdict(
    name: String,
    cfg: &Contrastive,
    gpu: &ContrastiveOutput,
    reference: &ContrastiveOutput,
    x: &Embeddings<'_>,
) -> Verdict {
    let d = batch_distances(cfg, x);
    crate::losses::contrastive::tolerance::verdict(
        name,
        cfg,
        gpu,
        reference,
        &d,
        x.rows() as u64,
        &[x],
    )
}

/// [`Contrastive::pairs_check`]'s comparison of given outputs.
pub fn contrastive_pairs_verdict(
    name: String,
    cfg: &Contrastive,
    gpu: &ContrastiveOutput,
    reference: &ContrastiveOutput,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
) -> Verdict {
    let d = pair_distances(cfg, a, b);
    crate::losses::contrastive::tolerance::verdict(name, cfg, gpu, reference, &d, 1, &[a, b])
}

/// The tolerance of a contrastive loss value (see [`crate::tolerance`]).
pub fn contrastive_loss_tolerance(
    cfg: &Contrastive,
    d_max: f64,
    pairs: u64,
    dim: usize,
    spread: &Spread,
) -> Tolerance {
    Tolerance::new(dim, pairs, loss_scale(cfg, d_max, pairs, spread))
}

/// The size, seed and input precision a case grid runs at.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    /// Rows per case.
    pub rows: usize,
    /// The dimension.
    pub dim: usize,
    /// The seed of the random inputs.
    pub seed: u64,
    /// The inputs' precision.
    pub precision: Precision,
}

impl Grid {
    /// `rows × dim` f32 inputs drawn from `seed`.
    pub fn new(rows: usize, dim: usize, seed: u64) -> Self {
        Self {
            rows,
            dim,
            seed,
            precision: Precision::F32,
        }
    }

    /// The same grid with inputs in `precision`.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

/// A grid's input in the grid's precision: an f16 grid rounds its values to f16 (to
/// nearest) before anything is derived from them, so every decision the grid keeps clear of
/// rounding is cleared on the values the GPU reads, and the f64 reference reads the same.
#[derive(Clone, Debug)]
pub struct Held {
    values: Vec<f32>,
    halves: Option<Vec<half::f16>>,
}

impl Held {
    /// `values`, rounded to f16 when `precision` is f16.
    pub fn new(values: Vec<f32>, precision: Precision) -> Self {
        match precision {
            Precision::F32 => Self {
                values,
                halves: None,
            },
            Precision::F16 => {
                let halves: Vec<half::f16> =
                    values.iter().map(|&v| half::f16::from_f32(v)).collect();
                Self {
                    values: halves.iter().map(|h| h.to_f32()).collect(),
                    halves: Some(halves),
                }
            }
        }
    }

    /// The values (f16 grids: the rounded values, exactly).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The first `rows` rows of `dim` values as embeddings of the grid's precision.
    pub fn view(&self, rows: usize, dim: usize) -> Result<Embeddings<'_>> {
        self.named("embeddings", rows, dim)
    }

    /// [`Held::view`] under the name errors give the input.
    pub fn named(&self, what: &'static str, rows: usize, dim: usize) -> Result<Embeddings<'_>> {
        let n = (rows * dim).min(self.values.len());
        match &self.halves {
            None => Embeddings::named(what, &self.values[..n], rows, dim),
            Some(h) => Embeddings::named_f16(what, &h[..n], rows, dim),
        }
    }
}

/// A small seeded generator (SplitMix64), so checks need no dependency and repeat exactly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` standard normal values as f32.
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }

    /// `rows` Gaussian rows of `dim` values, each divided by max(its norm, 1e-12): the
    /// benchmarks' inputs.
    pub fn unit_rows(&mut self, rows: usize, dim: usize) -> Vec<f32> {
        let mut data = self.normals(rows * dim);
        for row in data.chunks_mut(dim.max(1)) {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= n);
        }
        data
    }
}

/// A margin near `wanted` that no value of `distances` comes within `delta` of, so that f32
/// and f64 agree on which terms are active. Picks the nearest gap between sorted distances
/// wider than 2·delta, and returns `wanted` itself when it is already clear.
pub fn clear_margin(distances: &[f64], wanted: f64, delta: f64) -> f64 {
    let mut d: Vec<f64> = distances.to_vec();
    d.sort_by(f64::total_cmp);
    if d.iter().all(|v| (v - wanted).abs() > delta) {
        return wanted;
    }
    let mut best = wanted;
    let mut best_dist = f64::INFINITY;
    let mut candidates: Vec<f64> = d
        .windows(2)
        .filter(|w| w[1] - w[0] > 2.0 * delta)
        .map(|w| 0.5 * (w[0] + w[1]))
        .collect();
    if let Some(last) = d.last() {
        candidates.push(last + 2.0 * delta);
    }
    for c in candidates {
        if c >= 0.0 && (c - wanted).abs() < best_dist {
            best_dist = (c - wanted).abs();
            best = c;
        }
    }
    best
}

/// Half-width of the band around a kink inside which f32 and f64 may disagree on activity.
pub fn kink_band(dim: usize, scale: f64) -> f64 {
    32.0 * F32_ROUNDOFF * (dim as f64 + 4.0) * scale.max(1.0)
}

/// Sets `cfg`'s margins near the wanted values but clear of every distance, so that discrete
/// outcomes (activity, counts) are exact in both precisions.
pub fn clear_margins(cfg: &mut Contrastive, distances: &[f64], dim: usize, pos: f64, neg: f64) {
    let d_max = distances.iter().cloned().fold(0.0, f64::max);
    let band = kink_band(dim, d_max);
    cfg.pos_margin = clear_margin(distances, pos, band) as f32;
    cfg.margin = clear_margin(distances, neg, band) as f32;
}

/// Every combination of mode, distance, hinge, reduction and normalize on seeded Gaussian
/// input of `rows × dim` in the grid's precision, GPU against CPU. Margins are placed clear
/// of kinks.
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut rng = Rng::new(grid.seed);
    let x = Held::new(rng.normals(rows * dim), precision);
    let b = Held::new(rng.normals(rows * dim), precision);
    let classes = (rows / 4).max(2) as u64;
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let similar: Vec<bool> = (0..rows).map(|_| rng.below(2) == 0).collect();
    let x = x.view(rows, dim)?;
    let b = b.view(rows, dim)?.as_input("b");
    let labels = Labels::new(&labels);
    let mut reports = Vec::new();
    for batch in [false, true] {
        for base in option_grid() {
            let mut cfg = base;
            let dists = if batch {
                batch_distances(&cfg, &x)
            } else {
                pair_distances(&cfg, &x, &b)
            };
            let median = median(&dists);
            clear_margins(&mut cfg, &dists, dim, 0.5 * median, 1.2 * median);
            reports.push(if batch {
                cfg.batch_check(gpu, &x, &labels)?
            } else {
                cfg.pairs_check(gpu, &x, &b, &similar)?
            });
        }
    }
    Ok(reports)
}

/// Every family's grid (what `metric-loss check` runs), inputs in the grid's precision.
pub fn all_grids(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let mut out = run_grid(gpu, grid)?;
    out.extend(triplet::run_grid(gpu, grid)?);
    out.extend(softmax::run_grid(gpu, grid)?);
    out.extend(siglip::run_grid(gpu, grid)?);
    out.extend(weighting::run_grid(gpu, grid)?);
    out.extend(proxy::run_grid(gpu, grid)?);
    Ok(out)
}

/// Every combination of distance, hinge, reduction and normalize (36), default margins.
pub fn option_grid() -> Vec<Contrastive> {
    let mut out = Vec::new();
    for distance in [
        Distance::Euclidean,
        Distance::SquaredEuclidean,
        Distance::Cosine,
    ] {
        for hinge in [Hinge::Squared, Hinge::Linear] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::MeanNonzero] {
                for normalize in [false, true] {
                    out.push(Contrastive {
                        distance,
                        hinge,
                        reduction,
                        normalize,
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

/// The median of `v` (0 for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

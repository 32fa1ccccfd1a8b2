//! Cross-checking the GPU against the CPU reference: the tolerance rule, seeded inputs with
//! margins clear of the hinge's kinks, and the case grid behind `metric-loss check`.
//!
//! # The tolerance rule
//! A GPU value g passes against the f64 reference r when
//!
//! `|g − r| ≤ 8 · u · (D + L) · (|r| + S)`, with u = 2⁻²⁴ (f32 unit roundoff),
//!
//! D the dimension, L the reduction length (the number of pair terms summed into that value:
//! the pair count for the loss, the batch size for a batch gradient row, 1 in pair mode) and
//! S the output's scale (for the loss, the largest possible term weighted by the reduction;
//! for a gradient, the larger of the largest reference magnitude among the call's gradients
//! and the size of one term's contribution before it cancels: the largest |dL/dd| times the
//! size of the distance gradient's operands, see [`contribution_scale`]). Why: an f32 dot product
//! or squared distance over D values carries a relative error of at most about D·u, and a
//! sequential f32 sum of L terms an error of at most about L·u times the magnitude of its
//! terms (Higham, "Accuracy and Stability of Numerical Algorithms", §3–4); hinge, chain rule
//! and normalisation scale those errors by factors bounded by the output's scale. The factor
//! 8 covers the few roundings per step. It is an absolute part (u(D+L)S) plus a relative part
//! (u(D+L)|r|), both growing with the reduction length, never a blanket epsilon. One constant
//! is added: f32's smallest normal value 2⁻¹²⁶ ≈ 1.2e-38, below which f32 has no relative
//! precision (subnormals, or zero where the GPU flushes them), e.g. exp(−110) of a
//! saturated softmax term at τ = 0.01.

use crate::cpu;
use crate::loss::contrastive::{Contrastive, Distance, Hinge, Reduction};
use crate::loss::{Grads, LossOutput};
use crate::{ContrastiveOutput, Embeddings, Gpu, Labels, Result};

pub mod fuzz;
pub mod softmax;
pub mod triplet;

/// The smallest normal f32, 2⁻¹²⁶: below it values are subnormal, or flushed to zero (GPUs
/// may flush subnormals), so no relative accuracy is possible.
pub const F32_UNDERFLOW: f64 = 1.175_494_350_822_287_5e-38;

/// f32 unit roundoff, 2⁻²⁴.
pub const F32_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// The tolerance of one output (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// D + L.
    pub length: f64,
    /// The output's scale S.
    pub scale: f64,
    /// The absolute floor: f32's underflow threshold times the largest factor applied to a
    /// value after it may have underflowed ([`F32_UNDERFLOW`] unless set).
    pub floor: f64,
}

impl Tolerance {
    /// Tolerance for a value reduced over `reduction_len` terms of `dim`-dimensional rows.
    pub fn new(dim: usize, reduction_len: u64, scale: f64) -> Self {
        Self {
            length: dim as f64 + reduction_len as f64,
            scale,
            floor: F32_UNDERFLOW,
        }
    }

    /// The same rule with the underflow floor multiplied by `gain`, the largest factor an
    /// underflowed intermediate is multiplied by on its way to the output (softmax: a weight
    /// exp(z − lse) times 1/(τ·‖x‖)).
    pub fn with_underflow_gain(mut self, gain: f64) -> Self {
        self.floor = F32_UNDERFLOW * gain.max(1.0);
        self
    }

    /// The largest allowed |g − r| for reference value `r`.
    pub fn bound(&self, r: f64) -> f64 {
        8.0 * F32_ROUNDOFF * self.length * (r.abs() + self.scale) + self.floor
    }
}

/// The outcome of comparing one output array.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Largest |g − r|.
    pub max_abs: f64,
    /// Largest |g − r| / (|r| + S).
    pub max_rel: f64,
    /// Index, GPU value, reference value and bound of the worst element (by error / bound).
    pub worst: Option<(usize, f64, f64, f64)>,
    /// All elements within their bound.
    pub pass: bool,
}

/// Compares `gpu` with `reference` element by element under `tol`.
pub fn compare(gpu: &[f64], reference: &[f64], tol: Tolerance) -> Comparison {
    let mut c = Comparison {
        pass: gpu.len() == reference.len(),
        ..Default::default()
    };
    let mut worst_ratio = -1.0;
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (g - r).abs();
        let bound = tol.bound(r);
        c.max_abs = c.max_abs.max(err);
        c.max_rel = c
            .max_rel
            .max(err / (r.abs() + tol.scale).max(f64::MIN_POSITIVE));
        let ratio = if bound > 0.0 { err / bound } else { err };
        if err.is_nan() || err > bound {
            c.pass = false;
        }
        if ratio > worst_ratio || !ratio.is_finite() {
            worst_ratio = ratio;
            c.worst = Some((i, g, r, bound));
        }
    }
    c
}

/// What the gradient tolerance needs to know of the inputs: the smallest raw row norm, and,
/// where the distance is computed (after any normalisation), the largest row norm and the
/// smallest non-zero distance between two rows.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    /// Smallest row norm of the inputs as given.
    pub min_norm: f64,
    /// Largest row norm where the distance is computed.
    pub max_norm: f64,
    /// Smallest non-zero euclidean distance between two rows there (any inputs).
    pub d_min: f64,
}

/// The smallest row norm of `x`.
pub fn min_norm(x: &Embeddings<'_>) -> f64 {
    let (_, norms) = cpu::normalize::forward(&cpu::distance::widen(x), x.dim());
    norms.into_iter().fold(f64::INFINITY, f64::min)
}

/// The [`Spread`] of the inputs of a loss with this distance and normalisation.
pub fn spread(distance: Distance, normalize: bool, inputs: &[&Embeddings<'_>]) -> Spread {
    let dim = inputs[0].dim();
    let raw: Vec<f64> = inputs
        .iter()
        .flat_map(|x| cpu::distance::widen(x))
        .collect();
    let (unit_rows, norms) = cpu::normalize::forward(&raw, dim);
    let unit = normalize || distance == Distance::Cosine;
    // A normalised row's norm is n / max(n, 1e-12): 1, or less for the tiniest rows.
    let max_norm = norms
        .iter()
        .map(|&n| {
            if unit {
                n / n.max(cpu::normalize::NORM_EPS)
            } else {
                n
            }
        })
        .fold(0.0, f64::max);
    let rows = if unit { unit_rows } else { raw };
    let n = rows.len() / dim;
    let mut d_min = f64::INFINITY;
    for i in 0..n {
        for j in i + 1..n {
            let d = cpu::distance::distance(
                Distance::Euclidean,
                &rows[i * dim..(i + 1) * dim],
                &rows[j * dim..(j + 1) * dim],
            );
            if d > 0.0 {
                d_min = d_min.min(d);
            }
        }
    }
    Spread {
        min_norm: norms.into_iter().fold(f64::INFINITY, f64::min),
        max_norm,
        d_min,
    }
}

/// The size of one term's contribution to a gradient row before cancellation: `coef` (the
/// largest |dL/dd|) times the size of the operands of the distance's gradient, times
/// 2/max(‖x‖, 1e-12) for the first normalisation stage and 2 for a second. The operands:
/// euclidean (u − v)/d, whose f32 rounding is relative to |u| + |v|, not to |u − v| (close
/// rows: 2·max‖x‖/d_min); squared 2(u − v) (4·max‖x‖); cosine v̂ − cos·û (2). A gradient that
/// cancels (close or nearly parallel rows, or a row's terms of opposite sign) is rounded
/// relative to this, not to its own size.
pub fn contribution_scale(distance: Distance, normalize: bool, coef: f64, s: &Spread) -> f64 {
    let operands = match distance {
        Distance::Euclidean => (2.0 * s.max_norm / s.d_min).max(1.0),
        Distance::SquaredEuclidean => 4.0 * s.max_norm,
        Distance::Cosine => 2.0,
    };
    let gain = match distance.normalize_stages(normalize) {
        0 => 1.0,
        1 => 2.0 / s.min_norm.max(cpu::normalize::NORM_EPS),
        _ => 4.0 / s.min_norm.max(cpu::normalize::NORM_EPS),
    };
    let scale = coef * operands * gain;
    if scale.is_finite() {
        scale
    } else {
        0.0
    }
}

/// The largest |dL/dd| of a contrastive call: the hinge's largest slope times the largest
/// weight of a term under the reduction (from the reference's counts).
fn contrastive_coef(cfg: &Contrastive, d_max: f64, counts: &crate::ContrastiveCounts) -> f64 {
    let slope = match cfg.hinge {
        Hinge::Squared => 2.0 * d_max.max(f64::from(cfg.margin)),
        Hinge::Linear => 1.0,
    };
    let (similar, dissimilar) = cpu::contrastive::scales(cfg.reduction, counts);
    slope * similar.max(dissimilar)
}

/// The size of the operands a distance is computed from, in units of the distance: its f32
/// rounding is relative to this, not to d (close rows cancel in u − v, nearly parallel rows
/// in 1 − cos): euclidean 2·max‖x‖, squared 4·max‖x‖·√d_max, cosine 2.
pub fn distance_operands(distance: Distance, d_max: f64, s: &Spread) -> f64 {
    match distance {
        Distance::Euclidean => 2.0 * s.max_norm,
        Distance::SquaredEuclidean => 4.0 * s.max_norm * d_max.sqrt(),
        Distance::Cosine => 2.0,
    }
}

/// Largest possible pair term for `cfg` when no distance exceeds `d_max`, weighted by the
/// reduction over `pairs` pairs: the loss's scale S. A term's rounding is at most its size
/// plus the hinge's slope times the distance's operands ([`distance_operands`]).
pub fn loss_scale(cfg: &Contrastive, d_max: f64, pairs: u64, spread: &Spread) -> f64 {
    let t = f64::from(cfg.margin) + f64::from(cfg.pos_margin) + d_max;
    let c = distance_operands(cfg.distance, d_max, spread);
    let term = match cfg.hinge {
        Hinge::Squared => t * t + 2.0 * t * c,
        Hinge::Linear => t + c,
    };
    match cfg.reduction {
        Reduction::Mean => term,
        Reduction::Sum => term * pairs as f64,
        Reduction::MeanNonzero => 2.0 * term,
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

/// Distances the reference sees for every pair of a batch (i < j), after `normalize`.
pub fn batch_distances(cfg: &Contrastive, x: &Embeddings<'_>) -> Vec<f64> {
    let w: Vec<f64> = x.data().iter().map(|&v| f64::from(v)).collect();
    let xs = if cfg.normalize {
        cpu::normalize::forward(&w, x.dim()).0
    } else {
        w
    };
    let dim = x.dim();
    let mut out = Vec::new();
    for i in 0..x.rows() {
        for j in i + 1..x.rows() {
            out.push(cpu::distance::distance(
                cfg.distance,
                &xs[i * dim..(i + 1) * dim],
                &xs[j * dim..(j + 1) * dim],
            ));
        }
    }
    out
}

/// Distances the reference sees for each explicit pair, after `normalize`.
pub fn pair_distances(cfg: &Contrastive, a: &Embeddings<'_>, b: &Embeddings<'_>) -> Vec<f64> {
    let prep = |e: &Embeddings<'_>| {
        let w: Vec<f64> = e.data().iter().map(|&v| f64::from(v)).collect();
        if cfg.normalize {
            cpu::normalize::forward(&w, e.dim()).0
        } else {
            w
        }
    };
    let (an, bn) = (prep(a), prep(b));
    let dim = a.dim();
    (0..a.rows())
        .map(|i| {
            cpu::distance::distance(
                cfg.distance,
                &an[i * dim..(i + 1) * dim],
                &bn[i * dim..(i + 1) * dim],
            )
        })
        .collect()
}

/// Sets `cfg`'s margins near the wanted values but clear of every distance, so that discrete
/// outcomes (activity, counts) are exact in both precisions.
pub fn clear_margins(cfg: &mut Contrastive, distances: &[f64], dim: usize, pos: f64, neg: f64) {
    let d_max = distances.iter().cloned().fold(0.0, f64::max);
    let band = kink_band(dim, d_max);
    cfg.pos_margin = clear_margin(distances, pos, band) as f32;
    cfg.margin = clear_margin(distances, neg, band) as f32;
}

/// One GPU-versus-CPU comparison of a whole output: loss, every gradient, counts.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case, e.g. `batch euclidean squared mean normalize`.
    pub name: String,
    /// The loss's comparison.
    pub loss: Comparison,
    /// Each gradient's comparison.
    pub grads: Vec<Comparison>,
    /// Counts agree exactly.
    pub counts_equal: bool,
}

impl CaseReport {
    /// Everything within tolerance and the counts exact.
    pub fn pass(&self) -> bool {
        self.loss.pass && self.counts_equal && self.grads.iter().all(|g| g.pass)
    }

    /// Largest absolute error over all outputs.
    pub fn max_abs(&self) -> f64 {
        self.grads
            .iter()
            .map(|g| g.max_abs)
            .fold(self.loss.max_abs, f64::max)
    }

    /// Largest relative error over all outputs.
    pub fn max_rel(&self) -> f64 {
        self.grads
            .iter()
            .map(|g| g.max_rel)
            .fold(self.loss.max_rel, f64::max)
    }
}

/// Compares a GPU output with the reference under the tolerance rule. `reduction_len` is the
/// number of terms behind each gradient value (batch: rows; pairs: 1); `spread` describes
/// the inputs ([`spread`]).
#[allow(clippy::too_many_arguments)]
pub fn compare_outputs(
    name: String,
    cfg: &Contrastive,
    gpu: &ContrastiveOutput,
    reference: &ContrastiveOutput,
    dim: usize,
    d_max: f64,
    reduction_len: u64,
    spread: &Spread,
) -> CaseReport {
    let pairs = reference.counts.pairs();
    let loss_tol = Tolerance::new(dim, pairs, loss_scale(cfg, d_max, pairs, spread));
    let coef = contrastive_coef(cfg, d_max, &reference.counts);
    let floor = contribution_scale(cfg.distance, cfg.normalize, coef, spread);
    compare_any(name, gpu, reference, dim, loss_tol, reduction_len, floor)
}

/// Compares any loss's GPU output with its reference: the loss under `loss_tol`, each
/// gradient under the rule with `reduction_len` terms and the gradient scale (the largest
/// reference magnitude among all the gradients, at least `contribution`: see
/// [`contribution_scale`]), counts exactly.
pub fn compare_any<C: PartialEq>(
    name: String,
    gpu: &LossOutput<C>,
    reference: &LossOutput<C>,
    dim: usize,
    loss_tol: Tolerance,
    reduction_len: u64,
    contribution: f64,
) -> CaseReport {
    let loss = compare(&[gpu.loss], &[reference.loss], loss_tol);
    let scale = reference
        .grads
        .iter()
        .flatten()
        .fold(contribution, |m, v| m.max(f64::from(v.abs())));
    let grads = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .map(|(g, r)| {
            let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
            let r: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
            compare(&g, &r, Tolerance::new(dim, reduction_len, scale))
        })
        .collect::<Vec<_>>();
    let grads_present = gpu.grads.len() == reference.grads.len();
    CaseReport {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && grads_present,
    }
}

/// Every combination of mode, distance, hinge, reduction and normalize on seeded Gaussian
/// input of `rows × dim`, GPU against CPU. Margins are placed clear of kinks.
pub fn run_grid(gpu: &Gpu, rows: usize, dim: usize, seed: u64) -> Result<Vec<CaseReport>> {
    let mut rng = Rng::new(seed);
    let x = rng.normals(rows * dim);
    let b = rng.normals(rows * dim);
    let classes = (rows / 4).max(2) as u64;
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let similar: Vec<bool> = (0..rows).map(|_| rng.below(2) == 0).collect();
    let x = Embeddings::new("embeddings", &x, rows, dim)?;
    let b = Embeddings::new("b", &b, rows, dim)?;
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
            let (g, r) = if batch {
                (
                    cfg.batch(gpu, &x, &labels, Grads::Compute)?,
                    cfg.batch_cpu(&x, &labels, Grads::Compute)?,
                )
            } else {
                (
                    cfg.pairs(gpu, &x, &b, &similar, Grads::Compute)?,
                    cfg.pairs_cpu(&x, &b, &similar, Grads::Compute)?,
                )
            };
            let name = format!(
                "{:<5} {:<17} {:<7} {:<12} {}",
                if batch { "batch" } else { "pairs" },
                format!("{:?}", cfg.distance),
                format!("{:?}", cfg.hinge),
                format!("{:?}", cfg.reduction),
                if cfg.normalize { "normalize" } else { "" }
            );
            let d_max = dists.iter().cloned().fold(0.0, f64::max);
            let len = if batch { rows as u64 } else { 1 };
            let norm = spread(cfg.distance, cfg.normalize, &[&x, &b]);
            reports.push(compare_outputs(name, &cfg, &g, &r, dim, d_max, len, &norm));
        }
    }
    Ok(reports)
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

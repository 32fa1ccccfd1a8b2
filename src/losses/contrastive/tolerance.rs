//! The tolerance rule's scales for the contrastive loss (see [`crate::tolerance`]): the loss
//! scales by its largest possible term plus the hinge's slope times the distance's
//! operands; a gradient by the largest |dL/dd| (the squared hinge's slope counted with the
//! distance's operands) times the distance gradient's operands.

use super::{reference, Contrastive, ContrastiveCounts, ContrastiveOutput};
use crate::input::Embeddings;
use crate::options::{Hinge, Reduction, ReferenceSet};
use crate::reference::{distance, prepare, row, widen};
use crate::tolerance::scales::{self, Spread};
use crate::tolerance::{self, Tolerance, Verdict};

/// Distances the reference sees for every pair of a batch (i < j), after `normalize`.
pub fn batch_distances(cfg: &Contrastive, x: &Embeddings<'_>) -> Vec<f64> {
    let dim = x.dim();
    let (xs, _) = prepare(cfg.normalize, &widen(x), dim);
    let mut out = Vec::new();
    for i in 0..x.rows() {
        for j in i + 1..x.rows() {
            out.push(distance(cfg.distance, row(&xs, i, dim), row(&xs, j, dim)));
        }
    }
    out
}

/// Distances the reference sees for every (query, reference) pair, after `normalize`.
pub fn against_distances(
    cfg: &Contrastive,
    q: &Embeddings<'_>,
    reference: &ReferenceSet<'_, '_>,
) -> Vec<f64> {
    let dim = q.dim();
    let (qs, _) = prepare(cfg.normalize, &widen(q), dim);
    let (rs, _) = prepare(cfg.normalize, &widen(reference.rows), dim);
    reference::against_pairs(q.rows(), reference.rows.rows(), reference.queries_at)
        .map(|(i, j)| distance(cfg.distance, row(&qs, i, dim), row(&rs, j, dim)))
        .collect()
}

/// Distances the reference sees for each explicit pair, after `normalize`.
pub fn pair_distances(cfg: &Contrastive, a: &Embeddings<'_>, b: &Embeddings<'_>) -> Vec<f64> {
    let dim = a.dim();
    let (an, _) = prepare(cfg.normalize, &widen(a), dim);
    let (bn, _) = prepare(cfg.normalize, &widen(b), dim);
    (0..a.rows())
        .map(|i| distance(cfg.distance, row(&an, i, dim), row(&bn, i, dim)))
        .collect()
}

/// The largest |dL/dd| of a call: the hinge's largest slope times the largest weight of a
/// term under the reduction (from the reference's counts). The squared hinge's slope
/// 2(d − p) or 2(m − d) carries d's rounding, which is relative to the distance's operands
/// (close rows cancel in u − v, nearly parallel ones in 1 − cos), not to d − p: its scale
/// is 2·(max(d, m) + operands), or a pair whose distance and margins are all tiny fails a
/// correct gradient (`tests/properties.rs`, `contrastive_pairs_found_cases`).
fn coef(cfg: &Contrastive, d_max: f64, counts: &ContrastiveCounts, spread: &Spread) -> f64 {
    let slope = match cfg.hinge {
        Hinge::Squared => {
            let operands = scales::distance_operands(cfg.distance, d_max, spread);
            2.0 * (d_max.max(f64::from(cfg.margin)) + operands)
        }
        Hinge::Linear => 1.0,
    };
    let (similar, dissimilar) = reference::scales(cfg.reduction, counts);
    slope * similar.max(dissimilar)
}

/// Largest possible pair term for `cfg` when no distance exceeds `d_max`, weighted by the
/// reduction over `pairs` pairs: the loss's scale S. A term's rounding is at most its size
/// plus the hinge's slope times the distance's operands.
pub fn loss_scale(cfg: &Contrastive, d_max: f64, pairs: u64, spread: &Spread) -> f64 {
    let t = f64::from(cfg.margin) + f64::from(cfg.pos_margin) + d_max;
    let c = scales::distance_operands(cfg.distance, d_max, spread);
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

/// Compares a GPU output with the reference under the rule. `distances` are the distances
/// the reference sees, `reduction_len` the terms behind each gradient value (batch: rows;
/// pairs: 1) and `inputs` the embeddings.
pub(crate) fn verdict(
    name: String,
    cfg: &Contrastive,
    gpu: &ContrastiveOutput,
    reference: &ContrastiveOutput,
    distances: &[f64],
    reduction_len: u64,
    inputs: &[&Embeddings<'_>],
) -> Verdict {
    let dim = inputs[0].dim();
    let d_max = distances.iter().cloned().fold(0.0, f64::max);
    let spread = scales::spread(cfg.distance, cfg.normalize, inputs);
    let pairs = reference.counts.pairs();
    let loss_tol = Tolerance::new(dim, pairs, loss_scale(cfg, d_max, pairs, &spread));
    let c = coef(cfg, d_max, &reference.counts, &spread);
    let floor = scales::contribution_scale(cfg.distance, cfg.normalize, c, &spread);
    tolerance::verdict(name, gpu, reference, dim, loss_tol, reduction_len, floor)
}

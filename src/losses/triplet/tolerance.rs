//! The tolerance rule's scales for the triplet losses (see [`crate::tolerance`]): the loss
//! scales by the largest possible term (margin or ln 2, plus d_max) plus the rounding of its
//! two distances; a gradient by one term's contribution, whose slope is at most 1.

use super::{Mode, Triplet, TripletOutput, TripletTerm};
use crate::input::Embeddings;
use crate::options::Reduction;
use crate::reference::{distance, prepare, row, widen};
use crate::tolerance::scales::{self, Spread};
use crate::tolerance::{self, Tolerance, Verdict};

/// The largest distance between the rows a call compares: (a, p), (a, n) and (p, n) for
/// explicit triplets, every pair of a batch.
pub(crate) fn d_max(cfg: &Triplet, mode: Mode, inputs: &[&Embeddings<'_>]) -> f64 {
    let dim = inputs[0].dim();
    let rows: Vec<Vec<f64>> = inputs
        .iter()
        .map(|x| prepare(cfg.normalize, &widen(x), dim).0)
        .collect();
    let d = |u: &[f64], v: &[f64]| distance(cfg.distance, u, v);
    let n = inputs[0].rows();
    let mut out = 0.0f64;
    match mode {
        Mode::Explicit => {
            for i in 0..n {
                let (a, p, q) = (
                    row(&rows[0], i, dim),
                    row(&rows[1], i, dim),
                    row(&rows[2], i, dim),
                );
                out = out.max(d(a, p)).max(d(a, q)).max(d(p, q));
            }
        }
        // The anchors against the candidates: the batch's rows again, or the references.
        Mode::Mined(_) => {
            let (last, m) = (rows.len() - 1, inputs[inputs.len() - 1].rows());
            for i in 0..n {
                for j in 0..m {
                    out = out.max(d(row(&rows[0], i, dim), row(&rows[last], j, dim)));
                }
            }
        }
    }
    out
}

/// The loss's tolerance: S is the largest possible term (margin or ln 2, plus d_max) plus
/// the rounding of its two distances, times the number of terms for a sum; L the number of
/// terms.
pub(crate) fn loss_tolerance(
    cfg: &Triplet,
    mode: Mode,
    d_max: f64,
    terms: u64,
    dim: usize,
    spread: &Spread,
) -> Tolerance {
    let term = d_max
        + 2.0 * scales::distance_operands(cfg.distance, d_max, spread)
        + match cfg.term {
            TripletTerm::Margin(m) => f64::from(m),
            TripletTerm::Soft => std::f64::consts::LN_2,
        };
    let scale = match cfg.reduction_in(mode) {
        Reduction::Sum => term * terms as f64,
        _ => term,
    };
    Tolerance::new(dim, terms, scale)
}

/// Compares a GPU output with the reference: gradients with a reduction length of 3 for
/// explicit triplets and the batch size for mined ones.
pub(crate) fn verdict(
    name: String,
    cfg: &Triplet,
    mode: Mode,
    gpu: &TripletOutput,
    reference: &TripletOutput,
    inputs: &[&Embeddings<'_>],
) -> Verdict {
    let dim = inputs[0].dim();
    let spread = scales::spread(cfg.distance, cfg.normalize, inputs);
    let d_max = d_max(cfg, mode, inputs);
    let tol = loss_tolerance(cfg, mode, d_max, reference.counts.terms, dim, &spread);
    let len = match mode {
        Mode::Explicit => 3,
        Mode::Mined(_) => inputs.iter().map(|x| x.rows()).max().unwrap_or(0) as u64,
    };
    // A term's slope is at most 1 (hinge or soft margin), weighted by the reduction: the
    // reduction of a sum of 1.
    let coef = super::reduce(cfg.reduction_in(mode), 1.0, &reference.counts);
    let floor = scales::contribution_scale(cfg.distance, cfg.normalize, coef, &spread);
    tolerance::verdict(name, gpu, reference, dim, tol, len, floor)
}

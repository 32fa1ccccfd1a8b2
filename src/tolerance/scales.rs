//! What the rule's scales are computed from: the inputs' spread (row norms, the closest
//! rows), one term's contribution to a gradient before it cancels, and the size of a
//! distance's operands. Shared by the families' `tolerance.rs`.

use crate::input::Embeddings;
use crate::options::Distance;
use crate::reference::{self, NORM_EPS};

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
    let (_, norms) = reference::normalize(&reference::widen(x), x.dim());
    norms.into_iter().fold(f64::INFINITY, f64::min)
}

/// The [`Spread`] of the inputs of a loss with this distance and normalisation.
pub fn spread(distance: Distance, normalize: bool, inputs: &[&Embeddings<'_>]) -> Spread {
    let dim = inputs[0].dim();
    let raw: Vec<f64> = inputs.iter().flat_map(|x| reference::widen(x)).collect();
    let (unit_rows, norms) = reference::normalize(&raw, dim);
    let unit = normalize || distance == Distance::Cosine;
    // A normalised row's norm is n / max(n, 1e-12): 1, or less for the tiniest rows.
    let max_norm = norms
        .iter()
        .map(|&n| if unit { n / n.max(NORM_EPS) } else { n })
        .fold(0.0, f64::max);
    let rows = if unit { unit_rows } else { raw };
    let n = rows.len() / dim;
    let mut d_min = f64::INFINITY;
    for i in 0..n {
        for j in i + 1..n {
            let d = reference::distance(
                Distance::Euclidean,
                reference::row(&rows, i, dim),
                reference::row(&rows, j, dim),
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
        1 => 2.0 / s.min_norm.max(NORM_EPS),
        _ => 4.0 / s.min_norm.max(NORM_EPS),
    };
    let scale = coef * operands * gain;
    if scale.is_finite() {
        scale
    } else {
        0.0
    }
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

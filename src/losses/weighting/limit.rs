//! The pair-weighting losses' magnitude limit (see [`crate::limit`]): the logits are
//! functions of cosines, bounded whatever the input, so only the squared norm and the
//! normalisation's gain on a row's gradient grow with |x|.

use super::{Weighting, WeightingLoss};
use crate::error::{Error, Result};
use crate::limit::{largest_magnitude, CEILING, NORMALIZE_GAIN};

impl Weighting {
    /// The largest |dL_i/ds_ij| one owner gives a pair: 1 for Multi-Similarity (a softmax
    /// weight), γ·(2 + m) for Circle (its weight [·]₊ at most 2 + m).
    pub(crate) fn slope_bound(&self) -> f64 {
        match self.loss {
            WeightingLoss::MultiSimilarity { .. } => 1.0,
            WeightingLoss::Circle { m, gamma } => f64::from(gamma) * (2.0 + f64::from(m)),
        }
    }

    /// The largest input magnitude: a row's gradient sums at most 2·rows coefficients of
    /// size ≤ the slope bound, amplified by the normalisation.
    pub(crate) fn magnitude_limit(&self, dim: usize, rows: usize) -> Result<f64> {
        let per_row = 2.0 * self.slope_bound() * NORMALIZE_GAIN;
        let grad = rows as f64 * per_row;
        largest_magnitude(|m| (dim as f64 * m * m).max(grad)).ok_or(Error::LimitExceeded {
            what: format!(
                "rows for {} (the gradient's worst case, rows × 2 × {} × 2e12, stays below 1e37)",
                self.name(),
                self.slope_bound()
            ),
            needed: rows as u128,
            limit: (CEILING / per_row) as u128,
            hint: "use a smaller batch or a smaller gamma",
        })
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, rows: usize, dim: usize) -> String {
        format!("{}, {rows} rows of dimension {dim}", self.case_name())
    }
}

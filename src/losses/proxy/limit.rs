//! The class-proxy losses' magnitude limit (see [`crate::limit`]): the logits are s times a
//! function of a cosine, bounded whatever the input, so only the squared norm and the
//! normalisation's gain on a row's gradient grow with |x|.

use super::Proxy;
use crate::error::{Error, Result};
use crate::limit::{largest_magnitude, CEILING, NORMALIZE_GAIN};

impl Proxy {
    /// The largest input magnitude: a row's gradient sums at most `rows` coefficients of
    /// size ≤ s·max|ψ′| (a softmax weight times the target's slope), amplified by the
    /// normalisation.
    pub(crate) fn magnitude_limit(&self, dim: usize, rows: usize) -> Result<f64> {
        let per_row = f64::from(self.scale) * self.slope_bound() * NORMALIZE_GAIN;
        let grad = rows as f64 * per_row;
        largest_magnitude(|m| (dim as f64 * m * m).max(grad)).ok_or(Error::LimitExceeded {
            what: format!(
                "rows for {} (the gradient's worst case, rows × s × max|ψ′| × 2e12, stays \
                 below 1e37)",
                self.case_name()
            ),
            needed: rows as u128,
            limit: (CEILING / per_row) as u128,
            hint: "use fewer rows or a smaller scale",
        })
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, queries: usize, classes: usize, dim: usize) -> String {
        format!(
            "{}, {queries} queries against {classes} classes of dimension {dim}",
            self.case_name()
        )
    }
}

//! SigLIP's magnitude limit (see [`crate::limit`]): logits are t·cos + b, bounded whatever
//! the input, so only the squared norm and the normalisation's gain on a row's gradient
//! grow with |x|.

use super::Siglip;
use crate::error::{Error, Result};
use crate::limit::{largest_magnitude, CEILING, NORMALIZE_GAIN};

impl Siglip {
    /// The largest input magnitude: a row's gradient sums at most `rows` weights of size
    /// ≤ t (|dL/ds| ≤ t/N, over at most `rows` ≥ N pairs), amplified by the normalisation.
    pub(crate) fn magnitude_limit(&self, dim: usize, rows: usize) -> Result<f64> {
        let per_row = f64::from(self.scale()) * NORMALIZE_GAIN;
        let grad = rows as f64 * per_row;
        largest_magnitude(|m| (dim as f64 * m * m).max(grad)).ok_or(Error::LimitExceeded {
            what: format!(
                "rows at logit scale {} (the gradient's worst case, rows × t × 2e12, stays \
                 below 1e37)",
                self.scale()
            ),
            needed: rows as u128,
            limit: (CEILING / per_row) as u128,
            hint: "use a smaller batch or a smaller logit scale",
        })
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, rows: usize, dim: usize) -> String {
        format!(
            "SigLIP (log scale {}, bias {}), {rows} rows of dimension {dim}",
            self.log_scale, self.bias
        )
    }
}

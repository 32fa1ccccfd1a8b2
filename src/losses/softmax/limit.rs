//! The softmax losses' magnitude limit (see [`crate::limit`]): logits are cosines over τ,
//! bounded whatever the input, so only the squared norm and the normalisation's gain on a
//! row's gradient grow with |x|.

use super::Softmax;
use crate::error::{Error, Result};
use crate::limit::{largest_magnitude, CEILING, NORMALIZE_GAIN};

impl Softmax {
    /// The largest input magnitude: logits are cosines over τ, so only the squared norm and
    /// the normalisation's gain on the gradient (rows × 2/τ) grow.
    pub(crate) fn magnitude_limit(&self, dim: usize, rows: usize) -> Result<f64> {
        let per_row = 2.0 / f64::from(self.temperature) * NORMALIZE_GAIN;
        let grad = rows as f64 * per_row;
        largest_magnitude(|m| (dim as f64 * m * m).max(grad)).ok_or(Error::LimitExceeded {
            what: format!(
                "rows at temperature {} (the gradient's worst case, rows × 2/τ × 2e12, stays \
                 below 1e37)",
                self.temperature
            ),
            needed: rows as u128,
            limit: (CEILING / per_row) as u128,
            hint: "use a smaller batch or a larger temperature",
        })
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, rows: usize, dim: usize) -> String {
        format!(
            "{:?} (temperature {}), {rows} rows of dimension {dim}",
            self.loss, self.temperature
        )
    }
}

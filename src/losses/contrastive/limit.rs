//! The contrastive loss's magnitude limit (see [`crate::limit`]): pair terms are
//! max(d − p, m − d) hinged, squared or not; a row's gradient adds its B − 1 pairs.

use super::{Contrastive, Mode};
use crate::error::Result;
use crate::limit::{self, MarginWorst};
use crate::options::Hinge;

impl Contrastive {
    /// The largest input magnitude whose f32 intermediates stay finite for `rows` rows of
    /// `dim` values in `mode`.
    pub(crate) fn magnitude_limit(&self, mode: Mode, rows: usize, dim: usize) -> Result<f64> {
        let n = rows as f64;
        let (terms, per_row) = match mode {
            Mode::Pairs => (n, 1.0),
            Mode::Batch | Mode::Against { .. } => (n * (n - 1.0) / 2.0, n - 1.0),
        };
        MarginWorst {
            distance: self.distance,
            normalize: self.normalize,
            squared: self.hinge == Hinge::Squared,
            margin: f64::from(self.margin.max(self.pos_margin)),
            additive: false,
            dim: dim as f64,
            terms,
            per_row,
        }
        .limit()
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, mode: Mode, rows: usize, dim: usize) -> String {
        let family = match mode {
            Mode::Pairs => "contrastive pairs",
            Mode::Batch | Mode::Against { .. } => "contrastive batch",
        };
        limit::describe(
            family,
            self.distance,
            self.hinge == Hinge::Squared,
            rows,
            dim,
        )
    }
}

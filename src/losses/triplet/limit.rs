//! The triplet losses' magnitude limit (see [`crate::limit`]): a term d(a,p) − d(a,n) + m
//! is linear; a term touches three rows once each, so a row's gradient adds up at most
//! 3 × terms contributions.

use super::{Triplet, TripletTerm};
use crate::error::Result;
use crate::limit::{self, MarginWorst};

impl Triplet {
    /// The largest input magnitude whose f32 intermediates stay finite over `terms` terms of
    /// `dim`-dimensional rows.
    pub(crate) fn magnitude_limit(&self, dim: usize, terms: f64) -> Result<f64> {
        let margin = match self.term {
            TripletTerm::Margin(m) => f64::from(m),
            TripletTerm::Soft => 0.0,
        };
        MarginWorst {
            distance: self.distance,
            normalize: self.normalize,
            squared: false,
            margin,
            additive: true,
            dim: dim as f64,
            terms,
            per_row: 3.0 * terms,
        }
        .limit()
    }

    /// The call, for [`crate::Error::TooLargeForLoss`].
    pub(crate) fn describe(&self, mode: &str, rows: usize, dim: usize) -> String {
        limit::describe(
            &format!("triplet ({mode})"),
            self.distance,
            false,
            rows,
            dim,
        )
    }
}

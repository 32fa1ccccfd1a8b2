//! How large input values may be for a loss's f32 intermediates to stay finite.
//!
//! The input domain (finite, |x| ≤ 1e15) keeps one distance finite, but the margin losses
//! square distances and hinges and add terms over many pairs. Each call bounds its largest
//! intermediate (squared norm, squared distance, term, sum of terms, per-row gradient sum)
//! by a worst case in M, the largest input magnitude, and refuses values beyond the M at
//! which that bound reaches [`CEILING`]. The bound is conservative (every term at its
//! largest, every sum over all terms), so ordinary embeddings are far inside it. Each
//! family's `limit.rs` states its worst case with the pieces here.

use crate::error::{Error, Result};
use crate::input::{Embeddings, MAX_ABS_VALUE};
use crate::options::Distance;

/// Largest value an intermediate may reach: f32::MAX is 3.4e38, the rest is headroom for
/// rounding and the small factors a bound leaves out.
pub(crate) const CEILING: f64 = 1e37;

/// A row's gradient is amplified by at most 2/max(‖x‖, 1e-12) per normalisation stage. Both
/// stages (`normalize` and cosine) can see a zero row: the gains multiply.
pub(crate) const NORMALIZE_GAIN: f64 = 2e12;

/// What a margin loss does with its inputs, for the worst-case bound.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MarginWorst {
    pub distance: Distance,
    pub normalize: bool,
    /// Squared hinge (contrastive's default); triplet's terms are linear.
    pub squared: bool,
    /// The largest margin (contrastive: max(m, p); triplet: m, 0 for the soft margin).
    pub margin: f64,
    /// Triplet: a term is d(a,p) − d(a,n) + m, bounded by d + m; contrastive by max(d, m).
    pub additive: bool,
    pub dim: f64,
    /// Terms summed into the loss.
    pub terms: f64,
    /// Terms one row's gradient adds up.
    pub per_row: f64,
}

impl MarginWorst {
    /// The largest intermediate when no input value exceeds `m` in magnitude.
    pub fn at(&self, m: f64) -> f64 {
        let unit = self.normalize || self.distance == Distance::Cosine;
        let r = if unit { 1.0 } else { m };
        let norm_sq = self.dim * m * m;
        let diff_sq = 4.0 * self.dim * r * r;
        let (d, dd) = match self.distance {
            Distance::Euclidean => (diff_sq.sqrt(), 1.0),
            Distance::SquaredEuclidean => (diff_sq, 2.0 * diff_sq.sqrt()),
            Distance::Cosine => (2.0, 1.0),
        };
        let h = if self.additive {
            d + self.margin + 1.0
        } else {
            d.max(self.margin)
        };
        let (term, slope) = if self.squared {
            (h * h, 2.0 * h)
        } else {
            (h, 1.0)
        };
        let stages = self.distance.normalize_stages(self.normalize);
        let gain = NORMALIZE_GAIN.powi(stages as i32);
        let grad = self.per_row * slope * dd * gain;
        norm_sq.max(diff_sq).max(self.terms * term).max(grad)
    }

    /// The limit, or the error that the margin is too large for the size.
    pub fn limit(&self) -> Result<f64> {
        largest_magnitude(|m| self.at(m)).ok_or(Error::InvalidOption {
            name: "margin",
            value: self.margin,
            rule: "too large for this many terms: their f32 sum would overflow \
                   (margin² × terms with the squared hinge, margin × terms otherwise, \
                   must stay below 1e37); use a smaller margin or batch",
        })
    }
}

/// The largest input magnitude (at most the domain's 1e15) for which `worst` stays within
/// [`CEILING`], or `None` when it exceeds it whatever the inputs (the options and size
/// alone overflow).
pub(crate) fn largest_magnitude(worst: impl Fn(f64) -> f64) -> Option<f64> {
    if worst(MAX_ABS_VALUE) <= CEILING {
        return Some(MAX_ABS_VALUE);
    }
    if worst(0.0) > CEILING {
        return None;
    }
    // Geometric bisection: `lo` always passes, `hi` always fails.
    let (mut lo, mut hi) = (f64::from(f32::MIN_POSITIVE), MAX_ABS_VALUE);
    if worst(lo) > CEILING {
        return Some(0.0);
    }
    for _ in 0..80 {
        let mid = (lo * hi).sqrt();
        if worst(mid) <= CEILING {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // An f32 at or below `lo`, so that the device's f32 comparison agrees with the host's.
    let f = lo as f32;
    Some(if f64::from(f) > lo {
        f64::from(f.next_down())
    } else {
        f64::from(f)
    })
}

/// Refuses the first value of `x` beyond `limit`. `config` describes the call for the
/// message.
pub(crate) fn check(x: &Embeddings<'_>, limit: f64, config: impl FnOnce() -> String) -> Result<()> {
    if x.max_abs() <= limit {
        return Ok(());
    }
    let data = x.data();
    let index = data
        .iter()
        .position(|v| f64::from(v.abs()) > limit)
        .unwrap_or(0);
    Err(Error::TooLargeForLoss {
        what: x.what(),
        row: index / x.dim(),
        column: index % x.dim(),
        value: f64::from(data[index]),
        limit,
        config: config(),
    })
}

/// A short description of a margin loss's options and size, for [`Error::TooLargeForLoss`].
pub(crate) fn describe(
    family: &str,
    distance: Distance,
    squared: bool,
    rows: usize,
    dim: usize,
) -> String {
    let hinge = if squared { "squared" } else { "linear" };
    format!(
        "{family} with {} distance and {hinge} hinge, {rows} rows of dimension {dim}",
        distance.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_largest_magnitude_within_the_ceiling() {
        let worst = |m: f64| m * m * m * m;
        let limit = largest_magnitude(worst).unwrap();
        assert!(worst(limit) <= CEILING);
        assert!(worst(limit * 1.000_01) > CEILING);
        assert_eq!(largest_magnitude(|m| m), Some(MAX_ABS_VALUE));
        assert_eq!(largest_magnitude(|m| m + 1e38), None);
    }
}

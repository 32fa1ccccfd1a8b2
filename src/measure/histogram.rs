//! What the pair-distance histograms say: quantiles, the overlap of the two
//! distributions, the share of pairs a margin makes active, and suggested margins.

/// Histograms of the similar and dissimilar pairs' distances over fixed bins: bin b holds
/// `hi·b/bins ≤ d < hi·(b + 1)/bins` (the last bin also d = hi).
#[derive(Clone, Debug, PartialEq)]
pub struct Histograms {
    /// The upper edge (the lower edge is 0). An f32, the value the kernels bin with.
    pub hi: f32,
    /// Counts of similar pairs per bin.
    pub similar: Vec<u64>,
    /// Counts of dissimilar pairs per bin.
    pub dissimilar: Vec<u64>,
    /// Similar pairs beyond `hi` (only with an explicit range below the largest distance).
    pub similar_above: u64,
    /// Dissimilar pairs beyond `hi`.
    pub dissimilar_above: u64,
}

/// Which pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairKind {
    /// Pairs of the same label.
    Similar,
    /// Pairs of different labels.
    Dissimilar,
}

/// A margin suggested by a stated rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    /// The loss option it is for, as the CLI spells it: `"margin"`, `"pos-margin"`.
    pub option: &'static str,
    /// The rule, in words, with its parameter.
    pub rule: String,
    /// The suggested value (`None` when the rule has no pairs to work from).
    pub value: Option<f64>,
}

impl Histograms {
    /// Bins.
    pub fn bins(&self) -> usize {
        self.similar.len()
    }

    /// Width of a bin.
    pub fn width(&self) -> f64 {
        f64::from(self.hi) / self.bins() as f64
    }

    /// Bin edges: `bins + 1` values from 0 to `hi`.
    pub fn edges(&self) -> Vec<f64> {
        let w = self.width();
        (0..=self.bins()).map(|b| b as f64 * w).collect()
    }

    /// `kind`'s counts per bin and its count beyond `hi`.
    pub fn counts(&self, kind: PairKind) -> (&[u64], u64) {
        match kind {
            PairKind::Similar => (&self.similar, self.similar_above),
            PairKind::Dissimilar => (&self.dissimilar, self.dissimilar_above),
        }
    }

    /// Pairs of `kind`.
    pub fn pairs(&self, kind: PairKind) -> u64 {
        let (counts, above) = self.counts(kind);
        counts.iter().sum::<u64>() + above
    }

    /// The q-quantile of `kind`'s distances, interpolated linearly inside its bin (so
    /// within one bin width of the exact quantile); `None` without pairs, or when it lies
    /// beyond `hi`.
    pub fn quantile(&self, kind: PairKind, q: f64) -> Option<f64> {
        let (counts, _) = self.counts(kind);
        let n = self.pairs(kind);
        if n == 0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * n as f64;
        let mut below = 0u64;
        for (b, &c) in counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= target {
                let inside = ((target - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some((b as f64 + inside) * self.width());
            }
            below += c;
        }
        None
    }

    /// The overlap of the two distributions: Σ_b min(p_similar(b), p_dissimilar(b)), each
    /// histogram as a share of its pairs; 0 when they are apart, 1 when they are the same.
    pub fn overlap(&self) -> Option<f64> {
        let (ns, nd) = (
            self.pairs(PairKind::Similar),
            self.pairs(PairKind::Dissimilar),
        );
        if ns == 0 || nd == 0 {
            return None;
        }
        let bins = self.similar.iter().zip(&self.dissimilar);
        let above = std::iter::once((&self.similar_above, &self.dissimilar_above));
        Some(
            bins.chain(above)
                .map(|(&s, &d)| (s as f64 / ns as f64).min(d as f64 / nd as f64))
                .sum(),
        )
    }

    /// The share of `kind`'s pairs a contrastive margin makes active: similar pairs with
    /// d > `margin` (the positive margin), dissimilar pairs with d < `margin`. Exact at bin
    /// edges, interpolated inside a bin.
    pub fn active_share(&self, kind: PairKind, margin: f64) -> Option<f64> {
        let n = self.pairs(kind);
        if n == 0 {
            return None;
        }
        let (counts, above) = self.counts(kind);
        let pos = margin / self.width();
        let mut below = 0.0;
        for (b, &c) in counts.iter().enumerate() {
            let part = (pos - b as f64).clamp(0.0, 1.0);
            below += part * c as f64;
        }
        if margin > f64::from(self.hi) {
            below += above as f64;
        }
        let share = below / n as f64;
        Some(match kind {
            PairKind::Similar => 1.0 - share,
            PairKind::Dissimilar => share,
        })
    }

    /// Margins by the stated rules, for an active share `share` and a quantile `q`:
    /// - `margin` such that `share` of the dissimilar pairs are active (their
    ///   `share`-quantile);
    /// - `pos-margin` such that `share` of the similar pairs are active (their
    ///   (1 − `share`)-quantile);
    /// - `margin` at the midpoint of the similar pairs' q-quantile and the dissimilar
    ///   pairs' (1 − q)-quantile (between the two distributions' bulks);
    /// - the triplet margin as the gap between the medians, dissimilar minus similar.
    pub fn suggestions(&self, share: f64, q: f64) -> Vec<Suggestion> {
        use PairKind::{Dissimilar, Similar};
        // Parameters as written (1 − 0.9 is 0.1, not 0.09999999999999998).
        let p = |x: f64| (x * 1e9).round() / 1e9;
        let (share, q, not_share, not_q) = (p(share), p(q), p(1.0 - share), p(1.0 - q));
        let mid = self
            .quantile(Similar, q)
            .zip(self.quantile(Dissimilar, not_q))
            .map(|(a, b)| (a + b) / 2.0);
        let gap = self
            .quantile(Dissimilar, 0.5)
            .zip(self.quantile(Similar, 0.5))
            .map(|(d, s)| (d - s).max(0.0));
        vec![
            Suggestion {
                option: "margin",
                rule: format!("{share} of the dissimilar pairs active: their {share}-quantile"),
                value: self.quantile(Dissimilar, share),
            },
            Suggestion {
                option: "pos-margin",
                rule: format!("{share} of the similar pairs active: their {not_share}-quantile"),
                value: self.quantile(Similar, not_share),
            },
            Suggestion {
                option: "margin",
                rule: format!(
                    "midpoint of the similar pairs' {q}-quantile and the dissimilar pairs' \
                     {not_q}-quantile"
                ),
                value: mid,
            },
            Suggestion {
                option: "triplet-margin",
                rule: "dissimilar median minus similar median (0 if negative)".into(),
                value: gap,
            },
        ]
    }
}

/// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten at or above `x`
/// (1 for x ≤ 0): the histograms' upper edge for a largest distance x, so that the edges
/// are round numbers.
pub(crate) fn nice_ceil(x: f64) -> f32 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let e = x.log10().floor();
    for p in [e - 1.0, e, e + 1.0] {
        for m in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0] {
            let v = (m * 10f64.powf(p)) as f32;
            if f64::from(v) >= x {
                return v;
            }
        }
    }
    x as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Histograms {
        Histograms {
            hi: 4.0,
            similar: vec![2, 2, 0, 0],
            dissimilar: vec![0, 1, 2, 1],
            similar_above: 0,
            dissimilar_above: 0,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bin() {
        let h = h();
        assert_eq!(h.quantile(PairKind::Similar, 0.5), Some(1.0));
        assert_eq!(h.quantile(PairKind::Similar, 0.25), Some(0.5));
        assert_eq!(h.quantile(PairKind::Dissimilar, 1.0), Some(4.0));
        assert_eq!(h.quantile(PairKind::Dissimilar, 0.5), Some(2.5));
    }

    #[test]
    fn overlap_and_active_shares() {
        let h = h();
        // Only bin 1 holds both: min(2/4, 1/4).
        assert_eq!(h.overlap(), Some(0.25));
        assert_eq!(h.active_share(PairKind::Dissimilar, 2.0), Some(0.25));
        assert_eq!(h.active_share(PairKind::Similar, 1.0), Some(0.5));
        assert_eq!(h.active_share(PairKind::Similar, 0.0), Some(1.0));
    }

    #[test]
    fn round_upper_edges() {
        assert_eq!(nice_ceil(1.73), 2.0);
        assert_eq!(nice_ceil(2.0), 2.0);
        assert_eq!(nice_ceil(0.013), 0.015);
        assert_eq!(nice_ceil(230.0), 250.0);
        assert_eq!(nice_ceil(0.0), 1.0);
    }
}

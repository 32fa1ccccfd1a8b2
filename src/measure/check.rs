//! The GPU measurements against their f64 references, under the crate's tolerance rule.

use super::{Knn, Labelled, Neighbours, PairKind, PairStats};
use crate::engine::Gpu;
use crate::error::Result;
use crate::input::Embeddings;
use crate::options::Distance;
use crate::tolerance::scales::{distance_operands, spread};
use crate::tolerance::{compare, Comparison, Tolerance};

/// A k-NN search compared with its f64 reference.
#[derive(Clone, Debug)]
pub struct KnnVerdict {
    /// The GPU's i-th distance of each query against the reference's i-th.
    pub distances: Comparison,
    /// The GPU's distances against the reference's distances of the rows the GPU chose.
    pub chosen: Comparison,
    /// Positions where the two lists name different rows whose reference distances differ
    /// by more than twice the bound (not a near tie): must be none.
    pub misranked: usize,
    /// Positions where they name different rows of near-equal distance (allowed).
    pub near_ties: usize,
}

impl KnnVerdict {
    /// Distances within tolerance, and every difference of rows a near tie.
    pub fn pass(&self) -> bool {
        self.distances.pass && self.chosen.pass && self.misranked == 0
    }
}

/// The tolerance of one distance: the rule with D the dimension, L = 1, and S the size of
/// the distance's operands (see [`distance_operands`]).
pub(crate) fn distance_tolerance(d: Distance, inputs: &[&Embeddings<'_>]) -> Tolerance {
    let s = spread(d, false, inputs);
    let d_max = match d {
        Distance::Cosine => 2.0,
        _ => 4.0 * s.max_norm * s.max_norm,
    };
    Tolerance::new(inputs[0].dim(), 1, distance_operands(d, d_max, &s))
}

impl Knn {
    /// [`Knn::search`] against [`Knn::search_cpu`]: the sorted distances agree under the
    /// rule, the rows the GPU chose have those distances, and where the two lists name
    /// different rows their distances are a near tie.
    pub fn check(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &Embeddings<'_>,
    ) -> Result<KnnVerdict> {
        let g = self.search(gpu, queries, reference)?;
        let c = self.search_cpu(queries, reference)?;
        let tol = distance_tolerance(self.distance, &[queries, reference]);
        let (qr, rr) = (
            super::rows(queries, self.distance),
            super::rows(reference, self.distance),
        );
        let exact = |q: usize, j: u32| {
            let key = super::reference::key_of(self.distance, &qr, q, &rr, j as usize);
            super::reference::key_distance(self.distance, key)
        };
        Ok(verdict(&g, &c, exact, tol))
    }
}

fn verdict(
    g: &Neighbours,
    c: &Neighbours,
    exact: impl Fn(usize, u32) -> f64,
    tol: Tolerance,
) -> KnnVerdict {
    let distances = compare(&g.distances, &c.distances, tol);
    let truth: Vec<f64> = (0..g.indices.len())
        .map(|n| exact(n / g.k, g.indices[n]))
        .collect();
    let chosen = compare(&g.distances, &truth, tol);
    let (mut misranked, mut near_ties) = (0, 0);
    for (n, &t) in truth.iter().enumerate() {
        if g.indices[n] != c.indices[n] {
            let gap = (t - c.distances[n]).abs();
            if gap <= 2.0 * tol.bound(c.distances[n]) {
                near_ties += 1;
            } else {
                misranked += 1;
            }
        }
    }
    KnnVerdict {
        distances,
        chosen,
        misranked,
        near_ties,
    }
}

/// Pair-distance histograms compared with their f64 reference on the GPU's bins.
#[derive(Clone, Debug)]
pub struct StatsVerdict {
    /// The counts are equal bin by bin.
    pub counts_equal: bool,
    /// Pairs of each kind are equal (they must be, whatever the bins).
    pub pairs_equal: bool,
    /// The largest difference of a quantile (0.01 … 0.99) from the exact quantile of the
    /// reference's distances, in bin widths: at most 1.
    pub quantile_bins: f64,
}

impl StatsVerdict {
    /// Pair counts equal and every quantile within one bin. Bin-by-bin equality is only
    /// required of integer-valued inputs (see [`PairStats::check`]).
    pub fn pass(&self) -> bool {
        self.pairs_equal && self.quantile_bins <= 1.0
    }
}

impl PairStats {
    /// [`PairStats::histograms`] against the reference on the GPU's upper edge: the pair
    /// counts, every bin (`counts_equal`; distances within rounding of a bin edge may land
    /// on either side of it, except on integer-valued inputs, where every distance the
    /// kernels compute is exact), and the quantiles against the exact quantiles of the f64
    /// distances.
    pub fn check(
        &self,
        gpu: &Gpu,
        x: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<StatsVerdict> {
        let g = self.histograms(gpu, x, reference)?;
        let pinned = PairStats {
            hi: Some(g.hi),
            ..*self
        };
        let c = pinned.histograms_cpu(x, reference)?;
        let exact = pinned.distances_cpu(x, reference)?;
        let mut worst: f64 = 0.0;
        for (kind, sorted) in [
            (PairKind::Similar, &exact.0),
            (PairKind::Dissimilar, &exact.1),
        ] {
            for q in [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] {
                if let (Some(a), Some(b)) = (g.quantile(kind, q), quantile(sorted, q)) {
                    worst = worst.max((a - b).abs() / g.width());
                }
            }
        }
        Ok(StatsVerdict {
            counts_equal: g == c,
            pairs_equal: [PairKind::Similar, PairKind::Dissimilar]
                .iter()
                .all(|&k| g.pairs(k) == c.pairs(k)),
            quantile_bins: worst,
        })
    }
}

/// The exact q-quantile of sorted values: the smallest v with at least q·n values ≤ v
/// (the inverse of the empirical distribution, which a histogram's interpolated quantile
/// lies within one bin of).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

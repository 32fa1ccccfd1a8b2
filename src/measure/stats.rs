//! Pair-distance statistics on the GPU and their f64 reference: the histograms
//! [`super::Histograms`] are computed from.

use std::collections::HashMap;

use super::histogram::{self, Histograms};
use super::steps::{self, Pairing, Sweep};
use super::{check_labels, check_limit, reference, rows, same_dim, Labelled};
use crate::engine::Gpu;
use crate::error::{Error, Result};
use crate::input::Embeddings;
use crate::options::Distance;

/// The most histogram bins.
pub const MAX_BINS: usize = 4096;

/// Pair-distance statistics: histograms of the similar and the dissimilar pairs'
/// distances over every pair (a batch's i < j, or every query–reference pair), on fixed
/// bins from 0 to an upper edge: the given `hi`, or the largest pair distance rounded up
/// to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten (found by a first sweep).
/// Counts are exact integers; on integer-valued inputs they equal the CPU reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairStats {
    /// Euclidean (default), squared euclidean or cosine.
    pub distance: Distance,
    /// Bins: 1 ≤ bins ≤ [`MAX_BINS`]. Default 100.
    pub bins: usize,
    /// The upper edge (finite, > 0), or `None` to take it from the data.
    pub hi: Option<f32>,
}

impl Default for PairStats {
    fn default() -> Self {
        Self {
            distance: Distance::Euclidean,
            bins: 100,
            hi: None,
        }
    }
}

impl PairStats {
    /// Checks the options, labels and shapes without a device.
    pub fn validate(&self, x: Labelled<'_, '_>, reference: Option<Labelled<'_, '_>>) -> Result<()> {
        if self.bins == 0 || self.bins > MAX_BINS {
            return Err(Error::InvalidOption {
                name: "bins",
                value: self.bins as f64,
                rule: "1 ≤ bins ≤ 4096",
            });
        }
        if let Some(hi) = self.hi {
            if !(hi.is_finite() && hi > 0.0) {
                return Err(Error::InvalidOption {
                    name: "range",
                    value: f64::from(hi),
                    rule: "the upper edge must be finite and above 0",
                });
            }
        }
        check_labels(x, "labels")?;
        let mut all = vec![x.0];
        if let Some(r) = reference {
            check_labels(r, "reference labels")?;
            same_dim(x.0, r.0)?;
            all.push(r.0);
        }
        check_limit(self.distance, &all)
    }

    fn sweep<'a>(&self, x: &'a Embeddings<'a>, reference: Option<&'a Embeddings<'a>>) -> Sweep<'a> {
        Sweep {
            distance: self.distance,
            pairing: if reference.is_some() {
                Pairing::All
            } else {
                Pairing::Upper
            },
            rows: x,
            cols: reference,
        }
    }

    /// The histograms on the GPU: a labelled batch's pairs, or its rows against a labelled
    /// reference set's.
    pub fn histograms(
        &self,
        gpu: &Gpu,
        x: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<Histograms> {
        self.validate(x, reference)?;
        let sweep = self.sweep(x.0, reference.map(|r| r.0));
        let hi = match self.hi {
            Some(hi) => hi,
            None => histogram::nice_ceil(f64::from(steps::span(gpu, &sweep)?)),
        };
        let (a, b) = joint_ids(x.1, reference.map(|r| r.1));
        let ids: Vec<&[u32]> = std::iter::once(a.as_slice()).chain(b.as_deref()).collect();
        let counts = steps::hist(gpu, &sweep, &ids, self.bins, hi)?;
        Ok(split(counts, self.bins, hi))
    }

    /// The f64 CPU reference of [`PairStats::histograms`].
    pub fn histograms_cpu(
        &self,
        x: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<Histograms> {
        self.validate(x, reference)?;
        let pairs = self.pairs_cpu(x, reference);
        let hi = self
            .hi
            .unwrap_or_else(|| histogram::nice_ceil(pairs.iter().map(|p| p.0).fold(0.0, f64::max)));
        let slots = self.bins + 1;
        let mut counts = vec![0u64; 2 * slots];
        for (d, similar) in pairs {
            let side = if similar { 0 } else { slots };
            counts[side + reference::bin(d, self.bins, f64::from(hi))] += 1;
        }
        Ok(split(counts, self.bins, hi))
    }

    /// Every pair's f64 distance, with whether it is similar.
    fn pairs_cpu(
        &self,
        x: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Vec<(f64, bool)> {
        let sweep = self.sweep(x.0, reference.map(|r| r.0));
        let (a, b) = joint_ids(x.1, reference.map(|r| r.1));
        let xr = rows(x.0, self.distance);
        let yr = reference.map(|r| rows(r.0, self.distance));
        reference::pair_distances(
            self.distance,
            sweep.pairing,
            (&xr, &a),
            (yr.as_ref().unwrap_or(&xr), b.as_deref().unwrap_or(&a)),
        )
    }

    /// The f64 distances of the similar and of the dissimilar pairs, each sorted.
    pub fn distances_cpu(
        &self,
        x: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        self.validate(x, reference)?;
        let (mut s, mut d): (Vec<_>, Vec<_>) =
            self.pairs_cpu(x, reference).into_iter().partition(|p| p.1);
        s.sort_by(|a, b| a.0.total_cmp(&b.0));
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok((
            s.into_iter().map(|p| p.0).collect(),
            d.into_iter().map(|p| p.0).collect(),
        ))
    }
}

/// The kernels' 2·(bins + 1) counts as [`Histograms`].
fn split(counts: Vec<u64>, bins: usize, hi: f32) -> Histograms {
    let (s, d) = counts.split_at(bins + 1);
    Histograms {
        hi,
        similar: s[..bins].to_vec(),
        dissimilar: d[..bins].to_vec(),
        similar_above: s[bins],
        dissimilar_above: d[bins],
    }
}

/// Class ids shared by two label sets (equal labels, equal ids).
fn joint_ids(a: &[i64], b: Option<&[i64]>) -> (Vec<u32>, Option<Vec<u32>>) {
    let mut map: HashMap<i64, u32> = HashMap::new();
    let mut id = |l: &i64| {
        let n = map.len() as u32;
        *map.entry(*l).or_insert(n)
    };
    let a: Vec<u32> = a.iter().map(&mut id).collect();
    let b = b.map(|b| b.iter().map(&mut id).collect());
    (a, b)
}

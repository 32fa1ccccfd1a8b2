//! Measuring an embedding on the GPU: exact k nearest neighbours ([`Knn`]), retrieval
//! metrics from them ([`Retrieval`]), anomaly scores and their ROC AUC ([`roc_auc`]), and the
//! pair-distance statistics that tune a margin ([`PairStats`]).
//!
//! Every sweep runs on the pair engine, as the losses do: the queries (or the batch) in
//! row windows against the references in column windows, nothing queries × references
//! stored. The k-NN keeps each query's top k on the device (k × 8 bytes a query) and the
//! histograms keep 2·(bins + 1) counts per workgroup. Each call has an f64 CPU reference
//! (`*_cpu`) that the tests and the CLI's `--device cpu` use.
//!
//! ```no_run
//! use metric_loss::measure::{Knn, Retrieval};
//! use metric_loss::{Distance, Embeddings, Gpu};
//! let gpu = Gpu::new()?;
//! # let (data, rows, dim, labels) = (vec![0.0f32; 8], 4, 2, vec![0i64, 0, 1, 1]);
//! let x = Embeddings::new(&data, rows, dim)?;
//! let nn = Knn::new(2).exclude_self(true).search(&gpu, &x, &x)?; // indices, distances
//! let m = Retrieval::default().evaluate(&gpu, &x, &labels, None)?;
//! println!("P@1 {} MAP@R {} ({} neighbours of row 0: {:?})", m.precision_at_1, m.map_at_r, nn.k, nn.row(0).0);
//! # Ok::<(), metric_loss::Error>(())
//! ```

mod check;
mod histogram;
mod kernels;
mod reference;
mod retrieval;
mod steps;

pub(crate) use kernels::TABLE;

pub use check::{KnnVerdict, StatsVerdict};
pub use histogram::{Histograms, PairKind, Suggestion};
pub use retrieval::{roc_auc, RetrievalMetrics};

use std::collections::HashMap;

use crate::engine::Gpu;
use crate::error::{Error, Result};
use crate::input::Embeddings;
use crate::limit;
use crate::options::Distance;
use reference::Rows;
use steps::{Pairing, Sweep};

/// The most neighbours one k-NN call returns.
pub const MAX_K: usize = 1024;

/// The most histogram bins.
pub const MAX_BINS: usize = 4096;

/// Exact k nearest neighbours: for each query, the `k` references nearest under the
/// distance, nearest first, ties broken by the lower reference index. Deterministic: the
/// lists are a function of the f32 distances alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knn {
    /// Neighbours per query: 1 ≤ k ≤ [`MAX_K`] and at most the references (less one with
    /// `exclude_self`).
    pub k: usize,
    /// Euclidean (default), squared euclidean or cosine.
    pub distance: Distance,
    /// The queries are the references (query i is reference i): leave each out of its own
    /// list.
    pub exclude_self: bool,
}

/// Each query's neighbours: `k` a row, nearest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    /// Neighbours a query.
    pub k: usize,
    /// Reference rows, queries × k, row-major.
    pub indices: Vec<u32>,
    /// Their distances (the GPU's f32 values, or the reference's f64), queries × k.
    pub distances: Vec<f64>,
}

impl Neighbours {
    /// Query `i`'s neighbours and distances.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.indices[r.clone()], &self.distances[r])
    }

    /// Queries.
    pub fn queries(&self) -> usize {
        self.indices.len() / self.k.max(1)
    }

    /// Each query's distance to its k-th nearest reference: the anomaly score of a query
    /// against a set of normal rows.
    pub fn kth_distances(&self) -> Vec<f64> {
        self.distances
            .chunks_exact(self.k)
            .map(|r| r[self.k - 1])
            .collect()
    }
}

impl Knn {
    /// `k` neighbours by euclidean distance, the query itself not excluded.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            distance: Distance::Euclidean,
            exclude_self: false,
        }
    }

    /// With distance `d`.
    pub fn distance(self, d: Distance) -> Self {
        Self {
            distance: d,
            ..self
        }
    }

    /// Leaving each query out of its own neighbours (the queries are the references).
    pub fn exclude_self(self, on: bool) -> Self {
        Self {
            exclude_self: on,
            ..self
        }
    }

    /// Checks the options and shapes, and the values against the f32 limit, without a
    /// device.
    pub fn validate(&self, queries: &Embeddings<'_>, reference: &Embeddings<'_>) -> Result<()> {
        same_dim(queries, reference)?;
        let available = reference.rows() - usize::from(self.exclude_self);
        if self.exclude_self && queries.rows() != reference.rows() {
            return Err(Error::ShapeMismatch {
                what: "queries with exclude_self (the queries are the references: one per \
                       reference row)",
                expected: reference.rows(),
                got: queries.rows(),
            });
        }
        if self.k == 0 || self.k > MAX_K || self.k > available {
            return Err(Error::InvalidOption {
                name: "k",
                value: self.k as f64,
                rule: "1 ≤ k ≤ 1024 and at most the reference rows (less one with \
                       exclude-self)",
            });
        }
        check_limit(self.distance, &[queries, reference])
    }

    fn sweep<'a>(&self, queries: &'a Embeddings<'a>, reference: &'a Embeddings<'a>) -> Sweep<'a> {
        Sweep {
            distance: self.distance,
            pairing: if self.exclude_self {
                Pairing::NotSelf
            } else {
                Pairing::All
            },
            rows: queries,
            cols: Some(reference),
        }
    }

    /// The neighbours on the GPU.
    pub fn search(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &Embeddings<'_>,
    ) -> Result<Neighbours> {
        self.validate(queries, reference)?;
        let lists = steps::knn(gpu, &self.sweep(queries, reference), self.k)?;
        Ok(Neighbours {
            k: self.k,
            indices: lists.iter().map(|e| e.index).collect(),
            distances: lists
                .iter()
                .map(|e| match self.distance {
                    // The square root in f32, as a kernel would take it.
                    Distance::Euclidean => f64::from(e.key.max(0.0).sqrt()),
                    _ => f64::from(e.key),
                })
                .collect(),
        })
    }

    /// The f64 CPU reference of [`Knn::search`].
    pub fn search_cpu(
        &self,
        queries: &Embeddings<'_>,
        reference: &Embeddings<'_>,
    ) -> Result<Neighbours> {
        self.validate(queries, reference)?;
        let s = self.sweep(queries, reference);
        let lists = reference::knn(
            self.distance,
            s.pairing,
            &rows(queries, self.distance),
            &rows(reference, self.distance),
            self.k,
        );
        Ok(Neighbours {
            k: self.k,
            indices: lists.iter().flatten().map(|e| e.1).collect(),
            distances: lists
                .iter()
                .flatten()
                .map(|e| reference::key_distance(self.distance, e.0))
                .collect(),
        })
    }
}

/// Retrieval metrics as pytorch-metric-learning's `AccuracyCalculator` defines them, with
/// each query's R the number of references of its label (less itself when the queries are
/// the references), and queries with R = 0 left out of every mean:
/// - precision@1: the nearest reference has the query's label;
/// - R-precision: same-label references among the R nearest, divided by R;
/// - MAP@R: (1/R) Σ_{i ≤ R} [i-th nearest has the label] · precision@i;
/// - recall@k (not in `AccuracyCalculator`; the field's usual Recall@K): a same-label
///   reference among the k nearest.
///
/// The neighbours are the exact k-NN with k = the largest R (and the largest recall k),
/// which must be at most [`MAX_K`]. Without a reference set the queries are their own, each
/// left out of its own neighbours (by index, where PML drops the first neighbour found).
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    /// Euclidean (default, PML's), squared euclidean or cosine.
    pub distance: Distance,
    /// The k of each recall@k. Default [1, 2, 4, 8].
    pub recall_ks: Vec<usize>,
}

impl Default for Retrieval {
    fn default() -> Self {
        Self {
            distance: Distance::Euclidean,
            recall_ks: vec![1, 2, 4, 8],
        }
    }
}

/// The set a query is measured against: rows and their labels.
pub type Labelled<'a, 'b> = (&'b Embeddings<'a>, &'b [i64]);

impl Retrieval {
    /// Checks the labels, shapes and the k-NN the metrics need, without a device.
    pub fn validate(
        &self,
        queries: &Embeddings<'_>,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<()> {
        self.knn((queries, labels), reference).map(|_| ())
    }

    /// The k-NN the metrics need, or the error that it is too large.
    fn knn(
        &self,
        queries: Labelled<'_, '_>,
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<(Knn, Vec<usize>)> {
        let same = reference.is_none();
        let (refs, ref_labels) = reference.unwrap_or(queries);
        check_labels(queries, "labels")?;
        check_labels((refs, ref_labels), "reference labels")?;
        let relevant = retrieval::relevant_counts(queries.1, ref_labels, same);
        let largest = relevant.iter().copied().max().unwrap_or(0);
        let wanted = self
            .recall_ks
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(largest)
            .max(1);
        if let Some(&bad) = self.recall_ks.iter().find(|&&k| k == 0) {
            return Err(Error::InvalidOption {
                name: "k",
                value: bad as f64,
                rule: "each recall k must be at least 1",
            });
        }
        let available = refs.rows() - usize::from(same);
        if wanted > MAX_K.min(available) {
            return Err(Error::InvalidOption {
                name: "k",
                value: wanted as f64,
                rule: "retrieval needs the k nearest for k = the largest class's reference \
                       count R (and each recall k): at most 1024 and at most the reference \
                       rows",
            });
        }
        let knn = Knn::new(wanted).distance(self.distance).exclude_self(same);
        knn.validate(queries.0, refs)?;
        Ok((knn, relevant))
    }

    /// The metrics on the GPU: `queries` with their labels against `reference` (rows and
    /// labels), or against themselves when it is `None`.
    pub fn evaluate(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<RetrievalMetrics> {
        let (knn, relevant) = self.knn((queries, labels), reference)?;
        let refs = reference.map_or(queries, |r| r.0);
        let nn = knn.search(gpu, queries, refs)?;
        Ok(self.metrics(&nn, labels, reference, &relevant))
    }

    /// The f64 CPU reference of [`Retrieval::evaluate`].
    pub fn evaluate_cpu(
        &self,
        queries: &Embeddings<'_>,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<RetrievalMetrics> {
        let (knn, relevant) = self.knn((queries, labels), reference)?;
        let refs = reference.map_or(queries, |r| r.0);
        let nn = knn.search_cpu(queries, refs)?;
        Ok(self.metrics(&nn, labels, reference, &relevant))
    }

    fn metrics(
        &self,
        nn: &Neighbours,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
        relevant: &[usize],
    ) -> RetrievalMetrics {
        let ref_labels = reference.map_or(labels, |r| r.1);
        retrieval::metrics(
            &nn.indices,
            nn.k,
            labels,
            ref_labels,
            relevant,
            &self.recall_ks,
        )
    }
}

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

fn rows(x: &Embeddings<'_>, d: Distance) -> Rows {
    Rows::new(x.data(), x.rows(), x.dim(), d)
}

fn same_dim(a: &Embeddings<'_>, b: &Embeddings<'_>) -> Result<()> {
    if a.dim() != b.dim() {
        return Err(Error::ShapeMismatch {
            what: "reference rows (the queries' dimension)",
            expected: a.dim(),
            got: b.dim(),
        });
    }
    Ok(())
}

fn check_labels(x: Labelled<'_, '_>, what: &'static str) -> Result<()> {
    if x.1.len() != x.0.rows() {
        return Err(Error::ShapeMismatch {
            what,
            expected: x.0.rows(),
            got: x.1.len(),
        });
    }
    Ok(())
}

/// Squared distances of rows up to M in magnitude reach 4·D·M²: refuse values beyond the M
/// at which that passes the f32 ceiling.
fn check_limit(d: Distance, sides: &[&Embeddings<'_>]) -> Result<()> {
    for x in sides {
        let dim = x.dim() as f64;
        let m = limit::largest_magnitude(|m| 4.0 * dim * m * m).unwrap_or(0.0);
        limit::check(x, m, || {
            format!("{} distances of rows of dimension {}", d.name(), x.dim())
        })?;
    }
    Ok(())
}

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
mod stats;
mod steps;

pub(crate) use kernels::TABLE;

pub use check::{KnnVerdict, StatsVerdict};
pub use histogram::{Histograms, PairKind, Suggestion};
pub use retrieval::{roc_auc, Retrieval, RetrievalMetrics};
pub use stats::{PairStats, MAX_BINS};

use crate::engine::Gpu;
use crate::error::{Error, Result};
use crate::input::Embeddings;
use crate::limit;
use crate::options::Distance;
use reference::Rows;
use steps::{Pairing, Sweep};

/// The most neighbours one k-NN call returns.
pub const MAX_K: usize = 1024;

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

/// The set a query is measured against: rows and their labels.
pub type Labelled<'a, 'b> = (&'b Embeddings<'a>, &'b [i64]);

fn rows(x: &Embeddings<'_>, d: Distance) -> Rows {
    Rows::new(&x.data(), x.rows(), x.dim(), d)
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

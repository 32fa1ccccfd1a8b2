//! Retrieval metrics from the exact k-NN ([`Retrieval`]), as pytorch-metric-learning's
//! `AccuracyCalculator` defines them, and the ROC AUC of anomaly scores.

use std::collections::HashMap;

use super::{check_labels, Knn, Labelled, Neighbours, MAX_K};
use crate::engine::Gpu;
use crate::error::{Error, Result};
use crate::input::Embeddings;
use crate::options::Distance;

/// Retrieval metrics over the queries (see [`super::Retrieval`] for the definitions).
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievalMetrics {
    /// Share of queries whose nearest reference has their label.
    pub precision_at_1: f64,
    /// Mean over queries of (same-label references among the R nearest) / R.
    pub r_precision: f64,
    /// Mean over queries of (1/R) Σ_{i ≤ R} [n_i same label] · precision@i.
    pub map_at_r: f64,
    /// (k, share of queries with a same-label reference among their k nearest), for each
    /// k asked for.
    pub recall_at_k: Vec<(usize, f64)>,
    /// Queries the means are over: those with at least one same-label reference.
    pub queries: usize,
    /// Queries left out: no reference has their label ("lone" queries in PML).
    pub lone_queries: usize,
}

/// R of each query: how many references share its label (itself not counted when the
/// queries are the references).
pub(crate) fn relevant_counts(
    query_labels: &[i64],
    reference_labels: &[i64],
    same_source: bool,
) -> Vec<usize> {
    let mut count: HashMap<i64, usize> = HashMap::new();
    for &l in reference_labels {
        *count.entry(l).or_default() += 1;
    }
    query_labels
        .iter()
        .map(|l| {
            let c = count.get(l).copied().unwrap_or(0);
            c.saturating_sub(usize::from(same_source))
        })
        .collect()
}

/// The metrics from each query's neighbours (`k` per query, nearest first, as reference
/// row indices), given R per query (`relevant`, at most k).
pub(crate) fn metrics(
    indices: &[u32],
    k: usize,
    query_labels: &[i64],
    reference_labels: &[i64],
    relevant: &[usize],
    recall_ks: &[usize],
) -> RetrievalMetrics {
    let (mut p1, mut rp, mut map) = (0.0, 0.0, 0.0);
    let mut recall = vec![0usize; recall_ks.len()];
    let mut queries = 0usize;
    for (q, (&label, &r)) in query_labels.iter().zip(relevant).enumerate() {
        if r == 0 {
            continue;
        }
        queries += 1;
        let hits: Vec<bool> = indices[q * k..(q + 1) * k]
            .iter()
            .map(|&j| reference_labels[j as usize] == label)
            .collect();
        p1 += f64::from(u8::from(hits[0]));
        let (mut found, mut precision_sum) = (0usize, 0.0);
        for (i, &hit) in hits.iter().take(r).enumerate() {
            if hit {
                found += 1;
                precision_sum += found as f64 / (i + 1) as f64;
            }
        }
        rp += found as f64 / r as f64;
        map += precision_sum / r as f64;
        for (slot, &kk) in recall.iter_mut().zip(recall_ks) {
            *slot += usize::from(hits.iter().take(kk).any(|&h| h));
        }
    }
    let mean = |s: f64| {
        if queries == 0 {
            0.0
        } else {
            s / queries as f64
        }
    };
    RetrievalMetrics {
        precision_at_1: mean(p1),
        r_precision: mean(rp),
        map_at_r: mean(map),
        recall_at_k: recall_ks
            .iter()
            .zip(recall)
            .map(|(&kk, n)| (kk, mean(n as f64)))
            .collect(),
        queries,
        lone_queries: query_labels.len() - queries,
    }
}

/// The area under the ROC curve of `scores` (higher: more anomalous) for the ground truth
/// `flags` (true: anomalous): the probability that an anomalous row scores above a normal
/// one, ties counting one half (the Mann–Whitney statistic over both counts).
pub fn roc_auc(scores: &[f64], flags: &[bool]) -> Result<f64> {
    if scores.len() != flags.len() {
        return Err(Error::ShapeMismatch {
            what: "flags (one per score)",
            expected: scores.len(),
            got: flags.len(),
        });
    }
    if let Some(&bad) = scores.iter().find(|s| !s.is_finite()) {
        return Err(Error::InvalidOption {
            name: "scores",
            value: bad,
            rule: "every score must be finite",
        });
    }
    let positives = flags.iter().filter(|&&f| f).count();
    let negatives = flags.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(Error::InvalidOption {
            name: "flags",
            value: positives as f64,
            rule: "the ROC AUC needs at least one anomalous (true) and one normal (false) row",
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Ranks from 1, tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[i..=j].iter().filter(|&&o| flags[o]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
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
        let relevant = relevant_counts(queries.1, ref_labels, same);
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
        self.run(queries, labels, reference, |knn, q, r| {
            knn.search(gpu, q, r)
        })
    }

    /// The f64 CPU reference of [`Retrieval::evaluate`].
    pub fn evaluate_cpu(
        &self,
        queries: &Embeddings<'_>,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
    ) -> Result<RetrievalMetrics> {
        self.run(queries, labels, reference, |knn, q, r| knn.search_cpu(q, r))
    }

    /// The metrics from the neighbours `search` finds.
    fn run(
        &self,
        queries: &Embeddings<'_>,
        labels: &[i64],
        reference: Option<Labelled<'_, '_>>,
        search: impl FnOnce(&Knn, &Embeddings<'_>, &Embeddings<'_>) -> Result<Neighbours>,
    ) -> Result<RetrievalMetrics> {
        let (knn, relevant) = self.knn((queries, labels), reference)?;
        let refs = reference.map_or(queries, |r| r.0);
        let nn = search(&knn, queries, refs)?;
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
        metrics(
            &nn.indices,
            nn.k,
            labels,
            ref_labels,
            relevant,
            &self.recall_ks,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(
            roc_auc(&[0.1, 0.2, 0.9, 0.8], &[false, false, true, true]).unwrap(),
            1.0
        );
        assert_eq!(
            roc_auc(&[0.9, 0.8, 0.1, 0.2], &[false, false, true, true]).unwrap(),
            0.0
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5);
        // One anomaly above 2 of 3 normals, level with none: 2/3.
        let auc = roc_auc(&[0.1, 0.5, 0.9, 0.6], &[false, false, false, true]).unwrap();
        assert!((auc - 2.0 / 3.0).abs() < 1e-15);
        assert!(roc_auc(&[0.1], &[true]).is_err());
        assert!(roc_auc(&[0.1, 0.2], &[true]).is_err());
    }

    #[test]
    fn metrics_by_hand() {
        // Two queries, references labelled [0, 0, 1, 1, 0]; query 0 (label 0, R = 3)
        // retrieves 0, 2, 1, 4: hits at 1 and 3 of R = 3 → r-precision 2/3, MAP@R
        // (1/1 + 2/3)/3. Query 1 (label 1, R = 2) retrieves 3, 0: hit at 1 → 1/2, MAP@R 1/2.
        let refs = [0, 0, 1, 1, 0];
        let labels = [0, 1];
        let r = relevant_counts(&labels, &refs, false);
        assert_eq!(r, vec![3, 2]);
        let idx = [0, 2, 1, 4, 3, 0, 4, 1];
        let m = metrics(&idx, 4, &labels, &refs, &r, &[1, 2]);
        assert_eq!(m.precision_at_1, 1.0);
        assert!((m.r_precision - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-15);
        assert!((m.map_at_r - ((1.0 + 2.0 / 3.0) / 3.0 + 0.5) / 2.0).abs() < 1e-15);
        assert_eq!(m.recall_at_k, vec![(1, 1.0), (2, 1.0)]);
    }
}

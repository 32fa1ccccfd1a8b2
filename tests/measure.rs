//! The measurements (k-NN, retrieval metrics, anomaly scores, pair-distance statistics) on
//! the GPU against their f64 references, on every engine configuration, at sizes that end
//! part-way through the engine's 128-row blocks and 16-column tiles.

mod common;

use metric_loss::measure::{roc_auc, Knn, PairKind, PairStats, Retrieval, MAX_K};
use metric_loss::{Distance, Embeddings, Error, Gpu, GpuOptions};

const DISTANCES: [Distance; 3] = [
    Distance::Euclidean,
    Distance::SquaredEuclidean,
    Distance::Cosine,
];

/// Integer values in −3..=3: every distance the kernels compute is exact.
fn integers(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = metric_loss::testing::Rng::new(seed);
    (0..n).map(|_| rng.below(7) as f32 - 3.0).collect()
}

#[test]
fn knn_matches_the_reference_on_every_engine() {
    for gpu in &common::engine_gpus() {
        for (q, r, dim, k, seed) in [
            (150, 333, 19, 7, 1),
            (1, 5, 3, 5, 2),
            (129, 140, 130, 64, 3),
        ] {
            let qd = common::normals(seed, q * dim);
            let rd = common::normals(seed + 100, r * dim);
            let qe = Embeddings::named("queries", &qd, q, dim).unwrap();
            let re = Embeddings::named("reference", &rd, r, dim).unwrap();
            for d in DISTANCES {
                let v = Knn::new(k).distance(d).check(gpu, &qe, &re).unwrap();
                assert!(
                    v.pass(),
                    "{:?} {q}×{r}×{dim} k={k} {d:?}: {v:?}",
                    gpu.engine()
                );
            }
            // The queries as their own references, each left out.
            let knn = Knn::new(k.min(r - 1)).exclude_self(true);
            let v = knn.check(gpu, &re, &re).unwrap();
            assert!(v.pass(), "{:?} self {r}×{dim}: {v:?}", gpu.engine());
            let nn = knn.search(gpu, &re, &re).unwrap();
            for i in 0..r {
                assert!(!nn.row(i).0.contains(&(i as u32)), "row {i} found itself");
            }
        }
    }
}

#[test]
fn knn_on_integers_is_exact_with_ties_to_the_lower_index() {
    let Some(gpu) = common::gpu() else { return };
    // Values in −3..=3 in 4 dimensions: many rows tie at each distance.
    let (q, r, dim) = (70, 300, 4);
    let qd = integers(5, q * dim);
    let rd = integers(6, r * dim);
    let qe = Embeddings::new(&qd, q, dim).unwrap();
    let re = Embeddings::new(&rd, r, dim).unwrap();
    for d in [Distance::SquaredEuclidean, Distance::Euclidean] {
        let knn = Knn::new(40).distance(d);
        let g = knn.search(gpu, &qe, &re).unwrap();
        let c = knn.search_cpu(&qe, &re).unwrap();
        assert_eq!(g.indices, c.indices, "{d:?}");
        for (a, b) in g.distances.iter().zip(&c.distances) {
            assert_eq!(*a as f32, *b as f32, "{d:?}");
        }
        // Ties do occur, and go to the lower index.
        let ties = (0..q)
            .flat_map(|i| {
                let (idx, dist) = g.row(i);
                (1..40).map(move |t| (dist[t] == dist[t - 1], idx[t] > idx[t - 1]))
            })
            .filter(|&(tie, _)| tie)
            .collect::<Vec<_>>();
        assert!(ties.len() > 100, "{} ties", ties.len());
        assert!(ties.iter().all(|&(_, lower_first)| lower_first));
    }
}

#[test]
fn knn_runs_on_a_device_capped_below_queries_times_references() {
    let Some(base) = common::gpu() else { return };
    // Bindings of 512 KiB: the 1500 × 1100 distances (6.6 MB as f32) could not be one, and
    // never exist; the k = 1024 lists (8 KiB a row) go in windows of 64 rows, and their
    // dispatches in spans of 6 references (lavapipe's loop budget: this failed without).
    let binding = 1u64 << 19;
    let mut limits = base.limits().clone();
    limits.max_storage_buffer_binding_size = binding;
    let gpu = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..GpuOptions::default()
    })
    .expect("a device with reduced limits");
    let (q, r, dim) = (1500, 1100, 16);
    let qd = common::normals(7, q * dim);
    let rd = common::normals(8, r * dim);
    let qe = Embeddings::new(&qd, q, dim).unwrap();
    let re = Embeddings::new(&rd, r, dim).unwrap();
    assert!((q * r * 4) as u64 > 12 * binding);
    for k in [10, MAX_K] {
        let v = Knn::new(k).check(&gpu, &qe, &re).unwrap();
        assert!(v.pass(), "k={k}: {v:?}");
    }
}

#[test]
fn retrieval_metrics_match_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    let (n, dim) = (500, 12);
    let x = common::normals(9, n * dim);
    let labels = common::labels(9, n, 12);
    let e = Embeddings::new(&x, n, dim).unwrap();
    let r = Retrieval::default();
    let g = r.evaluate(gpu, &e, &labels, None).unwrap();
    let c = r.evaluate_cpu(&e, &labels, None).unwrap();
    assert_eq!(g, c);
    // Random embeddings: the metrics sit near chance (1/12), and are not all equal.
    assert!(g.precision_at_1 < 0.3 && g.map_at_r > 0.0, "{g:?}");
    // Against a separate labelled reference set, with a class the references lack.
    let (m, rl) = (300, common::labels(10, 300, 11));
    let rd = common::normals(10, m * dim);
    let re = Embeddings::new(&rd, m, dim).unwrap();
    let mut ql = labels.clone();
    ql[0] = 99;
    let g = r.evaluate(gpu, &e, &ql, Some((&re, &rl))).unwrap();
    let c = r.evaluate_cpu(&e, &ql, Some((&re, &rl))).unwrap();
    assert_eq!(g, c);
    assert!(g.lone_queries >= 1);
}

#[test]
fn separated_classes_retrieve_perfectly_and_score_anomalies() {
    let Some(gpu) = common::gpu() else { return };
    // Three tight clusters far apart: every metric is 1.
    let (n, dim) = (90, 6);
    let mut x = common::normals(11, n * dim);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
    for (i, row) in x.chunks_exact_mut(dim).enumerate() {
        for v in row.iter_mut() {
            *v *= 0.01;
        }
        row[i % 3] += 10.0;
    }
    let e = Embeddings::new(&x, n, dim).unwrap();
    let m = Retrieval::default()
        .evaluate(gpu, &e, &labels, None)
        .unwrap();
    assert_eq!(
        (m.precision_at_1, m.r_precision, m.map_at_r),
        (1.0, 1.0, 1.0)
    );
    // Clusters 0 and 1 are normal; scoring every row against them flags cluster 2.
    let normal: Vec<f32> = x
        .chunks_exact(dim)
        .zip(&labels)
        .filter(|(_, &l)| l != 2)
        .flat_map(|(r, _)| r.iter().copied())
        .collect();
    let ne = Embeddings::new(&normal, normal.len() / dim, dim).unwrap();
    let scores = Knn::new(5).search(gpu, &e, &ne).unwrap().kth_distances();
    let flags: Vec<bool> = labels.iter().map(|&l| l == 2).collect();
    assert_eq!(roc_auc(&scores, &flags).unwrap(), 1.0);
}

#[test]
fn histogram_counts_are_exact_on_integers() {
    for gpu in &common::engine_gpus() {
        for (n, m, dim, seed) in [(200, None, 5, 1), (130, Some(77), 3, 2), (1, Some(1), 2, 3)] {
            let x = integers(seed, n * dim);
            let l = common::labels(seed, n, 4);
            let e = Embeddings::new(&x, n, dim).unwrap();
            let rd = m.map(|m| (integers(seed + 9, m * dim), common::labels(seed + 9, m, 4)));
            let re = rd
                .as_ref()
                .map(|(d, _)| Embeddings::new(d, d.len() / dim, dim).unwrap());
            let reference = re
                .as_ref()
                .zip(rd.as_ref())
                .map(|(e, (_, l))| (e, l.as_slice()));
            for d in [Distance::SquaredEuclidean, Distance::Euclidean] {
                for bins in [1, 7, 100] {
                    let s = PairStats {
                        distance: d,
                        bins,
                        hi: None,
                    };
                    let g = s.histograms(gpu, (&e, &l), reference).unwrap();
                    let c = s.histograms_cpu((&e, &l), reference).unwrap();
                    assert_eq!(g, c, "{:?} {n} {m:?} {d:?} {bins}", gpu.engine());
                    let pairs = m.map_or(n * (n - 1) / 2, |m| n * m) as u64;
                    assert_eq!(
                        g.pairs(PairKind::Similar) + g.pairs(PairKind::Dissimilar),
                        pairs
                    );
                }
            }
        }
    }
}

#[test]
fn histogram_copies_shared_by_workgroups_stay_exact() {
    let Some(gpu) = common::gpu() else { return };
    // 8500 rows: 67 workgroups of 128 rows add into 64 copies of the histograms (the first
    // three copies take two workgroups each).
    let (n, dim) = (8500, 2);
    let x = integers(13, n * dim);
    let l = common::labels(13, n, 4);
    let e = Embeddings::new(&x, n, dim).unwrap();
    let s = PairStats {
        distance: Distance::SquaredEuclidean,
        bins: 9,
        hi: None,
    };
    let g = s.histograms(gpu, (&e, &l), None).unwrap();
    assert_eq!(g, s.histograms_cpu((&e, &l), None).unwrap());
    assert_eq!(
        g.pairs(PairKind::Similar) + g.pairs(PairKind::Dissimilar),
        (n * (n - 1) / 2) as u64
    );
}

#[test]
fn histogram_quantiles_within_one_bin() {
    let Some(gpu) = common::gpu() else { return };
    let (n, dim) = (257, 33);
    let x = common::normals(12, n * dim);
    let l = common::labels(12, n, 5);
    let e = Embeddings::new(&x, n, dim).unwrap();
    for d in DISTANCES {
        for bins in [10, 100, 4096] {
            let s = PairStats {
                distance: d,
                bins,
                hi: None,
            };
            let v = s.check(gpu, (&e, &l), None).unwrap();
            assert!(v.pass(), "{d:?} {bins}: {v:?}");
        }
    }
    // An explicit upper edge below the largest distance: the rest is counted above it.
    let s = PairStats {
        hi: Some(1.0),
        ..PairStats::default()
    };
    let h = s.histograms(gpu, (&e, &l), None).unwrap();
    assert!(h.dissimilar_above > 0);
    assert_eq!(
        h.pairs(PairKind::Similar) + h.pairs(PairKind::Dissimilar),
        257 * 256 / 2
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = [0.0f32; 12];
    let e = Embeddings::new(&x, 4, 3).unwrap();
    let narrow = Embeddings::new(&x, 6, 2).unwrap();
    let k = |e: Error| matches!(e, Error::InvalidOption { name: "k", .. });
    assert!(k(Knn::new(0).validate(&e, &e).unwrap_err()));
    assert!(k(Knn::new(5).validate(&e, &e).unwrap_err()));
    assert!(k(Knn::new(4)
        .exclude_self(true)
        .validate(&e, &e)
        .unwrap_err()));
    assert!(k(Knn::new(MAX_K + 1).validate(&e, &e).unwrap_err()));
    assert!(matches!(
        Knn::new(1).validate(&e, &narrow).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        Embeddings::named("reference", &[], 0, 3).unwrap_err(),
        Error::EmptyInput { .. }
    ));
    let l = [0i64, 1, 0, 1];
    let bins = |b| PairStats {
        bins: b,
        ..PairStats::default()
    };
    assert!(matches!(
        bins(0).validate((&e, &l), None).unwrap_err(),
        Error::InvalidOption { name: "bins", .. }
    ));
    assert!(matches!(
        bins(10).validate((&e, &l[..3]), None).unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    assert!(matches!(
        Retrieval::default()
            .evaluate_cpu(&e, &l[..2], None)
            .unwrap_err(),
        Error::ShapeMismatch { .. }
    ));
    assert!(roc_auc(&[1.0, 2.0], &[true, true]).is_err());
}

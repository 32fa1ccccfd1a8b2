//! Device limits: batch mode needs no B×B buffer; inputs beyond one binding or one dispatch
//! are split into windows (and agree bitwise with the unsplit run); what cannot fit is an
//! error.

mod common;

use metric_loss::testing as check;
use metric_loss::{
    Contrastive, Distance, Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Reduction, Softmax,
};

fn gpu_with(limits: impl FnOnce(&mut wgpu::Limits)) -> Option<Gpu> {
    let base = common::gpu()?.limits().clone();
    let mut l = base;
    limits(&mut l);
    Some(
        Gpu::with_options(GpuOptions {
            limits: Some(l),
            ..Default::default()
        })
        .expect("a device with reduced limits"),
    )
}

/// 64 KiB bindings and 16 workgroups per dimension: every size below needs several windows.
fn small_gpu() -> Option<Gpu> {
    gpu_with(|l| {
        l.max_storage_buffer_binding_size = 64 * 1024;
        l.max_compute_workgroups_per_dimension = 16;
    })
}

#[test]
fn batch_mode_fits_in_64_bytes_per_value() {
    let (b, d) = (1024usize, 4usize);
    // 64·B·D bytes = 256 KiB: X is 16 KiB; a B×B f32 matrix would be 4 MiB.
    let cap = (64 * b * d) as u64;
    let Some(gpu) = gpu_with(|l| {
        l.max_buffer_size = cap;
        l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.min(cap);
    }) else {
        return;
    };
    assert_eq!(gpu.limits().max_buffer_size, cap);
    let data = common::normals(1, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&common::labels(1, b, 128));
    let mut cfg = Contrastive::default().margin(1.5).unwrap();
    let dists = check::batch_distances(&cfg, &x);
    check::clear_margins(&mut cfg, &dists, d, 0.0, 1.5);
    common::cross_batch(&gpu, "B=1024 under max_buffer_size 64·B·D", &cfg, &x, &l);
}

#[test]
fn queries_against_references_never_hold_a_query_by_reference_matrix() {
    // 256 queries against 4096 references at D = 4: a query × reference f32 matrix would be
    // 4 MiB; every buffer is capped at 1 MiB (the rows need 64 KiB).
    let (n, m, d) = (256usize, 4096usize, 4usize);
    let cap = 1 << 20;
    let Some(gpu) = gpu_with(|l| {
        l.max_buffer_size = cap;
        l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.min(cap);
    }) else {
        return;
    };
    assert!(((n * m * 4) as u64) > gpu.limits().max_buffer_size);
    let (dq, dr) = (common::normals(7, n * d), common::normals(8, m * d));
    let q = Embeddings::named("q", &dq, n, d).unwrap();
    let r = Embeddings::named("r", &dr, m, d).unwrap();
    let labels = Labels::new(&common::labels(9, n + m, 64));
    let set = metric_loss::ReferenceSet::new(&r, metric_loss::ReferenceGrad::Returned);
    common::assert_report(
        &Softmax::supcon()
            .against_check(&gpu, &q, &set, &labels)
            .unwrap(),
    );
    // Margins clear of every pair's distance: no pair near a kink, where the two
    // precisions may classify it differently.
    let mut cfg = Contrastive::default();
    let dists = check::against_distances(&cfg, &q, &set);
    check::clear_margins(&mut cfg, &dists, d, 0.0, 2.0);
    common::assert_report(&cfg.against_check(&gpu, &q, &set, &labels).unwrap());
    let queue = Softmax::infonce(false);
    common::assert_report(&queue.pairs_check(&gpu, &q, &r).unwrap());
    // Mined triplets hold a chunk's 64 anchors' distances to every reference row (1 MiB).
    let t = metric_loss::Triplet::default().mining(metric_loss::Mining::Hard);
    common::cross_triplet_against(&gpu, &t, (n, m, d, 64), 10);
}

#[test]
fn batch_split_into_windows_matches_reference_and_unsplit_run() {
    let (Some(full), Some(small)) = (common::gpu(), small_gpu()) else {
        return;
    };
    // D = 37 pads to 40 values (160 bytes a row): 64 KiB holds 409 rows, 16 workgroups of
    // 64 rows hold 1024, so windows are 384 rows and B = 900 needs 3 of them (9 window pairs).
    let (b, d) = (900usize, 37usize);
    let data = common::normals(2, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&common::labels(2, b, 40));
    for base in [
        Contrastive::default(),
        Contrastive::default()
            .distance(Distance::Cosine)
            .normalize(true)
            .reduction(Reduction::MeanNonzero),
        Contrastive::default()
            .distance(Distance::SquaredEuclidean)
            .reduction(Reduction::Sum),
    ] {
        let mut cfg = base;
        let dists = check::batch_distances(&cfg, &x);
        let m = check::median(&dists);
        check::clear_margins(&mut cfg, &dists, d, 0.5 * m, 1.1 * m);
        common::cross_batch(&small, "windowed batch", &cfg, &x, &l);
        let a = cfg.batch(&small, &x, &l, Grads::Compute).unwrap();
        let again = cfg.batch(&small, &x, &l, Grads::Compute).unwrap();
        let whole = cfg.batch(full, &x, &l, Grads::Compute).unwrap();
        assert!(
            common::bits(&a) == common::bits(&again),
            "{cfg:?}: windowed rerun differs"
        );
        assert!(
            common::bits(&a) == common::bits(&whole),
            "{cfg:?}: windowed and unsplit runs differ"
        );
    }
}

#[test]
fn infonce_keys_split_into_windows_match_reference() {
    let Some(small) = small_gpu() else { return };
    // Windows of 384 rows (see above): 300 anchors in one, 900 keys in three.
    let (n, m, d) = (300usize, 900usize, 37usize);
    let (da, db) = (common::normals(4, n * d), common::normals(5, m * d));
    let a = Embeddings::named("a", &da, n, d).unwrap();
    let b = Embeddings::named("b", &db, m, d).unwrap();
    let labels = Labels::new(&common::labels(6, n + m, 50));
    for cfg in [Softmax::infonce(false), Softmax::infonce(true)] {
        common::assert_report(&cfg.pairs_labelled_check(&small, &a, &b, &labels).unwrap());
        // A row's log-sum-exp merges the column windows' (so the softmax losses are checked
        // against the reference, not bitwise against an unsplit run); reruns are bitwise.
        let run = || {
            cfg.pairs_labelled(&small, &a, &b, &labels, Grads::Compute)
                .unwrap()
        };
        assert!(
            common::bits(&run()) == common::bits(&run()),
            "{cfg:?}: windowed rerun differs"
        );
    }
}

#[test]
fn queries_against_references_split_into_windows_match_reference() {
    // Windows of 384 rows (see above): 300 queries in one, 900 reference rows in three, and
    // the other way round.
    let Some(small) = small_gpu() else { return };
    let d = 37;
    for (n, m) in [(300usize, 900usize), (900, 300)] {
        let (dq, dr) = (common::normals(14, n * d), common::normals(15, m * d));
        let q = Embeddings::named("q", &dq, n, d).unwrap();
        let r = Embeddings::named("r", &dr, m, d).unwrap();
        let labels = Labels::new(&common::labels(16, n + m, 40));
        let set = metric_loss::ReferenceSet::new(&r, metric_loss::ReferenceGrad::Returned);
        common::assert_report(
            &Softmax::supcon()
                .against_check(&small, &q, &set, &labels)
                .unwrap(),
        );
        let mut cfg = Contrastive::default();
        let dists = check::against_distances(&cfg, &q, &set);
        check::clear_margins(&mut cfg, &dists, d, 0.0, 8.0);
        common::assert_report(&cfg.against_check(&small, &q, &set, &labels).unwrap());
    }
    // Mined triplets bind a chunk's 64 rows of distances whole (64 × M × 4 bytes): 256 KiB
    // bindings and rows of D = 100 (400 bytes) give windows of 640 rows, two for 900.
    let Some(mid) = gpu_with(|l| l.max_storage_buffer_binding_size = 256 * 1024) else {
        return;
    };
    for shape in [(300, 900, 100, 40), (900, 300, 100, 40)] {
        // Hard mining only: among this many candidates, semihard's choices and all triplets'
        // hinge points always come closer than f32 rounding somewhere (no clear case).
        let t = metric_loss::Triplet::default().mining(metric_loss::Mining::Hard);
        common::cross_triplet_against(&mid, &t, shape, 17);
    }
}

#[test]
fn pairs_split_into_windows_match_reference() {
    let Some(small) = small_gpu() else { return };
    let (n, d) = (2000usize, 5usize);
    let a = common::normals(3, n * d);
    let b = common::normals(4, n * d);
    let a = Embeddings::named("a", &a, n, d).unwrap();
    let b = Embeddings::named("b", &b, n, d).unwrap();
    let similar: Vec<bool> = common::labels(5, n, 2).iter().map(|&v| v == 1).collect();
    for base in [
        Contrastive::default(),
        Contrastive::default()
            .normalize(true)
            .reduction(Reduction::MeanNonzero),
    ] {
        let mut cfg = base;
        let dists = check::pair_distances(&cfg, &a, &b);
        let m = check::median(&dists);
        check::clear_margins(&mut cfg, &dists, d, 0.5 * m, 1.1 * m);
        common::cross_pairs(&small, "windowed pairs", &cfg, &a, &b, &similar);
        let x = cfg.pairs(&small, &a, &b, &similar, Grads::Compute).unwrap();
        let y = cfg.pairs(&small, &a, &b, &similar, Grads::Compute).unwrap();
        assert!(
            common::bits(&x) == common::bits(&y),
            "windowed pairs rerun differs"
        );
    }
}

#[test]
fn rows_wider_than_a_binding_are_an_error() {
    let Some(gpu) = gpu_with(|l| l.max_storage_buffer_binding_size = 4096) else {
        return;
    };
    // 64 rows of 64 values = 16 KiB: not even one window fits a 4 KiB binding.
    let data = vec![0.5f32; 100 * 64];
    let x = Embeddings::named("x", &data, 100, 64).unwrap();
    let err = Contrastive::default()
        .batch(&gpu, &x, &Labels::new(&[0; 100]), Grads::Compute)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                needed: 16384,
                limit: 4096,
                ..
            }
        ),
        "expected LimitExceeded, got {err}"
    );
    // The row width is the problem, not the batch: the advice says so.
    let text = err.to_string();
    assert!(
        text.contains("dimension 64") && text.contains("use a smaller dimension"),
        "{text}"
    );
}

#[test]
fn embeddings_beyond_max_buffer_size_are_an_error() {
    let Some(gpu) = gpu_with(|l| {
        l.max_buffer_size = 64 * 1024;
        l.max_storage_buffer_binding_size = 64 * 1024;
    }) else {
        return;
    };
    // 1000 rows × 64 values × 4 bytes = 256 KiB > 64 KiB.
    let data = vec![0.5f32; 1000 * 64];
    let x = Embeddings::named("x", &data, 1000, 64).unwrap();
    let err = Contrastive::default()
        .batch(&gpu, &x, &Labels::new(&[0; 1000]), Grads::Compute)
        .unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { .. }),
        "expected LimitExceeded, got {err}"
    );
}

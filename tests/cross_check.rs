//! GPU against the CPU reference: sizes straddling the tile sizes, every option, label
//! patterns, duplicated and zero rows.

mod common;

use common::{cross_batch, cross_pairs, gpu, labels, normals};
use metric_loss::testing::{self as check, clear_margins, median};
use metric_loss::{Contrastive, Distance, Embeddings, Hinge, Labels, Reduction};

// The sizes, plus the 32-row tile's neighbours.
const SIZES: [usize; 13] = [1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 257];
const DIMS: [usize; 6] = [1, 3, 4, 5, 64, 129];

/// The 36 option combinations, so that a sweep over sizes can rotate through them.
fn configs() -> Vec<Contrastive> {
    check::option_grid()
}

/// Margins near typical distances but clear of every kink.
fn place_margins(cfg: &mut Contrastive, distances: &[f64], dim: usize) {
    let m = median(distances).max(0.1);
    clear_margins(cfg, distances, dim, 0.5 * m, 1.2 * m);
}

#[test]
fn batch_sizes_and_dims_rotating_options() {
    let Some(gpu) = gpu() else { return };
    let configs = configs();
    let mut k = 0;
    for (bi, &b) in SIZES.iter().enumerate() {
        // Prune the product: every size with three dims, every dim with several sizes.
        for &d in [DIMS[bi % 6], DIMS[(bi + 2) % 6], DIMS[(bi + 4) % 6]].iter() {
            if b * b * d > 257 * 257 * 64 {
                continue;
            }
            let data = normals(k as u64, b * d);
            let x = Embeddings::named("x", &data, b, d).unwrap();
            let l = Labels::new(&labels(k as u64, b, (b as u64 / 3).max(2)));
            let mut cfg = configs[k % configs.len()];
            let dists = check::batch_distances(&cfg, &x);
            place_margins(&mut cfg, &dists, d);
            cross_batch(gpu, "sweep", &cfg, &x, &l);
            k += 1;
        }
    }
}

#[test]
fn pair_sizes_and_dims_rotating_options() {
    let Some(gpu) = gpu() else { return };
    let configs = configs();
    let mut k = 0;
    for &n in SIZES.iter().chain(&[1000]) {
        for &d in &DIMS {
            let a = normals(2 * k as u64, n * d);
            let b = normals(2 * k as u64 + 1, n * d);
            let a = Embeddings::named("a", &a, n, d).unwrap();
            let b = Embeddings::named("b", &b, n, d).unwrap();
            let similar: Vec<bool> = labels(k as u64, n, 2).iter().map(|&v| v == 1).collect();
            let mut cfg = configs[k % configs.len()];
            let dists = check::pair_distances(&cfg, &a, &b);
            place_margins(&mut cfg, &dists, d);
            cross_pairs(gpu, "pairs sweep", &cfg, &a, &b, &similar);
            k += 1;
        }
    }
}

#[test]
fn every_option_in_both_modes() {
    let Some(gpu) = gpu() else { return };
    for (rows, dim, seed) in [(17, 5, 1), (65, 3, 2)] {
        let reports = check::run_grid(gpu, &check::Grid::new(rows, dim, seed)).unwrap();
        assert_eq!(reports.len(), 72);
        for r in &reports {
            common::assert_report(r);
        }
    }
}

#[test]
fn label_patterns() {
    let Some(gpu) = gpu() else { return };
    let (b, d) = (33, 4);
    let data = normals(7, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let equal = vec![5i64; b];
    let distinct: Vec<i64> = (0..b as i64).collect();
    let random = labels(3, b, 4);
    for (name, l) in [
        ("all equal", equal),
        ("all distinct", distinct),
        ("random", random),
    ] {
        let l = Labels::new(&l);
        for mut cfg in configs() {
            let dists = check::batch_distances(&cfg, &x);
            place_margins(&mut cfg, &dists, d);
            cross_batch(gpu, name, &cfg, &x, &l);
        }
    }
}

#[test]
fn all_equal_labels_have_no_dissimilar_pairs_and_distinct_no_similar() {
    let Some(gpu) = gpu() else { return };
    let data = normals(11, 20 * 3);
    let x = Embeddings::named("x", &data, 20, 3).unwrap();
    let cfg = Contrastive::default();
    let eq = cfg
        .batch(gpu, &x, &Labels::new(&[1; 20]), metric_loss::Grads::Compute)
        .unwrap();
    assert_eq!(
        (eq.counts.similar_pairs, eq.counts.dissimilar_pairs),
        (190, 0)
    );
    let ids: Vec<i64> = (0..20).collect();
    let ne = cfg
        .batch(gpu, &x, &Labels::new(&ids), metric_loss::Grads::Compute)
        .unwrap();
    assert_eq!(
        (ne.counts.similar_pairs, ne.counts.dissimilar_pairs),
        (0, 190)
    );
    assert!(eq.grads[0]
        .iter()
        .chain(&ne.grads[0])
        .all(|v| v.is_finite()));
}

#[test]
fn duplicated_and_zero_rows() {
    let Some(gpu) = gpu() else { return };
    let (b, d) = (24, 5);
    let mut data = normals(21, b * d);
    // Rows 1..4 copy row 0 (d = 0 in every distance), rows 10 and 11 are zero (norm below
    // the 1e-12 floor), row 12 copies row 10.
    for r in 1..4 {
        let (head, tail) = data.split_at_mut(r * d);
        tail[..d].copy_from_slice(&head[..d]);
    }
    for v in &mut data[10 * d..13 * d] {
        *v = 0.0;
    }
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&labels(5, b, 3));
    for cfg in configs() {
        // pos_margin 0 keeps the kink at d = 0 where the duplicates sit: values are compared
        // wherever they are continuous there (squared hinge, mean or sum), and the discrete
        // counts only for the difference distances, which give exactly d = 0 in f32 too.
        let continuous = cfg.hinge == Hinge::Squared && cfg.reduction != Reduction::MeanNonzero;
        let exact_zero = cfg.distance != Distance::Cosine;
        if !(continuous || exact_zero) {
            continue;
        }
        let mut c = cfg;
        let dists = check::batch_distances(&c, &x);
        let m = median(&dists);
        c.margin = check::clear_margin(&dists, 1.2 * m, check::kink_band(d, m)) as f32;
        if exact_zero {
            cross_batch(gpu, "duplicates", &c, &x, &l);
        } else {
            let mut report = c.batch_check(gpu, &x, &l).unwrap();
            report.counts_equal = true; // f32 may see 1 − cos = ±1e-7 where f64 sees 0
            common::assert_report(&report);
        }
        let g = c.batch(gpu, &x, &l, metric_loss::Grads::Compute).unwrap();
        assert!(g.loss.is_finite() && g.grads[0].iter().all(|v| v.is_finite()));
    }
}

#[test]
fn one_row_batch_has_no_pairs() {
    let Some(gpu) = gpu() else { return };
    let x = Embeddings::named("x", &[1.0, 2.0], 1, 2).unwrap();
    for cfg in configs() {
        let out = cfg
            .batch(gpu, &x, &Labels::new(&[0]), metric_loss::Grads::Compute)
            .unwrap();
        assert_eq!(out.loss, 0.0);
        assert_eq!(out.counts.pairs(), 0);
        assert_eq!(out.grads[0], vec![0.0, 0.0]);
    }
}

#[test]
fn loss_only_matches_loss_with_grads() {
    let Some(gpu) = gpu() else { return };
    let data = normals(2, 40 * 6);
    let x = Embeddings::named("x", &data, 40, 6).unwrap();
    let l = Labels::new(&labels(2, 40, 5));
    let cfg = Contrastive::default()
        .distance(Distance::Cosine)
        .reduction(Reduction::MeanNonzero);
    let a = cfg.batch(gpu, &x, &l, metric_loss::Grads::Skip).unwrap();
    let b = cfg.batch(gpu, &x, &l, metric_loss::Grads::Compute).unwrap();
    assert!(a.grads.is_empty());
    assert_eq!((a.loss, a.counts), (b.loss, b.counts));
}

#[test]
fn rows_wider_than_the_resident_chunks() {
    // D > 256 takes the kernel path that adds into the gradient after every column tile.
    let Some(gpu) = gpu() else { return };
    let (b, d) = (45, 300);
    let data = normals(31, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&labels(31, b, 5));
    for base in [
        Contrastive::default(),
        Contrastive::default().distance(Distance::Cosine),
    ] {
        let mut cfg = base;
        let dists = check::batch_distances(&cfg, &x);
        place_margins(&mut cfg, &dists, d);
        cross_batch(gpu, "wide rows", &cfg, &x, &l);
    }
}

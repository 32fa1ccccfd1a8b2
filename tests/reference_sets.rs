//! Queries against a reference set (NT-Xent, SupCon, contrastive): on the GPU against the f64
//! reference
//! under the tolerance rule, with references larger and smaller than the queries, crossing
//! the engine's blocks and tiles, with no positive and with every reference positive; the
//! batch as its own reference equals the in-batch loss; a detached reference gets no
//! gradient; finite differences of the reference for queries and references.

mod common;

use metric_loss::testing::contrastive_reference::against_f64;
use metric_loss::testing::softmax_reference::{against_with_mass, Queries};
use metric_loss::{
    Contrastive, Distance, Embeddings, Error, Grads, Labels, Reduction, ReferenceGrad,
    ReferenceSet, Softmax, SoftmaxLoss,
};

fn rows<'a>(name: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Embeddings<'a> {
    Embeddings::named(name, data, rows, dim).unwrap()
}

fn set<'r, 'a>(rows: &'r Embeddings<'a>, grad: ReferenceGrad) -> ReferenceSet<'r, 'a> {
    ReferenceSet {
        rows,
        is_queries: false,
        grad,
    }
}

#[test]
fn queries_against_references_match_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    // (queries, references, dim, classes): references fewer and more than the queries,
    // around the 128-row block and the 16-column tiles.
    for (seed, &(n, m, dim, classes)) in [
        (1, 1, 3, 1),
        (5, 40, 8, 3),
        (129, 17, 12, 4),
        (64, 300, 16, 10),
        (130, 130, 33, 20),
    ]
    .iter()
    .enumerate()
    {
        let seed = seed as u64;
        let (dq, dr) = (
            common::normals(seed, n * dim),
            common::normals(seed + 9, m * dim),
        );
        let (q, r) = (rows("q", &dq, n, dim), rows("r", &dr, m, dim));
        let labels = Labels::new(&common::labels(seed, n + m, classes));
        for cfg in [Softmax::ntxent(), Softmax::supcon()] {
            for grad in [ReferenceGrad::Returned, ReferenceGrad::Detached] {
                let mut v = cfg.against_check(gpu, &q, &set(&r, grad), &labels).unwrap();
                v.name = format!("N={n} M={m} D={dim} {grad:?} {}", v.name);
                common::assert_report(&v);
            }
        }
    }
}

#[test]
fn the_batch_as_its_own_reference_is_the_in_batch_loss() {
    let Some(gpu) = common::gpu() else { return };
    let (b, dim) = (150, 24);
    let data = common::normals(3, b * dim);
    let x = rows("x", &data, b, dim);
    let ids = common::labels(3, b, 15);
    let l = Labels::new(&ids);
    let both = Labels::new(&[ids.clone(), ids].concat());
    let me = ReferenceSet {
        rows: &x,
        is_queries: true,
        grad: ReferenceGrad::Returned,
    };
    for cfg in [Softmax::ntxent(), Softmax::supcon()] {
        let batch = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
        let against = cfg.against(gpu, &x, &me, &both, Grads::Compute).unwrap();
        assert_eq!(batch.counts, against.counts);
        let scale = batch.loss.abs().max(1.0);
        assert!((batch.loss - against.loss).abs() < 1e-5 * scale, "{cfg:?}");
        let (gb, (gq, gr)) = (&batch.grads[0], (&against.grads[0], &against.grads[1]));
        let largest = gb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for k in 0..gb.len() {
            let sum = gq.values()[k] + gr.values()[k];
            assert!(
                (sum - gb.values()[k]).abs() <= 1e-5 * largest,
                "{cfg:?} [{k}]: {sum} vs {}",
                gb.values()[k]
            );
        }
        let (tb, ta) = (
            batch.grad_temperature.unwrap(),
            against.grad_temperature.unwrap(),
        );
        assert!(
            (tb - ta).abs() < 1e-4 * tb.abs().max(1.0),
            "{cfg:?} dL/dtau"
        );
        // The same on the CPU reference, to its f64 precision.
        let rb = cfg.batch_cpu(&x, &l, Grads::Compute).unwrap();
        let ra = cfg.against_cpu(&x, &me, &both, Grads::Compute).unwrap();
        assert!((rb.loss - ra.loss).abs() < 1e-9 * rb.loss.abs().max(1.0));
    }
}

#[test]
fn no_positive_and_all_positive() {
    let (n, m, dim) = (6, 9, 4);
    let (dq, dr) = (common::normals(7, n * dim), common::normals(8, m * dim));
    let (q, r) = (rows("q", &dq, n, dim), rows("r", &dr, m, dim));
    // No reference shares a query's label: loss 0, no terms, zero gradients.
    let apart = Labels::new(&(0..(n + m) as i64).collect::<Vec<_>>());
    // Every reference shares it: NT-Xent has no negatives (each term is 0), SupCon is defined.
    let one = Labels::new(&vec![1; n + m]);
    let r = set(&r, ReferenceGrad::Returned);
    for cfg in [Softmax::ntxent(), Softmax::supcon()] {
        let mut outs = vec![(
            cfg.against_cpu(&q, &r, &apart, Grads::Compute).unwrap(),
            cfg.against_cpu(&q, &r, &one, Grads::Compute).unwrap(),
        )];
        if let Some(gpu) = common::gpu() {
            outs.push((
                cfg.against(gpu, &q, &r, &apart, Grads::Compute).unwrap(),
                cfg.against(gpu, &q, &r, &one, Grads::Compute).unwrap(),
            ));
        }
        for (none, all) in outs {
            assert_eq!(none.loss, 0.0);
            assert_eq!(none.counts.terms, 0);
            assert!(none.grads.iter().flat_map(|g| g.iter()).all(|&v| v == 0.0));
            match cfg.loss {
                SoftmaxLoss::NtXent => {
                    assert_eq!(all.counts.terms, (n * m) as u64);
                    assert!(all.loss.abs() < 1e-6, "{}", all.loss);
                }
                _ => {
                    assert_eq!(all.counts.terms, n as u64);
                    assert!(all.loss.is_finite() && all.loss > 0.0);
                }
            }
            assert!(all
                .grads
                .iter()
                .flat_map(|g| g.iter())
                .all(|v| v.is_finite()));
        }
    }
}

#[test]
fn a_detached_reference_gets_no_gradient() {
    let (n, m, dim) = (20, 50, 8);
    let (dq, dr) = (common::normals(1, n * dim), common::normals(2, m * dim));
    let (q, r) = (rows("q", &dq, n, dim), rows("r", &dr, m, dim));
    let labels = Labels::new(&common::labels(4, n + m, 5));
    let cfg = Softmax::supcon();
    let cpu = |g| {
        cfg.against_cpu(&q, &set(&r, g), &labels, Grads::Compute)
            .unwrap()
    };
    let (returned, detached) = (cpu(ReferenceGrad::Returned), cpu(ReferenceGrad::Detached));
    assert_eq!((returned.grads.len(), detached.grads.len()), (2, 1));
    assert_eq!(returned.grads[0].values(), detached.grads[0].values());
    if let Some(gpu) = common::gpu() {
        let d = cfg
            .against(
                gpu,
                &q,
                &set(&r, ReferenceGrad::Detached),
                &labels,
                Grads::Compute,
            )
            .unwrap();
        assert_eq!(d.grads.len(), 1);
        assert_eq!(d.grads[0].rows(), n);
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let (n, m, dim) = (4, 6, 3);
    let q: Vec<f64> = common::normals(5, n * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let r: Vec<f64> = common::normals(6, m * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let (cq, cr) = ([0u32, 1, 2, 1], [0u32, 1, 1, 2, 0, 3]);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        let qs = Queries {
            loss,
            tau: 0.4,
            classes: (&cq, &cr),
            is_queries: false,
        };
        let (out, _) = against_with_mass(&qs, &q, &r, dim, Grads::Compute);
        let f = |q: &[f64], r: &[f64]| against_with_mass(&qs, q, r, dim, Grads::Skip).0.loss;
        let h = 1e-6;
        for (side, grad) in out.grads.iter().enumerate() {
            for k in 0..grad.len() {
                let (mut p, mut s) = ([q.clone(), r.clone()], [q.clone(), r.clone()]);
                p[side][k] += h;
                s[side][k] -= h;
                let fd = (f(&p[0], &p[1]) - f(&s[0], &s[1])) / (2.0 * h);
                assert!(
                    (fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{loss:?} side {side} [{k}]: {fd} vs {}",
                    grad[k]
                );
            }
        }
    }
}

#[test]
fn input_errors() {
    let (dq, dr) = (common::normals(1, 4 * 3), common::normals(2, 5 * 3));
    let (q, r) = (rows("q", &dq, 4, 3), rows("r", &dr, 5, 3));
    let labels = Labels::new(&[0, 1, 0, 1, 0, 1, 2, 0, 1]);
    let cfg = Softmax::ntxent();
    let refs = set(&r, ReferenceGrad::Returned);
    let short = Labels::new(&[0, 1, 0, 1]);
    assert!(matches!(
        cfg.against_cpu(&q, &refs, &short, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    // Reference rows said to be the queries must be them, with their labels.
    let me = ReferenceSet {
        is_queries: true,
        ..refs
    };
    assert!(matches!(
        cfg.against_cpu(&q, &me, &labels, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    let me = ReferenceSet { rows: &q, ..me };
    let mismatched = Labels::new(&[0, 1, 0, 1, 1, 1, 0, 1]);
    assert!(matches!(
        cfg.against_cpu(&q, &me, &mismatched, Grads::Skip),
        Err(Error::OptionConflict { .. })
    ));
    let wide = common::normals(3, 5 * 4);
    let wide = rows("r", &wide, 5, 4);
    assert!(matches!(
        cfg.against_cpu(
            &q,
            &set(&wide, ReferenceGrad::Detached),
            &labels,
            Grads::Skip
        ),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Softmax::clip().against_cpu(&q, &refs, &labels, Grads::Skip),
        Err(Error::OptionConflict { .. })
    ));
}

/// Contrastive configurations: the three distances and reductions.
fn contrastive_cfgs() -> Vec<Contrastive> {
    vec![
        Contrastive::default().margin(1.5).unwrap(),
        Contrastive::default()
            .distance(Distance::Cosine)
            .normalize(true)
            .margin(0.8)
            .unwrap()
            .reduction(Reduction::MeanNonzero),
        Contrastive::default()
            .distance(Distance::SquaredEuclidean)
            .margin(4.0)
            .unwrap()
            .reduction(Reduction::Sum),
    ]
}

#[test]
fn contrastive_against_references_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    for (seed, &(n, m, dim, classes)) in [
        (1, 1, 3, 1),
        (5, 40, 8, 3),
        (129, 17, 12, 4),
        (64, 300, 16, 10),
    ]
    .iter()
    .enumerate()
    {
        let seed = seed as u64 + 20;
        let (dq, dr) = (
            common::normals(seed, n * dim),
            common::normals(seed + 9, m * dim),
        );
        let (q, r) = (rows("q", &dq, n, dim), rows("r", &dr, m, dim));
        let labels = Labels::new(&common::labels(seed, n + m, classes));
        for cfg in contrastive_cfgs() {
            for grad in [ReferenceGrad::Returned, ReferenceGrad::Detached] {
                let mut v = cfg.against_check(gpu, &q, &set(&r, grad), &labels).unwrap();
                v.name = format!("N={n} M={m} D={dim} {grad:?} {}", v.name);
                common::assert_report(&v);
            }
        }
    }
}

#[test]
fn contrastive_batch_as_its_own_reference_is_the_in_batch_loss() {
    let Some(gpu) = common::gpu() else { return };
    let (b, dim) = (150, 10);
    let data = common::normals(9, b * dim);
    let x = rows("x", &data, b, dim);
    let ids = common::labels(9, b, 12);
    let l = Labels::new(&ids);
    let both = Labels::new(&[ids.clone(), ids].concat());
    let me = ReferenceSet {
        rows: &x,
        is_queries: true,
        grad: ReferenceGrad::Returned,
    };
    for cfg in contrastive_cfgs() {
        let batch = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
        let against = cfg.against(gpu, &x, &me, &both, Grads::Compute).unwrap();
        assert_eq!(batch.counts, against.counts, "{cfg:?}");
        let scale = batch.loss.abs().max(1.0);
        assert!((batch.loss - against.loss).abs() < 1e-5 * scale, "{cfg:?}");
        let gb = &batch.grads[0];
        let largest = gb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for k in 0..gb.len() {
            let sum = against.grads[0].values()[k] + against.grads[1].values()[k];
            assert!(
                (sum - gb.values()[k]).abs() <= 1e-5 * largest,
                "{cfg:?} [{k}]: {sum} vs {}",
                gb.values()[k]
            );
        }
    }
}

#[test]
fn contrastive_reference_gradients_match_finite_differences() {
    let (n, m, dim) = (4, 5, 3);
    let q: Vec<f64> = common::normals(15, n * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let r: Vec<f64> = common::normals(16, m * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let (cq, cr) = ([0u32, 1, 2, 1], [0u32, 1, 1, 2, 0]);
    // A margin far from every distance: no pair sits on a hinge's kink.
    let cfg = Contrastive::default().margin(10.0).unwrap();
    let (out, h) = (
        against_f64(&cfg, &q, &r, dim, (&cq, &cr), false, Grads::Compute),
        1e-6,
    );
    let f =
        |q: &[f64], r: &[f64]| against_f64(&cfg, q, r, dim, (&cq, &cr), false, Grads::Skip).loss;
    for (side, grad) in out.grads.iter().enumerate() {
        for k in 0..grad.len() {
            let (mut p, mut s) = ([q.clone(), r.clone()], [q.clone(), r.clone()]);
            p[side][k] += h;
            s[side][k] -= h;
            let fd = (f(&p[0], &p[1]) - f(&s[0], &s[1])) / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                "side {side} [{k}]: {fd} vs {}",
                grad[k]
            );
        }
    }
}

#[test]
fn contrastive_without_pairs_and_detached() {
    let (dq, dr) = (common::normals(1, 3 * 2), common::normals(2, 4 * 2));
    let (q, r) = (rows("q", &dq, 3, 2), rows("r", &dr, 4, 2));
    let labels = Labels::new(&[0, 1, 2, 3, 4, 5, 6]);
    let cfg = Contrastive::default().reduction(Reduction::MeanNonzero);
    // Only dissimilar pairs, all beyond a margin of 0: no active term, loss 0.
    let cfg = cfg.margin(0.0).unwrap();
    let out = cfg
        .against_cpu(
            &q,
            &set(&r, ReferenceGrad::Detached),
            &labels,
            Grads::Compute,
        )
        .unwrap();
    assert_eq!(out.loss, 0.0);
    assert_eq!(out.counts.dissimilar_pairs, 12);
    assert_eq!(out.grads.len(), 1);
    if let Some(gpu) = common::gpu() {
        let g = cfg
            .against(
                gpu,
                &q,
                &set(&r, ReferenceGrad::Detached),
                &labels,
                Grads::Compute,
            )
            .unwrap();
        assert_eq!((g.loss, g.counts), (0.0, out.counts));
        assert_eq!(g.grads.len(), 1);
        assert!(g.grads[0].iter().all(|&v| v == 0.0));
    }
}

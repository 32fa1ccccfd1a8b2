//! Queries against a reference set (NT-Xent, SupCon, contrastive): on the GPU against the f64
//! reference
//! under the tolerance rule, with references larger and smaller than the queries, crossing
//! the engine's blocks and tiles, with no positive and with every reference positive; the
//! batch as its own reference equals the in-batch loss; a detached reference gets no
//! gradient; finite differences of the reference for queries and references.

mod common;

use metric_loss::testing as check;
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
    ReferenceSet::new(rows, grad)
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
    let me = ReferenceSet::new(&x, ReferenceGrad::Returned).with_queries_at(0);
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

/// Central differences (step 1e-6) of `f(q, r)` in every value of both sides against the
/// analytic `[dL/dQ, dL/dR]`.
fn assert_fd_both_sides(
    what: &str,
    grads: &[Vec<f64>],
    q: &[f64],
    r: &[f64],
    f: impl Fn(&[f64], &[f64]) -> f64,
) {
    let h = 1e-6;
    for (side, grad) in grads.iter().enumerate() {
        for k in 0..grad.len() {
            let (mut p, mut s) = ([q.to_vec(), r.to_vec()], [q.to_vec(), r.to_vec()]);
            p[side][k] += h;
            s[side][k] -= h;
            let fd = (f(&p[0], &p[1]) - f(&s[0], &s[1])) / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{what} side {side} [{k}]: {fd} vs {}",
                grad[k]
            );
        }
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
            queries_at: None,
        };
        let (out, _) = against_with_mass(&qs, &q, &r, dim, Grads::Compute);
        let f = |q: &[f64], r: &[f64]| against_with_mass(&qs, q, r, dim, Grads::Skip).0.loss;
        assert_fd_both_sides(&format!("{loss:?}"), &out.grads, &q, &r, f);
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
    // Queries said to sit among the reference rows must be there, with their labels.
    for o in [0, 1, 2] {
        assert!(matches!(
            cfg.against_cpu(&q, &refs.with_queries_at(o), &labels, Grads::Skip),
            Err(Error::OptionConflict { .. })
        ));
    }
    let me = ReferenceSet::new(&q, ReferenceGrad::Returned).with_queries_at(0);
    let mismatched = Labels::new(&[0, 1, 0, 1, 1, 1, 0, 1]);
    assert!(matches!(
        cfg.against_cpu(&q, &me, &mismatched, Grads::Skip),
        Err(Error::OptionConflict { .. })
    ));
    let matched = Labels::new(&[0, 1, 0, 1, 0, 1, 0, 1]);
    assert!(cfg.against_cpu(&q, &me, &matched, Grads::Skip).is_ok());
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
        for base in contrastive_cfgs() {
            // Margins clear of every pair's distance (see tests/limits.rs).
            let mut cfg = base;
            let dists = check::against_distances(&cfg, &q, &set(&r, ReferenceGrad::Detached));
            let m = f64::from(base.margin);
            check::clear_margins(&mut cfg, &dists, dim, 0.0, m);
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
    let me = ReferenceSet::new(&x, ReferenceGrad::Returned).with_queries_at(0);
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
    let out = against_f64(&cfg, &q, &r, dim, (&cq, &cr), None, Grads::Compute);
    let f = |q: &[f64], r: &[f64]| against_f64(&cfg, q, r, dim, (&cq, &cr), None, Grads::Skip).loss;
    assert_fd_both_sides("contrastive", &out.grads, &q, &r, f);
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

/// Rank shards of `b` rows into `k` uneven parts: (first row, rows).
fn shards(b: usize, k: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for r in 0..k {
        // Uneven: rank r takes about (r + 1) parts of the k(k + 1)/2.
        let end = if r + 1 == k {
            b
        } else {
            start + b * (r + 1) / (k * (k + 1) / 2)
        };
        out.push((start, end - start));
        start = end;
    }
    out
}

#[test]
fn ranks_against_the_gathered_batch_give_the_single_device_loss() {
    // A multi-device step simulated in one process: every rank's queries (its rows of the
    // global batch) against the gathered batch, its queries at their place in it, the
    // references' gradient returned; `ranks::contribution`s summed over the ranks (the
    // all-reduce), and `ranks::combine` gives each rank the global loss and its rows'
    // gradient.
    use metric_loss::{ranks, Mining, Reduction, Triplet};
    let Some(gpu) = common::gpu() else { return };
    let (b, dim) = (150, 12);
    let data = common::normals(31, b * dim);
    let x = rows("x", &data, b, dim);
    let ids = common::labels(31, b, 10);
    type Run<'a> =
        dyn Fn(&Embeddings<'_>, &ReferenceSet<'_, '_>, &Labels) -> (f64, u64, Vec<Vec<f32>>) + 'a;
    let values = |g: &[metric_loss::Gradient]| g.iter().map(|g| g.values().to_vec()).collect();
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let c = Contrastive::default()
            .margin(2.0)
            .unwrap()
            .reduction(reduction);
        // The softmax losses and mined triplets are means only.
        let s = Softmax::supcon();
        let t = Triplet::default().mining(Mining::Hard);
        let run_c = |q: &Embeddings<'_>, r: &ReferenceSet<'_, '_>, l: &Labels| {
            let o = c.against(gpu, q, r, l, Grads::Compute).unwrap();
            (o.loss, o.counts.pairs(), values(&o.grads))
        };
        let run_s = |q: &Embeddings<'_>, r: &ReferenceSet<'_, '_>, l: &Labels| {
            let o = s.against(gpu, q, r, l, Grads::Compute).unwrap();
            (o.loss, o.counts.terms, values(&o.grads))
        };
        let run_t = |q: &Embeddings<'_>, r: &ReferenceSet<'_, '_>, l: &Labels| {
            let o = t.against(gpu, q, r, l, Grads::Compute).unwrap();
            (o.loss, o.counts.terms, values(&o.grads))
        };
        let mut runs: Vec<(&str, &Run<'_>)> = vec![("contrastive", &run_c)];
        if reduction == Reduction::Mean {
            runs.extend([("supcon", &run_s as &Run<'_>), ("triplet", &run_t)]);
        }
        for (what, run) in runs {
            let me = ReferenceSet::new(&x, ReferenceGrad::Returned).with_queries_at(0);
            let both = Labels::new(&[ids.clone(), ids.clone()].concat());
            let (want, _, wg) = run(&x, &me, &both);
            let want_grad: Vec<f64> = wg[0]
                .iter()
                .zip(&wg[1])
                .map(|(&a, &b)| f64::from(a) + f64::from(b))
                .collect();
            let largest = want_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for k in 1..=4 {
                let mut summed = vec![0.0f64; ranks::HEADER + b * dim];
                let mut parts = Vec::new();
                for (start, n) in shards(b, k) {
                    let q = rows("q", &data[start * dim..(start + n) * dim], n, dim);
                    let set = ReferenceSet::new(&x, ReferenceGrad::Returned).with_queries_at(start);
                    let both = Labels::new(&[ids[start..start + n].to_vec(), ids.clone()].concat());
                    let (loss, terms, g) = run(&q, &set, &both);
                    let part = ranks::contribution(reduction, loss, terms, &g[1]).unwrap();
                    summed.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
                    parts.push((start, terms, g));
                }
                for (start, terms, g) in &parts {
                    let (loss, grad) =
                        ranks::combine(reduction, &summed, *terms, &g[0], *start, dim).unwrap();
                    assert!(
                        (loss - want).abs() < 1e-5 * want.abs().max(1.0),
                        "K={k} {what} {reduction:?}: {loss} vs {want}"
                    );
                    for (i, (&g, &w)) in grad.iter().zip(&want_grad[start * dim..]).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-5 * largest,
                            "K={k} {what} {reduction:?} row {start} [{i}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn ranks_refuse_mean_nonzero_and_short_sums() {
    use metric_loss::{ranks, Error, Reduction};
    assert!(matches!(
        ranks::contribution(Reduction::MeanNonzero, 1.0, 3, &[0.0; 4]),
        Err(Error::OptionConflict { .. })
    ));
    let sum = ranks::contribution(Reduction::Mean, 1.0, 3, &[0.0; 4]).unwrap();
    assert!(matches!(
        ranks::combine(Reduction::Mean, &sum, 3, &[0.0; 2], 2, 2),
        Err(Error::ShapeMismatch { .. })
    ));
    // No rank has a term: loss and gradient 0, not 0/0.
    let none = ranks::contribution(Reduction::Mean, 0.0, 0, &[0.0; 4]).unwrap();
    let (loss, grad) = ranks::combine(Reduction::Mean, &none, 0, &[0.0; 2], 1, 2).unwrap();
    assert_eq!((loss, grad), (0.0, vec![0.0, 0.0]));
}

#[test]
fn a_batch_followed_by_a_queue() {
    // MoCo's keys: the batch's own rows (their gradient kept) then a queue of other rows;
    // each query's own row is no pair. On the GPU against the reference, and the batch part
    // alone is the in-batch loss's pairs plus the queue's.
    let Some(gpu) = common::gpu() else { return };
    let (n, queue, dim) = (40, 90, 8);
    let (dq, dk) = (common::normals(3, n * dim), common::normals(4, queue * dim));
    let keys: Vec<f32> = [dq.clone(), dk].concat();
    let (q, r) = (rows("q", &dq, n, dim), rows("r", &keys, n + queue, dim));
    let ids = common::labels(5, n + queue, 6);
    let both = Labels::new(&[ids[..n].to_vec(), ids.clone()].concat());
    let set = ReferenceSet::new(&r, ReferenceGrad::Returned).with_queries_at(0);
    for cfg in [Softmax::ntxent(), Softmax::supcon()] {
        common::assert_report(&cfg.against_check(gpu, &q, &set, &both).unwrap());
    }
    for base in contrastive_cfgs() {
        let mut cfg = base;
        let dists = check::against_distances(&cfg, &q, &set);
        check::clear_margins(&mut cfg, &dists, dim, 0.0, f64::from(base.margin));
        let mut v = cfg.against_check(gpu, &q, &set, &both).unwrap();
        v.name = format!("batch + queue {}", v.name);
        common::assert_report(&v);
        let out = cfg.against_cpu(&q, &set, &both, Grads::Skip).unwrap();
        assert_eq!(
            out.counts.pairs(),
            (n * (n - 1) / 2 + n * queue) as u64,
            "{cfg:?}"
        );
    }
}

#[test]
fn reruns_against_a_reference_set_are_bitwise_equal() {
    let Some(gpu) = common::gpu() else { return };
    let (n, m, dim) = (70, 200, 10);
    let (dq, dr) = (common::normals(41, n * dim), common::normals(42, m * dim));
    let (q, r) = (rows("q", &dq, n, dim), rows("r", &dr, m, dim));
    let labels = Labels::new(&common::labels(43, n + m, 9));
    let set = set(&r, ReferenceGrad::Returned);
    let s = Softmax::ntxent();
    let runs =
        [0, 1].map(|_| common::bits(&s.against(gpu, &q, &set, &labels, Grads::Compute).unwrap()));
    assert!(runs[0] == runs[1], "ntxent against reruns differ");
    let c = Contrastive::default();
    let runs =
        [0, 1].map(|_| common::bits(&c.against(gpu, &q, &set, &labels, Grads::Compute).unwrap()));
    assert!(runs[0] == runs[1], "contrastive against reruns differ");
    let i = Softmax::infonce(true);
    let runs = [0, 1].map(|_| common::bits(&i.pairs(gpu, &q, &r, Grads::Compute).unwrap()));
    assert!(runs[0] == runs[1], "infonce reruns differ");
}

#[test]
fn triplet_mining_against_references_matches_the_reference() {
    use metric_loss::{Mining, Triplet};
    let Some(gpu) = common::gpu() else { return };
    for (seed, &shape) in [
        (1, 1, 3, 1),
        (20, 50, 8, 14),
        (70, 30, 12, 20),
        (129, 140, 6, 54),
    ]
    .iter()
    .enumerate()
    {
        for mining in [Mining::Hard, Mining::Semihard, Mining::All] {
            let cfg = Triplet::default().mining(mining);
            common::cross_triplet_against(gpu, &cfg, shape, seed as u64 + 60);
        }
    }
}

#[test]
fn triplet_batch_as_its_own_reference_and_followed_by_a_queue() {
    use metric_loss::{Mining, Triplet};
    let Some(gpu) = common::gpu() else { return };
    let (b, queue, dim) = (100, 60, 8);
    let data = common::normals(71, (b + queue) * dim);
    let x = rows("x", &data[..b * dim], b, dim);
    let keys = rows("keys", &data, b + queue, dim);
    let ids = common::labels(72, b + queue, 7);
    let l = Labels::new(&ids[..b]);
    let me = ReferenceSet::new(&x, ReferenceGrad::Returned).with_queries_at(0);
    let both = Labels::new(&[&ids[..b], &ids[..b]].concat());
    for mining in [Mining::Hard, Mining::Semihard, Mining::All] {
        let cfg = Triplet::default().mining(mining);
        let batch = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
        let against = cfg.against(gpu, &x, &me, &both, Grads::Compute).unwrap();
        assert_eq!(batch.counts, against.counts, "{mining:?}");
        assert!((batch.loss - against.loss).abs() < 1e-5 * batch.loss.abs().max(1.0));
        let gb = &batch.grads[0];
        let largest = gb.iter().fold(0.0f32, |s, v| s.max(v.abs()));
        for k in 0..gb.len() {
            let sum = against.grads[0].values()[k] + against.grads[1].values()[k];
            assert!(
                (sum - gb.values()[k]).abs() <= 1e-5 * largest,
                "{mining:?} [{k}]: {sum} vs {}",
                gb.values()[k]
            );
        }
        // The batch followed by a queue, the batch's own rows left out.
        let queue_set = ReferenceSet::new(&keys, ReferenceGrad::Detached).with_queries_at(0);
        let joint = Labels::new(&[&ids[..b], &ids[..]].concat());
        let mut v = cfg.against_check(gpu, &x, &queue_set, &joint).unwrap();
        v.name = format!("batch + queue {}", v.name);
        common::assert_report(&v);
    }
}

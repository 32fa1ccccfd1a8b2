//! InfoNCE (sentence-transformers' MultipleNegativesRankingLoss): anchors against at least as
//! many keys, with and without the reverse term and labels masking false negatives, on the
//! GPU against the f64 reference under the tolerance rule at sizes around the engine's
//! 128-row block and 16-column tiles; CLIP as its special case; finite differences of the
//! reference; the definition on hand-worked values; and the input errors.

mod common;

use metric_loss::testing::softmax_reference::{keys_with_mass, Keys};
use metric_loss::{Embeddings, Error, Grads, Labels, Softmax, SoftmaxLoss};

/// (anchors, keys, dim) around the engine's block and tile edges, keys equal to and far
/// beyond the anchors.
const SIZES: [(usize, usize, usize); 6] = [
    (1, 1, 3),
    (1, 17, 5),
    (16, 16, 8),
    (37, 100, 33),
    (129, 129, 16),
    (130, 300, 12),
];

fn rows<'a>(name: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Embeddings<'a> {
    Embeddings::named(name, data, rows, dim).unwrap()
}

#[test]
fn infonce_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    for (seed, &(n, m, dim)) in SIZES.iter().enumerate() {
        let seed = seed as u64;
        let (da, db) = (
            common::normals(seed, n * dim),
            common::normals(seed + 50, m * dim),
        );
        let (a, b) = (rows("a", &da, n, dim), rows("b", &db, m, dim));
        // Few classes, so that keys share the anchors' labels.
        let labels = Labels::new(&common::labels(seed, n + m, (n as u64 / 3).max(2)));
        for symmetric in [false, true] {
            for scale in [20.0, 1.0 / 0.07, 2.0] {
                let cfg = Softmax::infonce(symmetric).scale(scale).unwrap();
                let mut v = cfg.pairs_check(gpu, &a, &b).unwrap();
                v.name = format!("N={n} M={m} D={dim} {}", v.name);
                common::assert_report(&v);
                let mut v = cfg.pairs_labelled_check(gpu, &a, &b, &labels).unwrap();
                v.name = format!("N={n} M={m} D={dim} labelled {}", v.name);
                common::assert_report(&v);
            }
        }
    }
}

#[test]
fn clip_is_symmetric_infonce_with_as_many_keys() {
    let Some(gpu) = common::gpu() else { return };
    let (n, dim) = (70, 20);
    let (da, db) = (common::normals(1, n * dim), common::normals(2, n * dim));
    let (a, b) = (rows("a", &da, n, dim), rows("b", &db, n, dim));
    let clip = Softmax::clip().temperature(0.05).unwrap();
    let info = Softmax::infonce(true);
    let (x, y) = (
        clip.pairs(gpu, &a, &b, Grads::Compute).unwrap(),
        info.pairs(gpu, &a, &b, Grads::Compute).unwrap(),
    );
    assert!(common::bits(&x) == common::bits(&y));
    assert_eq!(x.grad_temperature, y.grad_temperature);
}

#[test]
fn hand_worked_values() {
    // Anchors e1, e2 against keys e1, e2, e1: with scale 1 the logits of anchor 0 are
    // (1, 0, 1), of anchor 1 (0, 1, 0). CE_0 = log(2e + 1) − 1, CE_1 = log(e + 2) − 1.
    let a = [1.0f32, 0.0, 0.0, 1.0];
    let k = [1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0];
    let (a, k) = (rows("a", &a, 2, 2), rows("b", &k, 3, 2));
    let e = std::f64::consts::E;
    let ce0 = (2.0 * e + 1.0).ln() - 1.0;
    let ce1 = (e + 2.0).ln() - 1.0;
    let plain = 0.5 * (ce0 + ce1);
    // The reverse term over the first two keys: key 0 sees anchors (1, 0), key 1 (0, 1).
    let rev = (e + 1.0).ln() - 1.0;
    let symmetric = 0.5 * (plain + rev);
    // Labels: key 2 shares anchor 0's label, so anchor 0's sum drops it; anchor 1 keeps
    // every key.
    let labels = Labels::new(&[7, 8, 7, 8, 7]);
    let masked = 0.5 * (((e + 1.0).ln() - 1.0) + ce1);
    let cases = [
        (Softmax::infonce(false), None, plain),
        (Softmax::infonce(true), None, symmetric),
        (Softmax::infonce(false), Some(&labels), masked),
    ];
    for (cfg, l, want) in cases {
        let cfg = cfg.scale(1.0).unwrap();
        let mut outs = vec![match l {
            Some(l) => cfg.pairs_labelled_cpu(&a, &k, l, Grads::Skip).unwrap(),
            None => cfg.pairs_cpu(&a, &k, Grads::Skip).unwrap(),
        }];
        if let Some(gpu) = common::gpu() {
            outs.push(match l {
                Some(l) => cfg.pairs_labelled(gpu, &a, &k, l, Grads::Skip).unwrap(),
                None => cfg.pairs(gpu, &a, &k, Grads::Skip).unwrap(),
            });
        }
        for out in outs {
            assert!(
                (out.loss - want).abs() < 1e-6,
                "{cfg:?} {}: {} vs {want}",
                l.is_some(),
                out.loss
            );
            assert_eq!(out.counts.terms, 2);
        }
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let (n, m, dim) = (4, 7, 3);
    let a: Vec<f64> = common::normals(5, n * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let b: Vec<f64> = common::normals(6, m * dim)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let (la, lb) = ([0u32, 1, 2, 1], [0u32, 1, 2, 1, 0, 3, 2]);
    for symmetric in [false, true] {
        for labels in [None, Some((&la[..], &lb[..]))] {
            let keys = Keys {
                tau: 0.3,
                symmetric,
                labels,
            };
            let (r, _) = keys_with_mass(&keys, &a, &b, dim, Grads::Compute);
            let loss = |a: &[f64], b: &[f64]| keys_with_mass(&keys, a, b, dim, Grads::Skip).0.loss;
            let h = 1e-6;
            for (side, grad) in r.grads.iter().enumerate() {
                for k in 0..grad.len() {
                    let (mut p, mut q) = ([a.clone(), b.clone()], [a.clone(), b.clone()]);
                    p[side][k] += h;
                    q[side][k] -= h;
                    let fd = (loss(&p[0], &p[1]) - loss(&q[0], &q[1])) / (2.0 * h);
                    assert!(
                        (fd - grad[k]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "symmetric {symmetric} labels {} side {side} [{k}]: {fd} vs {}",
                        labels.is_some(),
                        grad[k]
                    );
                }
            }
            let t = |tau: f64| {
                let k = Keys { tau, ..keys };
                keys_with_mass(&k, &a, &b, dim, Grads::Skip).0.loss
            };
            let fd = (t(0.3 + h) - t(0.3 - h)) / (2.0 * h);
            let g = r.grad_temperature.unwrap();
            assert!(
                (fd - g).abs() < 1e-6 * (1.0 + fd.abs()),
                "dL/dtau {fd} vs {g}"
            );
        }
    }
}

#[test]
fn input_errors() {
    let a = common::normals(1, 4 * 3);
    let b = common::normals(2, 3 * 3);
    let (a, b) = (rows("a", &a, 4, 3), rows("b", &b, 3, 3));
    let cfg = Softmax::infonce(false);
    // Fewer keys than anchors.
    assert!(matches!(
        cfg.pairs_cpu(&a, &b, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        cfg.pairs_cpu(&b, &a, Grads::Skip).map(|o| o.counts.terms),
        Ok(3)
    ));
    // Labels for anchors and keys: 3 + 4 of them.
    let short = Labels::new(&[0, 1, 2]);
    assert!(matches!(
        cfg.pairs_labelled_cpu(&b, &a, &short, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            Softmax::infonce(true).scale(bad),
            Err(Error::InvalidOption { name: "scale", .. })
        ));
    }
    // A labelled batch is not InfoNCE's input.
    let l = Labels::new(&[0, 1, 0, 1]);
    assert!(matches!(
        cfg.batch_cpu(&a, &l, Grads::Skip),
        Err(Error::OptionConflict { .. })
    ));
    assert_eq!(cfg.loss, SoftmaxLoss::InfoNce { symmetric: false });
    assert!((cfg.logit_scale() - 20.0).abs() < 1e-4);
}

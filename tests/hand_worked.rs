//! Cases worked out by hand: the arithmetic is written in the comments and the expected
//! values, not produced by running the code. Both the GPU and the CPU reference must match.

mod common;

use metric_loss::tolerance::{compare, Tolerance};
use metric_loss::{Contrastive, Distance, Embeddings, Grads, Hinge, Labels, Reduction};

fn close(what: &str, got: &[f32], want: &[f64]) {
    let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let c = compare(&got, want, Tolerance::new(2, 4, 1.0));
    assert!(c.pass, "{what}: got {got:?}, want {want:?} ({c:?})");
}

fn close_loss(what: &str, got: f64, want: f64) {
    let c = compare(&[got], &[want], Tolerance::new(2, 4, 1.0));
    assert!(c.pass, "{what}: got {got}, want {want}");
}

// Four pairs in 2-D, margin m = 1, pos_margin p = 0:
//   0: a=(0,0) b=(3,4)   similar     d = 5    term (5−0)²     = 25     active
//   1: a=(0,0) b=(0,.5)  dissimilar  d = 0.5  term (1−0.5)²   = 0.25   active
//   2: a=(1,1) b=(1,1)   dissimilar  d = 0    term (1−0)²     = 1      active, d = 0 ⇒ grad 0
//   3: a=(0,0) b=(1,0)   dissimilar  d = 1    term relu(0)²   = 0      at the margin: inactive
const A: [f32; 8] = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
const B: [f32; 8] = [3.0, 4.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0];
const Y: [bool; 4] = [true, false, false, false];

#[test]
fn pairs_squared_hinge_every_reduction() {
    let a = Embeddings::named("a", &A, 4, 2).unwrap();
    let b = Embeddings::named("b", &B, 4, 2).unwrap();
    // mean: (25 + 0.25 + 1 + 0) / 4 = 6.5625; sum: 26.25;
    // mean-nonzero: 25/1 + (0.25 + 1)/2 = 25.625.
    for (reduction, want) in [
        (Reduction::Mean, 6.5625),
        (Reduction::Sum, 26.25),
        (Reduction::MeanNonzero, 25.625),
    ] {
        let cfg = Contrastive::default().reduction(reduction);
        let mut outs = vec![cfg.pairs_cpu(&a, &b, &Y, Grads::Compute).unwrap()];
        if let Some(gpu) = common::gpu() {
            outs.push(cfg.pairs(gpu, &a, &b, &Y, Grads::Compute).unwrap());
        }
        for out in outs {
            close_loss("loss", out.loss, want);
            assert_eq!(out.counts.similar_pairs, 1);
            assert_eq!(out.counts.dissimilar_pairs, 3);
            assert_eq!(out.active_terms().unwrap(), 3);
            if reduction == Reduction::Mean {
                // pair 0: dL/dd = 2·5/4 = 2.5, dd/da = (a−b)/d = (−0.6, −0.8) ⇒ dA0 = (−1.5, −2)
                // pair 1: dL/dd = −2·0.5/4 = −0.25, dd/da = (0, −0.5)/0.5 = (0, −1) ⇒ dA1 = (0, 0.25)
                // pairs 2 (d = 0) and 3 (at the margin): 0. dB = −dA for every pair.
                close(
                    "dA",
                    &out.grads[0],
                    &[-1.5, -2.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0],
                );
                close(
                    "dB",
                    &out.grads[1],
                    &[1.5, 2.0, 0.0, -0.25, 0.0, 0.0, 0.0, 0.0],
                );
            }
        }
    }
}

#[test]
fn pairs_linear_hinge() {
    let a = Embeddings::named("a", &A, 4, 2).unwrap();
    let b = Embeddings::named("b", &B, 4, 2).unwrap();
    // terms 5, 0.5, 1, 0 ⇒ mean 6.5/4 = 1.625.
    // grads, scale 1/4: pair 0 slope 1/4 ⇒ dA0 = (−0.6, −0.8)/4 = (−0.15, −0.2);
    // pair 1 slope −1/4 ⇒ dA1 = −(0, −1)/4 = (0, 0.25).
    let cfg = Contrastive::default().hinge(Hinge::Linear);
    let mut outs = vec![cfg.pairs_cpu(&a, &b, &Y, Grads::Compute).unwrap()];
    if let Some(gpu) = common::gpu() {
        outs.push(cfg.pairs(gpu, &a, &b, &Y, Grads::Compute).unwrap());
    }
    for out in outs {
        close_loss("loss", out.loss, 1.625);
        close(
            "dA",
            &out.grads[0],
            &[-0.15, -0.2, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0],
        );
    }
}

#[test]
fn batch_three_rows() {
    // x0 = (0,0), x1 = (3,4), x2 = (0,0.5); labels 0, 0, 1; m = 1.
    //   {0,1} similar    d = 5               term 25
    //   {0,2} dissimilar d = 0.5             term 0.25
    //   {1,2} dissimilar d = √21.25 ≈ 4.61  term 0 (inactive)
    // mean = 25.25/3. Gradients, scale 1/3:
    //   {0,1}: dL/dd = 10/3, dd/dx0 = (−0.6, −0.8) ⇒ g0 += (−2, −8/3), g1 += (2, 8/3)
    //   {0,2}: dL/dd = −1/3, dd/dx0 = (0, −1)     ⇒ g0 += (0, 1/3),   g2 += (0, −1/3)
    let data = [0.0, 0.0, 3.0, 4.0, 0.0, 0.5];
    let x = Embeddings::named("x", &data, 3, 2).unwrap();
    let l = Labels::new(&[0, 0, 1]);
    let cfg = Contrastive::default();
    let mut outs = vec![cfg.batch_cpu(&x, &l, Grads::Compute).unwrap()];
    if let Some(gpu) = common::gpu() {
        outs.push(cfg.batch(gpu, &x, &l, Grads::Compute).unwrap());
    }
    for out in outs {
        close_loss("loss", out.loss, 25.25 / 3.0);
        assert_eq!(
            (out.counts.similar_pairs, out.counts.dissimilar_pairs),
            (1, 2)
        );
        assert_eq!(out.active_terms().unwrap(), 2);
        close(
            "dX",
            &out.grads[0],
            &[-2.0, -7.0 / 3.0, 2.0, 8.0 / 3.0, 0.0, -1.0 / 3.0],
        );
    }
}

#[test]
fn cosine_pair() {
    // a = (1,0), b = (0,2): cos = 0 ⇒ d = 1. Similar, p = 0.5, squared hinge, sum:
    // term (1 − 0.5)² = 0.25, dL/dd = 2·0.5 = 1.
    // dd/da = −(b/(|a||b|) − s·a/|a|²) = −(0, 2)/2 = (0, −1);
    // dd/db = −(a/(|a||b|) − s·b/|b|²) = −(1, 0)/2 = (−0.5, 0).
    let a = Embeddings::named("a", &[1.0, 0.0], 1, 2).unwrap();
    let b = Embeddings::named("b", &[0.0, 2.0], 1, 2).unwrap();
    let cfg = Contrastive::default()
        .distance(Distance::Cosine)
        .pos_margin(0.5)
        .unwrap()
        .reduction(Reduction::Sum);
    let mut outs = vec![cfg.pairs_cpu(&a, &b, &[true], Grads::Compute).unwrap()];
    if let Some(gpu) = common::gpu() {
        outs.push(cfg.pairs(gpu, &a, &b, &[true], Grads::Compute).unwrap());
    }
    for out in outs {
        close_loss("loss", out.loss, 0.25);
        close("dA", &out.grads[0], &[0.0, -1.0]);
        close("dB", &out.grads[1], &[-0.5, 0.0]);
    }
}

#[test]
fn normalized_euclidean_pair() {
    // a = (3,4) → (0.6, 0.8); b = (0,−2) → (0, −1); d = √(0.36 + 3.24) = √3.6.
    // Dissimilar, m = 2: term (2 − √3.6)², mean over one pair.
    let a = Embeddings::named("a", &[3.0, 4.0], 1, 2).unwrap();
    let b = Embeddings::named("b", &[0.0, -2.0], 1, 2).unwrap();
    let cfg = Contrastive::default().normalize(true).margin(2.0).unwrap();
    let want = (2.0 - 3.6f64.sqrt()).powi(2);
    let mut outs = vec![cfg.pairs_cpu(&a, &b, &[false], Grads::Skip).unwrap()];
    if let Some(gpu) = common::gpu() {
        outs.push(cfg.pairs(gpu, &a, &b, &[false], Grads::Skip).unwrap());
    }
    for out in outs {
        close_loss("loss", out.loss, want);
    }
}

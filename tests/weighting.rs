//! Multi-Similarity and Circle: the GPU against the f64 reference under the tolerance rule
//! at sizes around the engine's 128-row block and 16-column tiles, in windows and on every
//! engine configuration; the reference's gradients against finite differences (Circle's
//! with its weights held, as its gradient defines them); PML's conventions on hand-worked
//! values; the device-resident path; and the input errors.

mod common;

use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
use metric_loss::testing::weighting::{clear_of_ties, settings};
use metric_loss::testing::weighting_reference::batch_with_mass;
use metric_loss::testing::{outside, Rng};
use metric_loss::{Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Weighting, WeightingLoss};

/// (rows, dim, classes) around the block and tile edges.
const SIZES: [(usize, usize, u64); 6] = [
    (2, 3, 1),
    (17, 5, 3),
    (64, 8, 8),
    (129, 16, 20),
    (130, 33, 6),
    (200, 12, 50),
];

fn check_sizes(gpu: &Gpu, sizes: &[(usize, usize, u64)], what: &str) {
    for (seed, &(n, dim, classes)) in sizes.iter().enumerate() {
        let data = common::normals(seed as u64, n * dim);
        let x = Embeddings::named("x", &data, n, dim).unwrap();
        let labels = Labels::new(&common::labels(seed as u64, n, classes));
        for cfg in settings() {
            let cfg = clear_of_ties(cfg, &x, &labels);
            let mut v = cfg.batch_check(gpu, &x, &labels).unwrap();
            v.name = format!("{what} B={n} D={dim} {}", v.name);
            common::assert_report(&v);
        }
    }
}

#[test]
fn weighting_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    check_sizes(gpu, &SIZES, "default engine");
}

#[test]
fn weighting_matches_on_every_engine_and_in_windows() {
    for gpu in common::engine_gpus() {
        let what = format!("{:?}", gpu.engine());
        check_sizes(&gpu, &SIZES[3..5], &what);
    }
    let Some(gpu) = common::gpu() else { return };
    // Bindings of 64 rows: the calls span several row and column windows.
    let mut limits = gpu.limits().clone();
    limits.max_storage_buffer_binding_size = 64 * 16 * 4;
    let small = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..GpuOptions::default()
    })
    .unwrap();
    check_sizes(&small, &[(130, 12, 6), (200, 16, 40)], "64-row windows");
}

#[test]
fn deterministic() {
    let Some(gpu) = common::gpu() else { return };
    let data = common::normals(9, 150 * 20);
    let x = Embeddings::new(&data, 150, 20).unwrap();
    let labels = Labels::new(&common::labels(9, 150, 12));
    for cfg in settings() {
        let a = cfg.batch(gpu, &x, &labels, Grads::Compute).unwrap();
        let b = cfg.batch(gpu, &x, &labels, Grads::Compute).unwrap();
        assert_eq!(common::bits(&a), common::bits(&b));
        let skip = cfg.batch(gpu, &x, &labels, Grads::Skip).unwrap();
        assert_eq!(skip.loss.to_bits(), a.loss.to_bits());
        assert_eq!(skip.counts, a.counts);
    }
}

/// Circle's loss with the weights [·]₊ taken from the similarities of `at` (held) and the
/// rest from `x`: the function its gradient is the derivative of.
fn circle_held(m: f64, g: f64, at: &[f64], x: &[f64], dim: usize, ids: &[u32]) -> f64 {
    let sims = |v: &[f64]| {
        let (xn, _) = metric_loss::testing::normalize(v, dim);
        let n = ids.len();
        let mut s = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                s[i * n + j] = (0..dim).map(|k| xn[i * dim + k] * xn[j * dim + k]).sum();
            }
        }
        s
    };
    let (s0, s) = (sims(at), sims(x));
    let n = ids.len();
    let lse = |v: Vec<f64>| {
        let mx = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        mx + v.iter().map(|z| (z - mx).exp()).sum::<f64>().ln()
    };
    let mut terms = Vec::new();
    for i in 0..n {
        let (mut up, mut vn) = (Vec::new(), Vec::new());
        for j in (0..n).filter(|&j| j != i) {
            let (w, v) = (s0[i * n + j], s[i * n + j]);
            if ids[j] == ids[i] {
                up.push(-g * (1.0 + m - w).max(0.0) * (v - (1.0 - m)));
            } else {
                vn.push(g * (w + m).max(0.0) * (v - m));
            }
        }
        if !up.is_empty() && !vn.is_empty() {
            let x = lse(up) + lse(vn);
            terms.push(x.max(0.0) + (-x.abs()).exp().ln_1p());
        }
    }
    terms.iter().sum::<f64>() / terms.len() as f64
}

#[test]
fn reference_gradients_match_finite_differences() {
    let (n, dim) = (9, 4);
    let x: Vec<f64> = Rng::new(4)
        .normals(n * dim)
        .into_iter()
        .map(f64::from)
        .collect();
    let ids: Vec<u32> = vec![0, 0, 1, 1, 1, 2, 2, 0, 3];
    let h = 1e-6;
    let close = |what: &str, k: usize, fd: f64, g: f64| {
        assert!(
            (fd - g).abs() < 1e-6 * (1.0 + fd.abs()),
            "{what} [{k}]: {fd} vs {g}"
        );
    };
    let ms = [
        Weighting::multi_similarity(),
        Weighting::new(WeightingLoss::MultiSimilarity {
            alpha: 1.5,
            beta: 8.0,
            base: 0.1,
            epsilon: Some(0.3),
        })
        .unwrap(),
    ];
    for cfg in ms {
        let (r, _) = batch_with_mass(&cfg, &x, dim, &ids, Grads::Compute);
        assert!(r.counts.positive_pairs > 0 && r.counts.negative_pairs > 0);
        let loss = |v: &[f64]| batch_with_mass(&cfg, v, dim, &ids, Grads::Skip).0.loss;
        for k in 0..x.len() {
            let (mut p, mut q) = (x.clone(), x.clone());
            p[k] += h;
            q[k] -= h;
            close(
                &cfg.case_name(),
                k,
                (loss(&p) - loss(&q)) / (2.0 * h),
                r.grads[0][k],
            );
        }
    }
    for (m, g) in [(0.4, 80.0f32), (0.25, 4.0)] {
        let cfg = Weighting::new(WeightingLoss::Circle { m, gamma: g }).unwrap();
        let (r, _) = batch_with_mass(&cfg, &x, dim, &ids, Grads::Compute);
        let (m, g) = (f64::from(m), f64::from(g));
        assert!((circle_held(m, g, &x, &x, dim, &ids) - r.loss).abs() < 1e-12 * r.loss.abs());
        for k in 0..x.len() {
            let (mut p, mut q) = (x.clone(), x.clone());
            p[k] += h;
            q[k] -= h;
            let fd = (circle_held(m, g, &x, &p, dim, &ids) - circle_held(m, g, &x, &q, dim, &ids))
                / (2.0 * h);
            close(&cfg.case_name(), k, fd, r.grads[0][k]);
        }
    }
}

#[test]
fn hand_worked_values() {
    // X = (e1, e1, e2), labels (0, 0, 1): s_01 = 1, s_02 = s_12 = 0. Multi-Similarity,
    // α = 2, β = 50, λ = 0.5: anchors 0 and 1 have one positive (u = −1) and one negative
    // (v = −25); anchor 2 two negatives. L = [2·(log(1 + e⁻¹)/2 + log(1 + e⁻²⁵)/50) +
    // log(1 + 2e⁻²⁵)/50] / 3.
    let data = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
    let x = Embeddings::new(&data, 3, 2).unwrap();
    let labels = Labels::new(&[0, 0, 1]);
    let l1 = |v: f64| v.exp().ln_1p();
    let e25 = (-25.0f64).exp();
    let want = (2.0 * (l1(-1.0) / 2.0 + e25.ln_1p() / 50.0) + (2.0 * e25).ln_1p() / 50.0) / 3.0;
    let ms = Weighting::multi_similarity();
    let r = ms.batch_cpu(&x, &labels, Grads::Compute).unwrap();
    assert!((r.loss - want).abs() < 1e-12, "{} vs {want}", r.loss);
    assert_eq!(
        (
            r.counts.terms,
            r.counts.positive_pairs,
            r.counts.negative_pairs
        ),
        (3, 2, 4)
    );
    // Circle, m = 0.4, γ = 80: anchors 0 and 1 have u = −80·0.4·(1 − 0.6) = −12.8 and
    // v = 80·0.4·(0 − 0.4) = −12.8: L_i = softplus(−25.6); anchor 2 has no positive.
    let c = Weighting::circle()
        .batch_cpu(&x, &labels, Grads::Skip)
        .unwrap();
    let sp = (-25.6f64).exp().ln_1p();
    assert!((c.loss - sp).abs() < 1e-15, "{} vs {sp}", c.loss);
    assert_eq!(c.counts.terms, 2);
    // PML's rule: at most one positive and one negative pair gives 0 (one row: none).
    let one = Embeddings::new(&data[..2], 1, 2).unwrap();
    let z = ms
        .batch_cpu(&one, &Labels::new(&[0]), Grads::Compute)
        .unwrap();
    assert_eq!((z.loss, z.counts.terms), (0.0, 0));
    if let Some(gpu) = common::gpu() {
        for cfg in [ms, Weighting::circle()] {
            common::assert_report(&cfg.batch_check(gpu, &x, &labels).unwrap());
        }
        let z = ms
            .batch(gpu, &one, &Labels::new(&[0]), Grads::Compute)
            .unwrap();
        assert_eq!((z.loss, z.counts.terms), (0.0, 0));
        assert!(z.grads[0].values().iter().all(|&v| v == 0.0));
    }
}

#[test]
fn device_resident_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    let (n, dim) = (150, 10);
    let data = common::normals(21, n * dim);
    let x = Embeddings::new(&data, n, dim).unwrap();
    let labels = Labels::new(&common::labels(21, n, 15));
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&data));
    let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(labels.ids()));
    for cfg in settings() {
        let cfg = clear_of_ties(cfg, &x, &labels);
        let gb = gpu.storage_buffer("caller", &vec![0u8; n * dim * 4]);
        let d = cfg
            .batch_device(
                gpu,
                DeviceRows::new(&xb, n, dim),
                DeviceLabels::new(&lb),
                Some(DeviceGrad::new(&gb, dim)),
                Target::Submit,
            )
            .unwrap();
        let loss = d.read(gpu).unwrap();
        let host = cfg.batch(gpu, &x, &labels, Grads::Compute).unwrap();
        let device_grad = gpu.read_f32(&gb).unwrap();
        // The same kernels: the gradient is the host path's, bit for bit.
        assert_eq!(device_grad, host.grads[0].values(), "{}", cfg.case_name());
        let out = outside::Outside {
            loss,
            grads: vec![device_grad],
        };
        let v = outside::weighting_batch(&cfg, &x, &labels, &out).unwrap();
        common::assert_report(&v);
    }
}

#[test]
fn input_errors() {
    let data = common::normals(1, 4 * 3);
    let x = Embeddings::new(&data, 4, 3).unwrap();
    let cfg = Weighting::multi_similarity();
    assert!(matches!(
        cfg.batch_cpu(&x, &Labels::new(&[0, 1, 0]), Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad = |loss| Weighting::new(loss).unwrap_err();
    let ms = |alpha, beta, base, epsilon| WeightingLoss::MultiSimilarity {
        alpha,
        beta,
        base,
        epsilon,
    };
    assert!(matches!(
        bad(ms(0.0, 50.0, 0.5, None)),
        Error::InvalidOption { name: "alpha", .. }
    ));
    assert!(matches!(
        bad(ms(2.0, f32::NAN, 0.5, None)),
        Error::InvalidOption { name: "beta", .. }
    ));
    assert!(matches!(
        bad(ms(2.0, 50.0, 2e4, None)),
        Error::InvalidOption { name: "base", .. }
    ));
    assert!(matches!(
        bad(ms(2.0, 50.0, 0.5, Some(-0.1))),
        Error::InvalidOption {
            name: "epsilon",
            ..
        }
    ));
    let circle = |m, gamma| WeightingLoss::Circle { m, gamma };
    assert!(matches!(
        bad(circle(-0.1, 80.0)),
        Error::InvalidOption { name: "m", .. }
    ));
    assert!(matches!(
        bad(circle(0.4, 0.0)),
        Error::InvalidOption { name: "gamma", .. }
    ));
}

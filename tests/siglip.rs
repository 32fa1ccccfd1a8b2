//! SigLIP's sigmoid loss: the GPU against the f64 reference under the tolerance rule at
//! sizes around the engine's 128-row block, 16-column tiles and windows, with and without
//! labels, on every engine configuration; finite differences of the reference (A, B, t′,
//! b); the definition on hand-worked values; the device-resident path; and the input
//! errors.

mod common;

use metric_loss::device::{DeviceGrad, DeviceRows, Target};
use metric_loss::testing::outside;
use metric_loss::testing::siglip_reference::{pairs_with_mass, Pairs};
use metric_loss::{Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Siglip};

/// (rows of A, rows of B, dim) around the block and tile edges, B equal to and beyond A.
const SIZES: [(usize, usize, usize); 7] = [
    (1, 1, 3),
    (1, 17, 5),
    (16, 16, 8),
    (37, 100, 33),
    (128, 128, 4),
    (129, 129, 16),
    (130, 300, 12),
];

fn rows<'a>(name: &'static str, data: &'a [f32], rows: usize, dim: usize) -> Embeddings<'a> {
    Embeddings::named(name, data, rows, dim).unwrap()
}

/// Settings: the paper's initialisation, a trained-like scale and bias, and a neutral one.
fn settings() -> [Siglip; 3] {
    [
        Siglip::default(),
        Siglip::new(4.6, -16.5).unwrap(),
        Siglip::new(0.0, 0.0).unwrap(),
    ]
}

fn check_sizes(gpu: &Gpu, sizes: &[(usize, usize, usize)], what: &str) {
    for (seed, &(n, m, dim)) in sizes.iter().enumerate() {
        let seed = seed as u64;
        let (da, db) = (
            common::normals(seed, n * dim),
            common::normals(seed + 50, m * dim),
        );
        let (a, b) = (rows("a", &da, n, dim), rows("b", &db, m, dim));
        let labels = Labels::new(&common::labels(seed, n + m, (n as u64 / 3).max(2)));
        for cfg in settings() {
            let mut v = cfg.pairs_check(gpu, &a, &b).unwrap();
            v.name = format!("{what} N={n} M={m} D={dim} {}", v.name);
            common::assert_report(&v);
            let mut v = cfg.pairs_labelled_check(gpu, &a, &b, &labels).unwrap();
            v.name = format!("{what} N={n} M={m} D={dim} labelled {}", v.name);
            common::assert_report(&v);
        }
    }
}

#[test]
fn siglip_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    check_sizes(gpu, &SIZES, "default engine");
}

#[test]
fn siglip_matches_on_every_engine_and_in_windows() {
    for gpu in common::engine_gpus() {
        let what = format!("{:?}", gpu.engine());
        check_sizes(&gpu, &SIZES[3..6], &what);
    }
    // Bindings of 64 rows: every call spans several row and column windows.
    let Some(_) = common::gpu() else { return };
    let mut limits = common::gpu().unwrap().limits().clone();
    limits.max_storage_buffer_binding_size = 64 * 16 * 4;
    let small = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..GpuOptions::default()
    })
    .unwrap();
    check_sizes(&small, &[(130, 300, 12), (65, 200, 16)], "64-row windows");
}

#[test]
fn siglip_is_deterministic_and_skips_nothing_without_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let (n, m, dim) = (100, 150, 24);
    let (da, db) = (common::normals(3, n * dim), common::normals(4, m * dim));
    let (a, b) = (rows("a", &da, n, dim), rows("b", &db, m, dim));
    let cfg = Siglip::default();
    let x = cfg.pairs(gpu, &a, &b, Grads::Compute).unwrap();
    let y = cfg.pairs(gpu, &a, &b, Grads::Compute).unwrap();
    assert_eq!(common::bits(&x), common::bits(&y));
    assert_eq!(x.grad_bias.map(f64::to_bits), y.grad_bias.map(f64::to_bits));
    let skip = cfg.pairs(gpu, &a, &b, Grads::Skip).unwrap();
    assert_eq!(skip.loss.to_bits(), x.loss.to_bits());
    assert_eq!(skip.counts, x.counts);
    assert!(skip.grads.is_empty() && skip.grad_bias.is_none());
}

#[test]
fn reference_gradients_match_finite_differences() {
    let (n, m, dim) = (4, 7, 5);
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
    let (a, b) = (
        widen(common::normals(5, n * dim)),
        widen(common::normals(6, m * dim)),
    );
    let iota: Vec<u32> = (0..m as u32).collect();
    let (la, lb) = ([0u32, 1, 2, 1], [0u32, 1, 2, 1, 0, 3, 2]);
    for classes in [(&iota[..n], &iota[..]), (&la[..], &lb[..])] {
        let p = Pairs {
            scale: 3.0,
            bias: -2.0,
            classes,
        };
        let (r, _) = pairs_with_mass(&p, &a, &b, dim, Grads::Compute);
        let loss =
            |p: &Pairs<'_>, a: &[f64], b: &[f64]| pairs_with_mass(p, a, b, dim, Grads::Skip).0.loss;
        let h = 1e-6;
        let close = |what: String, fd: f64, g: f64| {
            assert!(
                (fd - g).abs() < 1e-6 * (1.0 + fd.abs()),
                "{what}: {fd} vs {g}"
            );
        };
        for (side, grad) in r.grads.iter().enumerate() {
            for k in 0..grad.len() {
                let (mut u, mut v) = ([a.clone(), b.clone()], [a.clone(), b.clone()]);
                u[side][k] += h;
                v[side][k] -= h;
                let fd = (loss(&p, &u[0], &u[1]) - loss(&p, &v[0], &v[1])) / (2.0 * h);
                close(format!("side {side} [{k}]"), fd, grad[k]);
            }
        }
        // t = exp(t′): dL/dt′ by moving t′.
        let at = |t: f64, bias: f64| {
            loss(
                &Pairs {
                    scale: t.exp(),
                    bias,
                    classes,
                },
                &a,
                &b,
            )
        };
        let t = 3.0f64.ln();
        let fd = (at(t + h, -2.0) - at(t - h, -2.0)) / (2.0 * h);
        close("dL/dt'".into(), fd, r.grad_temperature.unwrap());
        let fd = (at(t, -2.0 + h) - at(t, -2.0 - h)) / (2.0 * h);
        close("dL/db".into(), fd, r.grad_bias.unwrap());
    }
}

#[test]
fn hand_worked_values() {
    // A = [e1, e2], B = [e1, 2·e1] (normalised: e1, e1), t = 1, b = 0:
    // s = [[1, 1], [0, 0]]; positives (0,0), (1,1);
    // L = (softplus(−1) + softplus(1) + softplus(0) + softplus(0)) / 2.
    let (a, b) = ([1.0f32, 0.0, 0.0, 1.0], [1.0f32, 0.0, 2.0, 0.0]);
    let (a, b) = (rows("a", &a, 2, 2), rows("b", &b, 2, 2));
    let sp = |u: f64| (1.0 + u.exp()).ln();
    let expected = (sp(-1.0) + sp(1.0) + 2.0 * sp(0.0)) / 2.0;
    let cfg = Siglip::new(0.0, 0.0).unwrap();
    let r = cfg.pairs_cpu(&a, &b, Grads::Compute).unwrap();
    assert!(
        (r.loss - expected).abs() < 1e-12,
        "{} vs {expected}",
        r.loss
    );
    assert_eq!((r.counts.terms, r.counts.positive_pairs), (2, 2));
    // dL/db = Σ −z·σ(−z·x)/N = (−σ(−1) + σ(1) − σ(0) + σ(0)) / 2.
    let sig = |u: f64| 1.0 / (1.0 + (-u).exp());
    let db = (-sig(-1.0) + sig(1.0)) / 2.0;
    assert!((r.grad_bias.unwrap() - db).abs() < 1e-12);
    if let Some(gpu) = common::gpu() {
        let g = cfg.pairs(gpu, &a, &b, Grads::Compute).unwrap();
        assert!((g.loss - expected).abs() < 1e-6, "{} vs {expected}", g.loss);
        assert_eq!(g.counts, r.counts);
    }
}

#[test]
fn device_resident_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    let (n, m, dim) = (70, 210, 6);
    let (da, db) = (common::normals(11, n * dim), common::normals(12, m * dim));
    let (a, b) = (rows("a", &da, n, dim), rows("b", &db, m, dim));
    let ids = common::labels(3, n + m, 20);
    let labels = Labels::new(&ids);
    let ab = gpu.storage_buffer("caller", bytemuck::cast_slice(&da));
    let bb = gpu.storage_buffer("caller", bytemuck::cast_slice(&db));
    let u32s: Vec<u32> = labels.ids().to_vec();
    let la = gpu.storage_buffer("caller", bytemuck::cast_slice(&u32s[..n]));
    let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(&u32s[n..]));
    let cfg = Siglip::new(2.0, -5.0).unwrap();
    for labelled in [false, true] {
        let ga = gpu.storage_buffer("caller", &vec![0u8; n * dim * 4]);
        let gb = gpu.storage_buffer("caller", &vec![0u8; m * dim * 4]);
        let grads = Some([DeviceGrad::new(&ga, dim), DeviceGrad::new(&gb, dim)]);
        let (ra, rb) = (DeviceRows::new(&ab, n, dim), DeviceRows::new(&bb, m, dim));
        let d = if labelled {
            use metric_loss::device::DeviceLabels;
            let (la, lb) = (DeviceLabels::new(&la), DeviceLabels::new(&lb));
            cfg.pairs_labelled_device(gpu, ra, rb, la, lb, grads, Target::Submit)
        } else {
            cfg.pairs_device(gpu, ra, rb, grads, Target::Submit)
        }
        .unwrap();
        let (loss, grad_temperature, grad_bias) = d.read_scalars(gpu).unwrap();
        let reference = cfg.pairs_cpu(&a, &b, Grads::Compute).unwrap();
        let out = metric_loss::SiglipOutput {
            loss,
            counts: reference.counts,
            grads: vec![
                metric_loss::Gradient::new(gpu.read_f32(&ga).unwrap(), dim),
                metric_loss::Gradient::new(gpu.read_f32(&gb).unwrap(), dim),
            ],
            grad_temperature,
            grad_bias,
        };
        let l = labelled.then_some(&labels);
        let mut out = out;
        if let Some(l) = l {
            out.counts = cfg
                .pairs_labelled_cpu(&a, &b, l, Grads::Skip)
                .unwrap()
                .counts;
        }
        let mut v = outside::siglip_output(&cfg, &a, &b, l, out);
        v.name = format!("device labelled {labelled} {}", v.name);
        common::assert_report(&v);
    }
}

#[test]
fn input_errors() {
    let a = common::normals(1, 4 * 3);
    let b = common::normals(2, 3 * 3);
    let (a, b) = (rows("a", &a, 4, 3), rows("b", &b, 3, 3));
    let cfg = Siglip::default();
    // B with fewer rows than A.
    assert!(matches!(
        cfg.pairs_cpu(&a, &b, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    assert_eq!(cfg.pairs_cpu(&b, &a, Grads::Skip).unwrap().counts.terms, 3);
    let short = Labels::new(&[0, 1, 2]);
    assert!(matches!(
        cfg.pairs_labelled_cpu(&b, &a, &short, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    for bad in [f32::NAN, f32::INFINITY, 9.3] {
        assert!(matches!(
            Siglip::new(bad, 0.0),
            Err(Error::InvalidOption {
                name: "log_scale",
                ..
            })
        ));
    }
    for bad in [f32::NAN, -1e5] {
        assert!(matches!(
            Siglip::new(0.0, bad),
            Err(Error::InvalidOption { name: "bias", .. })
        ));
    }
    assert!((Siglip::default().scale() - 10.0).abs() < 1e-5);
}

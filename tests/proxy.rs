//! ArcFace, CosFace and sub-center ArcFace: the GPU against the f64 reference under the
//! tolerance rule at sizes around the engine's 128-row block and 16-column tiles, with many
//! classes on a device whose bindings hold a small part of them, on every engine
//! configuration; the reference's gradients against finite differences (both of ArcFace's
//! branches, and sub-centres); the definitions on hand-worked values; the device-resident
//! path and its class check; and the input errors.

mod common;

use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
use metric_loss::testing::proxy::{
    branch_margin, class_indices, settings, tie_gap, tie_margin, Case,
};
use metric_loss::testing::proxy_reference::batch_with_mass;
use metric_loss::testing::Rng;
use metric_loss::{Embeddings, Error, Gpu, GpuOptions, Grads, Precision, Proxy, ProxyLoss};

/// (queries, classes, dim) around the block and tile edges, classes fewer and many more.
const SIZES: [(usize, usize, usize); 6] = [
    (1, 1, 3),
    (17, 5, 8),
    (64, 130, 16),
    (129, 1000, 12),
    (200, 37, 33),
    (130, 129, 4),
];

fn check_sizes(gpu: &Gpu, sizes: &[(usize, usize, usize)], what: &str) {
    for (seed, &(n, c, dim)) in sizes.iter().enumerate() {
        for cfg in settings() {
            let k = cfg.sub_centers as usize;
            let case = Case::new(&cfg, seed as u64 + 40, (n, c, dim), Precision::F32).unwrap();
            let (xe, we, classes) = (
                case.x.view(n, dim).unwrap(),
                case.w.view(c * k, dim).unwrap(),
                &case.classes,
            );
            assert!(
                branch_margin(&cfg, &xe, classes, &we) > 1e-4,
                "inputs on the branch"
            );
            assert!(tie_margin(&cfg, &xe, &we) >= tie_gap(dim));
            let mut v = cfg.batch_check(gpu, &xe, classes, &we).unwrap();
            v.name = format!("{what} B={n} C={c} D={dim} {}", v.name);
            common::assert_report(&v);
        }
    }
}

#[test]
fn proxy_matches_the_reference() {
    let Some(gpu) = common::gpu() else { return };
    check_sizes(gpu, &SIZES, "default engine");
}

#[test]
fn proxy_matches_on_every_engine() {
    for gpu in common::engine_gpus() {
        let what = format!("{:?}", gpu.engine());
        check_sizes(&gpu, &SIZES[2..4], &what);
    }
}

/// A device like `gpu` whose storage bindings hold `rows` rows of 16 f32 values.
fn binding_rows(gpu: &Gpu, rows: u64) -> Gpu {
    let mut limits = gpu.limits().clone();
    limits.max_storage_buffer_binding_size = rows * 16 * 4;
    Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..GpuOptions::default()
    })
    .unwrap()
}

#[test]
fn many_classes_on_a_small_device() {
    let Some(gpu) = common::gpu() else { return };
    // 20,000 classes: B×C×4 bytes is 5.6 MB; the bindings hold 64 rows (4 KiB).
    let small = binding_rows(gpu, 64);
    let (n, c, dim) = (70, 20_000, 16);
    let mut rng = Rng::new(7);
    let (x, w) = (rng.normals(n * dim), rng.normals(c * dim));
    let classes = class_indices(&mut rng, n, c);
    let (xe, we) = (
        Embeddings::new(&x, n, dim).unwrap(),
        Embeddings::new(&w, c, dim).unwrap(),
    );
    assert!((n * c * 4) as u64 > small.limits().max_storage_buffer_binding_size);
    for cfg in [Proxy::arcface(), Proxy::cosface()] {
        common::assert_report(&cfg.batch_check(&small, &xe, &classes, &we).unwrap());
    }
    // Sub-centres: windows of whole classes (192 rows for K = 3) over 60,000 rows of W.
    let small = binding_rows(gpu, 192);
    let cfg = Proxy::subcenter_arcface();
    let case = Case::new(&cfg, 8, (n, c, dim), Precision::F32).unwrap();
    let (xe, we) = (
        case.x.view(n, dim).unwrap(),
        case.w.view(3 * c, dim).unwrap(),
    );
    common::assert_report(&cfg.batch_check(&small, &xe, &case.classes, &we).unwrap());
    // A window too short for a whole class: a typed error, not a split class.
    let cfg = cfg.with_sub_centers(5).unwrap();
    let w5 = common::normals(9, 5 * 10 * dim);
    let we5 = Embeddings::new(&w5, 50, dim).unwrap();
    let x5 = Embeddings::new(&case.x.values()[..10 * dim], 10, dim).unwrap();
    let r = cfg.batch(&small, &x5, &[0; 10], &we5, Grads::Skip);
    assert!(matches!(r, Err(Error::LimitExceeded { .. })), "{r:?}");
}

#[test]
fn deterministic() {
    let Some(gpu) = common::gpu() else { return };
    let (n, c, dim) = (100, 300, 20);
    for cfg in settings() {
        let case = Case::new(&cfg, 3, (n, c, dim), Precision::F32).unwrap();
        let (classes, xe) = (&case.classes, case.x.view(n, dim).unwrap());
        let we = case.w.view(c * cfg.sub_centers as usize, dim).unwrap();
        let a = cfg.batch(gpu, &xe, classes, &we, Grads::Compute).unwrap();
        let b = cfg.batch(gpu, &xe, classes, &we, Grads::Compute).unwrap();
        assert_eq!(common::bits(&a), common::bits(&b));
        let skip = cfg.batch(gpu, &xe, classes, &we, Grads::Skip).unwrap();
        assert_eq!(skip.loss.to_bits(), a.loss.to_bits());
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    let (n, c, dim) = (5, 4, 3);
    let mut rng = Rng::new(9);
    let mut x: Vec<f64> = rng.normals(n * dim).into_iter().map(f64::from).collect();
    let w: Vec<f64> = rng.normals(c * dim).into_iter().map(f64::from).collect();
    let classes = [0u32, 1, 2, 3, 1];
    // Query 4 opposite its class: past ArcFace's branch at m = 60° (c < −cos m = −0.5).
    for k in 0..dim {
        x[4 * dim + k] = -w[dim + k] + 0.1 * x[4 * dim + k];
    }
    check_finite_differences(
        &x,
        &w,
        &classes,
        dim,
        &[
            Proxy::arcface(),
            Proxy::new(
                ProxyLoss::ArcFace {
                    margin_degrees: 60.0,
                },
                3.0,
            )
            .unwrap(),
            Proxy::cosface(),
        ],
    );
    // Sub-centres: 3 a class, every winner clear of its siblings (the max is smooth there).
    let cfgs = [
        Proxy::subcenter_arcface(),
        Proxy::new(ProxyLoss::CosFace { margin: 0.2 }, 2.0)
            .unwrap()
            .with_sub_centers(3)
            .unwrap(),
    ];
    let case = Case::new(&cfgs[0], 10, (n, c, dim), Precision::F32).unwrap();
    let x: Vec<f64> = case.x.values().iter().map(|&v| f64::from(v)).collect();
    let w: Vec<f64> = case.w.values().iter().map(|&v| f64::from(v)).collect();
    check_finite_differences(&x, &w, &case.classes, dim, &cfgs);
}

fn check_finite_differences(x: &[f64], w: &[f64], classes: &[u32], dim: usize, cfgs: &[Proxy]) {
    let h = 1e-6;
    for &cfg in cfgs {
        let (r, _) = batch_with_mass(&cfg, x, classes, w, dim, Grads::Compute);
        let loss = |x: &[f64], w: &[f64]| {
            batch_with_mass(&cfg, x, classes, w, dim, Grads::Skip)
                .0
                .loss
        };
        for (side, grad) in r.grads.iter().enumerate() {
            for k in 0..grad.len() {
                let (mut p, mut q) = ([x.to_vec(), w.to_vec()], [x.to_vec(), w.to_vec()]);
                p[side][k] += h;
                q[side][k] -= h;
                let fd = (loss(&p[0], &p[1]) - loss(&q[0], &q[1])) / (2.0 * h);
                assert!(
                    (fd - grad[k]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{} side {side} [{k}]: {fd} vs {}",
                    cfg.case_name(),
                    grad[k]
                );
            }
        }
    }
}

#[test]
fn hand_worked_values() {
    // x = e1 against W = (e1, e2), class 0, s = 1. CosFace, m = 0.35: z = (0.65, 0):
    // L = log(e^0.65 + 1) − 0.65. ArcFace, m = 60°: θ = 0, z_0 = cos 60° = 0.5:
    // L = log(e^0.5 + 1) − 0.5. With x = −e1 (θ = π, past the branch at 120°):
    // z_0 = −1 − (π/3)·sin 60°.
    let x = [1.0f32, 0.0];
    let w = [1.0f32, 0.0, 0.0, 1.0];
    let (xe, we) = (
        Embeddings::new(&x, 1, 2).unwrap(),
        Embeddings::new(&w, 2, 2).unwrap(),
    );
    let ce = |z0: f64| (z0.exp() + 1.0).ln() - z0;
    let cos = Proxy::new(ProxyLoss::CosFace { margin: 0.35 }, 1.0).unwrap();
    let arc = Proxy::new(
        ProxyLoss::ArcFace {
            margin_degrees: 60.0,
        },
        1.0,
    )
    .unwrap();
    let r = cos.batch_cpu(&xe, &[0], &we, Grads::Compute).unwrap();
    assert!((r.loss - ce(1.0 - f64::from(0.35f32))).abs() < 1e-12);
    let r = arc.batch_cpu(&xe, &[0], &we, Grads::Compute).unwrap();
    assert!((r.loss - ce(0.5)).abs() < 1e-12, "{}", r.loss);
    // On its class (c = 1): the gradient is finite (sin θ floored).
    assert!(r
        .grads
        .iter()
        .all(|g| g.values().iter().all(|v| v.is_finite())));
    let back = [-1.0f32, 0.0];
    let be = Embeddings::new(&back, 1, 2).unwrap();
    let m = f64::from(60.0f32).to_radians();
    let z0 = -1.0 - m * m.sin();
    // z_1 = cos(−e1, e2) = 0: L = log(e^z0 + 1) − z0.
    let r = arc.batch_cpu(&be, &[0], &we, Grads::Skip).unwrap();
    assert!((r.loss - ce(z0)).abs() < 1e-12, "{} vs {}", r.loss, ce(z0));
    if let Some(gpu) = common::gpu() {
        for (cfg, x) in [(cos, &xe), (arc, &xe), (arc, &be)] {
            common::assert_report(&cfg.batch_check(gpu, x, &[0], &we).unwrap());
        }
    }
}

#[test]
fn device_resident_matches_the_reference_and_checks_classes() {
    let Some(gpu) = common::gpu() else { return };
    let (n, c, dim) = (70, 150, 10);
    let mut rng = Rng::new(21);
    let (x, w) = (rng.normals(n * dim), rng.normals(c * dim));
    let mut classes = class_indices(&mut rng, n, c);
    let (xe, we) = (
        Embeddings::new(&x, n, dim).unwrap(),
        Embeddings::new(&w, c, dim).unwrap(),
    );
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&x));
    let wb = gpu.storage_buffer("caller", bytemuck::cast_slice(&w));
    for cfg in [Proxy::arcface(), Proxy::cosface()] {
        let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(&classes));
        let gx = gpu.storage_buffer("caller", &vec![0u8; n * dim * 4]);
        let gw = gpu.storage_buffer("caller", &vec![0u8; c * dim * 4]);
        let d = cfg
            .batch_device(
                gpu,
                DeviceRows::new(&xb, n, dim),
                DeviceLabels::new(&lb),
                DeviceRows::new(&wb, c, dim),
                Some(DeviceGrad::new(&gx, dim)),
                Some(DeviceGrad::new(&gw, dim)),
                Target::Submit,
            )
            .unwrap();
        let loss = d.read(gpu).unwrap();
        let host = cfg.batch(gpu, &xe, &classes, &we, Grads::Compute).unwrap();
        // The same kernels: the gradients are the host path's, bit for bit.
        assert_eq!(gpu.read_f32(&gx).unwrap(), host.grads[0].values());
        assert_eq!(gpu.read_f32(&gw).unwrap(), host.grads[1].values());
        let r = cfg.batch_cpu(&xe, &classes, &we, Grads::Skip).unwrap();
        assert!(
            (loss - r.loss).abs() <= 1e-5 * r.loss,
            "{loss} vs {}",
            r.loss
        );
    }
    // Two class indices past the classes: the read names them.
    classes[3] = c as u32;
    classes[9] = u32::MAX;
    let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(&classes));
    let d = Proxy::cosface()
        .batch_device(
            gpu,
            DeviceRows::new(&xb, n, dim),
            DeviceLabels::new(&lb),
            DeviceRows::new(&wb, c, dim),
            None,
            None,
            Target::Submit,
        )
        .unwrap();
    assert!(matches!(
        d.read(gpu),
        Err(Error::ClassOutOfRange {
            queries: 2,
            classes: 150,
            first: None
        })
    ));
}

#[test]
fn input_errors() {
    let x = common::normals(1, 4 * 3);
    let w = common::normals(2, 5 * 3);
    let (xe, we) = (
        Embeddings::new(&x, 4, 3).unwrap(),
        Embeddings::new(&w, 5, 3).unwrap(),
    );
    let cfg = Proxy::arcface();
    assert!(matches!(
        cfg.batch_cpu(&xe, &[0, 1, 2], &we, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        cfg.batch_cpu(&xe, &[0, 5, 2, 9], &we, Grads::Skip),
        Err(Error::ClassOutOfRange {
            queries: 2,
            classes: 5,
            first: Some((1, 5))
        })
    ));
    let narrow = Embeddings::new(&w[..10], 5, 2).unwrap();
    assert!(matches!(
        cfg.batch_cpu(&xe, &[0, 1, 2, 3], &narrow, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    for (loss, scale, name) in [
        (
            ProxyLoss::ArcFace {
                margin_degrees: 180.0,
            },
            64.0,
            "margin",
        ),
        (
            ProxyLoss::ArcFace {
                margin_degrees: -1.0,
            },
            64.0,
            "margin",
        ),
        (ProxyLoss::CosFace { margin: 2.5 }, 64.0, "margin"),
        (ProxyLoss::CosFace { margin: 0.35 }, 0.0, "scale"),
        (ProxyLoss::CosFace { margin: 0.35 }, f32::NAN, "scale"),
    ] {
        let e = Proxy::new(loss, scale).unwrap_err();
        assert!(
            matches!(e, Error::InvalidOption { name: n, .. } if n == name),
            "{e}"
        );
    }
}

#[test]
fn column_windows_stay_within_the_loop_budget() {
    // lavapipe silently ended sweeps of more than 65,536 columns (register rows) and of
    // about 1,900 at D = 512 (staged tiles) before the plan capped its windows: both sizes
    // here went wrong then.
    let Some(gpu) = common::gpu() else { return };
    for (n, c, dim) in [(64, 70_000, 16), (64, 3_000, 512)] {
        let mut rng = Rng::new(c as u64);
        let (x, w) = (rng.normals(n * dim), rng.normals(c * dim));
        let classes = class_indices(&mut rng, n, c);
        let (xe, we) = (
            Embeddings::new(&x, n, dim).unwrap(),
            Embeddings::new(&w, c, dim).unwrap(),
        );
        let mut v = Proxy::cosface()
            .batch_check(gpu, &xe, &classes, &we)
            .unwrap();
        v.name = format!("C={c} D={dim} {}", v.name);
        common::assert_report(&v);
    }
    // Sub-centres add their recomputed cosines to every column's loop count: 3,000 rows of
    // W at D = 512 run in windows of one 192-row class block.
    let cfg = Proxy::subcenter_arcface();
    let (n, c, dim) = (64, 1_000, 512);
    let case = Case::new(&cfg, 5, (n, c, dim), Precision::F32).unwrap();
    let (xe, we) = (
        case.x.view(n, dim).unwrap(),
        case.w.view(3 * c, dim).unwrap(),
    );
    common::assert_report(&cfg.batch_check(gpu, &xe, &case.classes, &we).unwrap());
}

#[test]
fn sub_centres_by_hand() {
    // x = e1 against class 0's sub-centres (e2, e1) and class 1's (−e1, (e1 + e2)/√2), s = 1,
    // CosFace m = 0.35, class 0: its cosine is 1 (sub-centre 1), class 1's is 1/√2
    // (sub-centre 1): L = log(e^0.65 + e^(1/√2)) − 0.65, and only W's rows 1 and 3 get a
    // gradient.
    let r2 = std::f32::consts::FRAC_1_SQRT_2;
    let x = [1.0f32, 0.0];
    let w = [0.0f32, 1.0, 1.0, 0.0, -1.0, 0.0, r2, r2];
    let (xe, we) = (
        Embeddings::new(&x, 1, 2).unwrap(),
        Embeddings::new(&w, 4, 2).unwrap(),
    );
    let cfg = Proxy::new(ProxyLoss::CosFace { margin: 0.35 }, 1.0)
        .unwrap()
        .with_sub_centers(2)
        .unwrap();
    let r = cfg.batch_cpu(&xe, &[0], &we, Grads::Compute).unwrap();
    let z0 = 1.0 - f64::from(0.35f32);
    let z1 = f64::from(r2) * f64::from(r2) * 2.0f64.sqrt();
    let want = (z0.exp() + z1.exp()).ln() - z0;
    assert!((r.loss - want).abs() < 1e-7, "{} vs {want}", r.loss);
    let gw = r.grads[1].values();
    assert_eq!(&gw[0..2], &[0.0, 0.0]);
    assert_eq!(&gw[4..6], &[0.0, 0.0]);
    assert!(gw[2..4].iter().chain(&gw[6..8]).any(|&v| v != 0.0));
    if let Some(gpu) = common::gpu() {
        common::assert_report(&cfg.batch_check(gpu, &xe, &[0], &we).unwrap());
        let g = cfg.batch(gpu, &xe, &[0], &we, Grads::Compute).unwrap();
        let gw = g.grads[1].values();
        assert_eq!((&gw[0..2], &gw[4..6]), (&[0.0, 0.0][..], &[0.0, 0.0][..]));
    }
}

#[test]
fn sub_centres_on_the_device_and_their_errors() {
    let (n, c, dim) = (70, 150, 10);
    let cfg = Proxy::subcenter_arcface();
    let case = Case::new(&cfg, 22, (n, c, dim), Precision::F32).unwrap();
    let (xe, we) = (
        case.x.view(n, dim).unwrap(),
        case.w.view(3 * c, dim).unwrap(),
    );
    // W's rows a multiple of K; K in 1 ..= 64; class indices below C, not C·K.
    let short = case.w.view(3 * c - 1, dim).unwrap();
    assert!(matches!(
        cfg.batch_cpu(&xe, &case.classes, &short, Grads::Skip),
        Err(Error::ShapeMismatch { .. })
    ));
    for k in [0, 65] {
        assert!(matches!(
            cfg.with_sub_centers(k),
            Err(Error::InvalidOption {
                name: "sub-centers",
                ..
            })
        ));
    }
    let mut past = case.classes.clone();
    past[5] = c as u32;
    assert!(matches!(
        cfg.batch_cpu(&xe, &past, &we, Grads::Skip),
        Err(Error::ClassOutOfRange {
            queries: 1,
            classes: 150,
            ..
        })
    ));
    let Some(gpu) = common::gpu() else { return };
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(case.x.values()));
    let wb = gpu.storage_buffer("caller", bytemuck::cast_slice(case.w.values()));
    let gx = gpu.storage_buffer("caller", &vec![0u8; n * dim * 4]);
    let gw = gpu.storage_buffer("caller", &vec![0u8; 3 * c * dim * 4]);
    for (labels, out_of_range) in [(&case.classes, 0), (&past, 1)] {
        let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(labels));
        let d = cfg
            .batch_device(
                gpu,
                DeviceRows::new(&xb, n, dim),
                DeviceLabels::new(&lb),
                DeviceRows::new(&wb, 3 * c, dim),
                Some(DeviceGrad::new(&gx, dim)),
                Some(DeviceGrad::new(&gw, dim)),
                Target::Submit,
            )
            .unwrap();
        if out_of_range > 0 {
            assert!(matches!(
                d.read(gpu),
                Err(Error::ClassOutOfRange {
                    queries: 1,
                    classes: 150,
                    first: None
                })
            ));
            continue;
        }
        let loss = d.read(gpu).unwrap();
        let host = cfg.batch(gpu, &xe, labels, &we, Grads::Compute).unwrap();
        assert!(
            (loss - host.loss).abs() <= 1e-5 * host.loss,
            "{loss} vs {}",
            host.loss
        );
        assert_eq!(gpu.read_f32(&gx).unwrap(), host.grads[0].values());
        assert_eq!(gpu.read_f32(&gw).unwrap(), host.grads[1].values());
    }
    let wrong = DeviceRows::new(&wb, 3 * c - 1, dim);
    let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(&case.classes));
    assert!(matches!(
        cfg.batch_device(
            gpu,
            DeviceRows::new(&xb, n, dim),
            DeviceLabels::new(&lb),
            wrong,
            None,
            None,
            Target::Submit
        ),
        Err(Error::ShapeMismatch { .. })
    ));
}

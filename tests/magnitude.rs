//! The magnitude limit inside the input domain (src/loss/magnitude.rs): values that would
//! overflow a loss's f32 intermediates at the call's size are refused with the first index,
//! and inputs at the limit itself give finite output on the GPU.

mod common;

use metric_loss::device::{DeviceLabels, DeviceRows, Target};
use metric_loss::{
    Contrastive, Distance, Embeddings, Error, Grads, Hinge, Labels, Mining, Reduction, Triplet,
};

/// The limit a call reports for a value of 1e15 (the domain's edge), or 1e15 when the
/// call accepts it.
fn limit_of(
    call: impl Fn(&Embeddings<'_>) -> metric_loss::Result<()>,
    rows: usize,
    dim: usize,
) -> f64 {
    try_limit_of(call, rows, dim).unwrap_or_else(|e| panic!("{e}"))
}

/// [`limit_of`], or the error when the options alone are refused at this size.
fn try_limit_of(
    call: impl Fn(&Embeddings<'_>) -> metric_loss::Result<()>,
    rows: usize,
    dim: usize,
) -> metric_loss::Result<f64> {
    let mut v = vec![0.0f32; rows * dim];
    v[dim + 1] = -1e15;
    let x = Embeddings::named("x", &v, rows, dim).unwrap();
    match call(&x) {
        Ok(()) => Ok(1e15),
        Err(Error::TooLargeForLoss {
            row,
            column,
            value,
            limit,
            ..
        }) => {
            assert_eq!((row * dim + column, value), (dim + 1, f64::from(-1e15f32)));
            assert!(limit > 0.0 && limit < 1e15);
            Ok(limit)
        }
        Err(e) => Err(e),
    }
}

/// Rows at ±limit, alternating by row and column, so that distances are as large as the
/// magnitude allows, and a zero last row (the normalisations' largest gain).
fn extreme(rows: usize, dim: usize, limit: f64) -> Vec<f32> {
    (0..rows * dim)
        .map(|k| {
            let sign = if (k / dim + k % dim).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            if k / dim + 1 == rows {
                0.0
            } else {
                sign * limit as f32
            }
        })
        .collect()
}

fn assert_finite(what: &str, loss: f64, grads: &[metric_loss::Gradient]) {
    assert!(loss.is_finite(), "{what}: loss {loss}");
    for g in grads {
        assert!(g.iter().all(|v| v.is_finite()), "{what}: gradient {g:?}");
    }
}

#[test]
fn the_fuzz_finding_is_refused_with_the_first_index() {
    // fuzz/findings/crash-cff34956...: squared distance and squared hinge on 3 × 3 rows
    // with one value of -2.27e14 overflowed the gradient in f32.
    let cfg = Contrastive::default()
        .distance(Distance::SquaredEuclidean)
        .reduction(Reduction::MeanNonzero);
    let mut a = vec![0.5f32; 9];
    a[4] = -2.27e14;
    let b = vec![0.25f32; 9];
    let (a, b) = (
        Embeddings::named("a", &a, 3, 3).unwrap(),
        Embeddings::named("b", &b, 3, 3).unwrap(),
    );
    let similar = [true, false, true];
    let err = cfg.pairs_cpu(&a, &b, &similar, Grads::Compute).unwrap_err();
    match &err {
        Error::TooLargeForLoss {
            what,
            row,
            column,
            limit,
            ..
        } => {
            assert_eq!((*what, *row, *column), ("a", 1, 1));
            assert!(*limit < 2.27e14, "{limit}");
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("squared-euclidean") && msg.contains("scale"),
        "{msg}"
    );
    if let Some(gpu) = common::gpu() {
        let gpu_err = cfg
            .pairs(gpu, &a, &b, &similar, Grads::Compute)
            .unwrap_err();
        assert_eq!(gpu_err.to_string(), msg);
    }
}

#[test]
fn contrastive_inputs_at_the_limit_stay_finite_on_the_gpu() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (9, 5);
    let labels = Labels::new(&[0, 0, 1, 1, 2, 0, 1, 2, 2]);
    for distance in [
        Distance::Euclidean,
        Distance::SquaredEuclidean,
        Distance::Cosine,
    ] {
        for hinge in [Hinge::Squared, Hinge::Linear] {
            for normalize in [false, true] {
                for margin in [1.0, 1e15] {
                    let cfg = Contrastive::default()
                        .distance(distance)
                        .hinge(hinge)
                        .normalize(normalize)
                        .margin(margin)
                        .unwrap()
                        .reduction(Reduction::Sum);
                    let check =
                        |x: &Embeddings<'_>| cfg.batch_cpu(x, &labels, Grads::Skip).map(|_| ());
                    let limit = match try_limit_of(check, rows, dim) {
                        Ok(limit) => limit,
                        // Two normalisations can each amplify a zero row's gradient by
                        // 2e12, with 2·margin per term: 1e15 is refused with both.
                        Err(Error::InvalidOption { name: "margin", .. })
                            if normalize && distance == Distance::Cosine && margin > 1.0 =>
                        {
                            continue
                        }
                        Err(e) => panic!("{cfg:?}: {e}"),
                    };
                    let v = extreme(rows, dim, limit);
                    let x = Embeddings::named("x", &v, rows, dim).unwrap();
                    let what = format!("{cfg:?} at {limit:e}");
                    let out = cfg.batch(gpu, &x, &labels, Grads::Compute).unwrap();
                    assert_finite(&what, out.loss, &out.grads);
                    let r = cfg.batch_cpu(&x, &labels, Grads::Compute).unwrap();
                    assert_finite(&what, r.loss, &r.grads);
                    // One ulp beyond the limit is refused.
                    let mut over = v.clone();
                    over[7] = (limit as f32).next_up().copysign(over[7]);
                    if f64::from(over[7].abs()) <= 1e15 {
                        let x = Embeddings::named("x", &over, rows, dim).unwrap();
                        match cfg.batch(gpu, &x, &labels, Grads::Compute) {
                            Err(Error::TooLargeForLoss { row, column, .. })
                                if row * dim + column == 7 => {}
                            other => panic!("{what}: {other:?}"),
                        }
                    }
                }
            }
        }
    }
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn triplet_inputs_at_the_limit_stay_finite_on_the_gpu() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (8, 3);
    let labels = Labels::new(&[0, 1, 0, 1, 2, 2, 0, 1]);
    for distance in [Distance::Euclidean, Distance::SquaredEuclidean] {
        for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
            let cfg = Triplet::default().distance(distance).margin(1e15).unwrap();
            let check = |x: &Embeddings<'_>| {
                cfg.mining(mining)
                    .batch_cpu(x, &labels, Grads::Skip)
                    .map(|_| ())
            };
            let limit = limit_of(check, rows, dim);
            let v = extreme(rows, dim, limit);
            let x = Embeddings::named("x", &v, rows, dim).unwrap();
            let out = cfg
                .mining(mining)
                .batch(gpu, &x, &labels, Grads::Compute)
                .unwrap();
            assert_finite(
                &format!("{cfg:?} {mining:?} at {limit:e}"),
                out.loss,
                &out.grads,
            );
        }
        let cfg = Triplet::default().distance(distance).swap(true);
        let explicit = |x: &Embeddings<'_>| cfg.explicit_cpu(x, x, x, Grads::Skip).map(|_| ());
        let limit = limit_of(explicit, rows, dim);
        let (a, p) = (extreme(rows, dim, limit), extreme(rows, dim, -limit));
        let n: Vec<f32> = a.iter().map(|v| v * 0.5).collect();
        let e = |v| Embeddings::named("x", v, rows, dim).unwrap();
        let out = cfg
            .explicit(gpu, &e(&a), &e(&p), &e(&n), Grads::Compute)
            .unwrap();
        assert_finite(&format!("{cfg:?} at {limit:e}"), out.loss, &out.grads);
    }
}

#[test]
fn a_margin_too_large_for_the_batch_is_an_invalid_option() {
    // 1e15² per squared-hinge term over 4,600 × 4,599 / 2 pairs passes 1e37.
    let rows = 4600;
    let v = vec![0.0f32; rows];
    let x = Embeddings::named("x", &v, rows, 1).unwrap();
    let labels = Labels::new(&vec![0; rows]);
    let cfg = Contrastive::default().margin(1e15).unwrap();
    match cfg.batch_cpu(&x, &labels, Grads::Skip) {
        Err(Error::InvalidOption { name: "margin", .. }) => {}
        other => panic!("{other:?}"),
    }
    let linear = cfg.hinge(Hinge::Linear);
    assert!(linear.batch_cpu(&x, &labels, Grads::Skip).is_ok());
}

#[test]
fn device_resident_calls_flag_values_beyond_the_limit() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (6, 4);
    let cfg = Contrastive::default().distance(Distance::SquaredEuclidean);
    let ids = [0u32, 0, 1, 1, 2, 2];
    let labels = Labels::new(&[0, 0, 1, 1, 2, 2]);
    let limit = limit_of(
        |x| cfg.batch_cpu(x, &labels, Grads::Skip).map(|_| ()),
        rows,
        dim,
    );
    let mut v = extreme(rows, dim, limit);
    let upload = |data: &[u8]| gpu.storage_buffer("caller", data);
    let lb = upload(bytemuck::cast_slice(&ids));
    let run = |v: &[f32]| {
        let xb = upload(bytemuck::cast_slice(v));
        cfg.batch_device(
            gpu,
            DeviceRows::new(&xb, rows, dim),
            DeviceLabels::new(&lb),
            None,
            Target::Submit,
        )
        .unwrap()
        .read(gpu)
    };
    assert!(run(&v).unwrap().is_finite());
    v[13] = (limit as f32 * 2.0).min(1e15);
    match run(&v) {
        Err(Error::DeviceInputOutOfDomain {
            row: 3,
            column: 1,
            limit: l,
            ..
        }) => assert_eq!(l, limit),
        other => panic!("{other:?}"),
    }
}

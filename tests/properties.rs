//! Property tests (proptest) of every loss over generated shapes, options, scales and data
//! inside the input domain:
//! - the GPU against the f64 CPU reference under the tolerance rule
//!   (`metric_loss::tolerance`), on the host-slice and device-resident paths;
//! - bitwise determinism of a rerun;
//! - permuting rows together with their labels (or pairs, or triplets) permutes the
//!   gradients and leaves the loss, within the rule on the GPU and to 1e-9 on the CPU;
//! - swapping the two sides of a pair (contrastive pairs, CLIP) swaps the gradients;
//! - translation invariance (euclidean distances, no normalisation): the gradients of a
//!   batch, a pair or a triplet sum to zero; scale invariance (cosine similarities of the
//!   softmax losses): each row's gradient is orthogonal to the row.
//!
//! Margins and mining decisions are placed clear of the f32/f64 kinks, as in the grids.
//! Cases per property: `PROPTEST_CASES` (default 12, to keep CI fast).

mod common;

use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceLoss, DeviceRows, Target};
use metric_loss::testing::{self as check, softmax as sm, triplet as tr, Rng};
use metric_loss::tolerance::{Tolerance, Verdict};
use metric_loss::{
    wgpu, Distance, Embeddings, Gpu, Gradient, Grads, Labels, LossOutput, Softmax, SoftmaxLoss,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One generated case: sizes, a seed for the values, labels and permutation, the values'
/// scale, and an index into the family's option grid.
#[derive(Clone, Debug)]
struct Case {
    rows: usize,
    dim: usize,
    seed: u64,
    scale: f32,
    option: usize,
}

impl Case {
    fn values(&self, salt: u64) -> Vec<f32> {
        let v = Rng::new(self.seed ^ salt).normals(self.rows * self.dim);
        v.into_iter().map(|x| x * self.scale).collect()
    }

    fn labels(&self) -> Vec<i64> {
        let mut r = Rng::new(self.seed ^ 0x1abe1);
        let classes = (self.rows as u64 / 3).max(2);
        (0..self.rows).map(|_| r.below(classes) as i64).collect()
    }

    /// A seeded permutation of the rows (Fisher–Yates).
    fn permutation(&self) -> Vec<usize> {
        let mut r = Rng::new(self.seed ^ 0x9e37);
        let mut p: Vec<usize> = (0..self.rows).collect();
        for i in (1..p.len()).rev() {
            p.swap(i, r.below(i as u64 + 1) as usize);
        }
        p
    }
}

fn cases(rows: std::ops::RangeInclusive<usize>, options: usize) -> impl Strategy<Value = Case> {
    (
        rows,
        1usize..=6,
        any::<u64>(),
        prop::sample::select(vec![1e-2f32, 1.0, 1e2]),
        0..options,
    )
        .prop_map(|(rows, dim, seed, scale, option)| Case {
            rows,
            dim,
            seed,
            scale,
            option,
        })
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Row k of the result is row `p[k]` of `v`.
fn permute<T: Copy>(v: &[T], width: usize, p: &[usize]) -> Vec<T> {
    p.iter()
        .flat_map(|&i| v[i * width..(i + 1) * width].iter().copied())
        .collect()
}

/// Undoes [`permute`] on every gradient of `out`.
fn unpermute<C: Clone>(out: &LossOutput<C>, dim: usize, p: &[usize]) -> LossOutput<C> {
    let mut back = out.clone();
    for (g, orig) in back.grads.iter_mut().zip(&out.grads) {
        for (k, &i) in p.iter().enumerate() {
            g[i * dim..(i + 1) * dim].copy_from_slice(&orig[k * dim..(k + 1) * dim]);
        }
    }
    back
}

fn bits<C>(out: &LossOutput<C>) -> (u64, Vec<Vec<u32>>, Option<u64>) {
    (
        out.loss.to_bits(),
        out.grads
            .iter()
            .map(|g| g.iter().map(|v| v.to_bits()).collect())
            .collect(),
        out.grad_temperature.map(f64::to_bits),
    )
}

fn pass(r: &Verdict) -> Result<(), TestCaseError> {
    prop_assert!(r.pass(), "{}: {:?}", r.name, r);
    Ok(())
}

/// Two reference outputs agree: the loss (f64) to 1e-9 relative, gradients (narrowed to
/// f32) to one f32 rounding (reordering f64 sums can move a value across a rounding point).
fn close<C: PartialEq + std::fmt::Debug>(
    a: &LossOutput<C>,
    b: &LossOutput<C>,
) -> Result<(), TestCaseError> {
    let near = |x: f64, y: f64, s: f64| (x - y).abs() <= 1e-9 * (s + x.abs().max(y.abs()));
    prop_assert_eq!(&a.counts, &b.counts);
    prop_assert!(near(a.loss, b.loss, 0.0), "loss {} vs {}", a.loss, b.loss);
    for (ga, gb) in a.grads.iter().zip(&b.grads) {
        let s = ga.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
        for (x, y) in ga.iter().zip(gb) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            let ulp = metric_loss::tolerance::F32_ROUNDOFF * 2.0 * x.abs().max(y.abs());
            prop_assert!((x - y).abs() <= ulp + 1e-9 * s, "{x} vs {y}");
        }
    }
    Ok(())
}

/// The rows of `grads` (each `rows × dim`), added per row index across the inputs and then
/// over `rows_summed` rows, are zero within `rows_summed × inputs` GPU tolerances.
fn sums_to_zero(
    grads: &[Gradient],
    dim: usize,
    rows_summed: usize,
    reduction_len: u64,
) -> Result<(), TestCaseError> {
    let rows = grads[0].len() / dim;
    let scale = grads
        .iter()
        .flat_map(|g| g.iter())
        .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let bound =
        (rows_summed * grads.len()) as f64 * Tolerance::new(dim, reduction_len, scale).bound(0.0);
    for start in (0..rows).step_by(rows_summed) {
        for k in 0..dim {
            let s: f64 = grads
                .iter()
                .flat_map(|g| (start..start + rows_summed).map(move |i| f64::from(g[i * dim + k])))
                .sum();
            prop_assert!(
                s.abs() <= bound,
                "column {k} from row {start}: sum {s:e} > {bound:e}"
            );
        }
    }
    Ok(())
}

/// Serialises the device-resident sections of the properties, which run on parallel test
/// threads sharing one `Gpu`: a `DeviceLoss` is readable only until the next device-resident
/// call on its `Gpu` (`Error::StaleDeviceLoss` after that).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A caller's buffer on the `Gpu`'s device holding `data`.
fn upload<T: bytemuck::Pod>(gpu: &Gpu, data: &[T]) -> wgpu::Buffer {
    gpu.storage_buffer("caller", bytemuck::cast_slice(data))
}

/// The device-resident path's output: the loss and scalar gradients read from the device, the
/// gradients from the caller's buffers, and the counts of `reference` (the device path
/// does not read them back).
fn device_output<C: Clone>(
    gpu: &Gpu,
    loss: DeviceLoss,
    grads: &[wgpu::Buffer],
    reference: &LossOutput<C>,
) -> LossOutput<C> {
    let (loss, grad_temperature, grad_bias) = loss.read_scalars(gpu).unwrap();
    LossOutput {
        loss,
        counts: reference.counts.clone(),
        grads: grads
            .iter()
            .zip(&reference.grads)
            .map(|(g, r)| Gradient::new(gpu.read_f32(g).unwrap(), r.dim()))
            .collect(),
        grad_temperature,
        grad_bias,
    }
}

/// A labelled batch's device-resident call: uploads the rows and class ids, runs `call` on
/// them with a zeroed gradient buffer, and reads its output back (serialised, see
/// [`serial`]).
fn batch_on_device<C: Clone>(
    gpu: &Gpu,
    c: &Case,
    data: &[f32],
    labels: &Labels,
    reference: &LossOutput<C>,
    call: impl for<'b> FnOnce(
        DeviceRows<'b>,
        DeviceLabels<'b>,
        DeviceGrad<'b>,
    ) -> metric_loss::Result<DeviceLoss>,
) -> LossOutput<C> {
    let (xb, lb) = (upload(gpu, data), upload(gpu, labels.ids()));
    let gb = upload(gpu, &vec![0.0f32; data.len()]);
    let _serial = serial();
    let loss = call(
        DeviceRows::new(&xb, c.rows, c.dim),
        DeviceLabels::new(&lb),
        DeviceGrad::new(&gb, c.dim),
    )
    .unwrap();
    device_output(gpu, loss, &[gb], reference)
}

fn translation_invariant(distance: Distance, normalize: bool) -> bool {
    distance != Distance::Cosine && !normalize
}

fn contrastive_batch(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let mut cfg = check::option_grid()[c.option];
    let (data, labels) = (c.values(1), c.labels());
    let x = Embeddings::named("x", &data, c.rows, c.dim).unwrap();
    let l = Labels::new(&labels);
    let dists = check::batch_distances(&cfg, &x);
    let median = check::median(&dists);
    check::clear_margins(&mut cfg, &dists, c.dim, 0.5 * median, 1.2 * median);
    let compare = |name: &str, g: &LossOutput<_>, r: &LossOutput<_>| {
        let n = format!("batch {name} {cfg:?} {c:?}");
        check::contrastive_batch_verdict(n, &cfg, g, r, &x)
    };
    let g = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
    let r = cfg.batch_cpu(&x, &l, Grads::Compute).unwrap();
    pass(&compare("gpu", &g, &r))?;
    let again = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    let p = c.permutation();
    let (pd, pl) = (permute(&data, c.dim, &p), permute(&labels, 1, &p));
    let px = Embeddings::named("x", &pd, c.rows, c.dim).unwrap();
    let pl = Labels::new(&pl);
    let gp = cfg.batch(gpu, &px, &pl, Grads::Compute).unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p), &r))?;
    let rp = cfg.batch_cpu(&px, &pl, Grads::Compute).unwrap();
    close(&unpermute(&rp, c.dim, &p), &r)?;

    // The device-resident call on the caller's buffers.
    let dev = batch_on_device(gpu, c, &data, &l, &r, |x, l, g| {
        cfg.batch_device(gpu, x, l, Some(g), Target::Submit)
    });
    pass(&compare("device", &dev, &r))?;

    if translation_invariant(cfg.distance, cfg.normalize) {
        sums_to_zero(&g.grads, c.dim, c.rows, c.rows as u64)?;
    }
    Ok(())
}

fn contrastive_pairs(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let mut cfg = check::option_grid()[c.option];
    let (da, db) = (c.values(1), c.values(2));
    let similar: Vec<bool> = c.labels().iter().map(|v| v % 2 == 0).collect();
    let a = Embeddings::named("a", &da, c.rows, c.dim).unwrap();
    let b = Embeddings::named("b", &db, c.rows, c.dim).unwrap();
    let dists = check::pair_distances(&cfg, &a, &b);
    let median = check::median(&dists);
    check::clear_margins(&mut cfg, &dists, c.dim, 0.5 * median, 1.2 * median);
    let compare = |name: &str, g: &LossOutput<_>, r: &LossOutput<_>| {
        let n = format!("pairs {name} {cfg:?} {c:?}");
        check::contrastive_pairs_verdict(n, &cfg, g, r, &a, &b)
    };
    let g = cfg.pairs(gpu, &a, &b, &similar, Grads::Compute).unwrap();
    let r = cfg.pairs_cpu(&a, &b, &similar, Grads::Compute).unwrap();
    pass(&compare("gpu", &g, &r))?;
    let again = cfg.pairs(gpu, &a, &b, &similar, Grads::Compute).unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    // The two sides swapped: the same loss, the gradients swapped.
    let mut swapped = cfg.pairs(gpu, &b, &a, &similar, Grads::Compute).unwrap();
    swapped.grads.swap(0, 1);
    pass(&compare("swapped", &swapped, &r))?;

    let p = c.permutation();
    let (pa, pb, ps) = (
        permute(&da, c.dim, &p),
        permute(&db, c.dim, &p),
        permute(&similar, 1, &p),
    );
    let pa_e = Embeddings::named("a", &pa, c.rows, c.dim).unwrap();
    let pb_e = Embeddings::named("b", &pb, c.rows, c.dim).unwrap();
    let gp = cfg.pairs(gpu, &pa_e, &pb_e, &ps, Grads::Compute).unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p), &r))?;
    let rp = cfg.pairs_cpu(&pa_e, &pb_e, &ps, Grads::Compute).unwrap();
    close(&unpermute(&rp, c.dim, &p), &r)?;

    // The device-resident call on the caller's buffers, pair labels as u32.
    let flags: Vec<u32> = similar.iter().map(|&s| u32::from(s)).collect();
    let (ab, bb, yb) = (upload(gpu, &da), upload(gpu, &db), upload(gpu, &flags));
    let zeros = vec![0.0f32; da.len()];
    let (ga, gb) = (upload(gpu, &zeros), upload(gpu, &zeros));
    let _serial = serial();
    let dl = cfg
        .pairs_device(
            gpu,
            DeviceRows::new(&ab, c.rows, c.dim),
            DeviceRows::new(&bb, c.rows, c.dim),
            DeviceLabels::new(&yb),
            Some([DeviceGrad::new(&ga, c.dim), DeviceGrad::new(&gb, c.dim)]),
            Target::Submit,
        )
        .unwrap();
    pass(&compare(
        "device",
        &device_output(gpu, dl, &[ga, gb], &r),
        &r,
    ))?;

    if translation_invariant(cfg.distance, cfg.normalize) {
        sums_to_zero(&g.grads, c.dim, 1, 1)?;
    }
    Ok(())
}

fn triplet_explicit(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let base = tr::explicit_grid()[c.option];
    let data: Vec<Vec<f32>> = (1..=3).map(|s| c.values(s)).collect();
    let e: Vec<Embeddings<'_>> = data
        .iter()
        .map(|d| Embeddings::named("t", d, c.rows, c.dim).unwrap())
        .collect();
    let dec = tr::explicit_decisions(&base, &e[0], &e[1], &e[2]);
    let band = tr::decision_band(c.dim, dec.d_max);
    let mut cfg = base;
    let wanted = 0.3 * check::median(&dec.hinge_points).abs() + 0.1;
    prop_assume!(tr::make_clear(&mut cfg, &dec, wanted, band));
    let compare = |name: &str, g: &LossOutput<_>, r: &LossOutput<_>| {
        let n = format!("explicit {name} {cfg:?} {c:?}");
        tr::explicit_verdict(n, &cfg, g, r, [&e[0], &e[1], &e[2]])
    };
    let g = cfg
        .explicit(gpu, &e[0], &e[1], &e[2], Grads::Compute)
        .unwrap();
    let r = cfg
        .explicit_cpu(&e[0], &e[1], &e[2], Grads::Compute)
        .unwrap();
    pass(&compare("gpu", &g, &r))?;
    let again = cfg
        .explicit(gpu, &e[0], &e[1], &e[2], Grads::Compute)
        .unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    let p = c.permutation();
    let pd: Vec<Vec<f32>> = data.iter().map(|d| permute(d, c.dim, &p)).collect();
    let pe: Vec<Embeddings<'_>> = pd
        .iter()
        .map(|d| Embeddings::named("t", d, c.rows, c.dim).unwrap())
        .collect();
    let gp = cfg
        .explicit(gpu, &pe[0], &pe[1], &pe[2], Grads::Compute)
        .unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p), &r))?;
    let rp = cfg
        .explicit_cpu(&pe[0], &pe[1], &pe[2], Grads::Compute)
        .unwrap();
    close(&unpermute(&rp, c.dim, &p), &r)?;

    let bufs: Vec<wgpu::Buffer> = data.iter().map(|d| upload(gpu, d)).collect();
    let grads: Vec<wgpu::Buffer> = data
        .iter()
        .map(|d| upload(gpu, &vec![0.0f32; d.len()]))
        .collect();
    let rows = |k: usize| DeviceRows::new(&bufs[k], c.rows, c.dim);
    let grad = |k: usize| DeviceGrad::new(&grads[k], c.dim);
    let _serial = serial();
    let dl = cfg
        .explicit_device(
            gpu,
            rows(0),
            rows(1),
            rows(2),
            Some([grad(0), grad(1), grad(2)]),
            Target::Submit,
        )
        .unwrap();
    pass(&compare("device", &device_output(gpu, dl, &grads, &r), &r))?;

    if translation_invariant(cfg.distance, cfg.normalize) {
        sums_to_zero(&g.grads, c.dim, 1, 3)?;
    }
    Ok(())
}

fn triplet_mined(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let base = tr::mined_grid()[c.option];
    let mining = base.mining;
    let (data, labels) = (c.values(1), c.labels());
    let x = Embeddings::named("x", &data, c.rows, c.dim).unwrap();
    let l = Labels::new(&labels);
    let dec = tr::mined_decisions(&base, &x, l.ids());
    let band = tr::decision_band(c.dim, dec.d_max);
    let mut cfg = base;
    let wanted = 0.3 * check::median(&dec.hinge_points).abs() + 0.1;
    prop_assume!(tr::make_clear(&mut cfg, &dec, wanted, band));
    let compare = |name: &str, g: &LossOutput<_>, r: &LossOutput<_>| {
        let n = format!("mined {name} {cfg:?} {mining:?} {c:?}");
        tr::batch_verdict(n, &cfg, g, r, &x)
    };
    let g = cfg
        .mining(mining)
        .batch(gpu, &x, &l, Grads::Compute)
        .unwrap();
    let r = cfg
        .mining(mining)
        .batch_cpu(&x, &l, Grads::Compute)
        .unwrap();
    pass(&compare("gpu", &g, &r))?;
    let again = cfg
        .mining(mining)
        .batch(gpu, &x, &l, Grads::Compute)
        .unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    let p = c.permutation();
    let (pd, pl) = (permute(&data, c.dim, &p), permute(&labels, 1, &p));
    let px = Embeddings::named("x", &pd, c.rows, c.dim).unwrap();
    let pl = Labels::new(&pl);
    let gp = cfg
        .mining(mining)
        .batch(gpu, &px, &pl, Grads::Compute)
        .unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p), &r))?;
    let rp = cfg
        .mining(mining)
        .batch_cpu(&px, &pl, Grads::Compute)
        .unwrap();
    close(&unpermute(&rp, c.dim, &p), &r)?;

    let dev = batch_on_device(gpu, c, &data, &l, &r, |x, l, g| {
        cfg.mining(mining)
            .batch_device(gpu, x, l, Some(g), Target::Submit)
    });
    pass(&compare("device", &dev, &r))?;

    if translation_invariant(cfg.distance, cfg.normalize) {
        sums_to_zero(&g.grads, c.dim, c.rows, c.rows as u64)?;
    }
    Ok(())
}

/// Each row's gradient is orthogonal to the row (cosine similarities are scale-invariant),
/// within the rule's gradient bound (scale from the coefficient masses): |x·g| ≤ Σ|x_k|·bound.
fn orthogonal(
    cfg: &Softmax,
    x: &Embeddings<'_>,
    mass: &[f64],
    g: &[f32],
) -> Result<(), TestCaseError> {
    let dim = x.dim();
    let scale = sm::grad_scale(f64::from(cfg.temperature), x, mass);
    let bound = Tolerance::new(dim, x.rows() as u64, scale).bound(0.0);
    for i in 0..x.rows() {
        let row = x.row(i).unwrap();
        let dot: f64 = (0..dim)
            .map(|k| f64::from(row[k]) * f64::from(g[i * dim + k]))
            .sum();
        let limit: f64 = row.iter().map(|v| f64::from(v.abs()) * bound).sum();
        prop_assert!(dot.abs() <= limit, "row {i}: x·g = {dot:e} > {limit:e}");
    }
    Ok(())
}

const SOFTMAX: [SoftmaxLoss; 2] = [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon];

fn softmax_batch(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let loss = SOFTMAX[c.option % 2];
    let cfg = Softmax::new(loss)
        .temperature(sm::TEMPERATURES[c.option / 2])
        .unwrap();
    let (data, labels) = (c.values(1), c.labels());
    let x = Embeddings::named("x", &data, c.rows, c.dim).unwrap();
    let l = Labels::new(&labels);
    let (r, mass) = check::softmax_reference::batch_with_mass(
        loss,
        f64::from(cfg.temperature),
        &check::widen(&x),
        c.dim,
        l.ids(),
        Grads::Compute,
    );
    let r = r.narrow(c.dim);
    let compare = |name: &str, g: &LossOutput<_>| {
        let n = format!("{loss:?} {name} {cfg:?} {c:?}");
        sm::verdict(n, &cfg, g, &r, &[&x], std::slice::from_ref(&mass))
    };
    let g = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
    pass(&compare("gpu", &g))?;
    let again = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    let p = c.permutation();
    let (pd, pl) = (permute(&data, c.dim, &p), permute(&labels, 1, &p));
    let px = Embeddings::named("x", &pd, c.rows, c.dim).unwrap();
    let pl = Labels::new(&pl);
    let gp = cfg.batch(gpu, &px, &pl, Grads::Compute).unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p)))?;
    let rp = cfg.batch_cpu(&px, &pl, Grads::Compute).unwrap();
    let rc = cfg.batch_cpu(&x, &l, Grads::Compute).unwrap();
    close(&unpermute(&rp, c.dim, &p), &rc)?;

    let dev = batch_on_device(gpu, c, &data, &l, &r, |x, l, g| {
        cfg.batch_device(gpu, x, l, Some(g), Target::Submit)
    });
    pass(&compare("device", &dev))?;

    orthogonal(&cfg, &x, &mass, &g.grads[0])
}

fn clip(gpu: &Gpu, c: &Case) -> Result<(), TestCaseError> {
    let cfg = Softmax::clip()
        .temperature(sm::TEMPERATURES[c.option])
        .unwrap();
    let (da, db) = (c.values(1), c.values(2));
    let a = Embeddings::named("a", &da, c.rows, c.dim).unwrap();
    let b = Embeddings::named("b", &db, c.rows, c.dim).unwrap();
    let keys = check::softmax_reference::Keys {
        tau: f64::from(cfg.temperature),
        symmetric: true,
        labels: None,
    };
    let (r, masses) = check::softmax_reference::keys_with_mass(
        &keys,
        &check::widen(&a),
        &check::widen(&b),
        c.dim,
        Grads::Compute,
    );
    let r = r.narrow(c.dim);
    let compare = |name: &str, g: &LossOutput<_>| {
        let n = format!("clip {name} {cfg:?} {c:?}");
        sm::verdict(n, &cfg, g, &r, &[&a, &b], &masses)
    };
    let g = cfg.pairs(gpu, &a, &b, Grads::Compute).unwrap();
    pass(&compare("gpu", &g))?;
    let again = cfg.pairs(gpu, &a, &b, Grads::Compute).unwrap();
    prop_assert_eq!(bits(&g), bits(&again));

    // CLIP is symmetric in its two views.
    let mut swapped = cfg.pairs(gpu, &b, &a, Grads::Compute).unwrap();
    swapped.grads.swap(0, 1);
    pass(&compare("swapped", &swapped))?;

    let p = c.permutation();
    let (pa, pb) = (permute(&da, c.dim, &p), permute(&db, c.dim, &p));
    let pa_e = Embeddings::named("a", &pa, c.rows, c.dim).unwrap();
    let pb_e = Embeddings::named("b", &pb, c.rows, c.dim).unwrap();
    let gp = cfg.pairs(gpu, &pa_e, &pb_e, Grads::Compute).unwrap();
    pass(&compare("permuted", &unpermute(&gp, c.dim, &p)))?;
    let rp = cfg.pairs_cpu(&pa_e, &pb_e, Grads::Compute).unwrap();
    let rc = cfg.pairs_cpu(&a, &b, Grads::Compute).unwrap();
    close(&unpermute(&rp, c.dim, &p), &rc)?;

    let (ab, bb) = (upload(gpu, &da), upload(gpu, &db));
    let zeros = vec![0.0f32; da.len()];
    let (ga, gb) = (upload(gpu, &zeros), upload(gpu, &zeros));
    let _serial = serial();
    let dl = cfg
        .pairs_device(
            gpu,
            DeviceRows::new(&ab, c.rows, c.dim),
            DeviceRows::new(&bb, c.rows, c.dim),
            Some([DeviceGrad::new(&ga, c.dim), DeviceGrad::new(&gb, c.dim)]),
            Target::Submit,
        )
        .unwrap();
    pass(&compare("device", &device_output(gpu, dl, &[ga, gb], &r)))?;

    orthogonal(&cfg, &a, &masses[0], &g.grads[0])?;
    orthogonal(&cfg, &b, &masses[1], &g.grads[1])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn contrastive_batch_properties(c in cases(2..=12, check::option_grid().len())) {
        if let Some(gpu) = common::gpu() { contrastive_batch(gpu, &c)?; }
    }

    #[test]
    fn contrastive_pairs_properties(c in cases(1..=12, check::option_grid().len())) {
        if let Some(gpu) = common::gpu() { contrastive_pairs(gpu, &c)?; }
    }

    #[test]
    fn triplet_explicit_properties(c in cases(1..=10, tr::explicit_grid().len())) {
        if let Some(gpu) = common::gpu() { triplet_explicit(gpu, &c)?; }
    }

    #[test]
    fn triplet_mined_properties(c in cases(3..=12, tr::mined_grid().len())) {
        if let Some(gpu) = common::gpu() { triplet_mined(gpu, &c)?; }
    }

    #[test]
    fn ntxent_and_supcon_properties(c in cases(2..=12, 2 * sm::TEMPERATURES.len())) {
        if let Some(gpu) = common::gpu() { softmax_batch(gpu, &c)?; }
    }

    #[test]
    fn clip_properties(c in cases(1..=12, sm::TEMPERATURES.len())) {
        if let Some(gpu) = common::gpu() { clip(gpu, &c)?; }
    }
}

/// A case proptest found (CI, 2026-12-02): one pair of nearly parallel rows, cosine
/// distance and margins near 3e-4, the squared hinge. The slope 2(d − m) is rounded
/// relative to the distance's operands (1 − cos of unit rows: 2), not to d − m: the
/// gradient's scale must count that, or a correct GPU gradient fails the rule.
#[test]
fn contrastive_pairs_found_cases() {
    let Some(gpu) = common::gpu() else { return };
    let c = Case {
        rows: 1,
        dim: 2,
        seed: 4_997_233_957_488_263_870,
        scale: 1.0,
        option: 28,
    };
    contrastive_pairs(gpu, &c).unwrap();
}

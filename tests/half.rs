//! Half-precision inputs and gradients: f16 host slices and device buffers run as the f32
//! values they widen to (exactly), gradients come back rounded to f16 or in f32 on request,
//! an f16 gradient beyond f16's range is an error, a device without `SHADER_F16` refuses f16
//! with a typed error, every family's grid passes in f16, and the tolerance rule's input
//! quantisation term bounds what rounding the inputs to f16 changes.

mod common;

use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceQueue, DeviceRows, Target};
use metric_loss::half::f16;
use metric_loss::testing::{self as check, Rng};
use metric_loss::tolerance::{quantisation, F16_ROUNDOFF};
use metric_loss::{
    wgpu, BatchLoss, Contrastive, Distance, Embeddings, Error, Gpu, Grads, Hinge, Labels,
    Precision, Proxy, Reduction, Siglip, Softmax, Triplet, Weighting,
};

fn halves(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

fn widened(v: &[f16]) -> Vec<f32> {
    v.iter().map(|h| h.to_f32()).collect()
}

/// `rows × dim` Gaussian values rounded to f16, and the same values as f32.
fn drawn(rng: &mut Rng, rows: usize, dim: usize) -> (Vec<f16>, Vec<f32>) {
    let h = halves(&rng.normals(rows * dim));
    let w = widened(&h);
    (h, w)
}

/// One f16 ulp at `v` (the spacing of the binade v is in; 2⁻²⁴ below 2⁻¹⁴).
fn ulp16(v: f32) -> f32 {
    let a = v.abs().max(2f32.powi(-14));
    2f32.powi(a.log2().floor() as i32 - 10)
}

/// A batch loss on f16 rows gives what it gives on their widened f32 values: the same loss
/// to the bit, the f32 gradient under `ComputeF32`, and that gradient rounded to nearest f16
/// under `Compute`.
fn same_as_widened<L: BatchLoss>(gpu: &Gpu, loss: &L, rows: usize, dim: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let (h, w) = drawn(&mut rng, rows, dim);
    let labels: Vec<i64> = (0..rows)
        .map(|_| rng.below(rows as u64 / 3) as i64)
        .collect();
    let labels = Labels::new(&labels);
    let x16 = Embeddings::new_f16(&h, rows, dim).unwrap();
    let x32 = Embeddings::new(&w, rows, dim).unwrap();
    let a = loss.batch(gpu, &x16, &labels, Grads::Compute).unwrap();
    let b = loss.batch(gpu, &x32, &labels, Grads::Compute).unwrap();
    let c = loss.batch(gpu, &x16, &labels, Grads::ComputeF32).unwrap();
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.counts, b.counts);
    assert_eq!(a.grads[0].precision(), Precision::F16);
    assert_eq!(b.grads[0].precision(), Precision::F32);
    assert_eq!(c.grads[0].precision(), Precision::F32);
    assert_eq!(c.grads[0].values(), b.grads[0].values());
    assert_eq!(
        a.grads[0].values(),
        &widened(&halves(b.grads[0].values()))[..]
    );
    assert_eq!(a.grads[0].to_f16(), halves(b.grads[0].values()));
}

#[test]
fn every_batch_family_reads_f16_as_its_widened_f32() {
    let Some(gpu) = common::gpu() else { return };
    // Past the 64-row window and a vec4 boundary (13 values a row).
    let (rows, dim) = (70, 13);
    same_as_widened(gpu, &Contrastive::default(), rows, dim, 1);
    same_as_widened(gpu, &Triplet::default(), rows, dim, 2);
    same_as_widened(gpu, &Softmax::ntxent(), rows, dim, 3);
    same_as_widened(gpu, &Weighting::multi_similarity(), rows, dim, 4);
    same_as_widened(gpu, &Weighting::circle(), rows, dim, 5);
}

#[test]
fn siglip_and_arcface_read_f16_as_their_widened_f32() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim, classes) = (66, 9, 100);
    let mut rng = Rng::new(6);
    let (ha, wa) = drawn(&mut rng, rows, dim);
    let (hb, wb) = drawn(&mut rng, rows, dim);
    let (a16, b16) = (
        Embeddings::new_f16(&ha, rows, dim).unwrap(),
        Embeddings::new_f16(&hb, rows, dim).unwrap(),
    );
    let (a32, b32) = (
        Embeddings::new(&wa, rows, dim).unwrap(),
        Embeddings::new(&wb, rows, dim).unwrap(),
    );
    let s = Siglip::default();
    let x = s.pairs(gpu, &a16, &b16, Grads::Compute).unwrap();
    let y = s.pairs(gpu, &a32, &b32, Grads::Compute).unwrap();
    assert_eq!(x.loss.to_bits(), y.loss.to_bits());
    assert_eq!(x.grad_temperature, y.grad_temperature);
    assert_eq!(x.grad_bias, y.grad_bias);
    for (g, r) in x.grads.iter().zip(&y.grads) {
        assert_eq!(g.values(), &widened(&halves(r.values()))[..]);
    }
    // ArcFace: f16 queries against f32 weights, and both in f16.
    let (hw, ww) = drawn(&mut rng, classes, dim);
    let labels: Vec<u32> = (0..rows)
        .map(|_| rng.below(classes as u64) as u32)
        .collect();
    let (w16, w32) = (
        Embeddings::new_f16(&hw, classes, dim).unwrap(),
        Embeddings::new(&ww, classes, dim).unwrap(),
    );
    let p = Proxy::arcface();
    let full = p.batch(gpu, &a32, &labels, &w32, Grads::Compute).unwrap();
    for (q, w) in [(&a16, &w32), (&a16, &w16)] {
        let out = p.batch(gpu, q, &labels, w, Grads::Compute).unwrap();
        assert_eq!(out.loss.to_bits(), full.loss.to_bits());
        assert_eq!(out.grads[0].precision(), Precision::F16);
        assert_eq!(out.grads[1].precision(), w.precision());
        for (g, r) in out.grads.iter().zip(&full.grads) {
            let want = match g.precision() {
                Precision::F16 => widened(&halves(r.values())),
                Precision::F32 => r.values().to_vec(),
            };
            assert_eq!(g.values(), &want[..]);
        }
    }
}

/// `values` at `stride` from value `first`, the gaps NaN (never read).
fn strided16(values: &[f16], dim: usize, stride: usize, first: usize) -> Vec<f16> {
    let rows = values.len() / dim;
    let mut out = vec![f16::NAN; first + rows * stride];
    for (r, row) in values.chunks_exact(dim).enumerate() {
        out[first + r * stride..first + r * stride + dim].copy_from_slice(row);
    }
    out
}

#[test]
fn device_buffers_of_f16_in_and_out() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (130, 7);
    let mut rng = Rng::new(7);
    let (h, w) = drawn(&mut rng, rows, dim);
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(20) as i64).collect();
    let labels = Labels::new(&labels);
    let lbuf = gpu.storage_buffer("labels", bytemuck::cast_slice(labels.ids()));
    // f16 rows at an odd stride from byte 8; the gradient at another stride, from byte 4.
    let (stride, gstride) = (dim + 3, dim + 1);
    let xbuf = gpu.storage_buffer("x16", bytemuck::cast_slice(&strided16(&h, dim, stride, 4)));
    let x = DeviceRows {
        buffer: &xbuf,
        offset: 8,
        rows,
        dim,
        stride,
        precision: Precision::F16,
    };
    let wbuf = gpu.storage_buffer("x32", bytemuck::cast_slice(&w));
    let x32 = DeviceRows::new(&wbuf, rows, dim);
    let g16 = gpu.storage_buffer("g16", &vec![0u8; 2 * (2 + rows * gstride)]);
    let g32 = gpu.storage_buffer("g32", &vec![0u8; 4 * rows * dim]);
    let cfg = Softmax::supcon();
    for accumulate in [false, true] {
        let grad16 = DeviceGrad {
            buffer: &g16,
            offset: 4,
            stride: gstride,
            scale: 0.5,
            accumulate,
            precision: Precision::F16,
        };
        let l16 = cfg
            .batch_device(
                gpu,
                x,
                DeviceLabels::new(&lbuf),
                Some(grad16),
                Target::Submit,
            )
            .unwrap()
            .read(gpu)
            .unwrap();
        let grad32 = DeviceGrad::new(&g32, dim).scale(0.5).accumulate(accumulate);
        let l32 = cfg
            .batch_device(
                gpu,
                x32,
                DeviceLabels::new(&lbuf),
                Some(grad32),
                Target::Submit,
            )
            .unwrap()
            .read(gpu)
            .unwrap();
        assert_eq!(l16.to_bits(), l32.to_bits());
        let got: Vec<f16> = bytemuck::pod_collect_to_vec(&gpu.read_buffer(&g16).unwrap());
        let want = gpu.read_f32(&g32).unwrap();
        for r in 0..rows {
            for k in 0..dim {
                let (g, v) = (got[2 + r * gstride + k].to_f32(), want[r * dim + k]);
                // Accumulating rounds twice (each call's sum once).
                let ulps = if accumulate { 2.0 } else { 1.0 };
                assert!(
                    (g - v).abs() <= ulps * ulp16(v),
                    "row {r} col {k}: {g} vs {v}"
                );
            }
        }
    }
    // An f32 gradient of f16 rows is the f32 gradient of their widened values.
    let g32b = gpu.storage_buffer("g32b", &vec![0u8; 4 * rows * dim]);
    cfg.batch_device(
        gpu,
        x,
        DeviceLabels::new(&lbuf),
        Some(DeviceGrad::new(&g32b, dim)),
        Target::Submit,
    )
    .unwrap()
    .read(gpu)
    .unwrap();
    cfg.batch_device(
        gpu,
        x32,
        DeviceLabels::new(&lbuf),
        Some(DeviceGrad::new(&g32, dim)),
        Target::Submit,
    )
    .unwrap()
    .read(gpu)
    .unwrap();
    assert_eq!(gpu.read_f32(&g32b).unwrap(), gpu.read_f32(&g32).unwrap());
}

#[test]
fn f16_values_outside_the_domain_are_refused() {
    let Some(gpu) = common::gpu() else { return };
    let mut h = vec![f16::from_f32(0.5); 4 * 3];
    h[7] = f16::INFINITY;
    let e = Embeddings::new_f16(&h, 4, 3).unwrap_err();
    assert!(
        matches!(
            e,
            Error::OutOfDomain {
                row: 2,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
    h[7] = f16::NAN;
    let buf = gpu.storage_buffer("x", bytemuck::cast_slice(&h));
    let labels = gpu.storage_buffer("l", bytemuck::cast_slice(&[0u32, 0, 1, 1]));
    let x = DeviceRows::new(&buf, 4, 3).precision(Precision::F16);
    let e = Contrastive::default()
        .batch_device(gpu, x, DeviceLabels::new(&labels), None, Target::Submit)
        .unwrap()
        .read(gpu)
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DeviceInputOutOfDomain {
                row: 2,
                column: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn an_f16_gradient_beyond_its_range_is_an_error() {
    let Some(gpu) = common::gpu() else { return };
    // Squared distances of large rows, summed over every pair: |dL/dx| far above 65504.
    let (rows, dim) = (40, 4);
    let mut rng = Rng::new(8);
    let h = halves(
        &rng.normals(rows * dim)
            .iter()
            .map(|v| 3000.0 * v)
            .collect::<Vec<_>>(),
    );
    let labels = Labels::new(&(0..rows as i64).map(|i| i % 2).collect::<Vec<_>>());
    let x = Embeddings::new_f16(&h, rows, dim).unwrap();
    let cfg = Contrastive {
        distance: Distance::SquaredEuclidean,
        hinge: Hinge::Linear,
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let wide = cfg.batch(gpu, &x, &labels, Grads::ComputeF32).unwrap();
    assert!(wide.grads[0].iter().any(|g| g.abs() > 65504.0));
    let e = cfg.batch(gpu, &x, &labels, Grads::Compute).unwrap_err();
    assert!(matches!(e, Error::GradientOverflow { .. }), "{e}");
    // On the device: flagged, clamped, reported when the loss is read.
    let buf = gpu.storage_buffer("x", bytemuck::cast_slice(&h));
    let lbuf = gpu.storage_buffer("l", bytemuck::cast_slice(labels.ids()));
    let g = gpu.storage_buffer("g", &vec![0u8; 2 * rows * dim]);
    let grad = DeviceGrad::new(&g, dim).precision(Precision::F16);
    let x = DeviceRows::new(&buf, rows, dim).precision(Precision::F16);
    let e = cfg
        .batch_device(gpu, x, DeviceLabels::new(&lbuf), Some(grad), Target::Submit)
        .unwrap()
        .read(gpu)
        .unwrap_err();
    assert!(matches!(e, Error::GradientOverflow { .. }), "{e}");
    let got: Vec<f16> = bytemuck::pod_collect_to_vec(&gpu.read_buffer(&g).unwrap());
    assert!(got.iter().all(|v| v.is_finite()));
    assert!(got.iter().any(|v| v.to_f32().abs() == 65504.0));
}

#[test]
fn a_device_without_shader_f16_refuses_f16_by_name() {
    let Some(_) = common::gpu() else { return };
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).unwrap();
    // No features requested: SHADER_F16 is off whatever the adapter has.
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();
    let gpu = Gpu::from_device(device, queue).unwrap();
    assert!(!gpu.supports_f16());
    gpu.prepare().unwrap();
    let mut rng = Rng::new(9);
    let (h, w) = drawn(&mut rng, 8, 4);
    let labels = Labels::new(&[0, 0, 1, 1, 2, 2, 3, 3]);
    let cfg = Contrastive::default();
    let missing = |e: Error| {
        assert!(
            matches!(
                e,
                Error::MissingFeature {
                    feature: "SHADER_F16",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("SHADER_F16"));
    };
    let x16 = Embeddings::new_f16(&h, 8, 4).unwrap();
    missing(cfg.batch(&gpu, &x16, &labels, Grads::Skip).unwrap_err());
    let x32 = Embeddings::new(&w, 8, 4).unwrap();
    cfg.batch(&gpu, &x32, &labels, Grads::Compute).unwrap();
    let buf = gpu.storage_buffer("x", bytemuck::cast_slice(&h));
    let lbuf = gpu.storage_buffer("l", bytemuck::cast_slice(labels.ids()));
    let rows = DeviceRows::new(&buf, 8, 4).precision(Precision::F16);
    let e = cfg
        .batch_device(&gpu, rows, DeviceLabels::new(&lbuf), None, Target::Submit)
        .err()
        .unwrap();
    missing(e);
    // An f16 gradient of f32 rows needs it too.
    let buf32 = gpu.storage_buffer("x32", bytemuck::cast_slice(&w));
    let g = gpu.storage_buffer("g", &[0u8; 64]);
    let grad = DeviceGrad::new(&g, 4).precision(Precision::F16);
    let e = cfg
        .batch_device(
            &gpu,
            DeviceRows::new(&buf32, 8, 4),
            DeviceLabels::new(&lbuf),
            Some(grad),
            Target::Submit,
        )
        .err()
        .unwrap();
    missing(e);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn every_grid_passes_in_f16() {
    let Some(gpu) = common::gpu() else { return };
    let reports =
        check::all_grids(gpu, &check::Grid::new(64, 16, 0).precision(Precision::F16)).unwrap();
    reports.iter().for_each(common::assert_report);
    assert!(reports.len() > 250);
}

/// The input quantisation term: twice it bounds how far rounding the inputs to f16 moves the
/// exact loss, and the GPU loss of the rounded inputs stays within the f32 rule plus twice
/// the term of the reference loss of the unrounded ones. Losses whose decisions cannot flip
/// at these inputs: softmax, sigmoid and proxy losses, and Multi-Similarity without its
/// miner.
#[test]
fn the_quantisation_term_bounds_rounding_the_inputs() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (64, 16);
    let mut rng = Rng::new(10);
    let x = rng.normals(rows * dim);
    let b = rng.normals(rows * dim);
    let (xh, bh) = (halves(&x), halves(&b));
    let (xe, be) = (
        Embeddings::new(&x, rows, dim).unwrap(),
        Embeddings::new(&b, rows, dim).unwrap(),
    );
    let (x16, b16) = (
        Embeddings::new_f16(&xh, rows, dim).unwrap(),
        Embeddings::new_f16(&bh, rows, dim).unwrap(),
    );
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(16) as i64).collect();
    let labels = Labels::new(&labels);
    let classes: Vec<u32> = labels.ids().to_vec();
    let w = rng.normals(16 * dim);
    let wh = halves(&w);
    let (we, w16) = (
        Embeddings::new(&w, 16, dim).unwrap(),
        Embeddings::new_f16(&wh, 16, dim).unwrap(),
    );
    // (name, verdict on the rounded inputs, reference losses of the rounded and the
    // unrounded inputs, the term from the unrounded inputs' reference gradients)
    let mut cases = Vec::new();
    let ntxent = Softmax::ntxent();
    let r = ntxent.batch_cpu(&xe, &labels, Grads::Compute).unwrap();
    cases.push((
        "ntxent",
        ntxent.batch_check(gpu, &x16, &labels).unwrap(),
        ntxent.batch_cpu(&x16, &labels, Grads::Skip).unwrap().loss,
        r.loss,
        quantisation(&[&xe], &r.grads),
    ));
    let ms = Weighting::multi_similarity();
    let r = ms.batch_cpu(&xe, &labels, Grads::Compute).unwrap();
    cases.push((
        "multi-similarity",
        ms.batch_check(gpu, &x16, &labels).unwrap(),
        ms.batch_cpu(&x16, &labels, Grads::Skip).unwrap().loss,
        r.loss,
        quantisation(&[&xe], &r.grads),
    ));
    let sig = Siglip::default();
    let r = sig.pairs_cpu(&xe, &be, Grads::Compute).unwrap();
    cases.push((
        "siglip",
        sig.pairs_check(gpu, &x16, &b16).unwrap(),
        sig.pairs_cpu(&x16, &b16, Grads::Skip).unwrap().loss,
        r.loss,
        quantisation(&[&xe, &be], &r.grads),
    ));
    let cos = Proxy::cosface();
    let r = cos.batch_cpu(&xe, &classes, &we, Grads::Compute).unwrap();
    cases.push((
        "cosface",
        cos.batch_check(gpu, &x16, &classes, &w16).unwrap(),
        cos.batch_cpu(&x16, &classes, &w16, Grads::Skip)
            .unwrap()
            .loss,
        r.loss,
        quantisation(&[&xe, &we], &r.grads),
    ));
    for (name, v, rounded, unrounded, q) in cases {
        assert!(v.pass(), "{name}: {:?}", v.failures());
        let (_, g, _, bound) = v.loss.worst.unwrap();
        let (moved, err) = ((rounded - unrounded).abs(), (g - unrounded).abs());
        println!(
            "{name}: L(x̃) − L(x) {moved:.3e} (GPU {err:.3e}), f32 rule {bound:.3e}, term {q:.3e}"
        );
        // The term alone bounds what the rounding moved (exact f64 on both sides).
        assert!(
            moved > 0.0 && moved <= 2.0 * q,
            "{name}: {moved:e} vs 2·{q:e}"
        );
        // The GPU's loss of the rounded inputs against the unrounded inputs' reference.
        assert!(
            err <= bound + 2.0 * q,
            "{name}: {err:e} > {bound:e} + 2·{q:e}"
        );
        // Not vacuous: a small fraction of the loss.
        assert!(q < 2.0 * F16_ROUNDOFF.sqrt() * unrounded.abs().max(1.0));
    }
}

/// On the device path f16 rows cost metric-loss no memory: they are gathered into the same
/// f32 workspace rows as f32 rows are (the caller's buffers are half the size). On the host
/// path the f16 upload has a buffer of its own, 2 bytes a value.
#[test]
fn f16_rows_add_no_workspace_on_the_device_path() {
    if common::gpu().is_none() {
        return;
    }
    let (rows, dim) = (256, 32);
    let mut rng = Rng::new(11);
    let (h, w) = drawn(&mut rng, rows, dim);
    let labels: Vec<u32> = (0..rows as u32).map(|i| i % 16).collect();
    let held = |precision: Precision| {
        let gpu = Gpu::new().unwrap();
        let bytes: &[u8] = match precision {
            Precision::F16 => bytemuck::cast_slice(&h),
            Precision::F32 => bytemuck::cast_slice(&w),
        };
        let x = gpu.storage_buffer("x", bytes);
        let l = gpu.storage_buffer("l", bytemuck::cast_slice(&labels));
        let g = gpu.storage_buffer("g", &vec![0u8; rows * dim * precision.bytes() as usize]);
        Softmax::supcon()
            .batch_device(
                &gpu,
                DeviceRows::new(&x, rows, dim).precision(precision),
                DeviceLabels::new(&l),
                Some(DeviceGrad::new(&g, dim).precision(precision)),
                Target::Submit,
            )
            .unwrap()
            .read(&gpu)
            .unwrap();
        let device = gpu.workspace_bytes().1;
        let x16 = Embeddings::new_f16(&h, rows, dim).unwrap();
        let x32 = Embeddings::new(&w, rows, dim).unwrap();
        let x = if precision == Precision::F16 {
            x16
        } else {
            x32
        };
        let ids = Labels::new(&labels.iter().map(|&v| i64::from(v)).collect::<Vec<_>>());
        Softmax::supcon()
            .batch(&gpu, &x, &ids, Grads::Compute)
            .unwrap();
        (device, gpu.workspace_bytes().1)
    };
    let (d32, h32) = held(Precision::F32);
    let (d16, h16) = held(Precision::F16);
    assert_eq!(d16, d32);
    assert!(
        h16 >= h32 && h16 <= h32 + 2 * (rows * dim) as u64 + 4096,
        "{h16} vs {h32}"
    );
}

/// A queue of keys holds f32 rows: an f16 push is refused by name (f16 queries still run
/// against it).
#[test]
fn a_queue_refuses_f16_pushes() {
    let Some(gpu) = common::gpu() else { return };
    let mut queue = DeviceQueue::new(gpu, 16, 4).unwrap();
    let rows = gpu.storage_buffer("x", &[0u8; 64]);
    let ids = gpu.storage_buffer("l", &[0u8; 32]);
    let e = queue
        .push(
            gpu,
            DeviceRows::new(&rows, 8, 4).precision(Precision::F16),
            DeviceLabels::new(&ids),
            Target::Submit,
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidBuffer { .. }), "{e}");
    assert!(e.to_string().contains("f32 rows"), "{e}");
}

/// `f16 gradient` within one f16 ulp of `f32 gradient`, value by value.
fn within_an_ulp(g16: &[f16], g32: &[f32]) {
    assert_eq!(g16.len(), g32.len());
    for (i, (h, &v)) in g16.iter().zip(g32).enumerate() {
        let g = h.to_f32();
        assert!((g - v).abs() <= ulp16(v), "value {i}: {g} vs {v}");
    }
}

/// A batch loss's device form on f16 rows with an f16 gradient: the loss of the widened f32
/// rows to the bit, the gradient within one f16 ulp of theirs.
fn device_same_as_widened<L: BatchLoss>(gpu: &Gpu, loss: &L, seed: u64) {
    let (rows, dim) = (70, 6);
    let mut rng = Rng::new(seed);
    let (h, w) = drawn(&mut rng, rows, dim);
    let ids: Vec<u32> = (0..rows).map(|_| rng.below(9) as u32).collect();
    let lbuf = gpu.storage_buffer("l", bytemuck::cast_slice(&ids));
    let (x16, x32) = (
        gpu.storage_buffer("x16", bytemuck::cast_slice(&h)),
        gpu.storage_buffer("x32", bytemuck::cast_slice(&w)),
    );
    let (g16, g32) = (
        gpu.storage_buffer("g16", &vec![0u8; 2 * rows * dim]),
        gpu.storage_buffer("g32", &vec![0u8; 4 * rows * dim]),
    );
    let run = |x: &wgpu::Buffer, g: &wgpu::Buffer, p: Precision| {
        loss.batch_device(
            gpu,
            DeviceRows::new(x, rows, dim).precision(p),
            DeviceLabels::new(&lbuf),
            Some(DeviceGrad::new(g, dim).precision(p)),
            Target::Submit,
        )
        .unwrap()
        .read(gpu)
        .unwrap()
    };
    let (a, b) = (
        run(&x16, &g16, Precision::F16),
        run(&x32, &g32, Precision::F32),
    );
    assert_eq!(a.to_bits(), b.to_bits());
    let got: Vec<f16> = bytemuck::pod_collect_to_vec(&gpu.read_buffer(&g16).unwrap());
    within_an_ulp(&got, &gpu.read_f32(&g32).unwrap());
}

#[test]
fn every_family_reads_f16_device_buffers() {
    let Some(gpu) = common::gpu() else { return };
    device_same_as_widened(gpu, &Contrastive::default(), 12);
    device_same_as_widened(gpu, &Triplet::default(), 13);
    device_same_as_widened(gpu, &Softmax::ntxent(), 14);
    device_same_as_widened(gpu, &Weighting::multi_similarity(), 15);
    // SigLIP (two f16 views) and ArcFace (f16 queries and class weights), both gradients.
    let (rows, dim, classes) = (70, 6, 40);
    let mut rng = Rng::new(16);
    let (ha, wa) = drawn(&mut rng, rows, dim);
    let (hb, wb) = drawn(&mut rng, rows, dim); // ArcFace: the first `classes` rows
    let buf = |name, bytes: &[u8]| gpu.storage_buffer(name, bytes);
    let (a16, a32) = (
        buf("a16", bytemuck::cast_slice(&ha)),
        buf("a32", bytemuck::cast_slice(&wa)),
    );
    let (b16, b32) = (
        buf("b16", bytemuck::cast_slice(&hb)),
        buf("b32", bytemuck::cast_slice(&wb)),
    );
    let zeros = |n: usize, p: Precision| buf("g", &vec![0u8; n * dim * p.bytes() as usize]);
    let ids: Vec<u32> = (0..rows)
        .map(|_| rng.below(classes as u64) as u32)
        .collect();
    let lbuf = buf("ids", bytemuck::cast_slice(&ids));
    for (name, n_b) in [("siglip", rows), ("arcface", classes)] {
        let mut grads = Vec::new();
        let mut losses = Vec::new();
        for (p, a, b) in [(Precision::F16, &a16, &b16), (Precision::F32, &a32, &b32)] {
            let (ga, gb) = (zeros(rows, p), zeros(n_b, p));
            let ra = DeviceRows::new(a, rows, dim).precision(p);
            let rb = DeviceRows::new(b, n_b, dim).precision(p);
            let (da, db) = (
                DeviceGrad::new(&ga, dim).precision(p),
                DeviceGrad::new(&gb, dim).precision(p),
            );
            let out = match name {
                "siglip" => {
                    Siglip::default().pairs_device(gpu, ra, rb, Some([da, db]), Target::Submit)
                }
                _ => Proxy::arcface().batch_device(
                    gpu,
                    ra,
                    DeviceLabels::new(&lbuf),
                    rb,
                    Some(da),
                    Some(db),
                    Target::Submit,
                ),
            };
            losses.push(out.unwrap().read(gpu).unwrap());
            grads.push((gpu.read_buffer(&ga).unwrap(), gpu.read_buffer(&gb).unwrap()));
        }
        assert_eq!(losses[0].to_bits(), losses[1].to_bits(), "{name}");
        for (h, w) in [(&grads[0].0, &grads[1].0), (&grads[0].1, &grads[1].1)] {
            let h: Vec<f16> = bytemuck::pod_collect_to_vec(h);
            let w: Vec<f32> = bytemuck::pod_collect_to_vec(w);
            within_an_ulp(&h, &w);
        }
    }
}

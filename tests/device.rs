//! The device-resident API: the caller's buffers (offsets, strides), its command encoder,
//! the gradient's scale and accumulation, the loss on the device, errors, windows, and an
//! allocation-free loop, against the host-slice path.

mod common;

use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
use metric_loss::testing::{self as check, Rng};
use metric_loss::{
    wgpu, Contrastive, Distance, Embeddings, Error, Gpu, Gradient, Grads, Labels, Precision,
    Reduction,
};

/// A device of the caller's own, shared with metric-loss (`limits`: None for the adapter's).
fn shared(limits: Option<wgpu::Limits>) -> Option<(Gpu, wgpu::Device, wgpu::Queue)> {
    common::gpu()?;
    let instance = wgpu::Instance::default();
    let adapter = pollster::block_on(instance.request_adapter(&Default::default())).ok()?;
    let limits = limits.unwrap_or_else(|| adapter.limits());
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    }))
    .ok()?;
    Some((
        Gpu::from_device(device.clone(), queue.clone()).unwrap(),
        device,
        queue,
    ))
}

/// Rows of `dim` values at `stride` from value `first`, gaps filled with `gap`.
fn strided(data: &[f32], dim: usize, stride: usize, first: usize, gap: f32) -> Vec<f32> {
    let rows = data.len() / dim;
    let mut out = vec![gap; first + rows * stride];
    for (r, row) in data.chunks_exact(dim).enumerate() {
        out[first + r * stride..first + r * stride + dim].copy_from_slice(row);
    }
    out
}

struct Case {
    rows: usize,
    dim: usize,
    x: Vec<f32>,
    labels: Vec<i64>,
}

impl Case {
    fn new(seed: u64, rows: usize, dim: usize) -> Self {
        let mut rng = Rng::new(seed);
        Self {
            rows,
            dim,
            x: rng.normals(rows * dim),
            labels: (0..rows)
                .map(|_| rng.below(rows as u64 / 5 + 1) as i64)
                .collect(),
        }
    }

    fn ids(&self) -> Vec<u8> {
        let ids: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        bytemuck::cast_slice(&ids).to_vec()
    }
}

/// Runs `cfg` on the device path (rows at value 5 with stride dim + 3, gradient at value 2
/// with stride dim + 1, pre-filled with `prefill`) and returns (loss, caller grad buffer).
fn device_run(
    gpu: &Gpu,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    cfg: &Contrastive,
    c: &Case,
    grad: (f32, bool, f32),
    encoder: bool,
) -> (f64, Vec<f32>) {
    let (scale, accumulate, prefill) = grad;
    let xs = strided(&c.x, c.dim, c.dim + 3, 5, 7.0);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&xs));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let gb = gpu.storage_buffer(
        "caller",
        bytemuck::cast_slice(&vec![prefill; 2 + c.rows * (c.dim + 1)]),
    );
    let x = DeviceRows {
        buffer: &xb,
        offset: 20,
        rows: c.rows,
        dim: c.dim,
        stride: c.dim + 3,
        precision: Precision::F32,
    };
    let g = DeviceGrad {
        buffer: &gb,
        offset: 8,
        stride: c.dim + 1,
        scale,
        accumulate,
        precision: Precision::F32,
    };
    let loss = if encoder {
        let mut enc = device.create_command_encoder(&Default::default());
        let l = cfg
            .batch_device(
                gpu,
                x,
                DeviceLabels::new(&lb),
                Some(g),
                Target::Encoder(&mut enc),
            )
            .unwrap();
        queue.submit([enc.finish()]);
        l
    } else {
        cfg.batch_device(gpu, x, DeviceLabels::new(&lb), Some(g), Target::Submit)
            .unwrap()
    };
    (loss.read(gpu).unwrap(), gpu.read_f32(&gb).unwrap())
}

/// The row values of a caller gradient buffer (value 2 on, stride dim + 1).
fn rows_of(buf: &[f32], rows: usize, dim: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| buf[2 + r * (dim + 1)..2 + r * (dim + 1) + dim].to_vec())
        .collect()
}

fn compare_to_host(gpu: &Gpu, cfg: &Contrastive, c: &Case, loss: f64, grad: &[f32]) {
    let x = Embeddings::named("x", &c.x, c.rows, c.dim).unwrap();
    let host = cfg
        .batch(gpu, &x, &Labels::new(&c.labels), Grads::Compute)
        .unwrap();
    let dev = metric_loss::LossOutput {
        loss,
        counts: host.counts,
        grads: vec![Gradient::new(grad.to_vec(), c.dim)],
        grad_temperature: None,
        grad_bias: None,
    };
    let report = check::contrastive_batch_verdict(format!("device {cfg:?}"), cfg, &dev, &host, &x);
    common::assert_report(&report);
}

#[test]
fn matches_the_host_path_with_offsets_and_strides() {
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let c = Case::new(1, 70, 7);
    for (reduction, distance, normalize) in [
        (Reduction::Mean, Distance::Euclidean, false),
        (Reduction::Sum, Distance::SquaredEuclidean, true),
        (Reduction::MeanNonzero, Distance::Cosine, false),
    ] {
        let cfg = Contrastive {
            reduction,
            distance,
            normalize,
            ..Default::default()
        }
        .margin(2.0)
        .unwrap();
        for encoder in [false, true] {
            let (loss, buf) =
                device_run(&gpu, &device, &queue, &cfg, &c, (1.0, false, 9.0), encoder);
            compare_to_host(&gpu, &cfg, &c, loss, &rows_of(&buf, c.rows, c.dim));
            // Values between rows are left alone.
            assert_eq!(buf[0], 9.0);
            assert_eq!(buf[1 + c.dim + 1], 9.0);
        }
    }
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn the_gradient_is_scaled_and_accumulated() {
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let c = Case::new(2, 40, 5);
    let cfg = Contrastive::default();
    let (_, plain) = device_run(&gpu, &device, &queue, &cfg, &c, (1.0, false, 0.0), false);
    let (_, acc) = device_run(&gpu, &device, &queue, &cfg, &c, (0.5, true, 3.0), false);
    let (g, a) = (rows_of(&plain, c.rows, c.dim), rows_of(&acc, c.rows, c.dim));
    for (x, y) in g.iter().zip(&a) {
        assert!(
            (3.0 + 0.5 * x - y).abs() <= 1e-6 * (1.0 + x.abs()),
            "{x} {y}"
        );
    }
    assert!(g.iter().any(|&v| v != 0.0));
    assert_eq!(acc[0], 3.0);
}

#[test]
fn windows_match_the_host_path() {
    let Some(base) = common::gpu() else { return };
    let mut limits = base.limits().clone();
    limits.max_storage_buffer_binding_size = 64 * 1024;
    let Some((gpu, device, queue)) = shared(Some(limits)) else {
        return;
    };
    // 100 values a row: 64 KiB bindings take windows of 128 rows; B = 300 needs 3.
    let c = Case::new(3, 300, 100);
    let cfg = Contrastive::default().margin(14.0).unwrap();
    let (loss, buf) = device_run(&gpu, &device, &queue, &cfg, &c, (1.0, false, 0.0), false);
    compare_to_host(&gpu, &cfg, &c, loss, &rows_of(&buf, c.rows, c.dim));
}

#[test]
fn the_loss_can_be_read_asynchronously() {
    let Some((gpu, _device, _queue)) = shared(None) else {
        return;
    };
    let c = Case::new(4, 33, 4);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&c.x));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let cfg = Contrastive::default();
    let loss = cfg
        .batch_device(
            &gpu,
            DeviceRows::new(&xb, c.rows, c.dim),
            DeviceLabels::new(&lb),
            None,
            Target::Submit,
        )
        .unwrap();
    let value = pollster::block_on(loss.read_async(&gpu)).unwrap();
    let x = Embeddings::named("x", &c.x, c.rows, c.dim).unwrap();
    let host = cfg
        .batch(&gpu, &x, &Labels::new(&c.labels), Grads::Skip)
        .unwrap();
    assert!(
        (value - host.loss).abs() <= 1e-5 * (1.0 + host.loss.abs()),
        "{value} {}",
        host.loss
    );
}

#[test]
fn bad_layouts_and_values_are_errors() {
    let Some((gpu, device, _queue)) = shared(None) else {
        return;
    };
    let c = Case::new(5, 16, 4);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&c.x));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let cfg = Contrastive::default();
    let run = |x: DeviceRows<'_>, l: DeviceLabels<'_>, g: Option<DeviceGrad<'_>>| {
        cfg.batch_device(&gpu, x, l, g, Target::Submit)
    };
    let x = DeviceRows::new(&xb, c.rows, c.dim);
    let l = DeviceLabels::new(&lb);
    let bad = [
        run(DeviceRows { offset: 2, ..x }, l, None),
        run(DeviceRows { stride: 3, ..x }, l, None),
        run(DeviceRows { rows: 17, ..x }, l, None),
        run(x, DeviceLabels { offset: 4, ..l }, None),
        run(
            x,
            l,
            Some(DeviceGrad {
                stride: 2,
                ..DeviceGrad::new(&xb, c.dim)
            }),
        ),
    ];
    for (k, r) in bad.into_iter().enumerate() {
        let err = r.err().unwrap_or_else(|| panic!("case {k} passed"));
        assert!(
            matches!(err, Error::InvalidBuffer { .. }),
            "case {k}: {err}"
        );
    }
    let no_storage = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let err = run(DeviceRows::new(&no_storage, 4, 4), l, None)
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidBuffer { .. }), "{err}");
    let err = run(DeviceRows { rows: 0, ..x }, l, None).err().unwrap();
    assert!(matches!(err, Error::EmptyInput { .. }), "{err}");
    // A NaN at row 3, column 1 and an infinity later: the first index is reported.
    let mut v = c.x.clone();
    v[3 * c.dim + 1] = f32::NAN;
    v[9 * c.dim] = f32::INFINITY;
    let nb = gpu.storage_buffer("caller", bytemuck::cast_slice(&v));
    let loss = run(DeviceRows::new(&nb, c.rows, c.dim), l, None).unwrap();
    match loss.read(&gpu) {
        Err(Error::DeviceInputOutOfDomain { row, column, .. }) => {
            assert_eq!((row, column), (3, 1))
        }
        other => panic!("{other:?}"),
    }
    // The next valid call is clean again.
    let loss = run(x, l, None).unwrap();
    assert!(loss.read(&gpu).unwrap().is_finite());
}

#[test]
fn a_loop_over_the_same_buffers_allocates_nothing_after_its_first_step() {
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let c = Case::new(6, 96, 12);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&c.x));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let gb = gpu.storage_buffer(
        "caller",
        bytemuck::cast_slice(&vec![0.0f32; c.rows * c.dim]),
    );
    let mut after_first = None;
    for step in 0..20 {
        let reads = gpu.host_reads();
        let mut enc = device.create_command_encoder(&Default::default());
        let loss = Contrastive::default()
            .batch_device(
                &gpu,
                DeviceRows::new(&xb, c.rows, c.dim),
                DeviceLabels::new(&lb),
                Some(DeviceGrad::new(&gb, c.dim).accumulate(step > 0)),
                Target::Encoder(&mut enc),
            )
            .unwrap();
        queue.submit([enc.finish()]);
        // Only reading the loss waits for the device and reads back.
        if step % 5 == 0 {
            assert!(loss.read(&gpu).unwrap().is_finite());
            assert_eq!(gpu.host_reads(), reads + 1, "step {step}");
        } else {
            assert_eq!(gpu.host_reads(), reads, "step {step}");
        }
        let now = (gpu.allocations(), common::live(&gpu));
        if step == 0 {
            after_first = Some(now);
        }
        assert_eq!(Some(now), after_first, "step {step}");
    }
}

#[test]
fn softmax_losses_match_the_host_path() {
    use metric_loss::{Softmax, SoftmaxLoss};
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let c = Case::new(7, 66, 6);
    let other = Rng::new(8).normals(c.rows * c.dim);
    let close = |what: &str, got: f64, want: f64, scale: f64| {
        assert!(
            (got - want).abs() <= 1e-4 * (want.abs() + scale),
            "{what}: device {got}, host {want}"
        );
    };
    let x = Embeddings::named("x", &c.x, c.rows, c.dim).unwrap();
    let y = Embeddings::named("y", &other, c.rows, c.dim).unwrap();
    let xs = strided(&c.x, c.dim, c.dim + 2, 3, 5.0);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&xs));
    let yb = gpu.storage_buffer("caller", bytemuck::cast_slice(&other));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let rows_x = DeviceRows {
        buffer: &xb,
        offset: 12,
        rows: c.rows,
        dim: c.dim,
        stride: c.dim + 2,
        precision: Precision::F32,
    };
    let rows_y = DeviceRows::new(&yb, c.rows, c.dim);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon, SoftmaxLoss::Clip] {
        let cfg = Softmax::new(loss);
        let ga = gpu.storage_buffer(
            "caller",
            bytemuck::cast_slice(&vec![0.0f32; c.rows * c.dim]),
        );
        let gb = gpu.storage_buffer(
            "caller",
            bytemuck::cast_slice(&vec![0.0f32; c.rows * c.dim]),
        );
        let mut enc = device.create_command_encoder(&Default::default());
        let (dev, host) = if loss == SoftmaxLoss::Clip {
            let grads = [DeviceGrad::new(&ga, c.dim), DeviceGrad::new(&gb, c.dim)];
            let d = cfg
                .pairs_device(&gpu, rows_x, rows_y, Some(grads), Target::Encoder(&mut enc))
                .unwrap();
            (d, cfg.pairs(&gpu, &x, &y, Grads::Compute).unwrap())
        } else {
            let l = DeviceLabels::new(&lb);
            let grad = Some(DeviceGrad::new(&ga, c.dim));
            let d = cfg
                .batch_device(&gpu, rows_x, l, grad, Target::Encoder(&mut enc))
                .unwrap();
            let labels = Labels::new(&c.labels);
            (d, cfg.batch(&gpu, &x, &labels, Grads::Compute).unwrap())
        };
        queue.submit([enc.finish()]);
        let (value, dtau) = dev.read_all(&gpu).unwrap();
        close(&format!("{loss:?} loss"), value, host.loss, 1.0);
        let host_tau = host.grad_temperature.unwrap();
        close(&format!("{loss:?} dL/dtau"), dtau.unwrap(), host_tau, 1.0);
        for (k, buf) in [&ga, &gb].iter().enumerate().take(host.grads.len()) {
            let g = gpu.read_f32(buf).unwrap();
            let scale = host.grads[k].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in g.iter().zip(&host.grads[k]).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * (b.abs() + scale),
                    "{loss:?} grad {k}[{i}]: device {a}, host {b}"
                );
            }
        }
    }
    // No positive pair: loss 0, counted on the device.
    let distinct: Vec<u32> = (0..c.rows as u32).collect();
    let db = gpu.storage_buffer("caller", bytemuck::cast_slice(&distinct));
    let d = Softmax::supcon()
        .batch_device(&gpu, rows_x, DeviceLabels::new(&db), None, Target::Submit)
        .unwrap();
    assert_eq!(d.read(&gpu).unwrap(), 0.0);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn infonce_with_more_keys_matches_the_host_path() {
    // Anchors in a strided buffer at an offset, 3× as many keys in another: the device path
    // gathers and scatters each side over its own rows.
    use metric_loss::Softmax;
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let (n, m, dim) = (70, 210, 6);
    let a = Rng::new(11).normals(n * dim);
    let k = Rng::new(12).normals(m * dim);
    let ea = Embeddings::named("a", &a, n, dim).unwrap();
    let ek = Embeddings::named("b", &k, m, dim).unwrap();
    let ab = gpu.storage_buffer(
        "caller",
        bytemuck::cast_slice(&strided(&a, dim, dim + 1, 2, 7.0)),
    );
    let kb = gpu.storage_buffer("caller", bytemuck::cast_slice(&k));
    let rows_a = DeviceRows {
        buffer: &ab,
        offset: 8,
        rows: n,
        dim,
        stride: dim + 1,
        precision: Precision::F32,
    };
    let rows_k = DeviceRows::new(&kb, m, dim);
    for cfg in [Softmax::infonce(false), Softmax::infonce(true)] {
        let zeros = |rows: usize| vec![0.0f32; rows * dim];
        let ga = gpu.storage_buffer("caller", bytemuck::cast_slice(&zeros(n)));
        let gk = gpu.storage_buffer("caller", bytemuck::cast_slice(&zeros(m)));
        let grads = [DeviceGrad::new(&ga, dim), DeviceGrad::new(&gk, dim)];
        let mut enc = device.create_command_encoder(&Default::default());
        let d = cfg
            .pairs_device(&gpu, rows_a, rows_k, Some(grads), Target::Encoder(&mut enc))
            .unwrap();
        queue.submit([enc.finish()]);
        let host = cfg.pairs(&gpu, &ea, &ek, Grads::Compute).unwrap();
        let (value, dtau) = d.read_all(&gpu).unwrap();
        assert!(
            (value - host.loss).abs() <= 1e-4 * (host.loss.abs() + 1.0),
            "{cfg:?}"
        );
        let ht = host.grad_temperature.unwrap();
        assert!(
            (dtau.unwrap() - ht).abs() <= 1e-4 * (ht.abs() + 1.0),
            "{cfg:?} dL/dtau"
        );
        for (buf, want) in [(&ga, &host.grads[0]), (&gk, &host.grads[1])] {
            let got = gpu.read_f32(buf).unwrap();
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(0.0f32, |s, v| s.max(v.abs()));
            for (x, y) in got.iter().zip(want.iter()) {
                assert!(
                    (x - y).abs() <= 1e-4 * (y.abs() + scale),
                    "{cfg:?}: {x} vs {y}"
                );
            }
        }
    }
    // With labels masking false negatives (anchors' then keys', few classes).
    let la: Vec<u32> = (0..n as u32).map(|i| i % 7).collect();
    let lk: Vec<u32> = (0..m as u32).map(|i| (i * 3) % 7).collect();
    let lab = gpu.storage_buffer("la", bytemuck::cast_slice(&la));
    let lkb = gpu.storage_buffer("lk", bytemuck::cast_slice(&lk));
    let joint: Vec<i64> = la.iter().chain(&lk).map(|&v| i64::from(v)).collect();
    for cfg in [Softmax::infonce(false), Softmax::infonce(true)] {
        let d = cfg
            .pairs_labelled_device(
                &gpu,
                rows_a,
                rows_k,
                DeviceLabels::new(&lab),
                DeviceLabels::new(&lkb),
                None,
                Target::Submit,
            )
            .unwrap();
        let host = cfg
            .pairs_labelled(&gpu, &ea, &ek, &Labels::new(&joint), Grads::Skip)
            .unwrap();
        let value = d.read(&gpu).unwrap();
        assert!(
            (value - host.loss).abs() <= 1e-4 * (host.loss.abs() + 1.0),
            "{cfg:?} labelled: {value} vs {}",
            host.loss
        );
    }
    // Fewer keys than anchors is an input error before anything runs.
    let few = DeviceRows::new(&kb, n - 1, dim);
    assert!(matches!(
        Softmax::infonce(false).pairs_device(&gpu, rows_a, few, None, Target::Submit),
        Err(metric_loss::Error::ShapeMismatch { .. })
    ));
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn two_calls_in_one_encoder_keep_their_own_parameters() {
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    // Two batches of different sizes and margins recorded before one submit, with a host
    // call in between: each gradient must match its own host result.
    let cases = [Case::new(9, 40, 5), Case::new(10, 70, 5)];
    let cfgs = [
        Contrastive::default().margin(1.0).unwrap(),
        Contrastive::default().margin(3.0).unwrap(),
    ];
    let bufs: Vec<_> = cases
        .iter()
        .map(|c| {
            (
                gpu.storage_buffer("caller", bytemuck::cast_slice(&c.x)),
                gpu.storage_buffer("caller", &c.ids()),
                gpu.storage_buffer(
                    "caller",
                    bytemuck::cast_slice(&vec![0.0f32; c.rows * c.dim]),
                ),
            )
        })
        .collect();
    let mut enc = device.create_command_encoder(&Default::default());
    for ((c, cfg), (x, l, g)) in cases.iter().zip(&cfgs).zip(&bufs) {
        cfg.batch_device(
            &gpu,
            DeviceRows::new(x, c.rows, c.dim),
            DeviceLabels::new(l),
            Some(DeviceGrad::new(g, c.dim)),
            Target::Encoder(&mut enc),
        )
        .unwrap();
        let e = Embeddings::named("x", &c.x, c.rows, c.dim).unwrap();
        cfg.batch(&gpu, &e, &Labels::new(&c.labels), Grads::Skip)
            .unwrap();
    }
    queue.submit([enc.finish()]);
    for ((c, cfg), (_, _, g)) in cases.iter().zip(&cfgs).zip(&bufs) {
        let e = Embeddings::named("x", &c.x, c.rows, c.dim).unwrap();
        let host = cfg
            .batch(&gpu, &e, &Labels::new(&c.labels), Grads::Compute)
            .unwrap();
        let got = gpu.read_f32(g).unwrap();
        let scale = host.grads[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in got.iter().zip(&host.grads[0]) {
            assert!((a - b).abs() <= 1e-4 * (b.abs() + scale), "{a} {b}");
        }
    }
}

#[test]
fn triplet_losses_match_the_host_path() {
    use metric_loss::{Mining, Triplet};
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    // Small integers: every distance is exact in f32, so both paths choose the same terms.
    let (rows, dim) = (70usize, 5usize);
    let mut rng = Rng::new(11);
    let ints = |rng: &mut Rng| -> Vec<f32> {
        (0..rows * dim).map(|_| rng.below(7) as f32 - 3.0).collect()
    };
    let (xa, xp, xn) = (ints(&mut rng), ints(&mut rng), ints(&mut rng));
    let labels: Vec<i64> = (0..rows).map(|_| rng.below(9) as i64).collect();
    let ids: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let lb = gpu.storage_buffer("caller", bytemuck::cast_slice(&ids));
    let bufs: Vec<wgpu::Buffer> = [&xa, &xp, &xn]
        .iter()
        .map(|v| {
            gpu.storage_buffer(
                "caller",
                bytemuck::cast_slice(&strided(v, dim, dim + 1, 1, 0.0)),
            )
        })
        .collect();
    fn rows_of_buf(b: &wgpu::Buffer, rows: usize, dim: usize) -> DeviceRows<'_> {
        DeviceRows {
            buffer: b,
            offset: 4,
            rows,
            dim,
            stride: dim + 1,
            precision: Precision::F32,
        }
    }
    let check = |what: &str, host: &metric_loss::TripletOutput, loss: f64, grads: &[Vec<f32>]| {
        assert!(
            (loss - host.loss).abs() <= 1e-5 * (1.0 + host.loss.abs()),
            "{what}: device {loss}, host {}",
            host.loss
        );
        for (k, (g, h)) in grads.iter().zip(&host.grads).enumerate() {
            let scale = h.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (a, b)) in g.iter().zip(h).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (b.abs() + scale),
                    "{what} grad {k}[{i}]: device {a}, host {b}"
                );
            }
        }
    };
    let cfg = Triplet::default().margin(2.0).unwrap();
    fn e(v: &[f32], dim: usize) -> Embeddings<'_> {
        Embeddings::named("x", v, v.len() / dim, dim).unwrap()
    }
    // Mined: every rule with its default reduction, and mean-nonzero for `all`.
    for (mining, t) in [
        (Mining::Hard, cfg),
        (Mining::Semihard, cfg),
        (Mining::All, cfg),
        (Mining::All, cfg.reduction(Reduction::Mean)),
    ] {
        let g = gpu.storage_buffer("caller", bytemuck::cast_slice(&vec![0.0f32; rows * dim]));
        let loss = t
            .mining(mining)
            .batch_device(
                &gpu,
                rows_of_buf(&bufs[0], rows, dim),
                DeviceLabels::new(&lb),
                Some(DeviceGrad::new(&g, dim)),
                Target::Submit,
            )
            .unwrap()
            .read(&gpu)
            .unwrap();
        let host = t
            .mining(mining)
            .batch(&gpu, &e(&xa, dim), &Labels::new(&labels), Grads::Compute)
            .unwrap();
        check(
            &format!("{mining:?}"),
            &host,
            loss,
            &[gpu.read_f32(&g).unwrap()],
        );
    }
    // Explicit, with swap.
    let t = cfg.swap(true);
    let gs: Vec<wgpu::Buffer> = (0..3)
        .map(|_| gpu.storage_buffer("caller", bytemuck::cast_slice(&vec![0.0f32; rows * dim])))
        .collect();
    let mut enc = device.create_command_encoder(&Default::default());
    let dl = t
        .explicit_device(
            &gpu,
            rows_of_buf(&bufs[0], rows, dim),
            rows_of_buf(&bufs[1], rows, dim),
            rows_of_buf(&bufs[2], rows, dim),
            Some([
                DeviceGrad::new(&gs[0], dim),
                DeviceGrad::new(&gs[1], dim),
                DeviceGrad::new(&gs[2], dim),
            ]),
            Target::Encoder(&mut enc),
        )
        .unwrap();
    queue.submit([enc.finish()]);
    let loss = dl.read(&gpu).unwrap();
    let host = t
        .explicit(
            &gpu,
            &e(&xa, dim),
            &e(&xp, dim),
            &e(&xn, dim),
            Grads::Compute,
        )
        .unwrap();
    let grads: Vec<Vec<f32>> = gs.iter().map(|g| gpu.read_f32(g).unwrap()).collect();
    check("explicit", &host, loss, &grads);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn a_loss_read_after_a_later_call_is_stale_not_wrong() {
    let Some((gpu, _device, _queue)) = shared(None) else {
        return;
    };
    let c = Case::new(9, 20, 5);
    let xb = gpu.storage_buffer("caller", bytemuck::cast_slice(&c.x));
    let lb = gpu.storage_buffer("caller", &c.ids());
    let x = DeviceRows::new(&xb, c.rows, c.dim);
    let run = |cfg: Contrastive| {
        cfg.batch_device(&gpu, x, DeviceLabels::new(&lb), None, Target::Submit)
            .unwrap()
    };
    let alone = run(Contrastive::default().margin(3.0).unwrap())
        .read(&gpu)
        .unwrap();
    let first = run(Contrastive::default());
    let second = run(Contrastive::default().margin(3.0).unwrap());
    // The workspace's loss buffer now holds the second call's loss.
    assert!(matches!(first.read(&gpu), Err(Error::StaleDeviceLoss)));
    let loss = second.read(&gpu).unwrap();
    assert_eq!(loss.to_bits(), alone.to_bits());
    Contrastive::default()
        .batch(
            &gpu,
            &Embeddings::named("x", &c.x, c.rows, c.dim).unwrap(),
            &Labels::new(&c.labels),
            Grads::Skip,
        )
        .unwrap();
    // Host-path calls do not touch the device-resident buffers.
    assert_eq!(second.read(&gpu).unwrap(), loss);
}

/// Host-side copies of a queue's rows and labels after the pushes `pushed` (rows, labels),
/// in slot order, for a queue of `capacity`.
fn queue_slots(
    pushed: &[(Vec<f32>, Vec<u32>)],
    capacity: usize,
    dim: usize,
) -> (Vec<f32>, Vec<u32>) {
    let (mut rows, mut labels) = (vec![0.0f32; capacity * dim], vec![0u32; capacity]);
    let (mut next, mut len) = (0, 0);
    for (r, l) in pushed {
        let n = l.len();
        for k in n.saturating_sub(capacity)..n {
            rows[next * dim..(next + 1) * dim].copy_from_slice(&r[k * dim..(k + 1) * dim]);
            labels[next] = l[k];
            next = (next + 1) % capacity;
            len = (len + 1).min(capacity);
        }
    }
    (rows[..len * dim].to_vec(), labels[..len].to_vec())
}

#[test]
fn a_queue_keeps_the_newest_rows() {
    use metric_loss::device::DeviceQueue;
    let Some((gpu, _, _)) = shared(None) else {
        return;
    };
    let dim = 3;
    let mut q = DeviceQueue::new(&gpu, 5, dim).unwrap();
    assert!(q.is_empty() && !q.is_full() && q.rows().rows == 0);
    let mut pushed = Vec::new();
    for (seed, n) in [(1, 3), (2, 4), (3, 7), (4, 1)] {
        let r = Rng::new(seed).normals(n * dim);
        let l: Vec<u32> = (0..n as u32).map(|i| 10 * seed as u32 + i).collect();
        let rb = gpu.storage_buffer("rows", bytemuck::cast_slice(&r));
        let lb = gpu.storage_buffer("labels", bytemuck::cast_slice(&l));
        q.push(
            &gpu,
            DeviceRows::new(&rb, n, dim),
            DeviceLabels::new(&lb),
            Target::Submit,
        )
        .unwrap();
        pushed.push((r, l));
        let (rows, labels) = queue_slots(&pushed, 5, dim);
        assert_eq!(q.len(), labels.len());
        let got_rows = gpu.read_f32(q.rows().buffer).unwrap();
        assert_eq!(&got_rows[..rows.len()], &rows[..], "after push {seed}");
        let got_labels = gpu.read_f32(q.labels().buffer).unwrap();
        let got_labels: Vec<u32> = got_labels.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            &got_labels[..labels.len()],
            &labels[..],
            "after push {seed}"
        );
    }
    // 3 rows (not yet full, oldest at 0), then 4 (full: slots 3, 4, 0, 1; oldest at 2),
    // then 7 (its last 5 kept, slots 2, 3, 4, 0, 1), then 1 (slot 2: the oldest at 3).
    assert!(q.is_full());
    assert_eq!(q.oldest(), 3);
    // Pushes need contiguous rows of the queue's width, from a COPY_SRC buffer.
    let rb = gpu.storage_buffer("rows", &[0u8; 64]);
    let wide = DeviceRows {
        stride: dim + 1,
        ..DeviceRows::new(&rb, 2, dim)
    };
    let lb = gpu.storage_buffer("labels", &[0u8; 8]);
    assert!(matches!(
        q.push(&gpu, wide, DeviceLabels::new(&lb), Target::Submit),
        Err(Error::InvalidBuffer { .. })
    ));
    assert!(DeviceQueue::new(&gpu, 0, 3).is_err());
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn queries_against_a_device_queue_match_the_host_path() {
    use metric_loss::device::{DeviceQueue, DeviceReference};
    use metric_loss::{ReferenceGrad, ReferenceSet, Softmax};
    let Some((gpu, device, queue)) = shared(None) else {
        return;
    };
    let (n, dim, capacity) = (40, 6, 120);
    let mut dq = DeviceQueue::new(&gpu, capacity, dim).unwrap();
    let mut pushed = Vec::new();
    let mut before = None;
    // The caller's buffers, the same every step (a training loop's).
    let xb = gpu.storage_buffer("x", bytemuck::cast_slice(&vec![0.0f32; n * dim]));
    let lb = gpu.storage_buffer("l", bytemuck::cast_slice(&vec![0u32; n]));
    let gb = gpu.storage_buffer("g", bytemuck::cast_slice(&vec![0.0f32; n * dim]));
    for step in 0..6u64 {
        // This step's queries and labels, in the caller's buffers.
        let x = Rng::new(100 + step).normals(n * dim);
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 7 + step as u32) % 9).collect();
        queue.write_buffer(&xb, 0, bytemuck::cast_slice(&x));
        queue.write_buffer(&lb, 0, bytemuck::cast_slice(&ids));
        if !dq.is_empty() {
            let (rows, labels) = queue_slots(&pushed, capacity, dim);
            let m = labels.len();
            let r = Embeddings::named("r", &rows, m, dim).unwrap();
            let q = Embeddings::named("x", &x, n, dim).unwrap();
            let both: Vec<i64> = ids.iter().chain(&labels).map(|&v| i64::from(v)).collect();
            let set = ReferenceSet::new(&r, ReferenceGrad::Detached);
            let softmax = Softmax::supcon();
            let contrastive = Contrastive::default().margin(2.5).unwrap();
            let hosts = [
                softmax
                    .against(&gpu, &q, &set, &Labels::new(&both), Grads::Compute)
                    .unwrap(),
                {
                    let c = contrastive
                        .against(&gpu, &q, &set, &Labels::new(&both), Grads::Compute)
                        .unwrap();
                    metric_loss::LossOutput {
                        loss: c.loss,
                        counts: metric_loss::SoftmaxCounts {
                            terms: c.counts.pairs(),
                        },
                        grads: c.grads,
                        grad_temperature: None,
                        grad_bias: None,
                    }
                },
            ];
            for (k, host) in hosts.iter().enumerate() {
                let mut enc = device.create_command_encoder(&Default::default());
                let grad = Some(DeviceGrad::new(&gb, dim));
                let reference: DeviceReference = dq.reference();
                let rows = DeviceRows::new(&xb, n, dim);
                let d = if k == 0 {
                    softmax.against_device(
                        &gpu,
                        rows,
                        DeviceLabels::new(&lb),
                        reference,
                        grad,
                        Target::Encoder(&mut enc),
                    )
                } else {
                    contrastive.against_device(
                        &gpu,
                        rows,
                        DeviceLabels::new(&lb),
                        reference,
                        grad,
                        Target::Encoder(&mut enc),
                    )
                }
                .unwrap();
                queue.submit([enc.finish()]);
                let value = d.read(&gpu).unwrap();
                assert!(
                    (value - host.loss).abs() <= 1e-4 * (host.loss.abs() + 1.0),
                    "step {step} loss {k}: {value} vs {}",
                    host.loss
                );
                let g = gpu.read_f32(&gb).unwrap();
                let scale = host.grads[0].iter().fold(0.0f32, |s, v| s.max(v.abs()));
                for (a, b) in g.iter().zip(host.grads[0].iter()) {
                    assert!((a - b).abs() <= 1e-4 * (b.abs() + scale), "step {step}");
                }
            }
        }
        // The queries become the newest keys.
        let mut enc = device.create_command_encoder(&Default::default());
        dq.push(
            &gpu,
            DeviceRows::new(&xb, n, dim),
            DeviceLabels::new(&lb),
            Target::Encoder(&mut enc),
        )
        .unwrap();
        queue.submit([enc.finish()]);
        pushed.push((x, ids));
        // Once the queue is full (after step 2) and a step has run against it, a step
        // creates no wgpu object.
        if step == 4 {
            before = Some(gpu.allocations());
        }
    }
    assert!(dq.is_full());
    assert_eq!(gpu.allocations(), before.unwrap());
    assert_eq!(gpu.uncaptured_errors(), 0);
}

//! Softmax-contrastive losses (NT-Xent, SupCon, CLIP): hand-worked values on the GPU and the
//! CPU, empty cases, temperatures down to the minimum, sizes around the 128-row block, windows,
//! determinism, memory without a B×B buffer, allocation-free training loops, and errors.

mod common;

use metric_loss::tolerance::Verdict;

/// `cfg.batch_check` under the case's name.
fn cross_batch(
    gpu: &Gpu,
    name: String,
    cfg: &Softmax,
    x: &Embeddings<'_>,
    l: &Labels,
) -> metric_loss::Result<Verdict> {
    let mut v = cfg.batch_check(gpu, x, l)?;
    v.name = name;
    Ok(v)
}

/// `cfg.pairs_check` under the case's name.
fn cross_pairs(
    gpu: &Gpu,
    name: String,
    cfg: &Softmax,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
) -> metric_loss::Result<Verdict> {
    let mut v = cfg.pairs_check(gpu, a, b)?;
    v.name = name;
    Ok(v)
}
use metric_loss::testing::Rng;
use metric_loss::{
    Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Softmax, SoftmaxLoss, SoftmaxOutput,
};

fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

fn bits(out: &SoftmaxOutput) -> (u64, Option<u64>, Vec<Vec<u32>>) {
    (
        out.loss.to_bits(),
        out.grad_temperature.map(f64::to_bits),
        out.grads
            .iter()
            .map(|g| g.iter().map(|v| v.to_bits()).collect())
            .collect(),
    )
}

/// GPU (when there is one) and CPU outputs of a batch loss.
fn batch_both(cfg: Softmax, data: &[f32], rows: usize, labels: &[i64]) -> Vec<SoftmaxOutput> {
    let x = Embeddings::named("x", data, rows, data.len() / rows).unwrap();
    let l = Labels::new(labels);
    let mut out = vec![cfg.batch_cpu(&x, &l, Grads::Compute).unwrap()];
    if let Some(gpu) = common::gpu() {
        out.push(cfg.batch(gpu, &x, &l, Grads::Compute).unwrap());
    }
    out
}

// Two samples, two views each, on orthogonal axes: row 0 = row 2 = e1, row 1 = row 3 = e2.
const VIEWS: [f32; 8] = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
const VIEW_LABELS: [i64; 4] = [0, 1, 0, 1];

#[test]
fn ntxent_by_hand() {
    // τ = 1: each positive pair has z = 1 against two negatives with z = 0:
    // ℓ = −1 + log(e + 2) for all 4 ordered pairs.
    let e = std::f64::consts::E;
    for out in batch_both(
        Softmax::ntxent().temperature(1.0).unwrap(),
        &VIEWS,
        4,
        &VIEW_LABELS,
    ) {
        close("loss", out.loss, (e + 2.0).ln() - 1.0);
        assert_eq!(out.counts.terms, 4);
        // Row 0: L = log 2 over its negatives, σ(L − z_02) = 2/(e + 2). dL/dz_02 = dL/dz_20
        // = −(1/4)·2/(e + 2) pulls along e1, which the normalisation removes (radial);
        // each negative n ∈ {1, 3} adds dL/dz_0n + dL/dz_n0 = 2 × (1/4)·(2/(e + 2))·(1/2)
        // along e2: 1/(e + 2) in all.
        let g = &out.grads[0];
        close("dx0[0]", f64::from(g[0]), 0.0);
        close("dx0[1]", f64::from(g[1]), 1.0 / (e + 2.0));
        // dL/dτ at τ = 1: L(τ) = log(e^{1/τ} + 2) − 1/τ, so dL/dτ = 2/(e + 2).
        close("dL/dtau", out.grad_temperature.unwrap(), 2.0 / (e + 2.0));
    }
}

#[test]
fn supcon_by_hand() {
    // Anchor 0 against k ≠ 0: z = (0, 1, 0), its positive z = 1: ℓ = log(e + 2) − 1.
    let e = std::f64::consts::E;
    for out in batch_both(
        Softmax::supcon().temperature(1.0).unwrap(),
        &VIEWS,
        4,
        &VIEW_LABELS,
    ) {
        close("loss", out.loss, (e + 2.0).ln() - 1.0);
        assert_eq!(out.counts.terms, 4);
        close("dL/dtau", out.grad_temperature.unwrap(), 2.0 / (e + 2.0));
    }
    // One class of three identical rows: ℓ_a = log(2e) − 1 = log 2 for every anchor.
    let same = [1.0f32, 2.0, 1.0, 2.0, 1.0, 2.0];
    for out in batch_both(
        Softmax::supcon().temperature(1.0).unwrap(),
        &same,
        3,
        &[5, 5, 5],
    ) {
        close("one class", out.loss, 2f64.ln());
        assert_eq!(out.counts.terms, 3);
        assert!(out.grads[0].iter().all(|v| v.abs() < 1e-6));
    }
}

#[test]
fn clip_by_hand() {
    // A = B = (e1, e2), τ = 1: S = I, each CE row is log(e + 1) − 1.
    let e = std::f64::consts::E;
    let v = [1.0f32, 0.0, 0.0, 1.0];
    let a = Embeddings::named("a", &v, 2, 2).unwrap();
    let cfg = Softmax::clip().temperature(1.0).unwrap();
    let mut outs = vec![cfg.pairs_cpu(&a, &a, Grads::Compute).unwrap()];
    if let Some(gpu) = common::gpu() {
        outs.push(cfg.pairs(gpu, &a, &a, Grads::Compute).unwrap());
    }
    for out in outs {
        close("loss", out.loss, (e + 1.0).ln() - 1.0);
        assert_eq!(out.counts.terms, 2);
        // dL/da_0 = Σ_j G_0j b_j projected off a_0: G_01 = (1/4)·2/(e + 1) along e2.
        close("da0[1]", f64::from(out.grads[0][1]), 0.5 / (e + 1.0));
        close("da0[0]", f64::from(out.grads[0][0]), 0.0);
        close("db1[0]", f64::from(out.grads[1][2]), 0.5 / (e + 1.0));
        // L(τ) = log(1 + e^{−1/τ}): dL/dτ = 1/(e + 1) at τ = 1.
        close("dL/dtau", out.grad_temperature.unwrap(), 1.0 / (e + 1.0));
    }
}

#[test]
fn no_positive_pair_gives_zero_and_counts() {
    let data = common::normals(1, 5 * 3);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        for out in batch_both(Softmax::new(loss), &data, 5, &[0, 1, 2, 3, 4]) {
            assert_eq!(out.loss, 0.0, "{loss:?}");
            assert_eq!(out.counts.terms, 0);
            assert!(out.grads[0].iter().all(|&v| v == 0.0));
            assert_eq!(out.grad_temperature, Some(0.0));
        }
        // One row alone.
        for out in batch_both(Softmax::new(loss), &data[..3], 1, &[7]) {
            assert_eq!((out.loss, out.counts.terms), (0.0, 0));
        }
    }
    // NT-Xent with one class: positives but no negatives, every term is 0 yet counted.
    for out in batch_both(Softmax::ntxent(), &data, 5, &[2; 5]) {
        assert_eq!((out.loss, out.counts.terms), (0.0, 20));
        assert!(out.grads[0].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn temperatures_outside_the_domain_are_errors() {
    let data = [1.0f32, 0.0, 0.0, 1.0];
    let x = Embeddings::named("x", &data, 2, 2).unwrap();
    let l = Labels::new(&[0, 0]);
    for t in [0.0, 9e-5, -0.1, f32::NAN, f32::INFINITY, 1e16] {
        // The builder refuses it, and so does a call on a config set directly.
        let direct = Softmax {
            temperature: t,
            ..Softmax::ntxent()
        };
        for err in [
            Softmax::ntxent().temperature(t).unwrap_err(),
            direct.batch_cpu(&x, &l, Grads::Skip).unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::InvalidOption {
                        name: "temperature",
                        ..
                    }
                ),
                "{t}: {err}"
            );
        }
    }
    assert!(Softmax::supcon()
        .temperature(1e-4)
        .unwrap()
        .batch_cpu(&x, &l, Grads::Skip)
        .is_ok());
    let err = Softmax::clip().batch_cpu(&x, &l, Grads::Skip).unwrap_err();
    assert!(matches!(err, Error::OptionConflict { .. }), "{err}");
    let err = Softmax::ntxent()
        .pairs_cpu(&x, &x, Grads::Skip)
        .unwrap_err();
    assert!(matches!(err, Error::OptionConflict { .. }), "{err}");
    let y = Embeddings::named("y", &data[..2], 1, 2).unwrap();
    let err = Softmax::clip().pairs_cpu(&x, &y, Grads::Skip).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn small_temperatures_and_extreme_rows_stay_finite() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (70, 6);
    let mut rng = Rng::new(9);
    // Magnitudes from 1e-30 to near the domain's bound (1e15), zero rows and exact duplicates.
    let mut data: Vec<f32> = rng
        .normals(rows * dim)
        .iter()
        .enumerate()
        .map(|(k, v)| v * [1e-30, 1.0, 1e14, 3e7][(k / dim) % 4])
        .collect();
    data[5 * dim..6 * dim].fill(0.0);
    data.copy_within(0..dim, 7 * dim);
    let labels = common::labels(9, rows, 6);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for t in [1e-4f32, 0.01] {
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let cfg = Softmax::new(loss).temperature(t).unwrap();
            let out = cfg.batch(gpu, &x, &l, Grads::Compute).unwrap();
            assert!(out.loss.is_finite(), "{loss:?} {t}");
            assert!(out.grad_temperature.unwrap().is_finite());
            assert!(out.grads[0].iter().all(|v| v.is_finite()), "{loss:?} {t}");
        }
        let out = Softmax::clip()
            .temperature(t)
            .unwrap()
            .pairs(gpu, &x, &x, Grads::Compute)
            .unwrap();
        assert!(out.loss.is_finite() && out.grad_temperature.unwrap().is_finite());
        assert!(out.grads.iter().flatten().all(|v| v.is_finite()));
    }
    // The same input also matches the reference, down to the smallest temperature.
    for t in [0.01, 1e-4] {
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let cfg = Softmax::new(loss).temperature(t).unwrap();
            let r = cross_batch(gpu, format!("{loss:?} τ={t} extreme rows"), &cfg, &x, &l);
            common::assert_report(&r.unwrap());
        }
    }
}

#[test]
fn tied_logits_give_an_exact_temperature_gradient() {
    let Some(gpu) = common::gpu() else { return };
    // The same rows as both CLIP views, and the second half repeating the first: every row's
    // two largest logits tie exactly. At τ = 1e-4 the logits are ~10⁴, whose f32 rounding
    // (~10⁻³) does not cancel in Σ dL/dz · z: that form read dL/dτ ≈ 2·10⁴ here, where the
    // exact value is 0. Taken relative to each owner's largest logit the tied terms are
    // exact zeros, and what is left is below the reference's own f64 rounding.
    for (rows, dim) in [(64, 16), (130, 128), (300, 5)] {
        let mut data = common::normals(rows as u64, rows * dim);
        let half = rows / 2 * dim;
        data.copy_within(0..half, half);
        let x = Embeddings::named("x", &data, rows, dim).unwrap();
        for loss in [SoftmaxLoss::Clip, SoftmaxLoss::SupCon, SoftmaxLoss::NtXent] {
            let cfg = Softmax::new(loss).temperature(1e-4).unwrap();
            let labels: Vec<i64> = (0..rows).map(|i| (i % (rows / 2)) as i64).collect();
            let l = Labels::new(&labels);
            let (g, r) = if loss == SoftmaxLoss::Clip {
                (
                    cfg.pairs(gpu, &x, &x, Grads::Compute).unwrap(),
                    cfg.pairs_cpu(&x, &x, Grads::Compute).unwrap(),
                )
            } else {
                (
                    cfg.batch(gpu, &x, &l, Grads::Compute).unwrap(),
                    cfg.batch_cpu(&x, &l, Grads::Compute).unwrap(),
                )
            };
            let (g, r) = (g.grad_temperature.unwrap(), r.grad_temperature.unwrap());
            assert!(
                (g - r).abs() <= 1e-3,
                "{loss:?} B={rows} D={dim}: dL/dτ {g} on the GPU, {r} on the CPU"
            );
        }
    }
}

#[test]
fn sizes_around_the_tile() {
    let Some(gpu) = common::gpu() else { return };
    for (rows, dim) in [
        (1, 3),
        (2, 1),
        (31, 5),
        (32, 4),
        (33, 33),
        (65, 8),
        (130, 2),
        (40, 300),
    ] {
        let data = common::normals(rows as u64, rows * dim);
        let b = common::normals(rows as u64 + 1, rows * dim);
        let labels = common::labels(rows as u64, rows, (rows / 3).max(1) as u64);
        let x = Embeddings::named("x", &data, rows, dim).unwrap();
        let y = Embeddings::named("y", &b, rows, dim).unwrap();
        let l = Labels::new(&labels);
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let name = format!("{loss:?} B={rows} D={dim}");
            let r = cross_batch(gpu, name, &Softmax::new(loss), &x, &l).unwrap();
            common::assert_report(&r);
        }
        let r = cross_pairs(
            gpu,
            format!("clip N={rows} D={dim}"),
            &Softmax::clip(),
            &x,
            &y,
        );
        common::assert_report(&r.unwrap());
    }
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn a_wrong_temperature_fails_the_tolerance_rule() {
    // The rule must catch a 0.1 % error in τ: compare the GPU at τ(1 + 1e-3) with the
    // reference at τ.
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (40, 7);
    let data = common::normals(11, rows * dim);
    let labels = common::labels(11, rows, 10);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        let cfg = Softmax::new(loss);
        let off = cfg.temperature(cfg.temperature * 1.001).unwrap();
        let g = off.batch(gpu, &x, &l, Grads::Compute).unwrap();
        let (r, mass) = metric_loss::testing::softmax_reference::batch_with_mass(
            loss,
            f64::from(cfg.temperature),
            &metric_loss::testing::widen(&x),
            dim,
            l.ids(),
            Grads::Compute,
        );
        let r = r.narrow(dim);
        let report =
            metric_loss::testing::softmax::verdict("off".into(), &cfg, &g, &r, &[&x], &[mass]);
        assert!(!report.loss.pass, "{loss:?}: loss error not caught");
        assert!(
            report.grads.iter().any(|c| !c.pass),
            "{loss:?}: gradient error not caught"
        );
    }
}

#[test]
fn reruns_are_bitwise_identical() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (77, 9);
    let data = common::normals(5, rows * dim);
    let labels = common::labels(5, rows, 12);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        let first = Softmax::new(loss)
            .batch(gpu, &x, &l, Grads::Compute)
            .unwrap();
        let again = Softmax::new(loss)
            .batch(gpu, &x, &l, Grads::Compute)
            .unwrap();
        assert_eq!(bits(&first), bits(&again), "{loss:?}");
    }
    let first = Softmax::clip().pairs(gpu, &x, &x, Grads::Compute).unwrap();
    let again = Softmax::clip().pairs(gpu, &x, &x, Grads::Compute).unwrap();
    assert_eq!(bits(&first), bits(&again));
}

fn limited_gpu(binding: u64, buffer: Option<u64>) -> Option<Gpu> {
    let mut l = common::gpu()?.limits().clone();
    l.max_storage_buffer_binding_size = binding;
    if let Some(b) = buffer {
        l.max_buffer_size = b;
    }
    Some(
        Gpu::with_options(GpuOptions {
            limits: Some(l),
            ..Default::default()
        })
        .expect("a device with reduced limits"),
    )
}

#[test]
fn windows_match_reference() {
    let Some(small) = limited_gpu(64 * 1024, None) else {
        return;
    };
    // D = 100 is 400 bytes a row: 64 KiB bindings hold windows of 128 rows, so B = 300
    // needs 3 row windows and 3 column windows.
    let (rows, dim) = (300, 100);
    let data = common::normals(12, rows * dim);
    let b = common::normals(13, rows * dim);
    let labels = common::labels(12, rows, 40);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let y = Embeddings::named("y", &b, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        let r = cross_batch(
            &small,
            format!("{loss:?} windows"),
            &Softmax::new(loss),
            &x,
            &l,
        );
        common::assert_report(&r.unwrap());
        let once = Softmax::new(loss)
            .batch(&small, &x, &l, Grads::Compute)
            .unwrap();
        let twice = Softmax::new(loss)
            .batch(&small, &x, &l, Grads::Compute)
            .unwrap();
        assert_eq!(bits(&once), bits(&twice));
    }
    let r = cross_pairs(&small, "clip windows".into(), &Softmax::clip(), &x, &y);
    common::assert_report(&r.unwrap());
    assert_eq!(small.uncaptured_errors(), 0);
}

#[test]
fn no_batch_by_batch_buffer() {
    // B = 1024, D = 4: X is 16 KiB and the per-row stats 32 KiB; a B×B f32 matrix would be
    // 4 MiB. With buffers capped at 256 KiB only O(B·D) memory can work.
    let Some(gpu) = limited_gpu(256 * 1024, Some(256 * 1024)) else {
        return;
    };
    let (rows, dim) = (1024, 4);
    let data = common::normals(14, rows * dim);
    let b = common::normals(15, rows * dim);
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 512).collect();
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let y = Embeddings::named("y", &b, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
        let r = cross_batch(
            &gpu,
            format!("{loss:?} B=1024"),
            &Softmax::new(loss),
            &x,
            &l,
        );
        common::assert_report(&r.unwrap());
    }
    let r = cross_pairs(&gpu, "clip N=1024".into(), &Softmax::clip(), &x, &y);
    common::assert_report(&r.unwrap());
    assert!(gpu.workspace_bytes().1 < 4 * (rows * rows) as u64);
}

#[test]
fn a_training_loop_allocates_nothing_after_its_first_step() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    let (b, d) = (96usize, 12usize);
    let mut rng = Rng::new(8);
    let mut after_first = None;
    for step in 0..30 {
        let rows = if step == 29 { 40 } else { b };
        let data = rng.normals(rows * d);
        let other = rng.normals(rows * d);
        let labels: Vec<i64> = (0..rows).map(|i| (i % (rows / 2)) as i64).collect();
        let x = Embeddings::named("x", &data, rows, d).unwrap();
        let y = Embeddings::named("y", &other, rows, d).unwrap();
        let l = Labels::new(&labels);
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let out = Softmax::new(loss)
                .batch(&gpu, &x, &l, Grads::Compute)
                .unwrap();
            assert!(out.loss.is_finite());
        }
        let out = Softmax::clip().pairs(&gpu, &x, &y, Grads::Compute).unwrap();
        assert!(out.loss.is_finite());
        if step == 0 {
            after_first = Some((gpu.allocations(), common::live(&gpu)));
        }
        assert_eq!(
            Some((gpu.allocations(), common::live(&gpu))),
            after_first,
            "step {step}: wgpu objects created after the first step"
        );
    }
}

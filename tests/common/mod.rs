//! Shared test support: the adapter, seeded inputs, and comparisons under the tolerance rule
//! of `metric_loss::check` (absolute plus relative, scaled by D + the reduction length).
#![allow(dead_code)]

use std::sync::OnceLock;

use metric_loss::check::{self, CaseReport, Rng};
use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};

/// One `Gpu` per test binary. `None` (test skipped, with a note) when there is no adapter,
/// except under `CI=true`, where a missing adapter fails the test.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    })
    .as_ref()
}

/// Seeded Gaussian rows.
pub fn normals(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).normals(n)
}

/// Seeded labels uniform over `classes`.
pub fn labels(seed: u64, n: usize, classes: u64) -> Vec<i64> {
    let mut r = Rng::new(seed ^ 0xABCD);
    (0..n).map(|_| r.below(classes) as i64).collect()
}

/// Panics with the worst element of every failing output.
pub fn assert_report(r: &CaseReport) {
    if r.pass() {
        return;
    }
    let mut msg = format!("{}: GPU and CPU disagree\n", r.name);
    if !r.counts_equal {
        msg.push_str("  counts differ\n");
    }
    for (what, c) in std::iter::once(("loss", &r.loss)).chain(r.grads.iter().map(|g| ("grad", g))) {
        if let (false, Some((i, g, re, b))) = (c.pass, c.worst) {
            msg.push_str(&format!(
                "  {what}[{i}]: gpu {g:e}, reference {re:e}, |diff| {:e} > bound {b:e}\n",
                (g - re).abs()
            ));
        }
    }
    panic!("{msg}");
}

/// Runs batch mode on the GPU and the CPU and compares everything.
pub fn cross_batch(gpu: &Gpu, name: &str, cfg: &Contrastive, x: &Embeddings<'_>, labels: &Labels) {
    let g = cfg.batch(gpu, x, labels, Grads::Compute).unwrap();
    let r = cfg.batch_cpu(x, labels, Grads::Compute).unwrap();
    let d = check::batch_distances(cfg, x);
    let d_max = d.iter().cloned().fold(0.0, f64::max);
    let report = check::compare_outputs(
        format!("{name} B={} D={} {cfg:?}", x.rows(), x.dim()),
        cfg,
        &g,
        &r,
        x.dim(),
        d_max,
        x.rows() as u64,
    );
    assert_report(&report);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

/// Runs pair mode on the GPU and the CPU and compares everything.
pub fn cross_pairs(
    gpu: &Gpu,
    name: &str,
    cfg: &Contrastive,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    similar: &[bool],
) {
    let g = cfg.pairs(gpu, a, b, similar, Grads::Compute).unwrap();
    let r = cfg.pairs_cpu(a, b, similar, Grads::Compute).unwrap();
    let d = check::pair_distances(cfg, a, b);
    let d_max = d.iter().cloned().fold(0.0, f64::max);
    let report = check::compare_outputs(
        format!("{name} N={} D={} {cfg:?}", a.rows(), a.dim()),
        cfg,
        &g,
        &r,
        a.dim(),
        d_max,
        1,
    );
    assert_report(&report);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

/// The loss and gradients as bit patterns, for bitwise comparisons.
pub fn bits(out: &metric_loss::ContrastiveOutput) -> (u64, Vec<Vec<u32>>) {
    (
        out.loss.to_bits(),
        out.grads
            .iter()
            .map(|g| g.iter().map(|v| v.to_bits()).collect())
            .collect(),
    )
}

/// Live wgpu objects (buffers, bind groups, compute pipelines) from wgpu's own counters,
/// after the device is idle.
pub fn live(gpu: &Gpu) -> (isize, isize, isize) {
    let _ = gpu.device().poll(wgpu::PollType::wait_indefinitely());
    let c = gpu.device().get_internal_counters().hal;
    (
        c.buffers.read(),
        c.bind_groups.read(),
        c.compute_pipelines.read(),
    )
}

//! Shared test support: the adapter, seeded inputs, and comparisons under the tolerance rule
//! of `metric_loss::tolerance` (absolute plus relative, scaled by D + the reduction length).
#![allow(dead_code)]

use std::sync::OnceLock;

use metric_loss::testing::Rng;
use metric_loss::tolerance::Verdict;
use metric_loss::{wgpu, Contrastive, Embeddings, EngineConfig, Gpu, GpuOptions, Labels};

static GPU: OnceLock<Option<Gpu>> = OnceLock::new();

/// One `Gpu` per test binary. `None` (test skipped, with a note) when there is no adapter,
/// except under `CI=true`, where a missing adapter fails the test. Creating it registers an
/// exit check: the test binary fails if the `Gpu` counted an uncaptured wgpu error, so every
/// binary asserts that its valid work raised none.
pub fn gpu() -> Option<&'static Gpu> {
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            // SAFETY: registers a plain function with the C runtime, once per process.
            unsafe { atexit(uncaptured_at_exit) };
            Some(g)
        }
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

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
    fn _exit(status: std::ffi::c_int) -> !;
}

/// Runs when the test binary exits, after every test (libtest returns or calls `exit`).
extern "C" fn uncaptured_at_exit() {
    if let Some(Some(gpu)) = GPU.get() {
        let n = gpu.uncaptured_errors();
        if n > 0 {
            eprintln!("FAILED: the shared Gpu counted {n} uncaptured wgpu error(s) on valid work");
            // SAFETY: ends the process at once with a failing status; exit() may not be
            // called again from an exit handler.
            unsafe { _exit(101) };
        }
    }
}

/// Seeded Gaussian rows.
/// A `Gpu` per pair-engine configuration this adapter can run (the register rows with
/// broadcasts need subgroups of a fixed size); none without an adapter.
pub fn engine_gpus() -> Vec<Gpu> {
    if gpu().is_none() {
        return Vec::new();
    }
    EngineConfig::ALL
        .into_iter()
        .filter_map(|c| {
            Gpu::with_options(GpuOptions {
                engine: Some(c),
                ..GpuOptions::default()
            })
            .ok()
        })
        .collect()
}

pub fn normals(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).normals(n)
}

/// Seeded labels uniform over `classes`.
pub fn labels(seed: u64, n: usize, classes: u64) -> Vec<i64> {
    let mut r = Rng::new(seed ^ 0xABCD);
    (0..n).map(|_| r.below(classes) as i64).collect()
}

/// Panics with the worst element of every failing output.
pub fn assert_report(r: &Verdict) {
    if !r.pass() {
        panic!(
            "{}: GPU and CPU disagree\n  {}",
            r.name,
            r.failures().join("\n  ")
        );
    }
}

/// Runs batch mode on the GPU and the CPU and compares everything.
pub fn cross_batch(gpu: &Gpu, name: &str, cfg: &Contrastive, x: &Embeddings<'_>, labels: &Labels) {
    let mut report = cfg.batch_check(gpu, x, labels).unwrap();
    report.name = format!("{name} B={} D={} {cfg:?}", x.rows(), x.dim());
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
    let mut report = cfg.pairs_check(gpu, a, b, similar).unwrap();
    report.name = format!("{name} N={} D={} {cfg:?}", a.rows(), a.dim());
    assert_report(&report);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

/// The loss and gradients as bit patterns, for bitwise comparisons.
pub fn bits<C>(out: &metric_loss::LossOutput<C>) -> (u64, Vec<Vec<u32>>) {
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

/// The ids of host labels as the bytes of a caller's u32 labels buffer.
pub fn id_bytes(labels: &Labels) -> Vec<u8> {
    bytemuck::cast_slice(labels.ids()).to_vec()
}

/// Mined triplets of seeded queries (N × D) against seeded reference rows (M × D), GPU
/// against CPU, both with the reference's gradient and detached. Inputs are redrawn until
/// every choice is clear of rounding, the margin placed clear of every hinge point (see
/// `metric_loss::testing::triplet`): f32 and f64 may rightly choose differently inside that
/// band.
pub fn cross_triplet_against(
    gpu: &Gpu,
    cfg: &metric_loss::Triplet,
    (n, m, dim, classes): (usize, usize, usize, u64),
    seed: u64,
) {
    use metric_loss::testing::triplet::{against_decisions, decision_band, make_clear};
    use metric_loss::{ReferenceGrad, ReferenceSet};
    let mut rng = Rng::new(seed);
    for _ in 0..200 {
        let (dq, dr) = (rng.normals(n * dim), rng.normals(m * dim));
        let ids: Vec<i64> = (0..n + m).map(|_| rng.below(classes) as i64).collect();
        let q = Embeddings::named("q", &dq, n, dim).unwrap();
        let r = Embeddings::named("r", &dr, m, dim).unwrap();
        let labels = Labels::new(&ids);
        let mut cfg = *cfg;
        let set = ReferenceSet::new(&r, ReferenceGrad::Returned);
        let dec = against_decisions(&cfg, &q, &set, labels.ids());
        if !make_clear(&mut cfg, &dec, 0.5, decision_band(dim, dec.d_max)) {
            continue;
        }
        for grad in [ReferenceGrad::Returned, ReferenceGrad::Detached] {
            let set = ReferenceSet::new(&r, grad);
            let mut v = cfg.against_check(gpu, &q, &set, &labels).unwrap();
            v.name = format!("N={n} M={m} D={dim} {grad:?} {}", v.name);
            assert_report(&v);
        }
        return;
    }
    panic!("no clear case in 200 draws: {cfg:?} N={n} M={m} D={dim}");
}

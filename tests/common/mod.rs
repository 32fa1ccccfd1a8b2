//! Shared test support: the adapter, seeded inputs, and comparisons under the tolerance rule
//! of `metric_loss::check` (absolute plus relative, scaled by D + the reduction length).
#![allow(dead_code)]

use std::sync::OnceLock;

use metric_loss::check::{self, CaseReport, Rng};
use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};

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
        &check::spread(cfg.distance, cfg.normalize, &[x]),
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
        &check::spread(cfg.distance, cfg.normalize, &[a, b]),
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

/// A caller's buffer (`STORAGE`, copyable both ways) holding `data`, for the
/// device-resident API.
pub fn storage(device: &wgpu::Device, data: &[u8]) -> wgpu::Buffer {
    wgpu::util::DeviceExt::create_buffer_init(
        device,
        &wgpu::util::BufferInitDescriptor {
            label: Some("caller"),
            contents: data,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        },
    )
}

/// The f32 values of a buffer, read back through a staging copy.
pub fn read_f32(device: &wgpu::Device, queue: &wgpu::Queue, b: &wgpu::Buffer) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: b.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(b, 0, &staging, 0, b.size());
    queue.submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let view = staging.slice(..).get_mapped_range().unwrap();
    let v = bytemuck::cast_slice(&view).to_vec();
    drop(view);
    v
}

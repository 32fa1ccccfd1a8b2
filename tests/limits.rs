//! Device limits: batch mode needs no B×B buffer, and inputs beyond the limits are errors.

mod common;

use metric_loss::check;
use metric_loss::{Contrastive, Embeddings, Error, Gpu, GpuOptions, Grads, Labels};

fn gpu_with(limits: impl FnOnce(&mut wgpu::Limits)) -> Option<Gpu> {
    let base = common::gpu()?.limits().clone();
    let mut l = base;
    limits(&mut l);
    Some(
        Gpu::with_options(GpuOptions {
            limits: Some(l),
            ..Default::default()
        })
        .expect("a device with reduced limits"),
    )
}

#[test]
fn batch_mode_fits_in_64_bytes_per_value() {
    let (b, d) = (1024usize, 4usize);
    // 64·B·D bytes = 256 KiB: X is 16 KiB; a B×B f32 matrix would be 4 MiB.
    let cap = (64 * b * d) as u64;
    let Some(gpu) = gpu_with(|l| {
        l.max_buffer_size = cap;
        l.max_storage_buffer_binding_size = l.max_storage_buffer_binding_size.min(cap);
    }) else {
        return;
    };
    assert_eq!(gpu.limits().max_buffer_size, cap);
    let data = common::normals(1, b * d);
    let x = Embeddings::new("x", &data, b, d).unwrap();
    let l = Labels::new(&common::labels(1, b, 128));
    let mut cfg = Contrastive::default().margin(1.5);
    let dists = check::batch_distances(&cfg, &x);
    check::clear_margins(&mut cfg, &dists, d, 0.0, 1.5);
    common::cross_batch(&gpu, "B=1024 under max_buffer_size 64·B·D", &cfg, &x, &l);
}

#[test]
fn binding_size_beyond_the_device_is_an_error() {
    let Some(gpu) = gpu_with(|l| l.max_storage_buffer_binding_size = 4096) else {
        return;
    };
    let data = vec![0.5f32; 100 * 16];
    let x = Embeddings::new("x", &data, 100, 16).unwrap();
    let err = Contrastive::default()
        .batch(&gpu, &x, &Labels::new(&[0; 100]), Grads::Compute)
        .unwrap_err();
    match err {
        Error::LimitExceeded { needed, limit, .. } => assert_eq!((needed, limit), (6400, 4096)),
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

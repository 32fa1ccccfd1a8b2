//! Every error variant a user can reach, triggered and matched.

mod common;

use std::time::{Duration, Instant};

use metric_loss::{Contrastive, Embeddings, Error, Gpu, GpuOptions, Grads, Labels};

#[test]
fn shape_errors() {
    assert!(matches!(
        Embeddings::named("x", &[1.0; 5], 2, 3),
        Err(Error::ShapeMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
    assert!(matches!(
        Embeddings::named("x", &[], 0, 3),
        Err(Error::EmptyInput { .. })
    ));
    assert!(matches!(
        Embeddings::named("x", &[], 3, 0),
        Err(Error::ZeroDim { .. })
    ));
    let x = Embeddings::named("x", &[1.0; 6], 2, 3).unwrap();
    let b = Embeddings::named("b", &[1.0; 9], 3, 3).unwrap();
    let cfg = Contrastive::default();
    assert!(matches!(
        cfg.batch_cpu(&x, &Labels::new(&[0, 1, 2]), Grads::Skip),
        Err(Error::ShapeMismatch {
            what: "labels",
            expected: 2,
            got: 3
        })
    ));
    assert!(matches!(
        cfg.pairs_cpu(&x, &b, &[true, false], Grads::Skip),
        Err(Error::ShapeMismatch {
            what: "rows of B",
            ..
        })
    ));
    assert!(matches!(
        cfg.pairs_cpu(&x, &x, &[true], Grads::Skip),
        Err(Error::ShapeMismatch {
            what: "pair labels",
            ..
        })
    ));
}

#[test]
fn out_of_domain_values_name_the_first_index() {
    for (bad, at) in [
        (f32::NAN, 4),
        (f32::INFINITY, 2),
        (-2e15, 5),
        (f32::NEG_INFINITY, 0),
    ] {
        let mut data = [0.5f32; 6];
        data[at] = bad;
        data[5] = if at == 5 { bad } else { 0.5 };
        match Embeddings::new(&data, 2, 3) {
            Err(Error::OutOfDomain {
                row, column, what, ..
            }) => {
                assert_eq!((row, column, what), (at / 3, at % 3, "embeddings"))
            }
            other => panic!("{bad}: expected OutOfDomain, got {other:?}"),
        }
    }
    assert!(Embeddings::named("x", &[1e15, -1e15], 1, 2).is_ok());
}

#[test]
fn invalid_options() {
    // The builders refuse them at once.
    for err in [
        Contrastive::default().margin(-0.5).unwrap_err(),
        Contrastive::default().margin(f32::NAN).unwrap_err(),
        Contrastive::default()
            .pos_margin(f32::INFINITY)
            .unwrap_err(),
        Contrastive::default().pos_margin(-1.0).unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
    }
    // Set directly, they are refused by validate and by every call.
    for cfg in [
        Contrastive {
            margin: -0.5,
            ..Default::default()
        },
        Contrastive {
            margin: f32::NAN,
            ..Default::default()
        },
        Contrastive {
            pos_margin: f32::INFINITY,
            ..Default::default()
        },
        Contrastive {
            pos_margin: -1.0,
            ..Default::default()
        },
    ] {
        assert!(
            matches!(cfg.validate(), Err(Error::InvalidOption { .. })),
            "{cfg:?}"
        );
    }
    let x = Embeddings::named("x", &[1.0; 4], 2, 2).unwrap();
    let err = Contrastive {
        margin: -1.0,
        ..Default::default()
    }
    .batch_cpu(&x, &Labels::new(&[0, 1]), Grads::Skip)
    .unwrap_err();
    assert!(err.to_string().contains("margin"), "{err}");
}

#[test]
fn no_adapter_for_no_backend() {
    let err = Gpu::with_options(GpuOptions {
        backends: wgpu::Backends::empty(),
        adapter_name: None,
        ..Default::default()
    })
    .err()
    .expect("no backends ⇒ no adapter");
    assert!(matches!(err, Error::NoAdapter { .. }), "{err:?}");
    assert!(err.to_string().contains("mesa-vulkan-drivers"));
}

#[test]
fn unknown_adapter_name() {
    if common::gpu().is_none() {
        return;
    }
    let err = Gpu::with_options(GpuOptions {
        adapter_name: Some("no-such-adapter-xyz".into()),
        ..Default::default()
    })
    .err()
    .expect("no adapter has that name");
    match err {
        Error::AdapterNotFound { wanted, available } => {
            assert_eq!(wanted, "no-such-adapter-xyz");
            assert!(!available.is_empty());
        }
        other => panic!("expected AdapterNotFound, got {other:?}"),
    }
}

#[test]
fn device_refuses_limits_beyond_the_adapter() {
    let Some(gpu) = common::gpu() else { return };
    let mut limits = gpu.limits().clone();
    limits.max_compute_workgroups_per_dimension = u32::MAX;
    let err = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .err()
    .expect("limits beyond the adapter");
    assert!(matches!(err, Error::RequestDevice(_)), "{err:?}");
}

#[test]
fn lost_device_is_reported_on_the_next_call() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    let data = common::normals(3, 32 * 4);
    let x = Embeddings::named("x", &data, 32, 4).unwrap();
    let l = Labels::new(&common::labels(3, 32, 4));
    Contrastive::default()
        .batch(&gpu, &x, &l, Grads::Compute)
        .unwrap();
    gpu.device().destroy();
    for _ in 0..2 {
        match Contrastive::default().batch(&gpu, &x, &l, Grads::Compute) {
            Err(Error::DeviceLost { .. }) => {}
            other => panic!("expected DeviceLost, got {other:?}"),
        }
    }
}

#[test]
fn timeout_is_an_error_and_the_gpu_stays_usable() {
    let Some(shared) = common::gpu() else { return };
    let mut gpu = Gpu::new().unwrap();
    // Large enough that the work cannot finish between its submission and the first poll
    // (a 512 × 32 call sometimes did on lavapipe).
    let (b, d) = (2048, 64);
    let data = common::normals(5, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&common::labels(5, b, 16));
    let cfg = Contrastive::default();
    gpu.set_timeout(Some(Duration::from_nanos(1)));
    match cfg.batch(&gpu, &x, &l, Grads::Compute) {
        Err(Error::Timeout { timeout }) => assert_eq!(timeout, Duration::from_nanos(1)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    gpu.set_timeout(None);
    let again = cfg.batch(&gpu, &x, &l, Grads::Compute).unwrap();
    let reference = cfg.batch(shared, &x, &l, Grads::Compute).unwrap();
    assert_eq!(again, reference);
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn device_destroyed_during_a_call_is_an_error_not_a_hang() {
    if common::gpu().is_none() {
        return;
    }
    // Early (recording), halfway (waiting) and late (reading back). A call that finished
    // before the destroy rightly succeeds; at least one must have been caught mid-call.
    let lost = [0.05, 0.5, 0.9]
        .into_iter()
        .filter(|&f| destroy_during_a_call(f))
        .count();
    assert!(lost > 0, "no call was still running at its destroy");
}

/// Destroys the device `fraction` of a call's time into one; true if that call saw it.
fn destroy_during_a_call(fraction: f64) -> bool {
    let gpu = Gpu::new().unwrap();
    let (b, d) = (2048, 64);
    let data = common::normals(11, b * d);
    let x = Embeddings::named("x", &data, b, d).unwrap();
    let l = Labels::new(&common::labels(11, b, 32));
    let cfg = Contrastive::default();
    // Build the pipelines, then time a call.
    let expected = cfg.batch(&gpu, &x, &l, Grads::Compute).unwrap();
    let start = Instant::now();
    cfg.batch(&gpu, &x, &l, Grads::Compute).unwrap();
    let took = start.elapsed();
    let (result, finished, destroyed) = std::thread::scope(|s| {
        let call = s.spawn(|| {
            let r = cfg.batch(&gpu, &x, &l, Grads::Compute);
            (r, Instant::now())
        });
        std::thread::sleep(took.mul_f64(fraction));
        let destroyed = Instant::now();
        gpu.device().destroy();
        let (r, finished) = call.join().unwrap();
        (r, finished, destroyed)
    });
    let saw_it = match result {
        Err(Error::DeviceLost { .. }) => {
            // Not a hang: back well before the polling timeout.
            let waited = finished - destroyed;
            assert!(waited < took * 4 + Duration::from_secs(5), "{waited:?}");
            true
        }
        // The destroy can land after the call's results were read back but before it
        // returned: then it must return exactly what an undisturbed call does.
        Ok(out) => {
            assert!(
                common::bits(&out) == common::bits(&expected),
                "at {fraction}: a call that returned after the destroy ({:?} after) gave \
                 other results",
                finished.saturating_duration_since(destroyed)
            );
            false
        }
        other => panic!(
            "at {fraction}: expected DeviceLost, got {:?}",
            other.map(|o| o.loss)
        ),
    };
    match cfg.batch(&gpu, &x, &l, Grads::Skip) {
        Err(Error::DeviceLost { .. }) => {}
        other => panic!("expected DeviceLost on the next call, got {other:?}"),
    }
    saw_it
}

#[test]
fn the_uncaptured_error_counter_counts() {
    // Every test binary asserts at exit that its shared Gpu counted no uncaptured error
    // (tests/common); this shows the counter would see one.
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    assert_eq!(gpu.uncaptured_errors(), 0);
    // MAP_READ with STORAGE is invalid, outside any error scope.
    let _ = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid on purpose"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let _ = gpu.device().poll(wgpu::PollType::Poll);
    assert_eq!(gpu.uncaptured_errors(), 1);
}

//! The validation sweep: every bad-input class against every entry point (contrastive batch
//! and pairs, triplet mined and explicit, NT-Xent, SupCon, CLIP), on the CPU reference, the
//! GPU and the device-resident calls, each answered by the documented error variant.

mod common;

use metric_loss::device::{DeviceLabels, DeviceRows, Target};
use metric_loss::{
    Contrastive, Distance, Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Mining, Result,
    Softmax, Triplet, TripletTerm,
};

/// The inputs of one sweep: three views of `rows × dim` (A, B or P, N), labels and pair
/// flags.
struct Inputs<'a> {
    a: Embeddings<'a>,
    b: Embeddings<'a>,
    c: Embeddings<'a>,
    labels: Labels,
    similar: Vec<bool>,
}

/// The options of every family for one sweep.
#[derive(Clone, Copy)]
struct Options {
    contrastive: Contrastive,
    triplet: Triplet,
    softmax_temperature: f32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            contrastive: Contrastive::default(),
            triplet: Triplet::default(),
            softmax_temperature: 0.1,
        }
    }
}

/// The outcome without the output.
fn ok<T>(r: Result<T>) -> Result<()> {
    r.map(|_| ())
}

/// Every host entry point on `inputs`, on the CPU reference and, with a `Gpu`, on it too.
fn every_entry(gpu: Option<&Gpu>, o: Options, x: &Inputs<'_>) -> Vec<(String, Result<()>)> {
    let (c, t) = (o.contrastive, o.triplet);
    // Set directly rather than through the builder, which would refuse a bad one first.
    let with_t = |s: Softmax| Softmax {
        temperature: o.softmax_temperature,
        ..s
    };
    let (nt, sc, cl) = (
        with_t(Softmax::ntxent()),
        with_t(Softmax::supcon()),
        with_t(Softmax::clip()),
    );
    let g = Grads::Compute;
    let mut out = vec![
        ("contrastive batch cpu", ok(c.batch_cpu(&x.a, &x.labels, g))),
        (
            "contrastive pairs cpu",
            ok(c.pairs_cpu(&x.a, &x.b, &x.similar, g)),
        ),
        (
            "triplet mined cpu",
            ok(t.mining(Mining::All).batch_cpu(&x.a, &x.labels, g)),
        ),
        (
            "triplet explicit cpu",
            ok(t.explicit_cpu(&x.a, &x.b, &x.c, g)),
        ),
        ("ntxent cpu", ok(nt.batch_cpu(&x.a, &x.labels, g))),
        ("supcon cpu", ok(sc.batch_cpu(&x.a, &x.labels, g))),
        ("clip cpu", ok(cl.pairs_cpu(&x.a, &x.b, g))),
    ];
    if let Some(gpu) = gpu {
        out.extend([
            (
                "contrastive batch gpu",
                ok(c.batch(gpu, &x.a, &x.labels, g)),
            ),
            (
                "contrastive pairs gpu",
                ok(c.pairs(gpu, &x.a, &x.b, &x.similar, g)),
            ),
            (
                "triplet mined gpu",
                ok(t.mining(Mining::All).batch(gpu, &x.a, &x.labels, g)),
            ),
            (
                "triplet explicit gpu",
                ok(t.explicit(gpu, &x.a, &x.b, &x.c, g)),
            ),
            ("ntxent gpu", ok(nt.batch(gpu, &x.a, &x.labels, g))),
            ("supcon gpu", ok(sc.batch(gpu, &x.a, &x.labels, g))),
            ("clip gpu", ok(cl.pairs(gpu, &x.a, &x.b, g))),
        ]);
    }
    out.into_iter().map(|(n, r)| (n.to_string(), r)).collect()
}

fn inputs<'a>(a: &'a [f32], b: &'a [f32], rows: usize, dim: usize, brows: usize) -> Inputs<'a> {
    Inputs {
        a: Embeddings::named("a", a, rows, dim).unwrap(),
        b: Embeddings::named("b", b, brows, dim).unwrap(),
        c: Embeddings::named("c", b, brows, dim).unwrap(),
        labels: Labels::new(&(0..rows as i64).map(|i| i % 2).collect::<Vec<_>>()),
        similar: (0..rows).map(|i| i % 2 == 0).collect(),
    }
}

#[test]
fn the_sweep_accepts_valid_input() {
    let data = common::normals(1, 8 * 3);
    let x = inputs(&data, &data, 8, 3, 8);
    for (name, r) in every_entry(common::gpu(), Options::default(), &x) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn mismatched_rows_and_labels_are_shape_errors_everywhere() {
    let (a, b) = (common::normals(2, 8 * 3), common::normals(3, 7 * 3));
    // B (and N) have 7 rows for A's 8.
    let x = inputs(&a, &b, 8, 3, 7);
    for (name, r) in every_entry(common::gpu(), Options::default(), &x) {
        let pairs = !name.contains("batch")
            && !name.contains("mined")
            && !name.contains("ntxent")
            && !name.contains("supcon");
        match r {
            Err(Error::ShapeMismatch { .. }) if pairs => {}
            Ok(()) if !pairs => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    // Labels of 5 for 8 rows.
    let mut x = inputs(&a, &a, 8, 3, 8);
    x.labels = Labels::new(&[0, 1, 0, 1, 0]);
    x.similar.truncate(5);
    for (name, r) in every_entry(common::gpu(), Options::default(), &x) {
        match r {
            Err(Error::ShapeMismatch {
                expected: 8,
                got: 5,
                ..
            }) => {}
            Ok(()) if name.contains("explicit") || name.contains("clip") => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn embeddings_refuse_empty_zero_width_overflowing_and_out_of_domain_input() {
    assert!(matches!(
        Embeddings::named("x", &[], 0, 3),
        Err(Error::EmptyInput { what: "x" })
    ));
    assert!(matches!(
        Embeddings::named("x", &[], 3, 0),
        Err(Error::ZeroDim { what: "x" })
    ));
    let overflow = Embeddings::named("x", &[0.0; 4], usize::MAX / 2 + 1, 2).unwrap_err();
    assert!(
        matches!(overflow, Error::LimitExceeded { .. }),
        "{overflow}"
    );
    // The exact product, not a saturated 2⁶⁴ − 1.
    let msg = overflow.to_string();
    assert!(msg.contains("18446744073709551616"), "{msg}");
    assert!(matches!(
        Embeddings::named("x", &[0.0; 5], 2, 3),
        Err(Error::ShapeMismatch {
            expected: 6,
            got: 5,
            ..
        })
    ));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2e15, -1.5e15] {
        let mut v = vec![0.5f32; 12];
        v[7] = bad;
        v[10] = f32::NAN;
        match Embeddings::named("x", &v, 4, 3) {
            Err(Error::OutOfDomain {
                row: 2,
                column: 1,
                what: "x",
                ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn invalid_margins_and_temperatures_are_invalid_options_everywhere() {
    let data = common::normals(4, 6 * 2);
    let x = inputs(&data, &data, 6, 2, 6);
    for bad in [-1.0f32, f32::NAN, f32::INFINITY, 2e15] {
        // The builders refuse it at once; set directly, every call refuses it.
        assert!(Contrastive::default().margin(bad).is_err());
        assert!(Contrastive::default().pos_margin(bad).is_err());
        assert!(Triplet::default().margin(bad).is_err());
        let o = Options {
            contrastive: Contrastive {
                margin: bad,
                ..Default::default()
            },
            triplet: Triplet {
                term: TripletTerm::Margin(bad),
                ..Default::default()
            },
            softmax_temperature: 0.1,
        };
        for (name, r) in every_entry(common::gpu(), o, &x) {
            match r {
                Err(Error::InvalidOption { name: "margin", .. }) => {}
                Ok(()) if !name.contains("contrastive") && !name.contains("triplet") => {}
                other => panic!("margin {bad}, {name}: {other:?}"),
            }
        }
        let pos = Options {
            contrastive: Contrastive {
                pos_margin: bad,
                ..Default::default()
            },
            ..Options::default()
        };
        for (name, r) in every_entry(common::gpu(), pos, &x) {
            match r {
                Err(Error::InvalidOption {
                    name: "pos_margin", ..
                }) => {}
                Ok(()) if !name.contains("contrastive") => {}
                other => panic!("pos_margin {bad}, {name}: {other:?}"),
            }
        }
    }
    for bad in [0.0f32, 5e-5, -0.1, f32::NAN, f32::INFINITY, 2e15] {
        assert!(Softmax::ntxent().temperature(bad).is_err());
        let o = Options {
            softmax_temperature: bad,
            ..Options::default()
        };
        for (name, r) in every_entry(common::gpu(), o, &x) {
            match r {
                Err(Error::InvalidOption {
                    name: "temperature",
                    ..
                }) => {}
                Ok(())
                    if !["ntxent", "supcon", "clip"]
                        .iter()
                        .any(|f| name.contains(f)) => {}
                other => panic!("temperature {bad}, {name}: {other:?}"),
            }
        }
    }
}

#[test]
fn values_too_large_for_a_loss_name_the_first_index() {
    // Squared distances of values near 1e15 overflow the contrastive squared hinge's f32
    // terms (d² ≈ 4e61).
    let mut data = vec![0.25f32; 6 * 2];
    data[5] = 9e14;
    data[9] = -9e14;
    let x = inputs(&data, &data, 6, 2, 6);
    let o = Options {
        contrastive: Contrastive::default().distance(Distance::SquaredEuclidean),
        triplet: Triplet::default().distance(Distance::SquaredEuclidean),
        ..Options::default()
    };
    for (name, r) in every_entry(common::gpu(), o, &x) {
        match r {
            Err(Error::TooLargeForLoss {
                row: 2, column: 1, ..
            }) if name.contains("contrastive") => {}
            // Triplet terms are linear in d (8e30 here, over a few dozen terms) and the
            // softmax losses normalise rows: 9e14 is inside their limits at this size.
            Ok(()) if !name.contains("contrastive") => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn rows_wider_than_a_binding_exceed_the_limits_everywhere() {
    let Some(base) = common::gpu() else { return };
    let mut limits = base.limits().clone();
    limits.max_storage_buffer_binding_size = 4096;
    let gpu = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap();
    // 64 rows of 64 values need 16 KiB per window.
    let data = common::normals(5, 64 * 64);
    let x = inputs(&data, &data, 64, 64, 64);
    for (name, r) in every_entry(Some(&gpu), Options::default(), &x) {
        match r {
            Err(Error::LimitExceeded { limit: 4096, .. }) if name.ends_with("gpu") => {}
            Ok(()) if name.ends_with("cpu") => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Whether an error is the one a case expects.
type Expected = fn(&Error) -> bool;

#[test]
fn device_resident_calls_check_their_buffers_everywhere() {
    let Some(gpu) = common::gpu() else { return };
    let storage = |bytes: &[u8]| gpu.storage_buffer("caller", bytes);
    let data = common::normals(6, 8 * 4);
    let xb = storage(bytemuck::cast_slice(&data));
    let lb = storage(bytemuck::cast_slice(&[0u32, 1, 0, 1, 0, 1, 0, 1]));
    let l = DeviceLabels::new(&lb);
    let run = |x: DeviceRows<'_>| -> Vec<(&str, Result<()>)> {
        vec![
            (
                "contrastive",
                ok(Contrastive::default().batch_device(gpu, x, l, None, Target::Submit)),
            ),
            (
                "contrastive pairs",
                ok(Contrastive::default().pairs_device(gpu, x, x, l, None, Target::Submit)),
            ),
            (
                "triplet mined",
                ok(Triplet::default().mining(Mining::Hard).batch_device(
                    gpu,
                    x,
                    l,
                    None,
                    Target::Submit,
                )),
            ),
            (
                "triplet explicit",
                ok(Triplet::default().explicit_device(gpu, x, x, x, None, Target::Submit)),
            ),
            (
                "ntxent",
                ok(Softmax::ntxent().batch_device(gpu, x, l, None, Target::Submit)),
            ),
            (
                "clip",
                ok(Softmax::clip().pairs_device(gpu, x, x, None, Target::Submit)),
            ),
        ]
    };
    let good = DeviceRows::new(&xb, 8, 4);
    for (name, r) in run(good) {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let cases: Vec<(&str, DeviceRows<'_>, Expected)> = vec![
        ("no rows", DeviceRows { rows: 0, ..good }, |e| {
            matches!(e, Error::EmptyInput { .. })
        }),
        ("zero width", DeviceRows { dim: 0, ..good }, |e| {
            matches!(e, Error::ZeroDim { .. })
        }),
        ("stride below dim", DeviceRows { stride: 3, ..good }, |e| {
            matches!(e, Error::InvalidBuffer { .. })
        }),
        ("unaligned offset", DeviceRows { offset: 2, ..good }, |e| {
            matches!(e, Error::InvalidBuffer { .. })
        }),
        ("past the end", DeviceRows { rows: 9, ..good }, |e| {
            matches!(e, Error::InvalidBuffer { .. })
        }),
        (
            "32-bit index overflow",
            DeviceRows {
                rows: 1 << 31,
                ..good
            },
            |e| matches!(e, Error::LimitExceeded { .. }),
        ),
    ];
    for (case, x, expected) in cases {
        for (name, r) in run(x) {
            match r {
                Err(e) if expected(&e) => {}
                other => panic!("{case}, {name}: {other:?}"),
            }
        }
    }
}

//! The CPU reference's gradients against central finite differences in f64, for every
//! option, at points whose terms sit well away from the hinge's kinks.

use metric_loss::testing::contrastive_reference::{batch_f64, pairs_f64};
use metric_loss::testing::{self as check, clear_margin, median, Rng};
use metric_loss::{Contrastive, Counts, Embeddings, Grads, Reduction};

const H: f64 = 1e-6;

fn configs() -> Vec<Contrastive> {
    check::option_grid()
}

/// Margins clear of every distance by 1e-3 (a step of 1e-6 never crosses a kink).
fn place(cfg: &mut Contrastive, d: &[f64]) {
    let m = median(d);
    cfg.pos_margin = clear_margin(d, 0.5 * m, 1e-3) as f32;
    cfg.margin = clear_margin(d, 1.2 * m, 1e-3) as f32;
}

fn assert_fd(what: &str, analytic: &[f64], f: impl Fn(usize, f64) -> f64) {
    let scale = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, &an) in analytic.iter().enumerate() {
        let fd = (f(k, H) - f(k, -H)) / (2.0 * H);
        assert!(
            (fd - an).abs() <= 1e-6 * (1.0 + scale),
            "{what}: d/dx[{k}] analytic {an} vs finite difference {fd}"
        );
    }
}

#[test]
fn batch_gradients_match_finite_differences() {
    let (rows, dim) = (7, 3);
    let mut rng = Rng::new(42);
    let x: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
    let classes = [0u32, 1, 0, 2, 1, 0, 2];
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let e = Embeddings::named("x", &x32, rows, dim).unwrap();
    for mut cfg in configs() {
        let d = check::batch_distances(&cfg, &e);
        place(&mut cfg, &d);
        let r = batch_f64(&cfg, &x64, dim, &classes, Grads::Compute);
        assert!(
            r.counts.active().unwrap() > 0,
            "{cfg:?}: nothing active, test is vacuous"
        );
        assert_fd(&format!("batch {cfg:?}"), &r.grads[0], |k, h| {
            let mut p = x64.clone();
            p[k] += h;
            batch_f64(&cfg, &p, dim, &classes, Grads::Skip).loss
        });
    }
}

#[test]
fn pair_gradients_match_finite_differences() {
    let (n, dim) = (6, 4);
    let mut rng = Rng::new(7);
    let a: Vec<f32> = rng.normals(n * dim);
    let b: Vec<f32> = rng.normals(n * dim);
    let similar = [true, false, true, false, false, true];
    let (a64, b64): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&v| f64::from(v)).collect(),
        b.iter().map(|&v| f64::from(v)).collect(),
    );
    let (ea, eb) = (
        Embeddings::named("a", &a, n, dim).unwrap(),
        Embeddings::named("b", &b, n, dim).unwrap(),
    );
    for mut cfg in configs() {
        let d = check::pair_distances(&cfg, &ea, &eb);
        place(&mut cfg, &d);
        let r = pairs_f64(&cfg, &a64, &b64, dim, &similar, Grads::Compute);
        assert_fd(&format!("pairs dA {cfg:?}"), &r.grads[0], |k, h| {
            let mut p = a64.clone();
            p[k] += h;
            pairs_f64(&cfg, &p, &b64, dim, &similar, Grads::Skip).loss
        });
        assert_fd(&format!("pairs dB {cfg:?}"), &r.grads[1], |k, h| {
            let mut p = b64.clone();
            p[k] += h;
            pairs_f64(&cfg, &a64, &p, dim, &similar, Grads::Skip).loss
        });
    }
}

#[test]
fn gradient_below_the_norm_floor() {
    // A row with norm below 1e-12 is divided by the constant 1e-12: d(x/eps)/dx = I/eps.
    let cfg = Contrastive::default()
        .normalize(true)
        .margin(1.5)
        .unwrap()
        .reduction(Reduction::Sum);
    let a = [1e-14, 0.0];
    let b = [0.0, 1.0];
    let r = pairs_f64(&cfg, &a, &b, 2, &[false], Grads::Compute);
    assert!(r.grads[0].iter().all(|v| v.is_finite()));
    // Normalised a = (0.01, 0): step 1e-16 in a moves it by 1e-4.
    let h = 1e-17;
    let fd = (pairs_f64(&cfg, &[a[0] + h, 0.0], &b, 2, &[false], Grads::Skip).loss
        - pairs_f64(&cfg, &[a[0] - h, 0.0], &b, 2, &[false], Grads::Skip).loss)
        / (2.0 * h);
    assert!(
        (fd - r.grads[0][0]).abs() <= 1e-5 * fd.abs(),
        "{fd} vs {}",
        r.grads[0][0]
    );
}

/// Triplet inputs whose choices and hinge points are 1e-3 clear of every kink (redrawn until
/// they are), so that a step of 1e-6 changes no discrete decision.
fn clear_triplet_input<T>(
    mut draw: impl FnMut(&mut Rng) -> T,
    mut clear: impl FnMut(&T) -> bool,
) -> T {
    let mut rng = Rng::new(99);
    for _ in 0..1000 {
        let t = draw(&mut rng);
        if clear(&t) {
            return t;
        }
    }
    panic!("no input clear of kinks in 1000 draws");
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn triplet_explicit_gradients_match_finite_differences() {
    use metric_loss::testing::triplet::{explicit_decisions, explicit_grid, make_clear};
    use metric_loss::testing::triplet_reference::explicit_f64;
    let (n, dim) = (5, 3);
    for base in explicit_grid() {
        let mut cfg = base;
        let data = clear_triplet_input(
            |rng| {
                [
                    rng.normals(n * dim),
                    rng.normals(n * dim),
                    rng.normals(n * dim),
                ]
            },
            |d| {
                let e: Vec<Embeddings<'_>> = d
                    .iter()
                    .map(|v| Embeddings::named("t", v, n, dim).unwrap())
                    .collect();
                let dec = explicit_decisions(&base, &e[0], &e[1], &e[2]);
                cfg = base;
                make_clear(&mut cfg, &dec, 0.4, 1e-3)
            },
        );
        let [a, p, q] = [widen(&data[0]), widen(&data[1]), widen(&data[2])];
        let r = explicit_f64(&cfg, &a, &p, &q, dim, Grads::Compute);
        assert!(
            r.counts.active > 0,
            "{cfg:?}: nothing active, test is vacuous"
        );
        let sides = [&a, &p, &q];
        for (s, grad) in r.grads.iter().enumerate() {
            assert_fd(&format!("explicit side {s} {cfg:?}"), grad, |k, h| {
                let mut moved: Vec<Vec<f64>> = sides.iter().map(|v| v.to_vec()).collect();
                moved[s][k] += h;
                explicit_f64(&cfg, &moved[0], &moved[1], &moved[2], dim, Grads::Skip).loss
            });
        }
    }
}

#[test]
fn triplet_mined_gradients_match_finite_differences() {
    use metric_loss::testing::triplet::{make_clear, mined_decisions, mined_grid};
    use metric_loss::testing::triplet_reference::batch_f64;
    let (rows, dim) = (9, 3);
    let classes = [0u32, 1, 0, 2, 1, 0, 2, 1, 0];
    for base in mined_grid() {
        let mining = base.mining;
        let mut cfg = base;
        let data = clear_triplet_input(
            |rng| rng.normals(rows * dim),
            |d| {
                let x = Embeddings::named("x", d, rows, dim).unwrap();
                let dec = mined_decisions(&base, &x, &classes);
                cfg = base;
                make_clear(&mut cfg, &dec, 0.4, 1e-3)
            },
        );
        let x = widen(&data);
        let r = batch_f64(&cfg, &x, dim, &classes, Grads::Compute);
        assert!(r.counts.active > 0, "{cfg:?} {mining:?}: vacuous");
        assert_fd(&format!("{mining:?} {cfg:?}"), &r.grads[0], |k, h| {
            let mut p = x.clone();
            p[k] += h;
            batch_f64(&cfg, &p, dim, &classes, Grads::Skip).loss
        });
    }
}

/// Queries against reference rows, both with their gradient: the queries' and the
/// reference rows' analytic gradients.
#[test]
fn triplet_mined_against_gradients_match_finite_differences() {
    use metric_loss::testing::triplet::{against_decisions, make_clear, mined_grid};
    use metric_loss::testing::triplet_reference::against_f64;
    use metric_loss::{ReferenceGrad, ReferenceSet};
    let (n, m, dim) = (4, 7, 3);
    let (cq, cr) = ([0u32, 1, 2, 1], [1u32, 0, 2, 1, 0, 2, 3]);
    let classes = [&cq[..], &cr[..]].concat();
    for base in mined_grid() {
        let mining = base.mining;
        let mut cfg = base;
        let data = clear_triplet_input(
            |rng| rng.normals((n + m) * dim),
            |d| {
                let q = Embeddings::named("q", &d[..n * dim], n, dim).unwrap();
                let r = Embeddings::named("r", &d[n * dim..], m, dim).unwrap();
                let set = ReferenceSet::new(&r, ReferenceGrad::Returned);
                let dec = against_decisions(&base, &q, &set, &classes);
                cfg = base;
                make_clear(&mut cfg, &dec, 0.4, 1e-3)
            },
        );
        let (q, r) = (widen(&data[..n * dim]), widen(&data[n * dim..]));
        let loss =
            |q: &[f64], r: &[f64], grads| against_f64(&cfg, q, r, dim, (&cq, &cr), None, grads);
        let out = loss(&q, &r, Grads::Compute);
        assert!(out.counts.active > 0, "{cfg:?} {mining:?}: vacuous");
        let what = format!("{mining:?} {cfg:?}");
        assert_fd(&format!("{what} dL/dQ"), &out.grads[0], |k, h| {
            let mut p = q.clone();
            p[k] += h;
            loss(&p, &r, Grads::Skip).loss
        });
        assert_fd(&format!("{what} dL/dR"), &out.grads[1], |k, h| {
            let mut p = r.clone();
            p[k] += h;
            loss(&q, &p, Grads::Skip).loss
        });
    }
}

/// Central differences of the softmax reference in x (every value) and in τ, at the
/// default temperatures and at τ = 0.05 with duplicate rows.
#[test]
fn softmax_gradients_match_finite_differences() {
    use metric_loss::testing::softmax_reference::{batch_f64, keys_with_mass, Keys};
    // CLIP: the symmetric form of anchors against as many keys.
    let clip_f64 = |tau: f64, a: &[f64], b: &[f64], dim: usize, grads: Grads| {
        let keys = Keys {
            tau,
            symmetric: true,
            labels: None,
        };
        keys_with_mass(&keys, a, b, dim, grads).0
    };
    use metric_loss::SoftmaxLoss;
    let (rows, dim) = (7, 3);
    let mut rng = Rng::new(5);
    let mut x: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..rows * dim).map(|_| rng.normal()).collect();
    x.copy_within(0..dim, 6 * dim); // row 6 duplicates row 0
    let classes = [0u32, 1, 0, 2, 1, 0, 0];
    for tau in [0.07, 0.1, 0.5, 0.05] {
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let r = batch_f64(loss, tau, &x, dim, &classes, Grads::Compute);
            assert!(r.loss > 0.0, "{loss:?}: zero loss, test is vacuous");
            let what = format!("{loss:?} tau {tau}");
            assert_fd(&what, &r.grads[0], |k, h| {
                let mut p = x.clone();
                p[k] += h;
                batch_f64(loss, tau, &p, dim, &classes, Grads::Skip).loss
            });
            let gt = [r.grad_temperature.unwrap()];
            assert_fd(&format!("{what} d/dtau"), &gt, |_, h| {
                batch_f64(loss, tau + h, &x, dim, &classes, Grads::Skip).loss
            });
        }
        let r = clip_f64(tau, &x, &y, dim, Grads::Compute);
        for (side, g) in r.grads.iter().enumerate() {
            assert_fd(&format!("clip tau {tau} side {side}"), g, |k, h| {
                let (mut a, mut b) = (x.clone(), y.clone());
                if side == 0 {
                    a[k] += h;
                } else {
                    b[k] += h;
                }
                clip_f64(tau, &a, &b, dim, Grads::Skip).loss
            });
        }
        let gt = [r.grad_temperature.unwrap()];
        assert_fd(&format!("clip tau {tau} d/dtau"), &gt, |_, h| {
            clip_f64(tau + h, &x, &y, dim, Grads::Skip).loss
        });
    }
}

//! Triplet losses: cases worked out by hand (exact small integers, ties, margin boundaries),
//! empty and degenerate batches, sizes around the 64-anchor chunk, bitwise determinism,
//! windows under reduced limits, and reuse of the workspace.

mod common;

use metric_loss::testing::triplet::{
    batch_verdict, decision_band, explicit_decisions, explicit_verdict, make_clear,
    mined_decisions, mined_terms,
};
use metric_loss::testing::Rng;
use metric_loss::tolerance::{compare, Tolerance};
use metric_loss::{
    Distance, Embeddings, Error, Gpu, GpuOptions, Grads, Labels, Mining, Reduction, Triplet,
    TripletOutput, TripletTerm,
};

fn close(what: &str, got: &[f32], want: &[f64]) {
    let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let c = compare(&got, want, Tolerance::new(2, 8, 1.0));
    assert!(c.pass, "{what}: got {got:?}, want {want:?}");
}

fn close_loss(what: &str, got: f64, want: f64) {
    let c = compare(&[got], &[want], Tolerance::new(2, 20, 10.0));
    assert!(c.pass, "{what}: got {got}, want {want}");
}

/// The CPU reference's output and, when there is an adapter, the GPU's.
fn both(
    cpu: impl Fn() -> metric_loss::Result<TripletOutput>,
    gpu: impl Fn(&Gpu) -> metric_loss::Result<TripletOutput>,
) -> Vec<(&'static str, TripletOutput)> {
    let mut out = vec![("cpu", cpu().unwrap())];
    if let Some(g) = common::gpu() {
        out.push(("gpu", gpu(g).unwrap()));
    }
    out
}

// Three triplets in 2-D, margin 1:
//   0: a=(0,0) p=(3,4) n=(6,0): d(a,p)=5, d(a,n)=6, d(p,n)=|(3,−4)|=5
//      plain: 5 − 6 + 1 = 0, on the margin: inactive, term 0
//      swap:  min(6, 5) = 5 from d(p,n): 5 − 5 + 1 = 1, active
//   1: a=(0,0) p=(0,2) n=(1,0): d(a,p)=2, d(a,n)=1, d(p,n)=√5 > 1: 2 − 1 + 1 = 2, active
//   2: a=p=n=(1,1): every distance 0 (a tie under swap: d(a,n) is chosen): 0 − 0 + 1 = 1,
//      active, and every gradient 0 (d = 0 convention)
const TA: [f32; 6] = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
const TP: [f32; 6] = [3.0, 4.0, 0.0, 2.0, 1.0, 1.0];
const TN: [f32; 6] = [6.0, 0.0, 1.0, 0.0, 1.0, 1.0];

fn explicit_both(cfg: Triplet) -> Vec<(&'static str, TripletOutput)> {
    let a = Embeddings::named("anchor", &TA, 3, 2).unwrap();
    let p = Embeddings::named("positive", &TP, 3, 2).unwrap();
    let n = Embeddings::named("negative", &TN, 3, 2).unwrap();
    both(
        || cfg.explicit_cpu(&a, &p, &n, Grads::Compute),
        |g| cfg.explicit(g, &a, &p, &n, Grads::Compute),
    )
}

#[test]
fn explicit_by_hand() {
    // mean (0 + 2 + 1)/3 = 1, sum 3; 3 triplets, 2 active.
    for (reduction, want) in [(Reduction::Mean, 1.0), (Reduction::Sum, 3.0)] {
        for (dev, out) in explicit_both(Triplet::default().reduction(reduction)) {
            close_loss(dev, out.loss, want);
            assert_eq!((out.counts.terms, out.counts.active), (3, 2), "{dev}");
        }
    }
    // mean, s = 1/3. Triplet 1: dA = s((a−p)/2 − (a−n)/1) = s((0,−1) − (−1,0)) = s(1,−1),
    // dP = s(p−a)/2 = s(0,1), dN = −s(n−a)/1 = s(−1,0). Triplet 0 is inactive, triplet 2
    // has d = 0 everywhere: zero rows.
    let s = 1.0 / 3.0;
    for (dev, out) in explicit_both(Triplet::default()) {
        close(dev, &out.grads[0], &[0.0, 0.0, s, -s, 0.0, 0.0]);
        close(dev, &out.grads[1], &[0.0, 0.0, 0.0, s, 0.0, 0.0]);
        close(dev, &out.grads[2], &[0.0, 0.0, -s, 0.0, 0.0, 0.0]);
    }
}

#[test]
fn explicit_swap_by_hand() {
    // terms 1 + 2 + 1 = 4, mean 4/3, all 3 active. Triplet 0 now uses d(p,n) = 5, s = 1/3:
    // dA = s(a−p)/5 = s(−0.6,−0.8); dP = s((p−a)/5 − (p−n)/5) = s((0.6,0.8) − (−0.6,0.8))
    // = s(1.2, 0); dN = −s(n−p)/5 = −s(0.6,−0.8) = s(−0.6, 0.8).
    let s = 1.0 / 3.0;
    for (dev, out) in explicit_both(Triplet::default().swap(true)) {
        close_loss(dev, out.loss, 4.0 / 3.0);
        assert_eq!((out.counts.terms, out.counts.active), (3, 3), "{dev}");
        close(dev, &out.grads[0], &[-0.6 * s, -0.8 * s, s, -s, 0.0, 0.0]);
        close(dev, &out.grads[1], &[1.2 * s, 0.0, 0.0, s, 0.0, 0.0]);
        close(dev, &out.grads[2], &[-0.6 * s, 0.8 * s, -s, 0.0, 0.0, 0.0]);
    }
}

#[test]
fn explicit_soft_by_hand() {
    // x = d(a,p) − d(a,n): −1, 1, 0; softplus: ln(1 + e^−1) = 0.31326168751822286,
    // ln(1 + e) = 1.3132616875182228, ln 2 = 0.6931471805599453; sum 2.317770...;
    // active (x > 0): 1 of 3.
    let want = 0.313_261_687_518_222_86 + 1.313_261_687_518_222_8 + std::f64::consts::LN_2;
    for (dev, out) in explicit_both(Triplet::default().soft().reduction(Reduction::Sum)) {
        close_loss(dev, out.loss, want);
        assert_eq!((out.counts.terms, out.counts.active), (3, 1), "{dev}");
        // Triplet 0: sigmoid(−1) = 0.2689414213699951; dP = σ(p−a)/5 = σ(0.6, 0.8).
        let sg = 0.268_941_421_369_995_1;
        close(dev, &out.grads[1][..2], &[0.6 * sg, 0.8 * sg]);
    }
}

// A 1-D batch: x = 0, 1, 3, 6, 10 with classes 0, 0, 1, 1, 0; margin 1.
const X1: [f32; 5] = [0.0, 1.0, 3.0, 6.0, 10.0];
const L1: [i64; 5] = [0, 0, 1, 1, 0];

fn mined_both(
    cfg: Triplet,
    data: &[f32],
    labels: &[i64],
    mining: Mining,
) -> Vec<(&'static str, TripletOutput)> {
    let x = Embeddings::new(data, data.len(), 1).unwrap();
    let l = Labels::new(labels);
    both(
        || cfg.mining(mining).batch_cpu(&x, &l, Grads::Compute),
        |g| cfg.mining(mining).batch(g, &x, &l, Grads::Compute),
    )
}

#[test]
fn hard_by_hand() {
    // anchor 0: farthest positive 4 (10), nearest negative 2 (3): 10 − 3 + 1 = 8
    // anchor 1: positive 4 (9), negative 2 (2): 9 − 2 + 1 = 8
    // anchor 2: positive 3 (3), negative 1 (2): 3 − 2 + 1 = 2
    // anchor 3: positive 2 (3), negative 4 (4): 3 − 4 + 1 = 0, on the margin: inactive
    // anchor 4: positive 0 (10), negative 3 (4): 10 − 4 + 1 = 7
    // mean 25/5 = 5. Gradient (s = 1/5; in 1-D, dd(u,v)/du = sign(u − v)):
    //   a0: g4 += s, g2 −= s   a1: g4 += s, g2 −= s   (their own rows: −1 + 1 = 0)
    //   a2: g2 += s(−1 − 1), g3 += s, g1 −= s·sign(1 − 3) = +s
    //   a4: g0 += s·sign(0 − 10) = −s, g3 −= s·sign(6 − 10) = +s   (own row 0)
    //   g = s(−1, 1, −4, 2, 2)
    for (dev, out) in mined_both(Triplet::default(), &X1, &L1, Mining::Hard) {
        close_loss(dev, out.loss, 5.0);
        assert_eq!((out.counts.terms, out.counts.active), (5, 4), "{dev}");
        close(dev, &out.grads[0], &[-0.2, 0.2, -0.8, 0.4, 0.4]);
    }
}

#[test]
fn hard_ties_choose_the_lowest_index() {
    // x = 0, 2, −2, 5, −5; classes 0, 0, 0, 1, 1; margin 4, sum.
    //   a0: positives 1 and 2 both at 2 → 1; negatives 3 and 4 both at 5 → 3: 2 − 5 + 4 = 1
    //   a1 (2): positive 2 (4), negative 3 (3): 4 − 3 + 4 = 5
    //   a2 (−2): positive 1 (4), negative 4 (3): 5
    //   a3 (5): positive 4 (10), negative 1 (3): 11;  a4 (−5): positive 3, negative 2: 11
    // sum 33. Gradient: a0: g1 += 1, g3 −= 1; a1: g1 += 2, g2 −= 1, g3 −= 1;
    // a2: g2 −= 2, g1 += 1, g4 += 1; a3: g4 −= 1, g1 += 1; a4: g3 += 1, g2 −= 1.
    // g = (0, 5, −4, −1, 0); had a tie gone to the higher index, rows 1–4 would differ.
    let x = [0.0, 2.0, -2.0, 5.0, -5.0];
    let cfg = Triplet::default()
        .margin(4.0)
        .unwrap()
        .reduction(Reduction::Sum);
    for (dev, out) in mined_both(cfg, &x, &[0, 0, 0, 1, 1], Mining::Hard) {
        close_loss(dev, out.loss, 33.0);
        assert_eq!((out.counts.terms, out.counts.active), (5, 5), "{dev}");
        close(dev, &out.grads[0], &[0.0, 5.0, -4.0, -1.0, 0.0]);
    }
}

#[test]
fn semihard_by_hand() {
    // Per positive pair: the nearest negative strictly farther than the positive, else the
    // farthest negative.
    //   a0: p1 (1) → n2 (3): 1 − 3 + 1 < 0;  p4 (10) → none farther → n3 (6): 5
    //   a1: p0 (1) → n2 (2): 1 − 2 + 1 = 0, on the margin;  p4 (9) → n3 (5): 5
    //   a2: p3 (3) → n0 is at exactly 3, not farther → n4 (7): 3 − 7 + 1 < 0
    //   a3: p2 (3) → n4 (4): 3 − 4 + 1 = 0, on the margin
    //   a4: p0 (10) → none farther → n2 (7): 4;  p1 (9) → n2: 3
    // 8 positive pairs, 4 active, sum 17, mean 2.125. Gradient (sum):
    //   (a0,p4,n3): g4 += 1, g3 −= 1;  (a1,p4,n3): g4 += 1, g3 −= 1
    //   (a4,p0,n2): g0 −= 1, g2 += 1;  (a4,p1,n2): g1 −= 1, g2 += 1 (anchors' own rows 0)
    for (reduction, want) in [(Reduction::Mean, 2.125), (Reduction::Sum, 17.0)] {
        let cfg = Triplet::default().reduction(reduction);
        for (dev, out) in mined_both(cfg, &X1, &L1, Mining::Semihard) {
            close_loss(dev, out.loss, want);
            assert_eq!((out.counts.terms, out.counts.active), (8, 4), "{dev}");
            if reduction == Reduction::Sum {
                close(dev, &out.grads[0], &[-1.0, -1.0, 2.0, -2.0, 2.0]);
            }
        }
    }
}

#[test]
fn all_by_hand() {
    // Every (a, p, n), term d(a,p) − d(a,n) + 1:
    //   a0: (1,2) −1, (1,3) −4, (4,2) 8, (4,3) 5      a1: (0,2) 0, (0,3) −3, (4,2) 8, (4,3) 5
    //   a2: (3,0) 1, (3,1) 2, (3,4) −3                 a3: (2,0) −2, (2,1) −1, (2,4) 0
    //   a4: (0,2) 4, (0,3) 7, (1,2) 3, (1,3) 6
    // 18 triplets, 10 active, sum 49: mean-nonzero 4.9, mean 49/18.
    for (reduction, want) in [
        (Reduction::MeanNonzero, 4.9),
        (Reduction::Mean, 49.0 / 18.0),
    ] {
        let cfg = Triplet::default().reduction(reduction);
        for (dev, out) in mined_both(cfg, &X1, &L1, Mining::All) {
            close_loss(dev, out.loss, want);
            assert_eq!((out.counts.terms, out.counts.active), (18, 10), "{dev}");
            let total: f32 = out.grads[0].iter().sum();
            assert!(total.abs() < 1e-5, "{dev}: 1-D gradients sum to {total}");
        }
    }
}

#[test]
fn nothing_valid_gives_zero_and_counts() {
    // One class (no negatives), all singletons (no positives), a single row.
    let data = [0.5f32, -1.0, 2.0, 0.25];
    for labels in [vec![7i64, 7, 7, 7], vec![0, 1, 2, 3]] {
        for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
            for (dev, out) in mined_both(Triplet::default(), &data, &labels, mining) {
                assert_eq!(out.loss, 0.0, "{dev} {mining:?} {labels:?}");
                assert_eq!((out.counts.terms, out.counts.active), (0, 0));
                assert!(out.grads[0].iter().all(|&g| g == 0.0), "{dev} {mining:?}");
            }
        }
    }
    for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
        for (dev, out) in mined_both(Triplet::default(), &[3.0], &[1], mining) {
            assert_eq!((out.loss, out.counts.terms), (0.0, 0), "{dev}");
            assert_eq!(out.grads[0], vec![0.0]);
        }
    }
}

#[test]
fn singletons_and_anchors_without_positives() {
    // Classes 0 (rows 0, 3), 1 (row 1, no positive), 2 (rows 2, 4, 5), 3 (row 6, alone).
    // hard: anchors 0, 2, 3, 4, 5 count (5); semihard: positive pairs 2 + 6 = 8;
    // all: 2·5 + 6·4 = 34 triplets.
    let labels = [0i64, 1, 2, 0, 2, 2, 3];
    let data = [0.0f32, 1.5, 4.0, 7.5, 9.0, 12.5, 20.0];
    for (mining, terms) in [(Mining::Hard, 5), (Mining::Semihard, 8), (Mining::All, 34)] {
        let runs = mined_both(
            Triplet::default().margin(0.75).unwrap(),
            &data,
            &labels,
            mining,
        );
        for (dev, out) in &runs {
            assert_eq!(out.counts.terms, terms, "{dev} {mining:?}");
        }
        if let [(_, cpu), (_, gpu)] = &runs[..] {
            // Every distance and hinge argument is a multiple of 0.25: exact in f32.
            assert_eq!(cpu.counts, gpu.counts);
            let want: Vec<f64> = cpu.grads[0].iter().map(|&v| f64::from(v)).collect();
            close("gpu", &gpu.grads[0], &want);
        }
    }
}

/// Seeded rows and labels whose decisions are clear of rounding for `cfg` (redrawn until they
/// are), with the margin placed clear of every hinge point.
fn clear_mined_case(
    cfg: &mut Triplet,
    mining: Mining,
    rows: usize,
    dim: usize,
    classes: u64,
    seed: u64,
) -> (Vec<f32>, Vec<i64>) {
    let mut rng = Rng::new(seed);
    for _ in 0..500 {
        let data = rng.normals(rows * dim);
        let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
        let x = Embeddings::named("x", &data, rows, dim).unwrap();
        let dec = mined_decisions(&cfg.mining(mining), &x, Labels::new(&labels).ids());
        if make_clear(cfg, &dec, 0.5, decision_band(dim, dec.d_max)) {
            return (data, labels);
        }
    }
    panic!("no clear case in 500 draws: {cfg:?} {mining:?} B={rows}");
}

fn cross_mined(gpu: &Gpu, cfg: &Triplet, mining: Mining, data: &[f32], labels: &[i64], dim: usize) {
    let rows = labels.len();
    let x = Embeddings::named("x", data, rows, dim).unwrap();
    let l = Labels::new(labels);
    let g = cfg
        .mining(mining)
        .batch(gpu, &x, &l, Grads::Compute)
        .unwrap();
    let r = cfg
        .mining(mining)
        .batch_cpu(&x, &l, Grads::Compute)
        .unwrap();
    let name = format!("{mining:?} B={rows} D={dim} {cfg:?}");
    common::assert_report(&batch_verdict(name, &cfg.mining(mining), &g, &r, &x));
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn mined_sizes_around_the_chunk() {
    let Some(gpu) = common::gpu() else { return };
    for (rows, dim) in [(2, 3), (31, 5), (63, 8), (64, 4), (65, 9), (130, 3)] {
        for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
            let mut cfg = Triplet::default();
            let classes = (rows as u64 / 5).max(2);
            let (data, labels) =
                clear_mined_case(&mut cfg, mining, rows, dim, classes, rows as u64);
            cross_mined(gpu, &cfg, mining, &data, &labels, dim);
        }
    }
}

#[test]
fn explicit_sizes_around_the_workgroup() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(5);
    for (rows, dim) in [(1, 1), (63, 6), (64, 4), (65, 13), (200, 3)] {
        for base in [
            Triplet::default(),
            Triplet::default().swap(true).normalize(true),
        ] {
            let data: Vec<Vec<f32>> = (0..3).map(|_| rng.normals(rows * dim)).collect();
            let e: Vec<Embeddings<'_>> = data
                .iter()
                .map(|d| Embeddings::named("t", d, rows, dim).unwrap())
                .collect();
            let dec = explicit_decisions(&base, &e[0], &e[1], &e[2]);
            let mut cfg = base;
            if !make_clear(&mut cfg, &dec, 0.5, decision_band(dim, dec.d_max)) {
                continue;
            }
            let g = cfg
                .explicit(gpu, &e[0], &e[1], &e[2], Grads::Compute)
                .unwrap();
            let r = cfg
                .explicit_cpu(&e[0], &e[1], &e[2], Grads::Compute)
                .unwrap();
            let name = format!("explicit N={rows} D={dim} {cfg:?}");
            common::assert_report(&explicit_verdict(name, &cfg, &g, &r, [&e[0], &e[1], &e[2]]));
        }
    }
}

fn triplet_bits(out: &TripletOutput) -> (u64, Vec<Vec<u32>>) {
    (
        out.loss.to_bits(),
        out.grads
            .iter()
            .map(|g| g.iter().map(|v| v.to_bits()).collect())
            .collect(),
    )
}

#[test]
fn reruns_are_bitwise_identical() {
    let Some(gpu) = common::gpu() else { return };
    // 160 rows: 3 chunks of anchors, 5 column tiles.
    let (rows, dim) = (160, 12);
    let data = common::normals(11, rows * dim);
    let labels = common::labels(11, rows, 12);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
        let cfg = Triplet::default().normalize(true).margin(0.3).unwrap();
        let first = triplet_bits(
            &cfg.mining(mining)
                .batch(gpu, &x, &l, Grads::Compute)
                .unwrap(),
        );
        for _ in 0..2 {
            let again = cfg
                .mining(mining)
                .batch(gpu, &x, &l, Grads::Compute)
                .unwrap();
            assert_eq!(triplet_bits(&again), first, "{mining:?}");
        }
    }
    let cfg = Triplet::default().swap(true);
    let first = triplet_bits(&cfg.explicit(gpu, &x, &x, &x, Grads::Compute).unwrap());
    let again = cfg.explicit(gpu, &x, &x, &x, Grads::Compute).unwrap();
    assert_eq!(triplet_bits(&again), first);
}

fn windowed_gpu() -> Option<Gpu> {
    let mut l = common::gpu()?.limits().clone();
    l.max_storage_buffer_binding_size = 64 * 1024;
    Some(
        Gpu::with_options(GpuOptions {
            limits: Some(l),
            ..Default::default()
        })
        .expect("a device with 64 KiB bindings"),
    )
}

#[test]
fn windows_match_reference_and_unsplit_run() {
    let (Some(full), Some(small)) = (common::gpu(), windowed_gpu()) else {
        return;
    };
    // D = 100 is 400 bytes a row: 64 KiB bindings hold 163 rows, so X is bound in windows of
    // 128 rows and B = 200 needs 2; one chunk's distances (64 × 256 rows × 4 bytes) fit.
    let (rows, dim) = (200, 100);
    // Small integers: every squared distance and hinge argument is exact in f32, so both
    // precisions make the same choices, ties included, without redrawing.
    let mut rng = Rng::new(3);
    let data: Vec<f32> = (0..rows * dim).map(|_| rng.below(7) as f32 - 3.0).collect();
    let labels = common::labels(3, rows, 20);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
        let cfg = Triplet::default()
            .distance(Distance::SquaredEuclidean)
            .margin(0.5)
            .unwrap();
        cross_mined(&small, &cfg, mining, &data, &labels, dim);
        let split = cfg
            .mining(mining)
            .batch(&small, &x, &l, Grads::Compute)
            .unwrap();
        let whole = cfg
            .mining(mining)
            .batch(full, &x, &l, Grads::Compute)
            .unwrap();
        assert!(split.counts.active > 0);
        assert_eq!(triplet_bits(&split), triplet_bits(&whole), "{mining:?}");
    }
    // Explicit: N = 300 needs 3 windows.
    let data: Vec<Vec<f32>> = (0..3).map(|k| common::normals(20 + k, 300 * dim)).collect();
    let e: Vec<Embeddings<'_>> = data
        .iter()
        .map(|d| Embeddings::named("t", d, 300, dim).unwrap())
        .collect();
    let cfg = Triplet::default().swap(true);
    let split = cfg
        .explicit(&small, &e[0], &e[1], &e[2], Grads::Compute)
        .unwrap();
    let whole = cfg
        .explicit(full, &e[0], &e[1], &e[2], Grads::Compute)
        .unwrap();
    assert_eq!(triplet_bits(&split), triplet_bits(&whole));
    // 64 × 1024 rows × 4 bytes = 256 KiB of distances per chunk: more than one binding.
    // (Semi-hard mining needs the chunk's distances on every engine configuration; batch-hard
    // on the register rows keeps no chunk.)
    let big = common::normals(4, 1024 * 4);
    let x = Embeddings::named("x", &big, 1024, 4).unwrap();
    let l = Labels::new(&common::labels(4, 1024, 10));
    let err = Triplet::default()
        .mining(Mining::Semihard)
        .batch(&small, &x, &l, Grads::Skip)
        .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn mining_needs_no_batch_by_batch_buffer() {
    let Some(base) = common::gpu() else { return };
    // B = 1024, D = 4: X is 16 KiB, one chunk's arrays 256 KiB each; a B×B f32 matrix would
    // be 4 MiB. With buffers capped at 512 KiB, only O(B·D + 64·B) memory can work.
    let (b, d) = (1024usize, 4usize);
    let mut limits = base.limits().clone();
    limits.max_buffer_size = 512 * 1024;
    limits.max_storage_buffer_binding_size = 512 * 1024;
    let gpu = Gpu::with_options(GpuOptions {
        limits: Some(limits),
        ..Default::default()
    })
    .unwrap();
    let mut rng = Rng::new(6);
    let data: Vec<f32> = (0..b * d).map(|_| rng.below(9) as f32 - 4.0).collect();
    let labels = common::labels(6, b, 128);
    for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
        let cfg = Triplet::default()
            .distance(Distance::SquaredEuclidean)
            .margin(0.5)
            .unwrap();
        cross_mined(&gpu, &cfg, mining, &data, &labels, d);
    }
    assert!(gpu.workspace_bytes().1 < 4 * (b * b) as u64);
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
        let labels: Vec<i64> = (0..rows).map(|_| rng.below(10) as i64).collect();
        let x = Embeddings::named("x", &data, rows, d).unwrap();
        let l = Labels::new(&labels);
        for mining in [Mining::All, Mining::Hard, Mining::Semihard] {
            let out = Triplet::default()
                .mining(mining)
                .batch(&gpu, &x, &l, Grads::Compute)
                .unwrap();
            assert!(out.loss.is_finite());
        }
        let out = Triplet::default()
            .explicit(&gpu, &x, &x, &x, Grads::Compute)
            .unwrap();
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

#[test]
fn options_that_do_not_apply_are_errors() {
    let data = [0.0f32; 8];
    let x = Embeddings::named("x", &data, 4, 2).unwrap();
    let l = Labels::new(&[0, 0, 1, 1]);
    let conflicts = [
        (Triplet::default().swap(true), Mining::Hard),
        (Triplet::default().soft(), Mining::All),
        (
            Triplet::default().reduction(Reduction::MeanNonzero),
            Mining::Semihard,
        ),
        (Triplet::default().reduction(Reduction::Sum), Mining::All),
    ];
    for (cfg, mining) in conflicts {
        let err = cfg
            .mining(mining)
            .batch_cpu(&x, &l, Grads::Skip)
            .unwrap_err();
        assert!(
            matches!(err, Error::OptionConflict { .. }),
            "{cfg:?} {mining:?}: {err}"
        );
    }
    let err = Triplet::default()
        .reduction(Reduction::MeanNonzero)
        .explicit_cpu(&x, &x, &x, Grads::Skip)
        .unwrap_err();
    assert!(matches!(err, Error::OptionConflict { .. }));
    for m in [-1.0, f32::NAN, f32::INFINITY] {
        assert!(Triplet::default().margin(m).is_err(), "margin {m}");
        let direct = Triplet {
            term: TripletTerm::Margin(m),
            ..Default::default()
        };
        let err = direct.explicit_cpu(&x, &x, &x, Grads::Skip);
        assert!(
            matches!(err, Err(Error::InvalidOption { .. })),
            "margin {m}"
        );
    }
    let short = Embeddings::named("p", &data[..6], 3, 2).unwrap();
    let err = Triplet::default().explicit_cpu(&x, &short, &x, Grads::Skip);
    assert!(matches!(err, Err(Error::ShapeMismatch { .. })));
    let err =
        Triplet::default()
            .mining(Mining::Hard)
            .batch_cpu(&x, &Labels::new(&[0, 1]), Grads::Skip);
    assert!(matches!(err, Err(Error::ShapeMismatch { .. })));
}

/// B = 32768 (512 anchor chunks): loss and counts of every mining rule against the CPU
/// reference. Minutes on lavapipe, so not in the default run:
/// `cargo test --release --test triplet -- --ignored`.
#[test]
#[ignore]
fn large_batch_matches_reference() {
    let Some(gpu) = common::gpu() else { return };
    let (rows, dim) = (32768, 4);
    // Small integers: exact distances, so both precisions make the same choices.
    let mut rng = Rng::new(32768);
    let data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.below(41) as f32 - 20.0)
        .collect();
    let labels = common::labels(9, rows, (rows / 8) as u64);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    for mining in [Mining::Hard, Mining::Semihard, Mining::All] {
        let cfg = Triplet::default()
            .distance(Distance::SquaredEuclidean)
            .margin(0.5)
            .unwrap();
        let g = cfg.mining(mining).batch(gpu, &x, &l, Grads::Skip).unwrap();
        let r = cfg.mining(mining).batch_cpu(&x, &l, Grads::Skip).unwrap();
        assert_eq!(g.counts, r.counts, "{mining:?}");
        assert_eq!(g.counts.terms, mined_terms(l.ids(), mining));
        let name = format!("{mining:?} B={rows}");
        common::assert_report(&batch_verdict(name, &cfg.mining(mining), &g, &r, &x));
    }
}

//! Every configuration of the pair engine in one process: each in-batch loss against the f64
//! reference under the tolerance rule, at sizes around the engine's workgroup (128 rows) and
//! the staged shape's tile (16 columns), at row widths inside and past the register rows'
//! widest (128 values, where the staged shape takes over), and bitwise reruns per
//! configuration. The whole suite also runs once per configuration in CI (`.ci/run`,
//! `METRIC_LOSS_ENGINE`).

mod common;

use metric_loss::{
    Contrastive, Distance, Embeddings, EngineConfig, Gpu, Grads, Labels, Mining, Softmax, Triplet,
};

#[test]
fn every_configuration_matches_the_reference() {
    let gpus = common::engine_gpus();
    if let Some(g) = common::gpu() {
        let info = g.device().adapter_info();
        if info.device_type == metric_loss::wgpu::DeviceType::Cpu {
            assert!(
                gpus.len() >= 2,
                "a CPU adapter runs at least rows-direct and tile"
            );
        }
    }
    for gpu in &gpus {
        let engine = gpu.engine();
        for (rows, dim, seed) in [
            (1, 3, 1),
            (2, 5, 2),
            (127, 33, 3),
            (129, 8, 4),
            (150, 128, 5),
            (40, 129, 6),
        ] {
            let data = common::normals(seed, rows * dim);
            let x = Embeddings::named("x", &data, rows, dim).unwrap();
            let l = Labels::new(&common::labels(seed, rows, (rows as u64 / 3).max(2)));
            for cfg in [
                Contrastive::default(),
                Contrastive::default()
                    .distance(Distance::Cosine)
                    .normalize(true),
                Contrastive::default()
                    .distance(Distance::SquaredEuclidean)
                    .margin(20.0)
                    .unwrap(),
            ] {
                common::cross_batch(gpu, &format!("{engine} contrastive"), &cfg, &x, &l);
            }
            for cfg in [Softmax::ntxent(), Softmax::supcon()] {
                let mut v = cfg.batch_check(gpu, &x, &l).unwrap();
                v.name = format!("{engine} B={rows} D={dim} {}", v.name);
                common::assert_report(&v);
            }
            let other = common::normals(seed + 100, rows * dim);
            let b = Embeddings::named("b", &other, rows, dim).unwrap();
            let mut v = Softmax::clip().pairs_check(gpu, &x, &b).unwrap();
            v.name = format!("{engine} B={rows} D={dim} {}", v.name);
            common::assert_report(&v);
            // Small and low-dimensional where mining must not meet near ties.
            if rows <= 129 {
                for m in [Mining::Hard, Mining::Semihard, Mining::All] {
                    let mut v = Triplet::default()
                        .mining(m)
                        .batch_check(gpu, &x, &l)
                        .unwrap();
                    v.name = format!("{engine} B={rows} D={dim} {}", v.name);
                    common::assert_report(&v);
                }
            }
        }
        assert_eq!(gpu.uncaptured_errors(), 0, "{engine}");
    }
}

#[test]
fn lavapipe_runs_the_register_rows_by_default() {
    // The main suite run (no METRIC_LOSS_ENGINE) must exercise the configuration a software
    // adapter picks: register rows with broadcasts where it has fixed-size subgroups.
    let Some(gpu) = common::gpu() else { return };
    if std::env::var(metric_loss::ENGINE_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        return;
    }
    let info = gpu.device().adapter_info();
    let expected = EngineConfig::automatic(&info, gpu.device().features());
    assert_eq!(gpu.engine(), expected);
    if info.device_type == metric_loss::wgpu::DeviceType::Cpu
        && gpu
            .device()
            .features()
            .contains(metric_loss::wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == info.subgroup_max_size
    {
        assert_eq!(gpu.engine(), EngineConfig::Rows);
    }
}

#[test]
fn every_configuration_reruns_bitwise() {
    let (rows, dim) = (200, 24);
    let data = common::normals(7, rows * dim);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&common::labels(7, rows, 20));
    for gpu in &common::engine_gpus() {
        let c = Contrastive::default();
        let runs = [0, 1].map(|_| common::bits(&c.batch(gpu, &x, &l, Grads::Compute).unwrap()));
        assert!(
            runs[0] == runs[1],
            "{}: contrastive rerun differs",
            gpu.engine()
        );
        let s = Softmax::ntxent();
        let runs = [0, 1].map(|_| common::bits(&s.batch(gpu, &x, &l, Grads::Compute).unwrap()));
        assert!(runs[0] == runs[1], "{}: ntxent rerun differs", gpu.engine());
        let t = Triplet::default().mining(Mining::Hard);
        let runs = [0, 1].map(|_| common::bits(&t.batch(gpu, &x, &l, Grads::Compute).unwrap()));
        assert!(
            runs[0] == runs[1],
            "{}: triplet rerun differs",
            gpu.engine()
        );
    }
}

#[test]
fn a_configuration_switches_on_one_gpu() {
    let Some(shared) = common::gpu() else { return };
    let mut gpu = Gpu::from_device(shared.device().clone(), shared.queue().clone()).unwrap();
    for c in [EngineConfig::Tile, EngineConfig::RowsDirect] {
        gpu.set_engine(c).unwrap();
        assert_eq!(gpu.engine(), c);
    }
    let (rows, dim) = (64, 16);
    let data = common::normals(3, rows * dim);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&common::labels(3, rows, 8));
    common::cross_batch(&gpu, "after switching", &Contrastive::default(), &x, &l);
}

#[test]
fn prepare_builds_the_staged_shape_up_front() {
    // The staged shape has one variant per form (any row width): `prepare` builds them, so a
    // training loop's first step compiles nothing.
    let Some(shared) = common::gpu() else { return };
    let mut gpu = Gpu::from_device(shared.device().clone(), shared.queue().clone()).unwrap();
    gpu.set_engine(EngineConfig::Tile).unwrap();
    gpu.prepare().unwrap();
    let prepared = gpu.allocations().pipelines;
    let (rows, dim) = (40, 200);
    let data = common::normals(5, rows * dim);
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&common::labels(5, rows, 6));
    for c in [
        Contrastive::default(),
        Contrastive::default().distance(Distance::Cosine),
    ] {
        c.batch(&gpu, &x, &l, Grads::Compute).unwrap();
    }
    Softmax::supcon()
        .batch(&gpu, &x, &l, Grads::Compute)
        .unwrap();
    for m in [Mining::Hard, Mining::Semihard, Mining::All] {
        Triplet::default()
            .mining(m)
            .batch(&gpu, &x, &l, Grads::Compute)
            .unwrap();
    }
    assert_eq!(gpu.allocations().pipelines, prepared);
}

#[test]
fn a_row_picked_by_many_anchors() {
    // Row 0 (class 0, the origin) is the nearest negative of all 45 class-1 anchors (small
    // integer points) while class 2 sits far away: batch-hard's gradient gathers 45 anchors
    // into row 0, more than the register rows collect in one scan. Small integers keep every
    // squared distance exact, so both precisions make the same choices.
    let dim = 4;
    let mut data = vec![0.0f32; dim];
    let mut rng = metric_loss::testing::Rng::new(11);
    data.extend((0..45 * dim).map(|_| 1.0 + rng.below(3) as f32));
    data.extend((0..14 * dim).map(|_| 20.0 + rng.below(5) as f32));
    let labels: Vec<i64> = std::iter::once(0)
        .chain(std::iter::repeat_n(1, 45))
        .chain(std::iter::repeat_n(2, 14))
        .collect();
    let rows = labels.len();
    let x = Embeddings::named("x", &data, rows, dim).unwrap();
    let l = Labels::new(&labels);
    let cfg = Triplet::default()
        .distance(Distance::SquaredEuclidean)
        .margin(100.0)
        .unwrap()
        .mining(Mining::Hard);
    for gpu in &common::engine_gpus() {
        let mut v = cfg.batch_check(gpu, &x, &l).unwrap();
        v.name = format!("{} {}", gpu.engine(), v.name);
        common::assert_report(&v);
    }
}

//! Reuse: after its first step, a training loop whose batches do not grow creates no
//! buffers, bind groups, pipelines or shader modules, counted both by metric-loss's own
//! wrapper around every wgpu create call and by wgpu's internal object counters; shapes that
//! keep changing do not grow memory without limit.

mod common;

use metric_loss::testing::Rng;
use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels, Reduction};

#[test]
fn training_loop_allocates_nothing_after_its_first_step() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    let (b, d) = (96usize, 12usize);
    let cfgs = [
        Contrastive::default(),
        Contrastive::default()
            .normalize(true)
            .reduction(Reduction::MeanNonzero),
    ];
    let mut rng = Rng::new(3);
    let mut after_first = None;
    for step in 0..100 {
        // The last batch is smaller, as at the end of an epoch.
        let rows = if step == 99 { 40 } else { b };
        let data = rng.normals(rows * d);
        let labels: Vec<i64> = (0..rows).map(|_| rng.below(10) as i64).collect();
        let x = Embeddings::named("x", &data, rows, d).unwrap();
        for cfg in &cfgs {
            let out = cfg
                .batch(&gpu, &x, &Labels::new(&labels), Grads::Compute)
                .unwrap();
            assert!(out.loss.is_finite());
        }
        if step == 0 {
            after_first = Some((gpu.allocations(), common::live(&gpu)));
        }
    }
    let (allocs, counters) = after_first.unwrap();
    assert!(allocs.pipelines > 0 && allocs.buffers > 0 && allocs.bind_groups > 0);
    assert_eq!(
        gpu.allocations(),
        allocs,
        "metric-loss created wgpu objects after step 1"
    );
    assert_eq!(
        common::live(&gpu),
        counters,
        "wgpu's live object counts changed after step 1"
    );
    assert_eq!(gpu.uncaptured_errors(), 0);
}

#[test]
fn changing_shapes_do_not_grow_memory_without_limit() {
    if common::gpu().is_none() {
        return;
    }
    let gpu = Gpu::new().unwrap();
    let mut rng = Rng::new(11);
    let mut round = |gpu: &Gpu| {
        for _ in 0..40 {
            let rows = 1 + rng.below(300) as usize;
            let d = [3usize, 8, 17][rng.below(3) as usize];
            let data = rng.normals(rows * d);
            let labels: Vec<i64> = (0..rows).map(|_| rng.below(7) as i64).collect();
            let x = Embeddings::named("x", &data, rows, d).unwrap();
            let cfg = Contrastive::default().normalize(rng.below(2) == 0);
            cfg.batch(gpu, &x, &Labels::new(&labels), Grads::Compute)
                .unwrap();
        }
    };
    round(&gpu);
    // Capacities now cover the largest shape: another round of the same shapes allocates no
    // buffer, and memory stays where it was.
    let (bytes, peak) = gpu.workspace_bytes();
    let buffers = gpu.allocations().buffers;
    round(&gpu);
    assert_eq!(gpu.allocations().buffers, buffers);
    assert_eq!(gpu.workspace_bytes(), (bytes, peak));
    // 300 rows × 20 padded values × 4 bytes is 24 KB per row-sized buffer; the whole
    // workspace stays within a small multiple of that.
    assert!(peak < 2 * 1024 * 1024, "workspace peak {peak} bytes");
}

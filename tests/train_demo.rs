//! The training demo (examples/train): its split is fixed and disjoint, and a short training
//! on the GPU loss lowers the loss and improves held-out recall@1.

mod common;

#[path = "../examples/train/demo.rs"]
#[allow(dead_code)]
mod demo;

use demo::{retrieval, split, Digits, LossKind, Mlp, Queue, Settings, EMBED, TEST};
use metric_loss::testing::Rng;

#[test]
fn the_split_is_fixed_and_disjoint() {
    let data = Digits::load().unwrap();
    assert_eq!(data.len(), 1797);
    assert!(data.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert!((0..10).all(|c| data.y.contains(&c)));
    let (train, test) = split(data.len());
    assert_eq!((train.len(), test.len()), (1797 - TEST, TEST));
    let mut seen = vec![false; data.len()];
    for &i in train.iter().chain(&test) {
        assert!(!seen[i], "row {i} is in both sets or twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(
        split(data.len()),
        (train, test),
        "the split must not change"
    );
}

#[test]
fn retrieval_metrics_by_hand() {
    let Some(gpu) = common::gpu() else { return };
    // Rows 0, 1 (class 0) near each other, row 2 (class 1) far, row 3 (class 1) nearer to
    // row 1 than to row 2: recall@1 = 3/4 (row 3's nearest is row 1).
    let e = [0.0f32, 0.0, 0.1, 0.0, 5.0, 0.0, 0.6, 0.0];
    let (r1, map) = retrieval(gpu, &e, 2, &[0, 0, 1, 1]).unwrap();
    assert_eq!(r1, 0.75);
    // AP: rows 0, 1 and 2 find their one same-class row first (1.0); row 3 finds it third (1/3).
    assert!((map - (3.0 + 1.0 / 3.0) / 4.0).abs() < 1e-12);
}

#[test]
fn a_short_training_lowers_the_loss_and_improves_recall() {
    let Some(gpu) = common::gpu() else { return };
    let data = Digits::load().unwrap();
    let (train, test) = split(data.len());
    let (tx, ty) = data.rows(&test);
    let mut model = Mlp::new(&mut Rng::new(1));
    let before = retrieval(gpu, &model.forward(&tx).0, EMBED, &ty).unwrap().0;
    let s = Settings {
        loss: LossKind::Contrastive,
        epochs: 3,
        batch: 128,
        lr: 3e-3,
        seed: 1,
        margin: 2.0,
        queue: 0,
    };
    let losses = demo::train(gpu, &data, &train, &mut model, &s, |_| {}).unwrap();
    let per_epoch = train.len().div_ceil(128);
    assert_eq!(losses.len(), 3 * per_epoch);
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (first, last) = (mean(&losses[..per_epoch]), mean(&losses[2 * per_epoch..]));
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    let after = retrieval(gpu, &model.forward(&tx).0, EMBED, &ty).unwrap().0;
    assert!(after > before + 0.1, "recall@1 {before} -> {after}");
    // The other losses run through the same loop.
    for loss in [LossKind::Triplet, LossKind::Ntxent] {
        let s = Settings {
            loss,
            epochs: 1,
            ..s
        };
        let l = demo::train(gpu, &data, &train, &mut model, &s, |_| {}).unwrap();
        assert!(l.iter().all(|v| v.is_finite()), "{loss:?}");
    }
    // And with a queue of past embeddings (filled after the first step).
    for loss in [LossKind::Contrastive, LossKind::Ntxent] {
        let s = Settings {
            loss,
            epochs: 1,
            queue: 300,
            ..s
        };
        let l = demo::train(gpu, &data, &train, &mut model, &s, |_| {}).unwrap();
        assert!(l.iter().all(|v| v.is_finite()), "{loss:?} with a queue");
    }
}

#[test]
fn the_queue_keeps_the_newest_rows_in_order() {
    let row = |v: f32| vec![v; EMBED];
    let mut q = Queue::new(3);
    assert!(q.labels.is_empty());
    q.push(&[row(1.0), row(2.0)].concat(), &[1, 2]);
    // Not yet full: what was pushed, oldest first.
    assert_eq!(q.labels, [1, 2]);
    q.push(&[row(3.0), row(4.0)].concat(), &[3, 4]);
    // Full: the oldest dropped, the rest in order, rows with their labels.
    assert_eq!(q.labels, [2, 3, 4]);
    assert_eq!(q.rows, [row(2.0), row(3.0), row(4.0)].concat());
    let mut none = Queue::new(0);
    none.push(&row(1.0), &[1]);
    assert!(none.labels.is_empty() && none.rows.is_empty());
}

//! The operation inside burn graphs: views of larger tensors read in place, a loss used
//! twice, untracked calls, refused inputs, and no read back to the host per step.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::{assert_pass, device, int_tensor, labels, outside, values, Rows};
use metric_loss::testing::outside::{self as judge, Outside};
use metric_loss::testing::Rng;
use metric_loss::{Contrastive, Embeddings, Labels, Softmax};
use metric_loss_burn as ml;

/// Rows `rows` and columns `cols` of a row-major matrix of width `width`.
fn sub(
    host: &[f32],
    width: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> Vec<f32> {
    rows.flat_map(|r| cols.clone().map(move |c| host[r * width + c]))
        .collect()
}

#[test]
fn a_slice_of_rows_and_a_slice_of_columns_are_read_in_place() {
    let mut rng = Rng::new(11);
    let big = Rows::scaled(&mut rng, 48, 16, 0.25);
    let l = labels(&mut rng, 32, 4);
    let cfg = Contrastive::default();
    // Rows 8..40: a view at a non-zero buffer offset (8·16·4 = 512 bytes); and columns 0..8
    // of them: a view with a row stride of 16 values for rows of 8, read in place. Columns
    // 2..14 end off burn's memory alignment, so burn's slice copies them first.
    for (rows, cols) in [(8..40, 0..16), (8..40, 0..8), (8..40, 2..14)] {
        let t = big.tracked();
        let view = t.clone().slice([rows.clone(), cols.clone()]);
        let loss = ml::contrastive(view, int_tensor(&l), &cfg).unwrap();
        let got = loss.clone();
        let grads = loss.backward();
        let g = values(t.grad(&grads).unwrap());
        let host = sub(&big.host, 16, rows.clone(), cols.clone());
        let e = Embeddings::new(&host, rows.len(), cols.len()).unwrap();
        let out = Outside {
            loss: f64::from(values(got)[0]),
            grads: vec![sub(&g, 16, rows.clone(), cols.clone())],
        };
        let v = judge::contrastive_batch(&cfg, &e, &Labels::new(&l), &out).unwrap();
        assert_pass(&format!("rows {rows:?} columns {cols:?}"), &v);
        // Everything outside the view has no gradient.
        for r in 0..48 {
            for c in 0..16 {
                if !(rows.contains(&r) && cols.contains(&c)) {
                    assert_eq!(g[r * 16 + c], 0.0, "row {r} column {c}");
                }
            }
        }
    }
}

#[test]
fn a_loss_used_twice_in_one_graph_adds_its_gradients() {
    let mut rng = Rng::new(12);
    let x = Rows::scaled(&mut rng, 21, 10, 0.3);
    let l = labels(&mut rng, 21, 3);
    let cfg = Contrastive::default();
    let t = x.tracked();
    let once = outside(
        ml::contrastive(t.clone(), int_tensor(&l), &cfg).unwrap(),
        &[&t],
    );
    // 2·L(x) + 3·L(x) through two calls of the operation and burn's arithmetic on them, and
    // the same rows reached through a second path (x·1).
    let t = x.tracked();
    let first = ml::contrastive(t.clone(), int_tensor(&l), &cfg).unwrap();
    let second = ml::contrastive(t.clone().mul_scalar(1.0), int_tensor(&l), &cfg).unwrap();
    let twice = outside(first.mul_scalar(2.0) + second.mul_scalar(3.0), &[&t]);
    assert!((twice.loss - 5.0 * once.loss).abs() <= 1e-6 * once.loss.abs().max(1.0));
    for (a, b) in twice.grads[0].iter().zip(&once.grads[0]) {
        assert!(
            (a - 5.0 * b).abs() <= 1e-6 * b.abs().max(1e-3),
            "{a} vs 5·{b}"
        );
    }
    let scaled = Outside {
        loss: twice.loss / 5.0,
        grads: vec![twice.grads[0].iter().map(|g| g / 5.0).collect()],
    };
    let v = judge::contrastive_batch(&cfg, &x.embeddings(), &Labels::new(&l), &scaled).unwrap();
    assert_pass("2L + 3L, divided by 5", &v);
}

#[test]
fn an_untracked_call_gives_the_loss_alone() {
    let mut rng = Rng::new(13);
    let x = Rows::scaled(&mut rng, 30, 8, 1.0);
    let l = labels(&mut rng, 30, 3);
    let cfg = Softmax::supcon();
    let loss = ml::softmax(x.tensor(), int_tensor(&l), &cfg).unwrap();
    let t = x.tracked();
    let tracked = ml::softmax(t, int_tensor(&l), &cfg).unwrap();
    assert_eq!(values(loss), values(tracked));
}

#[test]
fn labels_of_any_integer_type_are_class_ids() {
    let mut rng = Rng::new(14);
    let x = Rows::scaled(&mut rng, 20, 6, 0.3);
    let l = labels(&mut rng, 20, 3);
    let cfg = Contrastive::default();
    let wide: Tensor<1, Int> = Tensor::from_data(TensorData::new(l.clone(), [20]), &device());
    let a = values(ml::contrastive(x.tensor(), wide, &cfg).unwrap());
    let b = values(ml::contrastive(x.tensor(), int_tensor(&l), &cfg).unwrap());
    assert_eq!(a, b);
}

#[test]
fn inputs_it_cannot_take_are_errors_before_anything_runs() {
    let mut rng = Rng::new(15);
    let x = Rows::scaled(&mut rng, 10, 4, 1.0);
    let l = labels(&mut rng, 10, 2);
    let err = |r: ml::Result<Tensor<1>>| r.expect_err("refused").to_string();
    // Labels of another length.
    let e = err(ml::contrastive(
        x.tensor(),
        int_tensor(&l[..9]),
        &Contrastive::default(),
    ));
    assert!(e.contains("labels"), "{e}");
    // A labelled-batch loss given two views, and a two-view loss given a batch.
    let e = err(ml::softmax_pairs(
        x.tensor(),
        x.tensor(),
        &Softmax::ntxent(),
    ));
    assert!(e.contains("labelled batch"), "{e}");
    let e = err(ml::softmax(x.tensor(), int_tensor(&l), &Softmax::clip()));
    assert!(e.contains("two views"), "{e}");
    // Fewer keys than anchors.
    let few = x.tensor().slice([0..5, 0..4]);
    let e = err(ml::softmax_pairs(x.tensor(), few, &Softmax::infonce(false)));
    assert!(e.contains("keys"), "{e}");
    // An empty batch, f16 rows.
    let empty = x.tensor().slice([0..0, 0..4]);
    let e = err(ml::contrastive(
        empty,
        int_tensor(&[]),
        &Contrastive::default(),
    ));
    assert!(e.contains("empty") || e.contains("no rows"), "{e}");
    let half = x.tensor().cast(burn::tensor::FloatDType::F16);
    let e = err(ml::contrastive(
        half,
        int_tensor(&l),
        &Contrastive::default(),
    ));
    assert!(e.contains("f32"), "{e}");
    // Queries that do not fit at queries_at.
    let set = ml::Reference {
        rows: x.tensor(),
        labels: int_tensor(&l),
        queries_at: Some(3),
    };
    let e = err(ml::contrastive_against(
        x.tensor(),
        int_tensor(&l),
        set,
        &Contrastive::default(),
    ));
    assert!(e.contains("queries_at"), "{e}");
}

#[test]
fn training_steps_read_nothing_back_and_create_no_buffers() {
    let mut rng = Rng::new(16);
    let x = Rows::scaled(&mut rng, 64, 16, 0.3);
    let l = labels(&mut rng, 64, 8);
    let gpu = ml::gpu(&device()).unwrap();
    let w0 = Tensor::<2>::from_data(TensorData::new(rng.normals(16 * 16), [16, 16]), &device());
    let step = |w: Tensor<2>| {
        let w = w.require_grad();
        let emb = x.tensor().matmul(w.clone());
        let loss = ml::contrastive(emb, int_tensor(&l), &Contrastive::default()).unwrap();
        let grads = loss.backward();
        let g = w.grad(&grads).unwrap();
        (w.inner() - g.mul_scalar(0.1)).autodiff()
    };
    let mut w = step(w0);
    // burn runs queued (and, fused, deferred) work when something reads it: read the first
    // step's result so that metric-loss's first call, which sizes its workspace, has run.
    assert!(values(w.clone()).iter().all(|v| v.is_finite()));
    let before = (gpu.host_reads(), gpu.allocations().buffers);
    assert!(before.1 > 0, "the first step ran metric-loss");
    for _ in 0..5 {
        w = step(w);
    }
    // Only reading the result waits for the device; metric-loss read nothing back and
    // created no buffer in the five steps.
    assert!(values(w).iter().all(|v| v.is_finite()));
    assert_eq!((gpu.host_reads(), gpu.allocations().buffers), before);
}

#[test]
fn one_tracked_side_of_matched_rows_gets_its_gradient() {
    let mut rng = Rng::new(17);
    let (a, b) = (
        Rows::scaled(&mut rng, 25, 12, 1.0),
        Rows::scaled(&mut rng, 25, 12, 1.0),
    );
    let cfg = Softmax::clip();
    let both = {
        let (ta, tb) = (a.tracked(), b.tracked());
        outside(
            ml::softmax_pairs(ta.clone(), tb.clone(), &cfg).unwrap(),
            &[&ta, &tb],
        )
    };
    // A frozen second tower: b detached, a tracked; then the other way round.
    let ta = a.tracked();
    let only_a = outside(
        ml::softmax_pairs(ta.clone(), b.tensor(), &cfg).unwrap(),
        &[&ta],
    );
    assert_eq!(only_a.grads[0], both.grads[0]);
    let tb = b.tracked();
    let only_b = outside(
        ml::softmax_pairs(a.tensor(), tb.clone(), &cfg).unwrap(),
        &[&tb],
    );
    assert_eq!(only_b.grads[0], both.grads[1]);
    // Explicit triplets with only the anchors tracked.
    let rows: Vec<Rows> = (0..3).map(|_| Rows::scaled(&mut rng, 19, 6, 0.4)).collect();
    let t: Vec<Tensor<2>> = rows.iter().map(Rows::tracked).collect();
    let loss = ml::triplet_explicit(
        t[0].clone(),
        t[1].clone(),
        t[2].clone(),
        &Default::default(),
    );
    let all = outside(loss.unwrap(), &[&t[0], &t[1], &t[2]]);
    let anchors = rows[0].tracked();
    let loss = ml::triplet_explicit(
        anchors.clone(),
        rows[1].tensor(),
        rows[2].tensor(),
        &Default::default(),
    );
    let only = outside(loss.unwrap(), &[&anchors]);
    assert_eq!(only.grads[0], all.grads[0]);
    // Queries against reference rows with only the references tracked.
    let (q, r) = (
        Rows::scaled(&mut rng, 9, 6, 0.3),
        Rows::scaled(&mut rng, 14, 6, 0.3),
    );
    let (lq, lr) = (labels(&mut rng, 9, 3), labels(&mut rng, 14, 3));
    let set = |rows: Tensor<2>| ml::Reference {
        rows,
        labels: int_tensor(&lr),
        queries_at: None,
    };
    let cfg = Contrastive::default();
    let (tq, tr) = (q.tracked(), r.tracked());
    let loss = ml::contrastive_against(tq.clone(), int_tensor(&lq), set(tr.clone()), &cfg);
    let both = outside(loss.unwrap(), &[&tq, &tr]);
    let tr = r.tracked();
    let loss = ml::contrastive_against(q.tensor(), int_tensor(&lq), set(tr.clone()), &cfg);
    let only = outside(loss.unwrap(), &[&tr]);
    assert_eq!(only.grads[0], both.grads[1]);
}

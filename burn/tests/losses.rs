//! Every loss as a burn operation against the same loss written with plain burn tensor ops
//! and differentiated by burn's autodiff: both are judged against metric-loss's f64
//! reference under the crate's tolerance rule (so they agree with each other within twice
//! its bound). Inputs are odd sizes so that the kernels' tiles end mid-way.

mod common;

use burn::tensor::Tensor;
use common::reference as burn_ref;
use common::{assert_pass, int_tensor, labels, outside, Rows};
use metric_loss::testing::outside as judge;
use metric_loss::testing::Rng;
use metric_loss::Precision::F32;
use metric_loss::{
    Contrastive, Labels, Mining, Proxy, ReferenceGrad, ReferenceSet, Siglip, Softmax, Triplet,
    Weighting, WeightingLoss,
};
use metric_loss_burn as ml;

#[test]
fn contrastive_batch() {
    let mut rng = Rng::new(1);
    let x = Rows::scaled(&mut rng, 37, 19, 0.2);
    let l = labels(&mut rng, 37, 5);
    let cfg = Contrastive::default();
    let t = x.tracked();
    let ours = outside(
        ml::contrastive(t.clone(), int_tensor(&l), &cfg).unwrap(),
        &[&t],
    );
    let t = x.tracked();
    let theirs = outside(
        burn_ref::contrastive(t.clone(), int_tensor(&l), 0.0, 1.0),
        &[&t],
    );
    let (e, hl) = (x.embeddings(), Labels::new(&l));
    assert_pass(
        "ours",
        &judge::contrastive_batch(&cfg, &e, &hl, &ours).unwrap(),
    );
    assert_pass(
        "burn",
        &judge::contrastive_batch(&cfg, &e, &hl, &theirs).unwrap(),
    );
}

#[test]
fn contrastive_pairs() {
    let mut rng = Rng::new(2);
    let (a, b) = (
        Rows::scaled(&mut rng, 29, 13, 0.3),
        Rows::scaled(&mut rng, 29, 13, 0.3),
    );
    let y = labels(&mut rng, 29, 2);
    let cfg = Contrastive::default();
    let (ta, tb) = (a.tracked(), b.tracked());
    let loss = ml::contrastive_pairs(ta.clone(), tb.clone(), int_tensor(&y), &cfg).unwrap();
    let ours = outside(loss, &[&ta, &tb]);
    let (ta, tb) = (a.tracked(), b.tracked());
    let loss = burn_ref::contrastive_pairs(ta.clone(), tb.clone(), int_tensor(&y));
    let theirs = outside(loss, &[&ta, &tb]);
    let similar: Vec<bool> = y.iter().map(|&v| v != 0).collect();
    let (ea, eb) = (a.embeddings(), b.embeddings());
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::contrastive_pairs(&cfg, &ea, &eb, &similar, out).unwrap(),
        );
    }
}

#[test]
fn contrastive_against_a_tracked_and_a_detached_queue() {
    let mut rng = Rng::new(3);
    let (q, r) = (
        Rows::scaled(&mut rng, 23, 17, 0.2),
        Rows::scaled(&mut rng, 41, 17, 0.2),
    );
    let (lq, lr) = (labels(&mut rng, 23, 4), labels(&mut rng, 41, 4));
    let cfg = Contrastive::default();
    let all: Vec<i64> = lq.iter().chain(&lr).copied().collect();
    let (eq, er, hl) = (q.embeddings(), r.embeddings(), Labels::new(&all));
    for tracked in [true, false] {
        let reference = |t: &Rows| if tracked { t.tracked() } else { t.tensor() };
        let (tq, tr) = (q.tracked(), reference(&r));
        let set = ml::Reference {
            rows: tr.clone(),
            labels: int_tensor(&lr),
            queries_at: None,
        };
        let loss = ml::contrastive_against(tq.clone(), int_tensor(&lq), set, &cfg).unwrap();
        let inputs: Vec<&Tensor<2>> = if tracked { vec![&tq, &tr] } else { vec![&tq] };
        let ours = outside(loss, &inputs);
        let (tq, tr) = (q.tracked(), reference(&r));
        let loss =
            burn_ref::contrastive_against(tq.clone(), int_tensor(&lq), tr.clone(), int_tensor(&lr));
        let inputs: Vec<&Tensor<2>> = if tracked { vec![&tq, &tr] } else { vec![&tq] };
        let theirs = outside(loss, &inputs);
        let grad = if tracked {
            ReferenceGrad::Returned
        } else {
            ReferenceGrad::Detached
        };
        let set = ReferenceSet::new(&er, grad);
        for (who, out) in [("ours", &ours), ("burn", &theirs)] {
            let v = judge::contrastive_against(&cfg, &eq, &set, &hl, out).unwrap();
            assert_pass(&format!("{who}, reference tracked: {tracked}"), &v);
        }
    }
}

#[test]
fn nt_xent_and_supcon() {
    let mut rng = Rng::new(4);
    let x = Rows::scaled(&mut rng, 33, 21, 1.0);
    let l = labels(&mut rng, 33, 6);
    let (e, hl) = (x.embeddings(), Labels::new(&l));
    for cfg in [Softmax::ntxent(), Softmax::supcon()] {
        let tau = f64::from(cfg.temperature);
        let t = x.tracked();
        let ours = outside(ml::softmax(t.clone(), int_tensor(&l), &cfg).unwrap(), &[&t]);
        let t = x.tracked();
        let loss = match cfg.loss {
            metric_loss::SoftmaxLoss::NtXent => burn_ref::nt_xent(t.clone(), int_tensor(&l), tau),
            _ => burn_ref::supcon(t.clone(), int_tensor(&l), tau),
        };
        let theirs = outside(loss, &[&t]);
        for (who, out) in [("ours", &ours), ("burn", &theirs)] {
            let v = judge::softmax_batch(&cfg, &e, &hl, out).unwrap();
            assert_pass(&format!("{who} {:?}", cfg.loss), &v);
        }
    }
}

#[test]
fn clip_and_infonce_with_extra_keys_and_labels() {
    let mut rng = Rng::new(5);
    let a = Rows::scaled(&mut rng, 27, 15, 1.0);
    let keys = Rows::scaled(&mut rng, 38, 15, 1.0);
    let b = Rows {
        host: keys.host[..27 * 15].to_vec(),
        rows: 27,
        dim: 15,
    };
    // CLIP on a and the first 27 keys.
    let clip = Softmax::clip();
    let (ta, tb) = (a.tracked(), b.tracked());
    let ours = outside(
        ml::softmax_pairs(ta.clone(), tb.clone(), &clip).unwrap(),
        &[&ta, &tb],
    );
    let (ta, tb) = (a.tracked(), b.tracked());
    let tau = f64::from(clip.temperature);
    let theirs = outside(burn_ref::clip(ta.clone(), tb.clone(), tau), &[&ta, &tb]);
    let (ea, eb, ek) = (a.embeddings(), b.embeddings(), keys.embeddings());
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::softmax_pairs(&clip, &ea, &eb, None, out).unwrap(),
        );
    }
    // InfoNCE, 11 extra keys as hard negatives; then with labels masking false negatives.
    let nce = Softmax::infonce(false);
    let tau = f64::from(nce.temperature);
    let (ta, tk) = (a.tracked(), keys.tracked());
    let ours = outside(
        ml::softmax_pairs(ta.clone(), tk.clone(), &nce).unwrap(),
        &[&ta, &tk],
    );
    let (ta, tk) = (a.tracked(), keys.tracked());
    let theirs = outside(
        burn_ref::infonce(ta.clone(), tk.clone(), tau, None),
        &[&ta, &tk],
    );
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::softmax_pairs(&nce, &ea, &ek, None, out).unwrap(),
        );
    }
    let (la, lk) = (labels(&mut rng, 27, 9), labels(&mut rng, 38, 9));
    let (ta, tk) = (a.tracked(), keys.tracked());
    let loss = ml::softmax_pairs_labelled(
        ta.clone(),
        tk.clone(),
        int_tensor(&la),
        int_tensor(&lk),
        &nce,
    );
    let ours = outside(loss.unwrap(), &[&ta, &tk]);
    let (ta, tk) = (a.tracked(), keys.tracked());
    let mask = burn_ref::same(int_tensor(&la), int_tensor(&lk));
    let off_diagonal = Tensor::<2>::eye(27, &common::device())
        .pad((0, 11, 0, 0), 0.0)
        .equal_elem(0.0);
    let masked = mask.bool_and(off_diagonal);
    let theirs = outside(
        burn_ref::infonce(ta.clone(), tk.clone(), tau, Some(masked)),
        &[&ta, &tk],
    );
    let all: Vec<i64> = la.iter().chain(&lk).copied().collect();
    let hl = Labels::new(&all);
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::softmax_pairs(&nce, &ea, &ek, Some(&hl), out).unwrap(),
        );
    }
}

#[test]
fn siglip_with_extra_rows_and_labels() {
    let mut rng = Rng::new(6);
    let (n, m, dim) = (27, 38, 15);
    let a = Rows::scaled(&mut rng, n, dim, 1.0);
    let b = Rows::scaled(&mut rng, m, dim, 1.0);
    let (ea, eb) = (a.embeddings(), b.embeddings());
    let (la, lb) = (labels(&mut rng, n, 9), labels(&mut rng, m, 9));
    let all: Vec<i64> = la.iter().chain(&lb).copied().collect();
    let hl = Labels::new(&all);
    for cfg in [Siglip::default(), Siglip::new(4.0, -12.0).unwrap()] {
        let (t, bias) = (f64::from(cfg.scale()), f64::from(cfg.bias));
        for labelled in [false, true] {
            let (ta, tb) = (a.tracked(), b.tracked());
            let loss = if labelled {
                ml::siglip_labelled(
                    ta.clone(),
                    tb.clone(),
                    int_tensor(&la),
                    int_tensor(&lb),
                    &cfg,
                )
            } else {
                ml::siglip(ta.clone(), tb.clone(), &cfg)
            };
            let ours = outside(loss.unwrap(), &[&ta, &tb]);
            let (ta, tb) = (a.tracked(), b.tracked());
            let positive = if labelled {
                burn_ref::same(int_tensor(&la), int_tensor(&lb))
            } else {
                burn_ref::matched(n, m, &common::device())
            };
            let theirs = outside(
                burn_ref::siglip(ta.clone(), tb.clone(), t, bias, positive),
                &[&ta, &tb],
            );
            let l = labelled.then_some(&hl);
            for (who, out) in [("ours", &ours), ("burn", &theirs)] {
                assert_pass(who, &judge::siglip_pairs(&cfg, &ea, &eb, l, out).unwrap());
            }
        }
    }
}

#[test]
fn multi_similarity_and_circle() {
    let mut rng = Rng::new(7);
    let x = Rows::scaled(&mut rng, 45, 13, 1.0);
    let l = labels(&mut rng, 45, 7);
    let ex = x.embeddings();
    let hl = Labels::new(&l);
    let ms = Weighting::multi_similarity();
    let circle = Weighting::circle();
    for (cfg, theirs) in [
        (
            ms,
            (|t, l| burn_ref::multi_similarity(t, l, 2.0, 50.0, 0.5)) as fn(_, _) -> _,
        ),
        (circle, |t, l| burn_ref::circle(t, l, 0.4, 80.0)),
    ] {
        let t = x.tracked();
        let ours = outside(
            ml::weighting(t.clone(), int_tensor(&l), &cfg).unwrap(),
            &[&t],
        );
        let t = x.tracked();
        let theirs = outside(theirs(t.clone(), int_tensor(&l)), &[&t]);
        for (who, out) in [("ours", &ours), ("burn", &theirs)] {
            assert_pass(who, &judge::weighting_batch(&cfg, &ex, &hl, out).unwrap());
        }
    }
    // With the miner: against the reference alone (plain burn has no miner).
    let mined = Weighting::new(WeightingLoss::MultiSimilarity {
        alpha: 2.0,
        beta: 50.0,
        base: 0.5,
        epsilon: Some(0.1),
    })
    .unwrap();
    let mined = metric_loss::testing::weighting::clear_of_ties(mined, &ex, &hl);
    let t = x.tracked();
    let ours = outside(
        ml::weighting(t.clone(), int_tensor(&l), &mined).unwrap(),
        &[&t],
    );
    assert_pass(
        "ours",
        &judge::weighting_batch(&mined, &ex, &hl, &ours).unwrap(),
    );
}

#[test]
fn arcface_cosface_and_sub_centres() {
    let (n, c, dim) = (45, 100, 13);
    for cfg in [
        Proxy::arcface(),
        Proxy::cosface(),
        Proxy::subcenter_arcface(),
    ] {
        let k = cfg.sub_centers as usize;
        // Inputs whose sub-centre winners are clear of ties (the max is a decision).
        let case = metric_loss::testing::proxy::Case::new(&cfg, 8, (n, c, dim), F32).unwrap();
        let rows = |h: &metric_loss::testing::Held, rows| Rows {
            host: h.values().to_vec(),
            rows,
            dim,
        };
        let (x, w, classes) = (rows(&case.x, n), rows(&case.w, c * k), &case.classes);
        let ids: Vec<i64> = classes.iter().map(|&v| i64::from(v)).collect();
        let (ex, ew) = (x.embeddings(), w.embeddings());
        let (arc, m) = match cfg.loss {
            metric_loss::ProxyLoss::ArcFace { margin_degrees } => {
                (true, f64::from(margin_degrees).to_radians())
            }
            metric_loss::ProxyLoss::CosFace { margin } => (false, f64::from(margin)),
        };
        let s = f64::from(cfg.scale);
        let (tx, tw) = (x.tracked(), w.tracked());
        let ours = ml::proxy(tx.clone(), int_tensor(&ids), tw.clone(), &cfg).unwrap();
        let ours = outside(ours, &[&tx, &tw]);
        let (tx, tw) = (x.tracked(), w.tracked());
        let theirs = burn_ref::proxy(tx.clone(), int_tensor(&ids), tw.clone(), (arc, m, s, k));
        let theirs = outside(theirs, &[&tx, &tw]);
        for (who, out) in [("ours", &ours), ("burn", &theirs)] {
            assert_pass(
                who,
                &judge::proxy_batch(&cfg, &ex, classes, &ew, out).unwrap(),
            );
        }
    }
}

#[test]
fn nt_xent_against_a_tracked_reference() {
    let mut rng = Rng::new(6);
    let (q, r) = (
        Rows::scaled(&mut rng, 19, 11, 1.0),
        Rows::scaled(&mut rng, 45, 11, 1.0),
    );
    let (lq, lr) = (labels(&mut rng, 19, 5), labels(&mut rng, 45, 5));
    let cfg = Softmax::ntxent();
    let (tq, tr) = (q.tracked(), r.tracked());
    let set = ml::Reference {
        rows: tr.clone(),
        labels: int_tensor(&lr),
        queries_at: None,
    };
    let ours = outside(
        ml::softmax_against(tq.clone(), int_tensor(&lq), set, &cfg).unwrap(),
        &[&tq, &tr],
    );
    let (tq, tr) = (q.tracked(), r.tracked());
    let tau = f64::from(cfg.temperature);
    let loss = burn_ref::nt_xent_against(
        tq.clone(),
        int_tensor(&lq),
        tr.clone(),
        int_tensor(&lr),
        tau,
    );
    let theirs = outside(loss, &[&tq, &tr]);
    let all: Vec<i64> = lq.iter().chain(&lr).copied().collect();
    let (eq, er, hl) = (q.embeddings(), r.embeddings(), Labels::new(&all));
    let set = ReferenceSet::new(&er, ReferenceGrad::Returned);
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::softmax_against(&cfg, &eq, &set, &hl, out).unwrap(),
        );
    }
}

#[test]
fn mined_triplets_all_and_hard() {
    let mut rng = Rng::new(7);
    let x = Rows::scaled(&mut rng, 17, 9, 0.3);
    let l = labels(&mut rng, 17, 4);
    let (e, hl) = (x.embeddings(), Labels::new(&l));
    for mining in [Mining::All, Mining::Hard] {
        let cfg = Triplet::default().mining(mining);
        let t = x.tracked();
        let ours = outside(ml::triplet(t.clone(), int_tensor(&l), &cfg).unwrap(), &[&t]);
        let t = x.tracked();
        let loss = match mining {
            Mining::All => burn_ref::triplet_all(t.clone(), int_tensor(&l), 1.0),
            _ => burn_ref::triplet_hard(t.clone(), int_tensor(&l), 1.0),
        };
        let theirs = outside(loss, &[&t]);
        for (who, out) in [("ours", &ours), ("burn", &theirs)] {
            let v = judge::triplet_batch(&cfg, &e, &hl, out).unwrap();
            assert_pass(&format!("{who} {mining:?}"), &v);
        }
    }
}

#[test]
fn explicit_triplets() {
    let mut rng = Rng::new(8);
    let rows: Vec<Rows> = (0..3).map(|_| Rows::scaled(&mut rng, 31, 7, 0.4)).collect();
    let cfg = Triplet::default();
    let t: Vec<Tensor<2>> = rows.iter().map(Rows::tracked).collect();
    let loss = ml::triplet_explicit(t[0].clone(), t[1].clone(), t[2].clone(), &cfg).unwrap();
    let ours = outside(loss, &[&t[0], &t[1], &t[2]]);
    let t: Vec<Tensor<2>> = rows.iter().map(Rows::tracked).collect();
    let loss = burn_ref::triplet_explicit(t[0].clone(), t[1].clone(), t[2].clone(), 1.0);
    let theirs = outside(loss, &[&t[0], &t[1], &t[2]]);
    let e: Vec<_> = rows.iter().map(Rows::embeddings).collect();
    for (who, out) in [("ours", &ours), ("burn", &theirs)] {
        assert_pass(
            who,
            &judge::triplet_explicit(&cfg, [&e[0], &e[1], &e[2]], out).unwrap(),
        );
    }
}

//! CPU reference of the contrastive loss (mirrors contrastive.wgsl: forward terms and counts,
//! the reduction's scales, then the backward pass), in f64.

use super::{reduce, Contrastive, ContrastiveCounts};
use crate::options::{Grads, Hinge, Reduction};
use crate::reference::{add_scaled, distance, distance_grad, finish_grad, prepare, row};

/// The contrastive reference's f64 result.
pub type Reference = crate::reference::Reference<ContrastiveCounts>;

/// The hinge argument: d − p for similar pairs, m − d for dissimilar ones.
fn hinge_arg(cfg: &Contrastive, similar: bool, d: f64) -> f64 {
    if similar {
        d - f64::from(cfg.pos_margin)
    } else {
        f64::from(cfg.margin) - d
    }
}

fn hinge_value(kind: Hinge, x: f64) -> f64 {
    let r = x.max(0.0);
    match kind {
        Hinge::Squared => r * r,
        Hinge::Linear => r,
    }
}

fn hinge_slope(kind: Hinge, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    match kind {
        Hinge::Squared => 2.0 * x,
        Hinge::Linear => 1.0,
    }
}

/// dL/d(term) for similar and dissimilar terms, from the counts (mirrors contrastive_finalize).
pub(crate) fn scales(reduction: Reduction, c: &ContrastiveCounts) -> (f64, f64) {
    let inv = |n: u64| if n == 0 { 0.0 } else { 1.0 / n as f64 };
    match reduction {
        Reduction::Mean => (inv(c.pairs()), inv(c.pairs())),
        Reduction::Sum => (1.0, 1.0),
        Reduction::MeanNonzero => (inv(c.active_similar), inv(c.active_dissimilar)),
    }
}

struct Terms {
    sim: f64,
    dis: f64,
    counts: ContrastiveCounts,
}

impl Terms {
    fn new() -> Self {
        Self {
            sim: 0.0,
            dis: 0.0,
            counts: ContrastiveCounts::default(),
        }
    }

    fn add(&mut self, cfg: &Contrastive, similar: bool, d: f64) {
        let x = hinge_arg(cfg, similar, d);
        let term = hinge_value(cfg.hinge, x);
        let active = u64::from(x > 0.0);
        if similar {
            self.sim += term;
            self.counts.similar_pairs += 1;
            self.counts.active_similar += active;
        } else {
            self.dis += term;
            self.counts.dissimilar_pairs += 1;
            self.counts.active_dissimilar += active;
        }
    }
}

/// dL/dd of one pair given the scales.
fn slope(cfg: &Contrastive, similar: bool, d: f64, (s_sim, s_dis): (f64, f64)) -> f64 {
    let h = hinge_slope(cfg.hinge, hinge_arg(cfg, similar, d));
    if similar {
        h * s_sim
    } else {
        -h * s_dis
    }
}

/// Pair mode in f64: row i of `a` with row i of `b`.
pub fn pairs_f64(
    cfg: &Contrastive,
    a: &[f64],
    b: &[f64],
    dim: usize,
    similar: &[bool],
    grads: Grads,
) -> Reference {
    let (an, a_norms) = prepare(cfg.normalize, a, dim);
    let (bn, b_norms) = prepare(cfg.normalize, b, dim);
    let mut terms = Terms::new();
    for (i, &s) in similar.iter().enumerate() {
        let d = distance(cfg.distance, row(&an, i, dim), row(&bn, i, dim));
        terms.add(cfg, s, d);
    }
    let loss = reduce(cfg.reduction, terms.sim, terms.dis, &terms.counts);
    if grads == Grads::Skip {
        return Reference::loss_only(loss, terms.counts);
    }
    let sc = scales(cfg.reduction, &terms.counts);
    let mut ga = vec![0.0; an.len()];
    let mut gb = vec![0.0; bn.len()];
    for (i, &s) in similar.iter().enumerate() {
        let (u, v) = (row(&an, i, dim), row(&bn, i, dim));
        let c = slope(cfg, s, distance(cfg.distance, u, v), sc);
        add_scaled(
            &mut ga[i * dim..(i + 1) * dim],
            c,
            &distance_grad(cfg.distance, u, v),
        );
        add_scaled(
            &mut gb[i * dim..(i + 1) * dim],
            c,
            &distance_grad(cfg.distance, v, u),
        );
    }
    Reference {
        loss,
        counts: terms.counts,
        grads: vec![
            finish_grad(&an, a_norms, ga, dim),
            finish_grad(&bn, b_norms, gb, dim),
        ],
        grad_temperature: None,
        grad_bias: None,
    }
}

/// Batch mode in f64: every pair i < j of `x`, similar iff `classes` are equal: the batch
/// against itself as its reference set, each row's gradient its query side's plus its
/// reference side's.
pub fn batch_f64(
    cfg: &Contrastive,
    x: &[f64],
    dim: usize,
    classes: &[u32],
    grads: Grads,
) -> Reference {
    let mut r = against_f64(cfg, x, x, dim, (classes, classes), Some(0), grads);
    if let Some(gr) = r.grads.pop() {
        for (g, v) in r.grads[0].iter_mut().zip(gr) {
            *g += v;
        }
    }
    r
}

/// The pairs (query i, reference j) of queries against references: all, or j > o + i when
/// the queries are the references' rows from o on (each pair of rows once).
pub(crate) fn against_pairs(
    n: usize,
    m: usize,
    queries_at: Option<usize>,
) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |i| {
        let first = queries_at.map_or(0, |o| o + i + 1);
        (first.min(m)..m).map(move |j| (i, j))
    })
}

/// Queries `q` against references `r` in f64 (rows of `dim` values, class ids `classes`
/// (queries', references')): the pairs of [`against_pairs`], similar iff the ids are equal.
/// Gradients `[dL/dQ, dL/dR]`.
pub fn against_f64(
    cfg: &Contrastive,
    q: &[f64],
    r: &[f64],
    dim: usize,
    (cq, cr): (&[u32], &[u32]),
    queries_at: Option<usize>,
    grads: Grads,
) -> Reference {
    let (qn, q_norms) = prepare(cfg.normalize, q, dim);
    let (rn, r_norms) = prepare(cfg.normalize, r, dim);
    let pairs = || against_pairs(cq.len(), cr.len(), queries_at);
    let mut terms = Terms::new();
    for (i, j) in pairs() {
        let d = distance(cfg.distance, row(&qn, i, dim), row(&rn, j, dim));
        terms.add(cfg, cq[i] == cr[j], d);
    }
    let loss = reduce(cfg.reduction, terms.sim, terms.dis, &terms.counts);
    if grads == Grads::Skip {
        return Reference::loss_only(loss, terms.counts);
    }
    let sc = scales(cfg.reduction, &terms.counts);
    let (mut gq, mut gr) = (vec![0.0; qn.len()], vec![0.0; rn.len()]);
    for (i, j) in pairs() {
        let (u, v) = (row(&qn, i, dim), row(&rn, j, dim));
        let c = slope(cfg, cq[i] == cr[j], distance(cfg.distance, u, v), sc);
        add_scaled(
            &mut gq[i * dim..(i + 1) * dim],
            c,
            &distance_grad(cfg.distance, u, v),
        );
        add_scaled(
            &mut gr[j * dim..(j + 1) * dim],
            c,
            &distance_grad(cfg.distance, v, u),
        );
    }
    Reference {
        loss,
        counts: terms.counts,
        grads: vec![
            finish_grad(&qn, q_norms, gq, dim),
            finish_grad(&rn, r_norms, gr, dim),
        ],
        grad_temperature: None,
        grad_bias: None,
    }
}

//! CPU reference of the triplet losses, in f64. Mined triplets mirror triplet.wgsl's
//! structure with a chunk of one anchor: the anchor's distances to every row, its terms and
//! the weights dL/dd(a, j), then the gradient through those distances. The scales of the
//! reduction come from a first pass over every anchor, as on the GPU.

use super::{reduce, Mining, Mode, Triplet, TripletCounts, TripletTerm};
use crate::options::{Grads, Reduction};
use crate::reference::{
    add_scaled, distance, distance_grad, finish_grad, prepare, row, sigmoid, softplus,
};

/// The triplet reference's f64 result.
pub type Reference = crate::reference::Reference<TripletCounts>;

/// Value, slope dterm/dx and activity of the term at x = d(a,p) − d(a,n).
pub fn term(kind: TripletTerm, x: f64) -> (f64, f64, bool) {
    match kind {
        TripletTerm::Margin(m) => {
            let h = x + f64::from(m);
            if h > 0.0 {
                (h, 1.0, true)
            } else {
                (0.0, 0.0, false)
            }
        }
        TripletTerm::Soft => (softplus(x), sigmoid(x), x > 0.0),
    }
}

/// dL/dterm of the reduction given the counts.
fn scale(reduction: Reduction, c: &TripletCounts) -> f64 {
    let inv = |n: u64| if n == 0 { 0.0 } else { 1.0 / n as f64 };
    match reduction {
        Reduction::Mean => inv(c.terms),
        Reduction::Sum => 1.0,
        Reduction::MeanNonzero => inv(c.active),
    }
}

/// Explicit triplets in f64: rows i of `a`, `p`, `n`.
pub fn explicit_f64(
    cfg: &Triplet,
    a: &[f64],
    p: &[f64],
    n: &[f64],
    dim: usize,
    grads: Grads,
) -> Reference {
    let (an, a_norms) = prepare(cfg.normalize, a, dim);
    let (pn, p_norms) = prepare(cfg.normalize, p, dim);
    let (nn, n_norms) = prepare(cfg.normalize, n, dim);
    let rows = an.len() / dim;
    let kind = cfg.distance;
    let (mut sum, mut counts) = (0.0, TripletCounts::default());
    // Per triplet: d(a,p), the negative distance, whether swap chose d(p,n), the slope.
    let mut picks = Vec::with_capacity(rows);
    for i in 0..rows {
        let (u, v, w) = (row(&an, i, dim), row(&pn, i, dim), row(&nn, i, dim));
        let d_ap = distance(kind, u, v);
        let d_an = distance(kind, u, w);
        let d_pn = distance(kind, v, w);
        let from_p = cfg.swap && d_pn < d_an;
        let d_neg = if from_p { d_pn } else { d_an };
        let (value, slope, active) = term(cfg.term, d_ap - d_neg);
        sum += value;
        counts.terms += 1;
        counts.active += u64::from(active);
        picks.push((from_p, slope));
    }
    let reduction = cfg.reduction_in(Mode::Explicit);
    let loss = reduce(reduction, sum, &counts);
    if grads == Grads::Skip {
        return Reference::loss_only(loss, counts);
    }
    let s = scale(reduction, &counts);
    let (mut ga, mut gp, mut gn) = (
        vec![0.0; an.len()],
        vec![0.0; an.len()],
        vec![0.0; an.len()],
    );
    for (i, &(from_p, slope)) in picks.iter().enumerate() {
        let (u, v, w) = (row(&an, i, dim), row(&pn, i, dim), row(&nn, i, dim));
        let c = s * slope;
        let at = i * dim..(i + 1) * dim;
        add_scaled(&mut ga[at.clone()], c, &distance_grad(kind, u, v));
        add_scaled(&mut gp[at.clone()], c, &distance_grad(kind, v, u));
        if from_p {
            add_scaled(&mut gp[at.clone()], -c, &distance_grad(kind, v, w));
            add_scaled(&mut gn[at], -c, &distance_grad(kind, w, v));
        } else {
            add_scaled(&mut ga[at.clone()], -c, &distance_grad(kind, u, w));
            add_scaled(&mut gn[at], -c, &distance_grad(kind, w, u));
        }
    }
    Reference {
        loss,
        counts,
        grads: vec![
            finish_grad(&an, a_norms, ga, dim),
            finish_grad(&pn, p_norms, gp, dim),
            finish_grad(&nn, n_norms, gn, dim),
        ],
        grad_temperature: None,
        grad_bias: None,
    }
}

/// One anchor's terms: their sum and counts, and dterm/dd(a, j) per row j (before the
/// reduction's scale).
struct AnchorTerms {
    sum: f64,
    counts: TripletCounts,
    weights: Vec<f64>,
}

/// Lowest index among the maxima (`farthest`) or minima of `d` over `candidates`.
fn pick(d: &[f64], candidates: impl Iterator<Item = usize>, farthest: bool) -> Option<usize> {
    let mut best: Option<usize> = None;
    for j in candidates {
        let better = match best {
            None => true,
            Some(b) if farthest => d[j] > d[b],
            Some(b) => d[j] < d[b],
        };
        if better {
            best = Some(j);
        }
    }
    best
}

/// Anchor a's terms over the candidates (distances `d`, class ids `cand`; the anchor's own
/// class `ca`, its own row among the candidates `own`, if any).
fn anchor_terms(
    cfg: &Triplet,
    mining: Mining,
    (ca, own): (u32, Option<usize>),
    d: &[f64],
    cand: &[u32],
) -> AnchorTerms {
    let rows = cand.len();
    let positives: Vec<usize> = (0..rows)
        .filter(|&j| Some(j) != own && cand[j] == ca)
        .collect();
    let negatives: Vec<usize> = (0..rows).filter(|&j| cand[j] != ca).collect();
    let mut t = AnchorTerms {
        sum: 0.0,
        counts: TripletCounts::default(),
        weights: vec![0.0; rows],
    };
    let add = |t: &mut AnchorTerms, p: usize, n: usize| {
        let (value, slope, active) = term(cfg.term, d[p] - d[n]);
        t.sum += value;
        t.counts.terms += 1;
        t.counts.active += u64::from(active);
        t.weights[p] += slope;
        t.weights[n] -= slope;
    };
    if negatives.is_empty() {
        return t;
    }
    match mining {
        Mining::All => {
            for &p in &positives {
                for &n in &negatives {
                    add(&mut t, p, n);
                }
            }
        }
        Mining::Hard => {
            if let Some(p) = pick(d, positives.iter().copied(), true) {
                let n = pick(d, negatives.iter().copied(), false).unwrap_or(0);
                add(&mut t, p, n);
            }
        }
        Mining::Semihard => {
            for &p in &positives {
                let above = pick(d, negatives.iter().copied().filter(|&n| d[n] > d[p]), false);
                let n = above
                    .or_else(|| pick(d, negatives.iter().copied(), true))
                    .unwrap_or(0);
                add(&mut t, p, n);
            }
        }
    }
    t
}

/// Mined triplets (by `cfg.mining`) in f64 on `x` with dense class ids: the batch against
/// itself, each row's gradient its anchor side's plus its candidate side's.
pub fn batch_f64(cfg: &Triplet, x: &[f64], dim: usize, classes: &[u32], grads: Grads) -> Reference {
    let mut r = against_f64(cfg, x, x, dim, (classes, classes), Some(0), grads);
    if let Some(gr) = r.grads.pop() {
        for (g, v) in r.grads[0].iter_mut().zip(gr) {
            *g += v;
        }
    }
    r
}

/// Mined triplets of the anchors `q` against the candidates `r` (rows of `dim` values, class
/// ids (anchors', candidates')): each anchor's positives and negatives among the candidates,
/// its own row (candidate o + a with `queries_at` o) left out. Gradients `[dL/dQ, dL/dR]`.
pub fn against_f64(
    cfg: &Triplet,
    q: &[f64],
    r: &[f64],
    dim: usize,
    (cq, cr): (&[u32], &[u32]),
    queries_at: Option<usize>,
    grads: Grads,
) -> Reference {
    let (qn, q_norms) = prepare(cfg.normalize, q, dim);
    let (rn, r_norms) = prepare(cfg.normalize, r, dim);
    let kind = cfg.distance;
    let mining = cfg.mining;
    let distances = |a: usize| -> Vec<f64> {
        (0..cr.len())
            .map(|j| distance(kind, row(&qn, a, dim), row(&rn, j, dim)))
            .collect()
    };
    let anchor = |a: usize| (cq[a], queries_at.map(|o| o + a));
    let (mut sum, mut counts) = (0.0, TripletCounts::default());
    for a in 0..cq.len() {
        let t = anchor_terms(cfg, mining, anchor(a), &distances(a), cr);
        sum += t.sum;
        counts.terms += t.counts.terms;
        counts.active += t.counts.active;
    }
    let reduction = cfg.reduction_in(Mode::Mined(mining));
    let loss = reduce(reduction, sum, &counts);
    if grads == Grads::Skip {
        return Reference::loss_only(loss, counts);
    }
    let s = scale(reduction, &counts);
    let (mut gq, mut gr) = (vec![0.0; qn.len()], vec![0.0; rn.len()]);
    for a in 0..cq.len() {
        let t = anchor_terms(cfg, mining, anchor(a), &distances(a), cr);
        for (j, &w) in t.weights.iter().enumerate() {
            if w == 0.0 || Some(j) == anchor(a).1 {
                continue;
            }
            let (u, v) = (row(&qn, a, dim), row(&rn, j, dim));
            add_scaled(
                &mut gq[a * dim..(a + 1) * dim],
                s * w,
                &distance_grad(kind, u, v),
            );
            add_scaled(
                &mut gr[j * dim..(j + 1) * dim],
                s * w,
                &distance_grad(kind, v, u),
            );
        }
    }
    Reference {
        loss,
        counts,
        grads: vec![
            finish_grad(&qn, q_norms, gq, dim),
            finish_grad(&rn, r_norms, gr, dim),
        ],
        grad_temperature: None,
        grad_bias: None,
    }
}

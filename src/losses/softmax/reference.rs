//! CPU reference of the softmax-contrastive losses, in f64. It follows softmax.wgsl's stages
//! row by row: the log-sum-exp over the row's denominator and its positives, the loss, the
//! coefficients dL/dz_ij, then the gradient through the similarities and the normalisation.
//! Similarities are recomputed where needed, so nothing B×B is stored here either.

use super::{SoftmaxCounts, SoftmaxLoss};
use crate::options::Grads;
use crate::reference::{
    add_scaled, dot, logsumexp, normalize, normalize_backward, row, sigmoid, softplus,
};

/// The softmax reference's f64 result.
pub type Reference = crate::reference::Reference<SoftmaxCounts>;

/// What the backward pass needs of anchor i: the log-sum-exp of its denominator, the
/// positives' count and (NT-Xent) W_i = Σ_p σ(lse_i − z_ip).
struct Anchor {
    lse: Option<f64>,
    positives: usize,
    weight: f64,
}

/// NT-Xent or SupCon at temperature `tau` (f64, so that finite differences in τ are exact)
/// over the rows `x` (`dim` values each) with class ids `classes`.
pub fn batch_f64(
    loss: SoftmaxLoss,
    tau: f64,
    x: &[f64],
    dim: usize,
    classes: &[u32],
    grads: Grads,
) -> Reference {
    batch_with_mass(loss, tau, x, dim, classes, grads).0
}

/// [`batch_f64`] and, with gradients, each row's coefficient mass: Σ over the coefficients
/// dL/dz_ij and dL/dz_ji of the size of what each is computed from (the weight plus the
/// target, c·(p + t), for SupCon's c·(p − t), which f32 rounds relative to its operands;
/// |dL/dz| for NT-Xent's sigmoid and softmax terms). It is the size of what the row's
/// gradient sums before cancellation (the tolerance rule's scale, `tolerance.rs`); empty
/// with [`Grads::Skip`]. The batch is its rows against themselves as a reference set, with
/// the pairs (i, i) left out; each row's gradient and mass are its query side's plus its
/// reference side's.
pub fn batch_with_mass(
    loss: SoftmaxLoss,
    tau: f64,
    x: &[f64],
    dim: usize,
    classes: &[u32],
    grads: Grads,
) -> (Reference, Vec<f64>) {
    let queries = Queries {
        loss,
        tau,
        classes: (classes, classes),
        queries_at: Some(0),
    };
    let (mut r, [mut mass, mr]) = against_with_mass(&queries, x, x, dim, grads);
    if grads.wanted() {
        let gr = r.grads.pop().unwrap_or_default();
        for (g, v) in r.grads[0].iter_mut().zip(gr) {
            *g += v;
        }
        for (m, v) in mass.iter_mut().zip(mr) {
            *m += v;
        }
    }
    (r, mass)
}

/// NT-Xent or SupCon queries against a reference set: the options.
pub struct Queries<'a> {
    /// NT-Xent or SupCon.
    pub loss: SoftmaxLoss,
    /// The temperature.
    pub tau: f64,
    /// The queries' and the references' class ids.
    pub classes: (&'a [u32], &'a [u32]),
    /// Where the queries sit among the references: query i's own row o + i is no pair.
    pub queries_at: Option<usize>,
}

/// NT-Xent or SupCon of the queries `q` against the references `r` (rows of `dim` values):
/// every (query, reference) pair, the loss over the queries. Gradients `[dL/dQ, dL/dR]`
/// and each side's coefficient masses (see [`batch_with_mass`]).
pub fn against_with_mass(
    queries: &Queries<'_>,
    q: &[f64],
    r: &[f64],
    dim: usize,
    grads: Grads,
) -> (Reference, [Vec<f64>; 2]) {
    let (loss, tau) = (queries.loss, queries.tau);
    let (cq, cr) = queries.classes;
    let (qn, q_norms) = normalize(q, dim);
    let (rn, r_norms) = normalize(r, dim);
    let (n, m) = (cq.len(), cr.len());
    let z = |i: usize, j: usize| dot(row(&qn, i, dim), row(&rn, j, dim)) / tau;
    let other = |i: usize, j: usize| queries.queries_at.is_none_or(|o| j != o + i);
    let positive = |i: usize, j: usize| other(i, j) && cq[i] == cr[j];
    let in_den = |i: usize, j: usize| match loss {
        SoftmaxLoss::NtXent => cq[i] != cr[j],
        _ => other(i, j),
    };
    let (mut sum, mut terms) = (0.0, 0u64);
    let mut anchors = Vec::with_capacity(n);
    for i in 0..n {
        let lse = logsumexp((0..m).filter(move |&j| in_den(i, j)).map(move |j| z(i, j)));
        let zp: Vec<f64> = (0..m)
            .filter(|&j| positive(i, j))
            .map(|j| z(i, j))
            .collect();
        let mut weight = 0.0;
        match loss {
            SoftmaxLoss::NtXent => {
                // With no negative, every term is −z + log(exp(z)) = 0.
                for &v in &zp {
                    if let Some(l) = lse {
                        sum += softplus(l - v);
                        weight += sigmoid(l - v);
                    }
                    terms += 1;
                }
            }
            _ => {
                if let (Some(l), false) = (lse, zp.is_empty()) {
                    sum += l - zp.iter().sum::<f64>() / zp.len() as f64;
                    terms += 1;
                }
            }
        }
        anchors.push(Anchor {
            lse,
            positives: zp.len(),
            weight,
        });
    }
    let c = if terms == 0 { 0.0 } else { 1.0 / terms as f64 };
    let counts = SoftmaxCounts { terms };
    if grads == Grads::Skip {
        return (Reference::loss_only(sum * c, counts), [vec![], vec![]]);
    }
    // dL/dz_ij seen from query i, and the size of its operands.
    let coef = |i: usize, j: usize, zij: f64| -> (f64, f64) {
        let a = &anchors[i];
        let Some(l) = a.lse else { return (0.0, 0.0) };
        let v = match loss {
            SoftmaxLoss::NtXent if positive(i, j) => -c * sigmoid(l - zij),
            SoftmaxLoss::NtXent if in_den(i, j) => c * a.weight * (zij - l).exp(),
            SoftmaxLoss::NtXent => 0.0,
            _ if a.positives == 0 || !other(i, j) => 0.0,
            _ => {
                let (p, t) = ((zij - l).exp(), positive_share(positive(i, j), a.positives));
                return (c * (p - t), c * (p + t));
            }
        };
        (v, v.abs())
    };
    let (mut gq, mut gr) = (vec![0.0; n * dim], vec![0.0; m * dim]);
    let (mut gz, mut mass) = (0.0, [vec![0.0; n], vec![0.0; m]]);
    for i in 0..n {
        for j in 0..m {
            let zij = z(i, j);
            let (gij, gross) = coef(i, j, zij);
            gz += gij * zij;
            mass[0][i] += gross;
            mass[1][j] += gross;
            // s_ij = q̂_i·r̂_j: ds/dq̂_i = r̂_j and ds/dr̂_j = q̂_i.
            add_scaled(&mut gq[i * dim..(i + 1) * dim], gij / tau, row(&rn, j, dim));
            add_scaled(&mut gr[j * dim..(j + 1) * dim], gij / tau, row(&qn, i, dim));
        }
    }
    let out = Reference {
        loss: sum * c,
        counts,
        grads: vec![
            normalize_backward(&qn, &q_norms, &gq, dim),
            normalize_backward(&rn, &r_norms, &gr, dim),
        ],
        grad_temperature: Some(-gz / tau),
        grad_bias: None,
    };
    (out, mass)
}

/// The target weight of z_ij in SupCon's anchor term: 1/|P| for a positive, else 0.
fn positive_share(positive: bool, positives: usize) -> f64 {
    if positive {
        1.0 / positives as f64
    } else {
        0.0
    }
}

/// The anchors-against-keys losses' options: CLIP is the symmetric form with as many keys
/// as anchors and no labels.
pub struct Keys<'a> {
    /// The temperature, 1/scale.
    pub tau: f64,
    /// With the reverse term (over the anchors, for each of the first N keys).
    pub symmetric: bool,
    /// The anchors' and the keys' class ids, masking false negatives.
    pub labels: Option<(&'a [u32], &'a [u32])>,
}

/// InfoNCE (and CLIP) over the anchors `a` (N rows of `dim` values) and the keys `b`
/// (M ≥ N rows; key i is anchor i's positive) and, with gradients, the coefficient mass of
/// each row of A and of B (see [`batch_with_mass`]).
pub fn keys_with_mass(
    keys: &Keys<'_>,
    a: &[f64],
    b: &[f64],
    dim: usize,
    grads: Grads,
) -> (Reference, [Vec<f64>; 2]) {
    let tau = keys.tau;
    let (an, a_norms) = normalize(a, dim);
    let (bn, b_norms) = normalize(b, dim);
    let n = an.len() / dim.max(1);
    let m = bn.len() / dim.max(1);
    let z = |i: usize, j: usize| dot(row(&an, i, dim), row(&bn, j, dim)) / tau;
    // Anchor i against key j: in i's denominator (and, for j < N, in j's reverse one: the
    // mask reads the same from both sides).
    let in_den = |i: usize, j: usize| match keys.labels {
        Some((la, lb)) => i == j || la[i] != lb[j],
        None => true,
    };
    let lse_row: Vec<f64> = (0..n)
        .map(|i| {
            logsumexp((0..m).filter(move |&j| in_den(i, j)).map(move |j| z(i, j))).unwrap_or(0.0)
        })
        .collect();
    let lse_col: Vec<f64> = (0..n)
        .map(|j| {
            logsumexp((0..n).filter(move |&i| in_den(i, j)).map(move |i| z(i, j))).unwrap_or(0.0)
        })
        .collect();
    let (half, reverse) = if keys.symmetric {
        (0.5, 1.0)
    } else {
        (1.0, 0.0)
    };
    let sum: f64 = (0..n)
        .map(|i| lse_row[i] - z(i, i) + reverse * (lse_col[i] - z(i, i)))
        .sum();
    let c = if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let counts = SoftmaxCounts { terms: n as u64 };
    if grads == Grads::Skip {
        return (
            Reference::loss_only(half * c * sum, counts),
            [vec![], vec![]],
        );
    }
    let (mut ga, mut gb) = (vec![0.0; n * dim], vec![0.0; m * dim]);
    let (mut gz, mut mass) = (0.0, [vec![0.0; n], vec![0.0; m]]);
    for i in 0..n {
        for j in (0..m).filter(|&j| in_den(i, j)) {
            let zij = z(i, j);
            let target = if i == j { 1.0 + reverse } else { 0.0 };
            let mut p = (zij - lse_row[i]).exp();
            if j < n {
                p += reverse * (zij - lse_col[j]).exp();
            }
            let gij = half * c * (p - target);
            gz += gij * zij;
            // The size of the operands of p − target (see `batch_with_mass`).
            mass[0][i] += half * c * (p + target);
            mass[1][j] += half * c * (p + target);
            add_scaled(&mut ga[i * dim..(i + 1) * dim], gij / tau, row(&bn, j, dim));
            add_scaled(&mut gb[j * dim..(j + 1) * dim], gij / tau, row(&an, i, dim));
        }
    }
    let r = Reference {
        loss: half * c * sum,
        counts,
        grads: vec![
            normalize_backward(&an, &a_norms, &ga, dim),
            normalize_backward(&bn, &b_norms, &gb, dim),
        ],
        grad_temperature: Some(-gz / tau),
        grad_bias: None,
    };
    (r, mass)
}

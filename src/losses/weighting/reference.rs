//! The f64 mirror of shaders/weighting.wgsl: each anchor's sets, log-sum-exps and term from
//! the definitions, the gradients through the normalisation.

use super::{Weighting, WeightingCounts, WeightingLoss, CIRCLE_FLOOR};
use crate::options::Grads;
use crate::reference::{dot, logsumexp, normalize, normalize_backward, row, sigmoid, softplus};

/// A Multi-Similarity or Circle result in f64.
pub type Reference = crate::reference::Reference<WeightingCounts>;

/// Each anchor's similarity bounds for the miner: the largest negative's similarity and the
/// smallest positive's (−∞ and +∞ for none).
fn bounds(s: &[f64], labels: &[u32], i: usize) -> (f64, f64) {
    let (mut max_neg, mut min_pos) = (f64::NEG_INFINITY, f64::INFINITY);
    for (j, &sij) in s.iter().enumerate() {
        if labels[j] != labels[i] {
            max_neg = max_neg.max(sij);
        } else if j != i {
            min_pos = min_pos.min(sij);
        }
    }
    (max_neg, min_pos)
}

/// One anchor's pairs: for each column j, `Some((positive, logit))` when the pair is in the
/// anchor's (mined) sets, with the logit the loss puts it in its log-sum-exp.
fn pairs(cfg: &Weighting, s: &[f64], labels: &[u32], i: usize) -> Vec<Option<(bool, f64)>> {
    let (max_neg, min_pos) = bounds(s, labels, i);
    s.iter()
        .enumerate()
        .map(|(j, &sij)| {
            if j == i {
                return None;
            }
            let positive = labels[j] == labels[i];
            match cfg.loss {
                WeightingLoss::MultiSimilarity {
                    alpha,
                    beta,
                    base,
                    epsilon,
                } => {
                    let (a, b, l) = (f64::from(alpha), f64::from(beta), f64::from(base));
                    let kept = match epsilon.map(f64::from) {
                        None => true,
                        Some(e) if positive => sij - e < max_neg,
                        Some(e) => sij + e > min_pos,
                    };
                    kept.then(|| {
                        if positive {
                            (true, -a * (sij - l))
                        } else {
                            (false, b * (sij - l))
                        }
                    })
                }
                WeightingLoss::Circle { m, gamma } => {
                    let (m, g) = (f64::from(m), f64::from(gamma));
                    Some(if positive {
                        (true, -g * (1.0 + m - sij).max(0.0) * (sij - (1.0 - m)))
                    } else {
                        (false, g * (sij + m).max(0.0) * (sij - m))
                    })
                }
            }
        })
        .collect()
}

/// dlogit/ds of a kept pair (Circle's weights are constants of the gradient, as in the paper
/// and PML).
fn slope(cfg: &Weighting, positive: bool, s: f64) -> f64 {
    match cfg.loss {
        WeightingLoss::MultiSimilarity { alpha, beta, .. } => {
            if positive {
                -f64::from(alpha)
            } else {
                f64::from(beta)
            }
        }
        WeightingLoss::Circle { m, gamma } => {
            let (m, g) = (f64::from(m), f64::from(gamma));
            if positive {
                -g * (1.0 + m - s).max(0.0)
            } else {
                g * (s + m).max(0.0)
            }
        }
    }
}

/// What the tolerance rule needs of a call beside the result, per row.
#[derive(Clone, Debug, Default)]
pub struct Mass {
    /// Σ over the row's pairs of |dL/ds_ij| from either owner.
    pub coefs: Vec<f64>,
    /// Circle: the same sum with each coefficient's weight [·]₊ replaced by γ, the size of
    /// that weight's own rounding per unit of the similarity's (0 for Multi-Similarity).
    pub weights: Vec<f64>,
}

/// The loss of the batch `x` (rows × dim) with `labels` and, with gradients, `[dL/dX]`, and
/// the rows' masses (empty without gradients).
pub fn batch_with_mass(
    cfg: &Weighting,
    x: &[f64],
    dim: usize,
    labels: &[u32],
    grads: Grads,
) -> (Reference, Mass) {
    let (xn, norms) = normalize(x, dim);
    let n = norms.len();
    let sim = |i: usize| -> Vec<f64> {
        (0..n)
            .map(|j| dot(row(&xn, i, dim), row(&xn, j, dim)))
            .collect()
    };
    let mut counts = WeightingCounts::default();
    // Per anchor: its term, dL_i/ds_ij for every j (before the loss's scale), and Circle's
    // coefficients with the weight at γ.
    let mut terms = Vec::with_capacity(n);
    let mut coefs: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut at_gamma: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut counted = 0u64;
    for i in 0..n {
        let s = sim(i);
        let kept = pairs(cfg, &s, labels, i);
        let logits = |want: bool| {
            kept.iter()
                .flatten()
                .filter(move |(p, _)| *p == want)
                .map(|(_, z)| *z)
        };
        let (np, nn) = (logits(true).count() as u64, logits(false).count() as u64);
        counts.positive_pairs += np;
        counts.negative_pairs += nn;
        let (lp, ln) = (logsumexp(logits(true)), logsumexp(logits(false)));
        let mut c = vec![0.0; n];
        let mut g = vec![0.0; n];
        let term = match cfg.loss {
            WeightingLoss::MultiSimilarity { alpha, beta, .. } => {
                let (a, b) = (f64::from(alpha), f64::from(beta));
                // log(1 + Σ exp): softplus of the log-sum-exp, 0 for an empty set.
                let (l1p, l1n) = (lp.map_or(0.0, softplus), ln.map_or(0.0, softplus));
                for (j, k) in kept.iter().enumerate() {
                    if let Some((p, z)) = *k {
                        let (l1, scale) = if p { (l1p, a) } else { (l1n, b) };
                        c[j] = (z - l1).exp() / scale * slope(cfg, p, s[j]);
                    }
                }
                counted += 1;
                l1p / a + l1n / b
            }
            WeightingLoss::Circle { gamma, .. } => match (lp, ln) {
                (Some(lp), Some(ln)) if lp + ln > CIRCLE_FLOOR => {
                    let w = sigmoid(lp + ln);
                    for (j, k) in kept.iter().enumerate() {
                        if let Some((p, z)) = *k {
                            let l = if p { lp } else { ln };
                            c[j] = w * (z - l).exp() * slope(cfg, p, s[j]);
                            g[j] = w * (z - l).exp() * f64::from(gamma);
                        }
                    }
                    counted += 1;
                    softplus(lp + ln)
                }
                _ => 0.0,
            },
        };
        terms.push(term);
        coefs.push(c);
        at_gamma.push(g);
    }
    let scale = cfg.scale(counted, &counts);
    counts.terms = if scale == 0.0 { 0 } else { counted };
    let loss = terms.iter().sum::<f64>() * scale;
    let mut mass = Mass::default();
    let r = match grads {
        Grads::Skip => Reference::loss_only(loss, counts),
        Grads::Compute | Grads::ComputeF32 => {
            let mut g = vec![0.0; xn.len()];
            mass.coefs = vec![0.0; n];
            mass.weights = vec![0.0; n];
            for i in 0..n {
                for j in 0..n {
                    // s_ij = s_ji: row i's gradient takes both owners' coefficients.
                    let w = scale * (coefs[i][j] + coefs[j][i]);
                    mass.coefs[i] += scale * (coefs[i][j].abs() + coefs[j][i].abs());
                    mass.weights[i] += scale * (at_gamma[i][j] + at_gamma[j][i]);
                    for k in 0..dim {
                        g[i * dim + k] += w * xn[j * dim + k];
                    }
                }
            }
            Reference {
                loss,
                counts,
                grads: vec![normalize_backward(&xn, &norms, &g, dim)],
                grad_temperature: None,
                grad_bias: None,
            }
        }
    };
    (r, mass)
}

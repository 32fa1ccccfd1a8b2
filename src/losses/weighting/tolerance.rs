//! The tolerance rule's scales for the pair-weighting losses (see [`crate::tolerance`]). A
//! similarity's rounding error (about D·u) moves a logit by A·D·u, A the logit's slope in s:
//! max(α, β) for Multi-Similarity, γ·(4 + 2m) for Circle (its weight [·]₊ ≤ 2 + m and the
//! shifted similarity, ≤ 2 + m, both move with s in the value). With B the batch size:
//! The rule's 8u(D + L)·S holds two sources, each with its own length: the sums' rounding
//! (L·u times what they add) and the logits' (D·u times their amplification), so S is the
//! size of the sums plus the amplification scaled by D/(D + L):
//! - loss: S = T + 2A′·D/(D + L), T a bound of one term (Multi-Similarity: 2(1 + |λ|) +
//!   ln(B + 1)·(1/α + 1/β); Circle: 4γ(2 + m) + 2·ln(B + 1)) and A′ the term's slope in
//!   the similarities (Multi-Similarity: the 1/α and 1/β cancel α and β, so 1; Circle: A
//!   through two log-sum-exps and a softplus, each 1-Lipschitz), L = B;
//! - gradient of row i: S = max_i [m_i·(1 + 2A·D/(D + L)) + w_i·D/(D + L)] /
//!   max(‖x_i‖, 1e-12), L = 2B (both owners' pairs), m_i the row's coefficient mass from
//!   the reference (both owners' |dL/ds| over its pairs: every coefficient e^(z − L) is off
//!   relatively by the errors of z and of its log-sum-exp, 2A·D·u) and w_i Circle's
//!   coefficients with their weight [·]₊ at γ (the weight's own rounding, γ·D·u).
//!
//! The miner's comparisons and Circle's floor are decisions: the tests and `check` use
//! inputs clear of them (`testing::weighting`).

use super::reference::Mass;
use super::{Weighting, WeightingLoss, WeightingOutput};
use crate::input::Embeddings;
use crate::reference::NORM_EPS;
use crate::tolerance::scales;
use crate::tolerance::{compare, compare_grad, Tolerance, Verdict};

/// A: a logit's slope in the similarity.
fn logit_slope(cfg: &Weighting) -> f64 {
    match cfg.loss {
        WeightingLoss::MultiSimilarity { alpha, beta, .. } => f64::from(alpha.max(beta)),
        WeightingLoss::Circle { m, gamma } => f64::from(gamma) * (4.0 + 2.0 * f64::from(m)),
    }
}

/// D/(D + L): the share of the rule's length the logits' rounding has.
fn logit_share(dim: usize, len: u64) -> f64 {
    dim as f64 / (dim as f64 + len as f64)
}

/// The loss's scale S for a batch of `rows × dim`.
pub fn loss_scale(cfg: &Weighting, rows: usize, dim: usize) -> f64 {
    let lb = (rows as f64 + 1.0).ln();
    let share = logit_share(dim, rows as u64);
    match cfg.loss {
        WeightingLoss::MultiSimilarity {
            alpha, beta, base, ..
        } => {
            let t = 2.0 * (1.0 + f64::from(base).abs())
                + lb * (1.0 / f64::from(alpha) + 1.0 / f64::from(beta));
            t + 2.0 * share
        }
        WeightingLoss::Circle { m, gamma } => {
            let t = 4.0 * f64::from(gamma) * (2.0 + f64::from(m)) + 2.0 * lb;
            t + 2.0 * logit_slope(cfg) * share
        }
    }
}

/// Compares a GPU output with the reference: loss, gradient, counts exactly. `mass` is the
/// rows' masses from the reference.
pub fn verdict(
    name: String,
    cfg: &Weighting,
    gpu: &WeightingOutput,
    reference: &WeightingOutput,
    x: &Embeddings<'_>,
    mass: &Mass,
) -> Verdict {
    let (rows, dim) = (x.rows(), x.dim());
    let loss = compare(
        &[gpu.loss],
        &[reference.loss],
        Tolerance::new(dim, rows as u64, loss_scale(cfg, rows, dim)),
    );
    let len = 2 * rows as u64;
    let share = logit_share(dim, len);
    let a = 1.0 + 2.0 * logit_slope(cfg) * share;
    let grad_scale = x
        .data()
        .chunks(dim.max(1))
        .zip(mass.coefs.iter().zip(&mass.weights))
        .map(|(row, (m, w))| {
            let norm = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            (m * a + w * share) / norm.max(NORM_EPS)
        })
        .fold(0.0, f64::max);
    // A coefficient that underflowed is multiplied by up to A/min‖x‖ afterwards.
    let gain = a / scales::min_norm(x).max(NORM_EPS);
    let grads = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .map(|(g, r)| {
            let tol = Tolerance::new(dim, len, grad_scale).with_underflow_gain(gain);
            compare_grad(g, r, tol)
        })
        .collect();
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && gpu.grads.len() == reference.grads.len(),
    }
}

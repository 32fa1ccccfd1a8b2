//! The tolerance rule's scales for SigLIP (see [`crate::tolerance`]). A similarity's
//! rounding error (about D·u) becomes a logit error t·D·u, and x = t·s + b itself rounds
//! relative to t + |b|: with c = t + |b| + 1, a logit is off by at most about D·u·c. Every
//! quantity is a sum over pairs of a smooth function of one logit whose slope is bounded by
//! |dL/dx| = σ(−z·x)/N (softplus′ = σ; σ′ = σ(1 − σ) ≤ σ relative to σ), so with
//! G = Σ_ij |dL/dx_ij| from the reference (what the sums add before they cancel):
//! - loss: S = c·G (each term moves by |dL/dx|·N times its logit error, over N);
//! - dL/dt′ = Σ dL/dx·t·s: S = t·c·G; dL/db = Σ dL/dx: S = c·G;
//! - gradient of row i: S = c · max_i m_i / max(‖x_i‖, 1e-12), with m_i = t·Σ |dL/dx|
//!   over the row's pairs (the size of what its gradient sums, carried through the
//!   normalisation).
//!
//! The reduction length L is M (B's rows) for A's rows, the loss and the scalars, N for
//! B's rows. There are no kinks, so no input needs to be moved clear of a decision.

use super::reference::Mass;
use super::{Siglip, SiglipOutput};
use crate::input::Embeddings;
use crate::reference::NORM_EPS;
use crate::tolerance::scales;
use crate::tolerance::{compare, compare_grad, Tolerance, Verdict};

/// The gradient scale S of one input from its rows and their masses.
pub fn grad_scale(c: f64, x: &Embeddings<'_>, mass: &[f64]) -> f64 {
    let dim = x.dim().max(1);
    x.data()
        .chunks(dim)
        .zip(mass)
        .map(|(row, m)| {
            let norm = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            m / norm.max(NORM_EPS)
        })
        .fold(0.0, f64::max)
        * c
}

/// Compares a GPU output with the reference: loss, dL/dA, dL/dB, then dL/dt′ and dL/db
/// (reported as the last two gradient comparisons), counts exactly.
pub fn verdict(
    name: String,
    cfg: &Siglip,
    gpu: &SiglipOutput,
    reference: &SiglipOutput,
    sides: [&Embeddings<'_>; 2],
    mass: &Mass,
) -> Verdict {
    let t = f64::from(cfg.scale());
    let c = t + f64::from(cfg.bias).abs() + 1.0;
    let dim = sides[0].dim();
    let (n, m) = (sides[0].rows() as u64, sides[1].rows() as u64);
    let loss = compare(
        &[gpu.loss],
        &[reference.loss],
        Tolerance::new(dim, m, c * mass.total),
    );
    let mut grads: Vec<_> = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .zip(sides.iter().zip(&mass.rows).zip([m, n]))
        .map(|((g, r), ((x, rows_mass), len))| {
            // A weight that underflowed is multiplied by up to t/min‖x‖ afterwards.
            let gain = t / scales::min_norm(x).max(NORM_EPS);
            let tol = Tolerance::new(dim, len, grad_scale(c, x, rows_mass));
            compare_grad(g, r, tol.with_underflow_gain(gain))
        })
        .collect();
    let scalars = [
        (gpu.grad_temperature, reference.grad_temperature, t * c),
        (gpu.grad_bias, reference.grad_bias, c),
    ];
    let mut present = gpu.grads.len() == reference.grads.len();
    for (g, r, scale) in scalars {
        present &= g.is_some() == r.is_some();
        if let (Some(g), Some(r)) = (g, r) {
            grads.push(compare(
                &[g],
                &[r],
                Tolerance::new(dim, m, scale * mass.total),
            ));
        }
    }
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && present,
    }
}

//! The tolerance rule's scales for the softmax-contrastive losses (see
//! [`crate::tolerance`]): a similarity's rounding error (about D·u) becomes a logit error
//! D·u/τ, and the softmax weights exp(z − lse) carry it as a relative error. With
//! A = 1 + 1/τ and L the batch size (the terms behind one log-sum-exp or one gradient row):
//! - loss: S = 2A + ln(L + 1) (a term is at most 2/τ + ln L; LSE and z are 1-Lipschitz);
//! - gradient of row i: S = A · max_i m_i / (τ·max(‖x_i‖, 1e-12)), with m_i the row's
//!   coefficient mass from the reference: Σ_j over dL/dz_ij and dL/dz_ji of the size of
//!   their operands (SupCon and CLIP compute p − t, softmax weight minus target, which f32
//!   rounds relative to p + t, as every f32 cross-entropy backward does: near saturation
//!   the difference is tiny but its rounding is not), the size of what the row's gradient
//!   sums before cancellation, carried through the normalisation;
//! - dL/dτ: S = 2A²/τ (Σ|dL/dz| ≤ 2 for all three losses, each weight off by D·u/τ
//!   relatively, times |z| ≤ 1/τ, over τ).
//!
//! There are no kinks, so no input needs to be moved clear of a decision.

use super::{Softmax, SoftmaxOutput};
use crate::input::Embeddings;
use crate::reference::NORM_EPS;
use crate::tolerance::scales;
use crate::tolerance::{compare, compare_grad, Tolerance, Verdict};

fn amplification(tau: f64) -> f64 {
    1.0 + 1.0 / tau
}

/// The gradient scale S of one input from its rows and their coefficient masses.
pub fn grad_scale(tau: f64, x: &Embeddings<'_>, mass: &[f64]) -> f64 {
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
            m / (tau * norm.max(NORM_EPS))
        })
        .fold(0.0, f64::max)
        * amplification(tau)
}

/// Compares a GPU output with the reference: loss, each gradient, then dL/dτ (reported as
/// the last gradient comparison), counts exactly. `inputs` are the differentiable inputs in
/// order and `masses` their rows' coefficient masses.
pub fn verdict(
    name: String,
    cfg: &Softmax,
    gpu: &SoftmaxOutput,
    reference: &SoftmaxOutput,
    inputs: &[&Embeddings<'_>],
    masses: &[Vec<f64>],
) -> Verdict {
    let tau = f64::from(cfg.temperature);
    let (rows, dim) = (inputs[0].rows(), inputs[0].dim());
    let amp = amplification(tau);
    let loss_scale = 2.0 * amp + (rows as f64 + 1.0).ln();
    let loss = compare(
        &[gpu.loss],
        &[reference.loss],
        Tolerance::new(dim, rows as u64, loss_scale),
    );
    let mut grads: Vec<_> = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .zip(inputs.iter().zip(masses))
        .map(|((g, r), (x, m))| {
            // A weight that underflowed is multiplied by up to A/(τ·min‖x‖) afterwards.
            let min_norm = scales::min_norm(x);
            let gain = amp / (tau * min_norm.max(NORM_EPS));
            let tol = Tolerance::new(dim, rows as u64, grad_scale(tau, x, m));
            compare_grad(g, r, tol.with_underflow_gain(gain))
        })
        .collect();
    let tau_tol = Tolerance::new(dim, rows as u64, 2.0 * amp * amp / tau);
    let present = gpu.grads.len() == reference.grads.len()
        && gpu.grad_temperature.is_some() == reference.grad_temperature.is_some();
    if let (Some(g), Some(r)) = (gpu.grad_temperature, reference.grad_temperature) {
        grads.push(compare(&[g], &[r], tau_tol));
    }
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && present,
    }
}

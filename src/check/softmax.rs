//! Cross-checking the softmax-contrastive losses: the tolerance rule's scales for logits
//! z = s/τ, and the case grid behind `metric-loss check`.
//!
//! The rule is the crate's (`|g − r| ≤ 8u(D + L)(|r| + S)`, see [`super`]); what changes is
//! the scale S, because a similarity's rounding error (about D·u) becomes a logit error
//! D·u/τ, and the softmax weights exp(z − lse) carry it as a relative error. With
//! A = 1 + 1/τ and L the batch size (the terms behind one log-sum-exp or one gradient row):
//! - loss: S = 2A + ln(L + 1) (a term is at most 2/τ + ln L; LSE and z are 1-Lipschitz);
//! - gradient of row i: S = A · max_i m_i / (τ·max(||x_i||, 1e-12)), with m_i the row's
//!   coefficient mass from the reference: Σ_j over dL/dz_ij and dL/dz_ji of the size of
//!   their operands (SupCon and CLIP compute p − t, softmax weight minus target, which f32
//!   rounds relative to p + t, as every f32 cross-entropy backward does: near saturation
//!   the difference is tiny but its rounding is not), the size of what the row's gradient
//!   sums before cancellation, carried through the normalisation;
//! - dL/dτ: S = 2A²/τ (Σ|dL/dz| ≤ 2 for all three losses, each weight off by D·u/τ
//!   relatively, times |z| ≤ 1/τ, over τ).
//!
//! There are no kinks, so no input needs to be moved clear of a decision.

use super::{compare, CaseReport, Rng, Tolerance};
use crate::cpu;
use crate::loss::softmax::{Softmax, SoftmaxLoss, SoftmaxOutput};
use crate::loss::Grads;
use crate::{Embeddings, Gpu, Labels, Result};

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
            m / (tau * norm.max(cpu::normalize::NORM_EPS))
        })
        .fold(0.0, f64::max)
        * amplification(tau)
}

/// Compares a GPU output with the reference: loss, each gradient, then dL/dτ (reported as
/// the last gradient comparison), counts exactly. `inputs` are the differentiable inputs in
/// order and `masses` their rows' coefficient masses.
pub fn compare_outputs(
    name: String,
    cfg: &Softmax,
    gpu: &SoftmaxOutput,
    reference: &SoftmaxOutput,
    inputs: &[&Embeddings<'_>],
    masses: &[Vec<f64>],
) -> CaseReport {
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
            let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
            let r: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
            // A weight that underflowed is multiplied by up to A/(τ·min‖x‖) afterwards.
            let min_norm = super::min_norm(x);
            let gain = amp / (tau * min_norm.max(cpu::normalize::NORM_EPS));
            let tol = Tolerance::new(dim, rows as u64, grad_scale(tau, x, m));
            compare(&g, &r, tol.with_underflow_gain(gain))
        })
        .collect();
    let tau_tol = Tolerance::new(dim, rows as u64, 2.0 * amp * amp / tau);
    let present = gpu.grads.len() == reference.grads.len()
        && gpu.grad_temperature.is_some() == reference.grad_temperature.is_some();
    if let (Some(g), Some(r)) = (gpu.grad_temperature, reference.grad_temperature) {
        grads.push(compare(&[g], &[r], tau_tol));
    }
    CaseReport {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && present,
    }
}

/// Runs `cfg` on the batch (NT-Xent, SupCon) on the GPU and the CPU, with gradients, and
/// compares them.
pub fn cross_batch(
    gpu: &Gpu,
    name: String,
    cfg: &Softmax,
    x: &Embeddings<'_>,
    labels: &Labels,
) -> Result<CaseReport> {
    let g = cfg.batch(gpu, x, labels, Grads::Compute)?;
    // One reference run gives both the output and the masses (the GPU call validated).
    let (r, mass) = cpu::softmax::batch_with_mass(
        cfg.loss,
        f64::from(cfg.temperature),
        &cpu::distance::widen(x),
        x.dim(),
        labels.ids(),
        Grads::Compute,
    );
    Ok(compare_outputs(name, cfg, &g, &r.narrow(), &[x], &[mass]))
}

/// Runs CLIP on the views on the GPU and the CPU, with gradients, and compares them.
pub fn cross_pairs(
    gpu: &Gpu,
    name: String,
    cfg: &Softmax,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
) -> Result<CaseReport> {
    let g = cfg.pairs(gpu, a, b, Grads::Compute)?;
    let (r, [ma, mb]) = cpu::softmax::clip_with_mass(
        f64::from(cfg.temperature),
        &cpu::distance::widen(a),
        &cpu::distance::widen(b),
        a.dim(),
        Grads::Compute,
    );
    Ok(compare_outputs(
        name,
        cfg,
        &g,
        &r.narrow(),
        &[a, b],
        &[ma, mb],
    ))
}

/// The temperatures every grid runs: the defaults, a warm one and the smallest the issue
/// promises stability for.
pub const TEMPERATURES: [f32; 4] = [0.07, 0.1, 0.5, 0.01];

/// NT-Xent and SupCon on labelled batches (random classes, two views, one class, all
/// distinct, duplicate rows) and CLIP on paired views, at every temperature of
/// [`TEMPERATURES`], on seeded Gaussian input of `rows × dim`: GPU against CPU.
pub fn run_grid(gpu: &Gpu, rows: usize, dim: usize, seed: u64) -> Result<Vec<CaseReport>> {
    let mut rng = Rng::new(seed);
    let x = rng.normals(rows * dim);
    let b = rng.normals(rows * dim);
    // Duplicate rows: the second half repeats the first.
    let mut dup = x.clone();
    let half = rows / 2 * dim;
    dup.copy_within(0..half, half);
    let classes = (rows / 4).max(2) as u64;
    let random: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let views: Vec<i64> = (0..rows).map(|i| (i % rows.div_ceil(2)) as i64).collect();
    let one: Vec<i64> = vec![3; rows];
    let distinct: Vec<i64> = (0..rows as i64).collect();
    let dup_labels: Vec<i64> = (0..rows).map(|i| (i % (rows / 2).max(1)) as i64).collect();
    let xe = Embeddings::new("embeddings", &x, rows, dim)?;
    let be = Embeddings::new("b", &b, rows, dim)?;
    let de = Embeddings::new("embeddings", &dup, rows, dim)?;
    let batches: [(&str, &Embeddings<'_>, &[i64]); 5] = [
        ("random classes", &xe, &random),
        ("two views", &xe, &views),
        ("one class", &xe, &one),
        ("all distinct", &xe, &distinct),
        ("duplicate rows", &de, &dup_labels),
    ];
    let mut out = Vec::new();
    for t in TEMPERATURES {
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let cfg = Softmax::new(loss).temperature(t);
            for (what, x, labels) in batches {
                let name = format!("{:<6} tau {:<4} {what}", loss.name(), t);
                out.push(cross_batch(gpu, name, &cfg, x, &Labels::new(labels))?);
            }
        }
        let cfg = Softmax::clip().temperature(t);
        let name = format!("{:<6} tau {:<4} views", "clip", t);
        out.push(cross_pairs(gpu, name, &cfg, &xe, &be)?);
        let name = format!("{:<6} tau {:<4} duplicate rows", "clip", t);
        out.push(cross_pairs(gpu, name, &cfg, &de, &de)?);
    }
    Ok(out)
}

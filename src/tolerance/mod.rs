//! The tolerance rule under which a GPU result matches the f64 CPU reference, and the
//! verdict of a comparison. Each family's `*_check` call (e.g.
//! [`Contrastive::batch_check`](crate::Contrastive::batch_check)) runs both paths and
//! returns a [`Verdict`].
//!
//! # The rule
//! A GPU value g passes against the f64 reference r when
//!
//! `|g − r| ≤ 8 · u · (D + L) · (|r| + S) + F`, with u = 2⁻²⁴ (f32 unit roundoff),
//!
//! D the dimension, L the reduction length (the number of terms summed into that value: the
//! term count for the loss, the batch size for a batch gradient row, 1 in pair mode), S the
//! output's scale and F an underflow floor. Why: an f32 dot product or squared distance over
//! D values carries a relative error of at most about D·u, and a sequential f32 sum of L
//! terms an error of at most about L·u times the magnitude of its terms (Higham, "Accuracy
//! and Stability of Numerical Algorithms", §3–4); hinge, chain rule and normalisation scale
//! those errors by factors bounded by the output's scale. The factor 8 covers the few
//! roundings per step. It is an absolute part (u(D+L)S) plus a relative part (u(D+L)|r|),
//! both growing with the reduction length, never a blanket epsilon.
//!
//! S is the size of what the value is computed from before it cancels, stated per family
//! (each family's `tolerance.rs`): for a margin loss's value, the largest possible term plus
//! the hinge's slope times the distance's operands (2·max‖x‖ euclidean, 4·max‖x‖·√d_max
//! squared, 2 cosine: close rows cancel in u − v, nearly parallel ones in 1 − cos); for a
//! gradient, the largest reference magnitude among the call's gradients, and at least one
//! term's contribution before it cancels (`contribution_scale`); the softmax losses scale
//! by the logit error D·u/τ. F is f32's smallest normal value 2⁻¹²⁶ ≈ 1.2e-38, below which
//! f32 has no relative precision (subnormals, or zero where the GPU flushes them), times the
//! largest factor applied to a value after it may have underflowed.
//!
//! # f16 inputs and gradients
//! An f16 input is widened to f32 exactly, so against the f64 reference of the same f16
//! values the rule above holds unchanged: the GPU computes in f32 from the same numbers.
//! Two terms are added where f16 enters:
//!
//! - **Output rounding.** A gradient written in f16 gains `u₁₆'·|r| + 2⁻²⁴` with
//!   u₁₆' = 2⁻¹⁰, one f16 ulp relative to the value: WGSL converts f32 to f16 to either
//!   neighbour (the host path rounds to nearest, within half of that), and below f16's
//!   smallest normal 2⁻¹⁴ the spacing is the subnormal step 2⁻²⁴ ([`Tolerance::rounded_to`]).
//! - **Input quantisation.** The result from f16 inputs x̃ differs from the result of the
//!   values the caller rounded, x, by the rounding itself: x̃ = x(1 + δ) with |δ| ≤
//!   u₁₆ = 2⁻¹¹ (or |x̃ − x| ≤ 2⁻²⁵ below 2⁻¹⁴), so to first order (Taylor)
//!   `|L(x̃) − L(x)| ≤ Σ_k (u₁₆·|x_k| + 2⁻²⁵)·|∂L/∂x_k|`
//!   ([`quantisation`]). The remainder is second order in u₁₆; the check doubles the term
//!   to cover it. The bound holds where no discrete decision (an active hinge, a mined or
//!   hardest pair, a non-zero count) changes between x and x̃: those may jump, as they do
//!   for any rounding of the inputs. The gradients' own quantisation error needs the
//!   Hessian and is not bounded here.

pub(crate) mod scales;

use crate::input::{Embeddings, Precision};
use crate::options::{Gradient, LossOutput};
use crate::reference::widen_f32;

/// The smallest normal f32, 2⁻¹²⁶: below it values are subnormal, or flushed to zero (GPUs
/// may flush subnormals), so no relative accuracy is possible.
pub const F32_UNDERFLOW: f64 = 1.175_494_350_822_287_5e-38;

/// f32 unit roundoff, 2⁻²⁴.
pub const F32_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// f16 unit roundoff, 2⁻¹¹: rounding to nearest moves a normal f16 value by at most this
/// much relative to it.
pub const F16_ROUNDOFF: f64 = 4.882_812_5e-4;

/// The spacing of f16's subnormals, 2⁻²⁴: below 2⁻¹⁴ rounding is absolute, by at most half
/// of this to nearest, and by up to this to either neighbour.
pub const F16_SUBNORMAL: f64 = 5.960_464_477_539_063e-8;

/// The tolerance of one output (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// D + L.
    pub length: f64,
    /// The output's scale S.
    pub scale: f64,
    /// The absolute floor: f32's underflow threshold times the largest factor applied to a
    /// value after it may have underflowed ([`F32_UNDERFLOW`] unless set), plus an f16
    /// output's subnormal step.
    pub floor: f64,
    /// The output's own rounding relative to its value: 0 in f32 (covered above), one f16
    /// ulp (2⁻¹⁰) for a gradient written in f16.
    pub rounding: f64,
}

impl Tolerance {
    /// Tolerance for a value reduced over `reduction_len` terms of `dim`-dimensional rows.
    pub fn new(dim: usize, reduction_len: u64, scale: f64) -> Self {
        Self {
            length: dim as f64 + reduction_len as f64,
            scale,
            floor: F32_UNDERFLOW,
            rounding: 0.0,
        }
    }

    /// The same rule for an output written in `precision`: f16 adds one f16 ulp of the
    /// value and the subnormal step (see the module docs).
    pub fn rounded_to(mut self, precision: Precision) -> Self {
        if precision == Precision::F16 {
            self.rounding = 2.0 * F16_ROUNDOFF;
            self.floor += F16_SUBNORMAL;
        }
        self
    }

    /// The same rule with the underflow floor multiplied by `gain`, the largest factor an
    /// underflowed intermediate is multiplied by on its way to the output (softmax: a weight
    /// exp(z − lse) times 1/(τ·‖x‖)).
    pub fn with_underflow_gain(mut self, gain: f64) -> Self {
        self.floor += F32_UNDERFLOW * (gain.max(1.0) - 1.0);
        self
    }

    /// The largest allowed |g − r| for reference value `r`.
    pub fn bound(&self, r: f64) -> f64 {
        8.0 * F32_ROUNDOFF * self.length * (r.abs() + self.scale)
            + self.rounding * r.abs()
            + self.floor
    }
}

/// The input quantisation term of the module docs: the first-order change of a loss whose
/// gradients at `inputs` are `grads` (the reference's, one per input, in order) when every
/// value is rounded to f16, `Σ_k (2⁻¹¹·|x_k| + 2⁻²⁵)·|∂L/∂x_k|`.
pub fn quantisation(inputs: &[&Embeddings<'_>], grads: &[Gradient]) -> f64 {
    inputs
        .iter()
        .zip(grads)
        .map(|(x, g)| {
            x.data()
                .iter()
                .zip(g.values())
                .map(|(&v, &d)| {
                    (F16_ROUNDOFF * f64::from(v.abs()) + F16_SUBNORMAL / 2.0) * f64::from(d.abs())
                })
                .sum::<f64>()
        })
        .sum()
}

/// Compares a GPU gradient with the reference's under `tol`, in the precision the GPU wrote
/// it ([`Tolerance::rounded_to`]).
pub(crate) fn compare_grad(gpu: &Gradient, reference: &Gradient, tol: Tolerance) -> Comparison {
    compare(
        &widen_f32(gpu),
        &widen_f32(reference),
        tol.rounded_to(gpu.precision()),
    )
}

/// The outcome of comparing one output array.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Largest |g − r|.
    pub max_abs: f64,
    /// Largest |g − r| / (|r| + S).
    pub max_rel: f64,
    /// Index, GPU value, reference value and bound of the worst element (by error / bound).
    pub worst: Option<(usize, f64, f64, f64)>,
    /// All elements within their bound.
    pub pass: bool,
}

/// Compares `gpu` with `reference` element by element under `tol`.
pub fn compare(gpu: &[f64], reference: &[f64], tol: Tolerance) -> Comparison {
    let mut c = Comparison {
        pass: gpu.len() == reference.len(),
        ..Default::default()
    };
    let mut worst_ratio = -1.0;
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let err = (g - r).abs();
        let bound = tol.bound(r);
        c.max_abs = c.max_abs.max(err);
        c.max_rel = c
            .max_rel
            .max(err / (r.abs() + tol.scale).max(f64::MIN_POSITIVE));
        let ratio = if bound > 0.0 { err / bound } else { err };
        if err.is_nan() || err > bound {
            c.pass = false;
        }
        if ratio > worst_ratio || !ratio.is_finite() {
            worst_ratio = ratio;
            c.worst = Some((i, g, r, bound));
        }
    }
    c
}

/// The verdict of one GPU-versus-CPU comparison of a whole output: loss, every gradient
/// (and dL/dτ, last, for the softmax losses), counts.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The case, e.g. `batch euclidean squared mean normalize`.
    pub name: String,
    /// The loss's comparison.
    pub loss: Comparison,
    /// Each gradient's comparison.
    pub grads: Vec<Comparison>,
    /// Counts agree exactly (and both outputs have the same gradients).
    pub counts_equal: bool,
}

impl Verdict {
    /// Everything within tolerance and the counts exact.
    pub fn pass(&self) -> bool {
        self.loss.pass && self.counts_equal && self.grads.iter().all(|g| g.pass)
    }

    /// Largest absolute error over all outputs.
    pub fn max_abs(&self) -> f64 {
        self.grads
            .iter()
            .map(|g| g.max_abs)
            .fold(self.loss.max_abs, f64::max)
    }

    /// Largest relative error over all outputs.
    pub fn max_rel(&self) -> f64 {
        self.grads
            .iter()
            .map(|g| g.max_rel)
            .fold(self.loss.max_rel, f64::max)
    }

    /// The failures, one line each (loss or gradient index, both values and the bound).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.counts_equal {
            out.push("counts differ".to_string());
        }
        let all =
            std::iter::once(("loss", &self.loss)).chain(self.grads.iter().map(|g| ("grad", g)));
        for (what, c) in all {
            if let (false, Some((i, g, r, b))) = (c.pass, c.worst) {
                out.push(format!(
                    "{what}[{i}]: gpu {g:e}, reference {r:e}, |diff| {:e} > bound {b:e}",
                    (g - r).abs()
                ));
            }
        }
        out
    }
}

/// Compares any loss's GPU output with its reference: the loss under `loss_tol`, each
/// gradient under the rule with `reduction_len` terms and the gradient scale (the largest
/// reference magnitude among all the gradients, at least `contribution`: see
/// `contribution_scale`), counts exactly.
pub(crate) fn verdict<C: PartialEq>(
    name: String,
    gpu: &LossOutput<C>,
    reference: &LossOutput<C>,
    dim: usize,
    loss_tol: Tolerance,
    reduction_len: u64,
    contribution: f64,
) -> Verdict {
    let loss = compare(&[gpu.loss], &[reference.loss], loss_tol);
    let scale = reference
        .grads
        .iter()
        .flat_map(|g| g.iter())
        .fold(contribution, |m, v| m.max(f64::from(v.abs())));
    let grads = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .map(|(g, r)| compare_grad(g, r, Tolerance::new(dim, reduction_len, scale)))
        .collect::<Vec<_>>();
    let grads_present = gpu.grads.len() == reference.grads.len();
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && grads_present,
    }
}

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

pub(crate) mod scales;

use crate::options::LossOutput;
use crate::reference::widen_f32;

/// The smallest normal f32, 2⁻¹²⁶: below it values are subnormal, or flushed to zero (GPUs
/// may flush subnormals), so no relative accuracy is possible.
pub const F32_UNDERFLOW: f64 = 1.175_494_350_822_287_5e-38;

/// f32 unit roundoff, 2⁻²⁴.
pub const F32_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;

/// The tolerance of one output (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// D + L.
    pub length: f64,
    /// The output's scale S.
    pub scale: f64,
    /// The absolute floor: f32's underflow threshold times the largest factor applied to a
    /// value after it may have underflowed ([`F32_UNDERFLOW`] unless set).
    pub floor: f64,
}

impl Tolerance {
    /// Tolerance for a value reduced over `reduction_len` terms of `dim`-dimensional rows.
    pub fn new(dim: usize, reduction_len: u64, scale: f64) -> Self {
        Self {
            length: dim as f64 + reduction_len as f64,
            scale,
            floor: F32_UNDERFLOW,
        }
    }

    /// The same rule with the underflow floor multiplied by `gain`, the largest factor an
    /// underflowed intermediate is multiplied by on its way to the output (softmax: a weight
    /// exp(z − lse) times 1/(τ·‖x‖)).
    pub fn with_underflow_gain(mut self, gain: f64) -> Self {
        self.floor = F32_UNDERFLOW * gain.max(1.0);
        self
    }

    /// The largest allowed |g − r| for reference value `r`.
    pub fn bound(&self, r: f64) -> f64 {
        8.0 * F32_ROUNDOFF * self.length * (r.abs() + self.scale) + self.floor
    }
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
        .map(|(g, r)| {
            compare(
                &widen_f32(g),
                &widen_f32(r),
                Tolerance::new(dim, reduction_len, scale),
            )
        })
        .collect::<Vec<_>>();
    let grads_present = gpu.grads.len() == reference.grads.len();
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && grads_present,
    }
}

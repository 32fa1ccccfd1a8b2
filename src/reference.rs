//! What the f64 CPU references share: their result type, distances and their gradients,
//! the row normalisation, and the smooth functions, each mirroring a snippet of
//! shaders/common/ (or normalize.wgsl) in f64. Written for clarity rather than speed.
//!
//! Cosine distance is computed from its definition here, while the GPU runs it as
//! one-minus-dot on normalised rows: the two derivations check each other.

use crate::input::Embeddings;
use crate::options::{Distance, Gradient, LossOutput, ReferenceGrad};

/// An f64 result of a reference, with gradients in f64 (for finite-difference checks); `C`
/// is the family's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference<C> {
    /// The loss.
    pub loss: f64,
    /// The counts.
    pub counts: C,
    /// Gradients as in [`LossOutput::grads`], in f64.
    pub grads: Vec<Vec<f64>>,
    /// dL/dτ, as in [`LossOutput::grad_temperature`].
    pub grad_temperature: Option<f64>,
    /// dL/db, as in [`LossOutput::grad_bias`].
    pub grad_bias: Option<f64>,
}

impl<C> Reference<C> {
    /// The loss and counts without gradients ([`crate::Grads::Skip`]).
    pub(crate) fn loss_only(loss: f64, counts: C) -> Self {
        Self {
            loss,
            counts,
            grads: Vec::new(),
            grad_temperature: None,
            grad_bias: None,
        }
    }

    /// [`Reference::narrow`] of a call against a reference set: `[dL/dQ, dL/dR]`, without
    /// dL/dR when the reference is detached, as the GPU path returns them.
    pub fn narrow_against(mut self, grad: ReferenceGrad, dim: usize) -> LossOutput<C> {
        if grad == ReferenceGrad::Detached {
            self.grads.truncate(1);
        }
        self.narrow(dim)
    }

    /// The output with f32 gradients of `dim` values a row, as the GPU path returns it.
    pub fn narrow(self, dim: usize) -> LossOutput<C> {
        LossOutput {
            loss: self.loss,
            counts: self.counts,
            grads: self
                .grads
                .into_iter()
                .map(|g| Gradient::new(g.into_iter().map(|v| v as f32).collect(), dim))
                .collect(),
            grad_temperature: self.grad_temperature,
            grad_bias: self.grad_bias,
        }
    }
}

/// The floor under a row's norm.
pub const NORM_EPS: f64 = 1e-12;

/// Distance between rows u and v.
pub fn distance(kind: Distance, u: &[f64], v: &[f64]) -> f64 {
    match kind {
        Distance::Euclidean => squared_diff(u, v).sqrt(),
        Distance::SquaredEuclidean => squared_diff(u, v),
        Distance::Cosine => 1.0 - cosine_similarity(u, v),
    }
}

/// dd/du, with the convention that it is 0 where d = 0.
pub fn distance_grad(kind: Distance, u: &[f64], v: &[f64]) -> Vec<f64> {
    let d = distance(kind, u, v);
    if d == 0.0 {
        return vec![0.0; u.len()];
    }
    match kind {
        Distance::Euclidean => u.iter().zip(v).map(|(a, b)| (a - b) / d).collect(),
        Distance::SquaredEuclidean => u.iter().zip(v).map(|(a, b)| 2.0 * (a - b)).collect(),
        Distance::Cosine => {
            // d = 1 − s, s = u·v/(nu·nv), nu = max(|u|, eps):
            // ds/du = v/(nu·nv) − [|u| > eps]·s·u/nu².
            let (lu, lv) = (norm(u), norm(v));
            let (nu, nv) = (lu.max(NORM_EPS), lv.max(NORM_EPS));
            let s = dot(u, v) / (nu * nv);
            let varies = if lu > NORM_EPS { 1.0 } else { 0.0 };
            u.iter()
                .zip(v)
                .map(|(a, b)| -(b / (nu * nv) - varies * s * a / (nu * nu)))
                .collect()
        }
    }
}

fn squared_diff(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// u·v.
pub fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

fn norm(u: &[f64]) -> f64 {
    dot(u, u).sqrt()
}

fn cosine_similarity(u: &[f64], v: &[f64]) -> f64 {
    dot(u, v) / (norm(u).max(NORM_EPS) * norm(v).max(NORM_EPS))
}

/// Normalised rows x / max(‖x‖, 1e-12) and each row's norm (mirrors normalize_forward).
pub fn normalize(x: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(x.len());
    let mut norms = Vec::with_capacity(x.len() / dim.max(1));
    for row in x.chunks_exact(dim) {
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        norms.push(n);
        out.extend(row.iter().map(|v| v / n.max(NORM_EPS)));
    }
    (out, norms)
}

/// dL/dx from dL/d(normalised x): (g − x̂(x̂·g))/n when n > eps, else g/eps (mirrors
/// normalize_backward).
pub fn normalize_backward(normalized: &[f64], norms: &[f64], grad: &[f64], dim: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(grad.len());
    for ((xn, g), &n) in normalized
        .chunks_exact(dim)
        .zip(grad.chunks_exact(dim))
        .zip(norms)
    {
        if n > NORM_EPS {
            let dot: f64 = xn.iter().zip(g).map(|(a, b)| a * b).sum();
            out.extend(xn.iter().zip(g).map(|(a, b)| (b - a * dot) / n));
        } else {
            out.extend(g.iter().map(|b| b / NORM_EPS));
        }
    }
    out
}

/// The rows the distance sees: normalised (with their norms) when `normalize` is on.
pub fn prepare(normalize: bool, x: &[f64], dim: usize) -> (Vec<f64>, Option<Vec<f64>>) {
    if normalize {
        let (xn, norms) = self::normalize(x, dim);
        (xn, Some(norms))
    } else {
        (x.to_vec(), None)
    }
}

/// dL/dx from dL/d(rows the distance saw), through the normalisation when there was one.
pub fn finish_grad(xn: &[f64], norms: Option<Vec<f64>>, g: Vec<f64>, dim: usize) -> Vec<f64> {
    match norms {
        Some(n) => normalize_backward(xn, &n, &g, dim),
        None => g,
    }
}

/// Row `i` of a row-major matrix with `dim` columns.
pub fn row(x: &[f64], i: usize, dim: usize) -> &[f64] {
    &x[i * dim..(i + 1) * dim]
}

/// dst += c · src.
pub fn add_scaled(dst: &mut [f64], c: f64, src: &[f64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += c * s;
    }
}

/// The values in f64.
pub fn widen(x: &Embeddings<'_>) -> Vec<f64> {
    widen_f32(&x.data())
}

/// f32 values (a gradient, a loss's inputs) as f64.
pub(crate) fn widen_f32(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// log Σ exp(v), or `None` for no values.
pub fn logsumexp(values: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let m = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return None;
    }
    Some(m + values.map(|v| (v - m).exp()).sum::<f64>().ln())
}

/// log(1 + exp(u)) (mirrors common/smooth.wgsl).
pub fn softplus(u: f64) -> f64 {
    u.max(0.0) + (-u.abs()).exp().ln_1p()
}

/// 1 / (1 + exp(−u)) (mirrors common/smooth.wgsl).
pub fn sigmoid(u: f64) -> f64 {
    let e = (-u.abs()).exp();
    if u >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

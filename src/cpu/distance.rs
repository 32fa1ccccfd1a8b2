//! Distances between rows, their gradients and the row helpers shared by the CPU references
//! (mirror shaders/common/distance.wgsl), in f64.
//!
//! Cosine distance is computed from its definition here, while the GPU runs it as
//! one-minus-dot on normalised rows: the two derivations check each other.

use super::normalize;
use crate::loss::Distance;
use crate::shape::Embeddings;

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
            let (nu, nv) = (lu.max(normalize::NORM_EPS), lv.max(normalize::NORM_EPS));
            let s = dot(u, v) / (nu * nv);
            let varies = if lu > normalize::NORM_EPS { 1.0 } else { 0.0 };
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

fn dot(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(a, b)| a * b).sum()
}

fn norm(u: &[f64]) -> f64 {
    dot(u, u).sqrt()
}

fn cosine_similarity(u: &[f64], v: &[f64]) -> f64 {
    dot(u, v) / (norm(u).max(normalize::NORM_EPS) * norm(v).max(normalize::NORM_EPS))
}

/// The rows the distance sees: normalised (with their norms) when `normalize` is on.
pub fn prepare(normalize: bool, x: &[f64], dim: usize) -> (Vec<f64>, Option<Vec<f64>>) {
    if normalize {
        let (xn, norms) = normalize::forward(x, dim);
        (xn, Some(norms))
    } else {
        (x.to_vec(), None)
    }
}

/// dL/dx from dL/d(rows the distance saw), through the normalisation when there was one.
pub fn finish_grad(xn: &[f64], norms: Option<Vec<f64>>, g: Vec<f64>, dim: usize) -> Vec<f64> {
    match norms {
        Some(n) => normalize::backward(xn, &n, &g, dim),
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
    x.data().iter().map(|&v| f64::from(v)).collect()
}

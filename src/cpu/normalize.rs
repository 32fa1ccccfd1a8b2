//! Row normalisation x / max(||x||, 1e-12) and its backward pass (mirrors normalize.wgsl).

/// The floor under a row's norm.
pub const NORM_EPS: f64 = 1e-12;

/// Normalised rows and each row's norm.
pub fn forward(x: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(x.len());
    let mut norms = Vec::with_capacity(x.len() / dim);
    for row in x.chunks_exact(dim) {
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        norms.push(n);
        out.extend(row.iter().map(|v| v / n.max(NORM_EPS)));
    }
    (out, norms)
}

/// dL/dx from dL/d(normalised x): (g − x̂(x̂·g))/n when n > eps, else g/eps.
pub fn backward(normalized: &[f64], norms: &[f64], grad: &[f64], dim: usize) -> Vec<f64> {
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

//! The f64 mirror of shaders/proxy.wgsl: every (query, class) logit from its definition (a
//! class's cosine the largest of its sub-centres'), the log-sum-exp per query, the gradients
//! of both sides through their normalisation.

use super::{Proxy, ProxyCounts};
use crate::options::Grads;
use crate::reference::{dot, logsumexp, normalize, normalize_backward, row};

/// A class-proxy result in f64.
pub type Reference = crate::reference::Reference<ProxyCounts>;

/// What the tolerance rule needs of a call beside the result: per row of each side (the
/// queries, then W), Σ |dL/dc| over its pairs, and the size of those coefficients' errors
/// per unit of a cosine's (each coefficient times 2·A_i, A_i = s·max(1, |ψ′(c_iy)|) the
/// query's largest logit slope in c; the target's also |(p − 1)·s·ψ″|/B, ψ′'s own error);
/// and the largest A_i.
#[derive(Clone, Debug, Default)]
pub struct Mass {
    /// Σ |dL/dc| per row: the queries', then W's.
    pub plain: [Vec<f64>; 2],
    /// The coefficients' error sizes per row.
    pub amplified: [Vec<f64>; 2],
    /// The largest A_i.
    pub logit_slope: f64,
}

/// The loss of the queries `x` (with their `labels`) against the class weights `w` (K rows
/// per class, `cfg.sub_centers`) and, with gradients, `[dL/dX, dL/dW]`, and the masses.
pub fn batch_with_mass(
    cfg: &Proxy,
    x: &[f64],
    labels: &[u32],
    w: &[f64],
    dim: usize,
    grads: Grads,
) -> (Reference, Mass) {
    let (xn, x_norms) = normalize(x, dim);
    let (wn, w_norms) = normalize(w, dim);
    let (n, rows_w) = (x_norms.len(), w_norms.len());
    let k = cfg.sub_centers.max(1) as usize;
    let c = rows_w / k;
    let s = f64::from(cfg.scale);
    let inv_b = if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let (mut gx, mut gw) = (vec![0.0; xn.len()], vec![0.0; wn.len()]);
    let mut mass = Mass {
        plain: [vec![0.0; n], vec![0.0; rows_w]],
        amplified: [vec![0.0; n], vec![0.0; rows_w]],
        logit_slope: 0.0,
    };
    let mut loss = 0.0;
    for i in 0..n {
        let y = labels[i] as usize;
        // Per class, its winning sub-centre (the first largest) and that cosine.
        let (win, cos): (Vec<usize>, Vec<f64>) = (0..c)
            .map(|j| {
                (j * k..(j + 1) * k)
                    .map(|r| (r, dot(row(&xn, i, dim), row(&wn, r, dim))))
                    .fold(
                        (j * k, f64::NEG_INFINITY),
                        |b, t| if t.1 > b.1 { t } else { b },
                    )
            })
            .unzip();
        let z = |j: usize| {
            if j == y {
                s * cfg.with_margin(cos[j])
            } else {
                s * cos[j]
            }
        };
        let lse = logsumexp((0..c).map(z)).unwrap_or(0.0);
        loss += lse - z(y);
        let slope = s * cfg.margin_slope(cos[y]);
        let amp = 2.0 * s.max(slope.abs());
        mass.logit_slope = mass.logit_slope.max(amp / 2.0);
        for (j, &wj) in win.iter().enumerate() {
            let p = (z(j) - lse).exp();
            let coef = if j == y {
                (p - 1.0) * slope * inv_b
            } else {
                p * s * inv_b
            };
            let curvature = if j == y {
                ((p - 1.0) * s * inv_b).abs() * cfg.margin_curvature(cos[y])
            } else {
                0.0
            };
            for t in 0..dim {
                gx[i * dim + t] += coef * wn[wj * dim + t];
                gw[wj * dim + t] += coef * xn[i * dim + t];
            }
            for (side, r) in [(0, i), (1, wj)] {
                mass.plain[side][r] += coef.abs();
                mass.amplified[side][r] += coef.abs() * amp + curvature;
            }
        }
    }
    let counts = ProxyCounts { terms: n as u64 };
    let loss = loss * inv_b;
    let r = match grads {
        Grads::Skip => Reference::loss_only(loss, counts),
        Grads::Compute | Grads::ComputeF32 => Reference {
            loss,
            counts,
            grads: vec![
                normalize_backward(&xn, &x_norms, &gx, dim),
                normalize_backward(&wn, &w_norms, &gw, dim),
            ],
            grad_temperature: None,
            grad_bias: None,
        },
    };
    (r, mass)
}

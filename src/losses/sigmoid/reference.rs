//! The f64 mirror of shaders/sigmoid.wgsl: every pair evaluated from its definition, with
//! the gradients through the normalisation.

use super::SiglipCounts;
use crate::options::Grads;
use crate::reference::{dot, normalize, normalize_backward, row, sigmoid, softplus};

/// A SigLIP result in f64.
pub type Reference = crate::reference::Reference<SiglipCounts>;

/// What the reference needs of a call: t = exp(t′), b, and each side's class ids (a pair is
/// positive when its rows' ids are equal).
pub struct Pairs<'a> {
    /// t, the logit scale.
    pub scale: f64,
    /// b.
    pub bias: f64,
    /// The class ids of A's rows, then B's.
    pub classes: (&'a [u32], &'a [u32]),
}

/// What the tolerance rule needs of a call beside the result: each side's rows' masses
/// t·Σ |dL/dx| over their pairs, and G = Σ_ij |dL/dx_ij|.
pub struct Mass {
    /// A's rows, then B's.
    pub rows: [Vec<f64>; 2],
    /// Σ_ij |dL/dx_ij|.
    pub total: f64,
}

/// The loss over A (`a`, N rows) against B (`b`, M rows) and, with gradients,
/// `[dL/dA, dL/dB]`, dL/dt′ and dL/db, and the masses.
pub fn pairs_with_mass(
    p: &Pairs<'_>,
    a: &[f64],
    b: &[f64],
    dim: usize,
    grads: Grads,
) -> (Reference, Mass) {
    let (an, a_norms) = normalize(a, dim);
    let (bn, b_norms) = normalize(b, dim);
    let (n, m) = (a_norms.len(), b_norms.len());
    let inv_n = if n == 0 { 0.0 } else { 1.0 / n as f64 };
    let (mut ga, mut gb) = (vec![0.0; an.len()], vec![0.0; bn.len()]);
    let mut mass = Mass {
        rows: [vec![0.0; n], vec![0.0; m]],
        total: 0.0,
    };
    let (mut loss, mut g_scale, mut g_bias, mut positives) = (0.0, 0.0, 0.0, 0u64);
    for i in 0..n {
        let ai = row(&an, i, dim);
        for j in 0..m {
            let bj = row(&bn, j, dim);
            let s = dot(ai, bj);
            let positive = p.classes.0[i] == p.classes.1[j];
            let z = if positive { 1.0 } else { -1.0 };
            let u = -z * (p.scale * s + p.bias);
            loss += softplus(u);
            positives += u64::from(positive);
            let g = -z * sigmoid(u) * inv_n;
            g_scale += g * p.scale * s;
            g_bias += g;
            let w = p.scale * g;
            for k in 0..dim {
                ga[i * dim + k] += w * bj[k];
                gb[j * dim + k] += w * ai[k];
            }
            mass.rows[0][i] += w.abs();
            mass.rows[1][j] += w.abs();
            mass.total += g.abs();
        }
    }
    let counts = SiglipCounts {
        terms: n as u64,
        positive_pairs: positives,
    };
    let loss = loss * inv_n;
    let r = match grads {
        Grads::Skip => Reference::loss_only(loss, counts),
        Grads::Compute | Grads::ComputeF32 => Reference {
            loss,
            counts,
            grads: vec![
                normalize_backward(&an, &a_norms, &ga, dim),
                normalize_backward(&bn, &b_norms, &gb, dim),
            ],
            grad_temperature: Some(g_scale),
            grad_bias: Some(g_bias),
        },
    };
    (r, mass)
}

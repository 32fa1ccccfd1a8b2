//! The tolerance rule's scales for the class-proxy losses (see [`crate::tolerance`]). A
//! cosine's rounding error (about D·u) moves a logit by s·D·u, the target's by
//! s·|ψ′(c)|·D·u (ArcFace's ψ′ grows as 1/sin θ near an aligned class: its logit is as
//! uncertain as that in f32, for every implementation). The rule's 8u(D + L)·S holds two
//! sources with their own lengths: the sums' rounding (L·u times what they add) and the
//! logits' (D·u times their amplification), so S is the sums' size plus the amplified size
//! scaled by D/(D + L):
//! - loss: S = T + 2·max_i A_i·D/(D + L), T = 2s(1 + m′) + ln(C + 1) a bound of one term
//!   (m′ the margin's largest shift of a cosine) and A_i = s·max(1, |ψ′(c_iy)|), L = C;
//! - gradient of a row: S = max over rows of (Σ|dL/dc| + E·D/(D + L)) / max(‖row‖, 1e-12),
//!   E the size of its coefficients' errors per unit of a cosine's: each times 2A_i, and the
//!   target's also |(p − 1)·s·ψ″|/B (ψ′ is recomputed from a rounded c), from the
//!   reference ([`super::reference::Mass`]); L = C for the queries and B for W's rows.
//!
//! With K sub-centres a class, C above is W's C·K rows (the terms a sum may add, an upper
//! bound: only the C winners add anything), and each W row's masses are its wins'.
//!
//! ArcFace's branch (θ ≤ π − m) and which sub-centre wins are decisions: PML's continuation
//! c − m·sin m does not meet cos(θ + m) at c = −cos m (neither in value nor in slope), and
//! the gradient jumps between sub-centres at a tie, so the tests keep every target cosine
//! clear of the branch and every class's two largest sub-centre cosines apart
//! (`testing::proxy`).

use super::reference::Mass;
use super::{Proxy, ProxyOutput};
use crate::input::Embeddings;
use crate::reference::NORM_EPS;
use crate::tolerance::scales;
use crate::tolerance::{compare, compare_grad, Tolerance, Verdict};

fn share(dim: usize, len: u64) -> f64 {
    dim as f64 / (dim as f64 + len as f64)
}

/// Compares a GPU output with the reference: loss, dL/dX, dL/dW, counts exactly.
pub fn verdict(
    name: String,
    cfg: &Proxy,
    gpu: &ProxyOutput,
    reference: &ProxyOutput,
    sides: [&Embeddings<'_>; 2],
    mass: &Mass,
) -> Verdict {
    let dim = sides[0].dim();
    let (n, c) = (sides[0].rows() as u64, sides[1].rows() as u64);
    let s = f64::from(cfg.scale);
    let t = 2.0 * s * (1.0 + cfg.margin()) + (c as f64 + 1.0).ln();
    let a = mass.logit_slope;
    let loss = compare(
        &[gpu.loss],
        &[reference.loss],
        Tolerance::new(dim, c, t + 2.0 * a * share(dim, c)),
    );
    let grads = gpu
        .grads
        .iter()
        .zip(&reference.grads)
        .zip(sides.iter().zip([c, n]).enumerate())
        .map(|((g, r), (k, (x, len)))| {
            let sh = share(dim, len);
            let scale = x
                .data()
                .chunks(dim.max(1))
                .zip(mass.plain[k].iter().zip(&mass.amplified[k]))
                .map(|(row, (p, amp))| {
                    let norm = row
                        .iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
                        .sqrt();
                    (p + amp * sh) / norm.max(NORM_EPS)
                })
                .fold(0.0, f64::max);
            let gain = a / scales::min_norm(x).max(NORM_EPS);
            let tol = Tolerance::new(dim, len, scale).with_underflow_gain(gain);
            compare_grad(g, r, tol)
        })
        .collect();
    Verdict {
        name,
        loss,
        grads,
        counts_equal: gpu.counts == reference.counts && gpu.grads.len() == reference.grads.len(),
    }
}

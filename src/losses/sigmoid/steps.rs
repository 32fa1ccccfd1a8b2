//! SigLIP's dispatches, for both paths: pair-engine sweeps over every (row window, column
//! window) of A against B (the terms, and with gradients dL/dA) and of B against A (dL/dB),
//! and on the device path one reduction per window.

use std::mem::size_of;

use super::kernels::{self as k, SigmoidParams, SigmoidPartial};
use super::{Siglip, SiglipCounts};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced, Sweep};
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::error::Result;

/// A validated SigLIP call: A and B (the class ids decide the positives).
pub(crate) struct Call {
    pub cfg: Siglip,
}

impl LossCall for Call {
    type Counts = SiglipCounts;
    type Partial = SigmoidPartial;
    const DURING: &'static str = "siglip loss";

    /// Both views are normalised once: the similarity is the dot product of unit rows.
    fn stages(&self) -> usize {
        1
    }

    fn work(&self, plan: &Plan, want: bool) -> f64 {
        let sweeps = if want { 4.0 } else { 1.0 };
        sweeps * 2.0 * (plan.rows as f64).powi(2) * plan.dim as f64
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        let plan = b.plan;
        let count: Vec<u64> = b.sides.iter().map(|s| s.plan.rows).collect();
        let partials = b
            .rec
            .rows("partials", size_of::<SigmoidPartial>() as u64, false);
        let inv_n = if count[0] == 0 {
            0.0
        } else {
            (1.0 / count[0] as f64) as f32
        };
        let params = |r: u64, c: u64, accumulate: bool, (a, o): (usize, usize)| SigmoidParams {
            rows: count[a] as u32,
            cols: count[o] as u32,
            dim4: plan.dim4 as u32,
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            side: a as u32,
            last: u32::from(r + 1 == plan.for_rows(count[a]).windows),
            scale: self.cfg.scale(),
            bias: self.cfg.bias,
            inv_n,
            ..Default::default()
        };
        let shape = b.rec.row_shape(plan.dim4, true);
        let mut steps = Vec::new();
        // A against B (the terms, and dL/dA), then with gradients B against A (dL/dB).
        let orientations: &[(usize, usize)] = if b.want { &[(0, 1), (1, 0)] } else { &[(0, 1)] };
        for &(a, o) in orientations {
            let sweep = Sweep {
                kernel: if b.want {
                    &k::ROWS_GRAD
                } else {
                    &k::ROWS_TERMS
                },
                shape,
                sides: (a, o),
                rows: count[a],
            };
            let grad = b.sides[a].grad.as_ref().filter(|_| b.want);
            steps.extend(
                b.sweep(&sweep, &|r, c| params(r, c, c > 0, (a, o)), &|s, r, _| {
                    let s = s.bind(k::PARTIALS, partials.win(r));
                    match grad {
                        Some(g) => s.bind(k::GRAD, g.win(r)),
                        None => s,
                    }
                })?,
            );
        }
        if matches!(b.path, Path::Device) {
            let loss = b.loss();
            for r in 0..plan.for_rows(count[0]).windows {
                steps.push(
                    Step::new(&k::LOSS, params(r, r, r > 0, (0, 1)), 1)
                        .bind(k::PARTIALS, partials.win(r))
                        .bind(k::DEV, loss.clone()),
                );
            }
        }
        Ok(Built { steps, partials })
    }

    fn reduce(&self, partials: &[SigmoidPartial], want: bool) -> Reduced<SiglipCounts> {
        let (mut loss, mut scale, mut bias, mut positives) = (0.0f64, 0.0f64, 0.0f64, 0u64);
        for p in partials {
            loss += f64::from(p.loss);
            scale += f64::from(p.grad_scale);
            bias += f64::from(p.grad_bias);
            positives += u64::from(p.positives);
        }
        let n = partials.len() as u64;
        let counts = SiglipCounts {
            terms: n,
            positive_pairs: positives,
        };
        let mean = if n == 0 { 0.0 } else { loss / n as f64 };
        Reduced {
            grad_temperature: want.then_some(scale),
            grad_bias: want.then_some(bias),
            ..Reduced::plain(mean, counts)
        }
    }

    fn has_grad_temperature(&self, want: bool) -> bool {
        want
    }

    fn has_grad_bias(&self, want: bool) -> bool {
        want
    }
}

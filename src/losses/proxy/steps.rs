//! The class-proxy losses' dispatches, for both paths: the queries against W's windows (the
//! log-sum-exps, then dL/dX), W against the queries' (dL/dW), and one-per-window steps
//! between them.

use std::mem::size_of;

use super::kernels::{self as k, ProxyParams, ProxyPartial, ProxyStats};
use super::{Proxy, ProxyCounts};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced, Sweep};
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::error::Result;

/// A validated call: the queries (side 0, with their labels) against W (side 1, its rows'
/// indices as ids: class id / K, sub-centre id % K).
pub(crate) struct Call {
    pub cfg: Proxy,
    /// B, the queries.
    pub queries: u64,
    /// C, the classes (W has C·K rows).
    pub classes: u64,
}

impl LossCall for Call {
    type Counts = ProxyCounts;
    type Partial = ProxyPartial;
    const DURING: &'static str = "class-proxy loss";

    /// Both sides are normalised once: the pair engine's dot products are the cosines.
    fn stages(&self) -> usize {
        1
    }

    fn work(&self, plan: &Plan, want: bool) -> f64 {
        // The log-sum-exps (2 per pair and dimension), with gradients both sides' (4 each);
        // with sub-centres the gradient sweeps recompute the group's cosines (2·K per pair
        // and dimension on W's side, 2 on the queries').
        let k = f64::from(self.cfg.sub_centers);
        let recompute = if k > 1.0 { 2.0 * k + 2.0 } else { 0.0 };
        let per_pair = if want { 10.0 + recompute } else { 2.0 };
        per_pair * self.queries as f64 * self.classes as f64 * k * plan.dim as f64
    }

    /// Sub-centres: W's side recomputes a class's K cosines every column, the queries' side
    /// once a class (proxy_rows.wgsl's centre_winner: four sub-centres and four vec4s an
    /// iteration), for both rows an invocation holds. Calibrated on lavapipe: the loops cost
    /// more than their iteration counts (docs/testing.md, finding 15).
    fn extra_loops(&self, dim4: u64) -> u64 {
        match u64::from(self.cfg.sub_centers) {
            1 => 0,
            k => 2 * k.div_ceil(4) * (dim4 / 4 + 8),
        }
    }

    fn window_multiple(&self) -> u64 {
        u64::from(self.cfg.sub_centers)
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        let plan = b.plan;
        let count: Vec<u64> = b.sides.iter().map(|s| s.plan.rows).collect();
        let partials = b
            .rec
            .rows("partials", size_of::<ProxyPartial>() as u64, false);
        let stats = b.rec.rows("stats_a", size_of::<ProxyStats>() as u64, false);
        let coefs = b.rec.rows("coefs_a", 16, false);
        let base = self.cfg.kernel_params(count[0]);
        let params = |r: u64, c: u64, accumulate: bool, (a, o): (usize, usize)| ProxyParams {
            rows: count[a] as u32,
            cols: count[o] as u32,
            dim4: plan.dim4 as u32,
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            side: a as u32,
            last: u32::from(r + 1 == plan.for_rows(count[a]).windows),
            ..base
        };
        let shape = b.rec.row_shape(plan.dim4, true);
        // Every (row window, column window) of side a's rows against side o's.
        let sweep = |kernel: &'static k::K, (a, o), bind: &dyn Fn(Step, u64, u64) -> Step| {
            let sweep = Sweep {
                kernel,
                shape,
                sides: (a, o),
                rows: count[a],
            };
            b.sweep(&sweep, &|r, c| params(r, c, c > 0, (a, o)), bind)
        };
        let queries = plan.for_rows(count[0]);
        let mut steps = sweep(&k::ROWS_LSE, (0, 1), &|s, r, _| {
            s.bind(k::STATS, stats.win(r))
        })?;
        for r in 0..queries.windows {
            steps.push(
                Step::new(
                    &k::FINISH,
                    params(r, r, false, (0, 1)),
                    queries.row_groups(r),
                )
                .bind(k::STATS, stats.win(r))
                .bind(k::PARTIALS, partials.win(r))
                .bind(k::COEFS, coefs.win(r)),
            );
        }
        if b.want {
            // Side 0 reads its rows' coefficients, side 1 its columns' (the queries'); the
            // other binding is any window of the same buffer.
            for (a, o) in [(0, 1), (1, 0)] {
                let Some(g) = &b.sides[a].grad else { continue };
                let q = |r, c| if a == 0 { r } else { c };
                let kernel = match self.cfg.sub_centers {
                    1 => &k::ROWS_GRAD,
                    _ => &k::ROWS_CENTRES,
                };
                steps.extend(sweep(kernel, (a, o), &|s, r, c| {
                    s.bind(k::ROW_COEFS, coefs.win(q(r, c)))
                        .bind(k::COL_COEFS, coefs.win(q(r, c)))
                        .bind(k::GRAD, g.win(r))
                })?);
            }
        }
        if matches!(b.path, Path::Device) {
            let dev = b.loss();
            for r in 0..queries.windows {
                steps.push(
                    Step::new(&k::LOSS, params(r, r, r > 0, (0, 1)), 1)
                        .bind(k::PARTIALS, partials.win(r))
                        .bind(k::DEV, dev.clone()),
                );
            }
        }
        Ok(Built { steps, partials })
    }

    fn reduce(&self, partials: &[ProxyPartial], _want: bool) -> Reduced<ProxyCounts> {
        let sum: f64 = partials.iter().map(|p| f64::from(p.loss)).sum();
        let n = partials.len() as u64;
        let mean = if n == 0 { 0.0 } else { sum / n as f64 };
        Reduced::plain(mean, ProxyCounts { terms: n })
    }

    fn class_check(&self) -> Option<u64> {
        Some(self.classes)
    }
}

//! The pair-weighting losses' dispatches, for both paths: pair-engine sweeps over every
//! (row window, column window) of the batch (the miner's bounds, the log-sum-exps, the
//! gradient) and one-per-window reductions between them.

use std::mem::size_of;

use super::kernels::{self as k, WeightingParams, WeightingPartial, WeightingStats};
use super::{Weighting, WeightingCounts};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced, Sweep};
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::error::Result;

/// A validated Multi-Similarity or Circle call on a labelled batch.
pub(crate) struct Call {
    pub cfg: Weighting,
}

impl LossCall for Call {
    type Counts = WeightingCounts;
    type Partial = WeightingPartial;
    const DURING: &'static str = "pair-weighting loss";

    /// The batch is normalised once: the similarity is the dot product of unit rows.
    fn stages(&self) -> usize {
        1
    }

    fn work(&self, plan: &Plan, want: bool) -> f64 {
        let sweeps = 1.0 + f64::from(u8::from(self.cfg.mines())) + if want { 2.0 } else { 0.0 };
        sweeps * 2.0 * (plan.rows as f64).powi(2) * plan.dim as f64
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        let plan = b.plan;
        let rows = b.sides[0].plan.rows;
        let windows = plan.for_rows(rows).windows;
        let partials = b
            .rec
            .rows("partials", size_of::<WeightingPartial>() as u64, false);
        let stats = b
            .rec
            .rows("stats_a", size_of::<WeightingStats>() as u64, false);
        let coefs = b.rec.rows("coefs_a", 16, false);
        let dev = b.loss();
        let cfg = self.cfg.kernel_params();
        let params = |r: u64, c: u64, accumulate: bool| WeightingParams {
            rows: rows as u32,
            dim4: plan.dim4 as u32,
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            last: u32::from(r + 1 == windows),
            ..cfg
        };
        let shape = b.rec.row_shape(plan.dim4, true);
        // Every (row window, column window) of the batch against itself.
        let sweep = |kernel: &'static k::K, bind: &dyn Fn(Step, u64, u64) -> Step| {
            let sweep = Sweep {
                kernel,
                shape,
                sides: (0, 0),
                rows,
            };
            b.sweep(&sweep, &|r, c| params(r, c, c > 0), bind)
        };
        let own_stats = |s: Step, r: u64, _c| s.bind(k::STATS, stats.win(r));
        // One dispatch of `kernel` per row window, `groups(r)` workgroups, with what `bind`
        // adds.
        let per_window = |kernel: &'static k::K,
                          groups: &dyn Fn(u64) -> u64,
                          bind: &dyn Fn(Step, u64) -> Step| {
            (0..windows)
                .map(|r| bind(Step::new(kernel, params(r, r, r > 0), groups(r)), r))
                .collect::<Vec<_>>()
        };
        let one = |_| 1;
        let mut steps = Vec::new();
        if self.cfg.mines() {
            steps.extend(sweep(&k::ROWS_BOUNDS, &own_stats)?);
        }
        steps.extend(sweep(&k::ROWS_LSE, &own_stats)?);
        steps.extend(per_window(&k::COUNT, &one, &|s, r| {
            s.bind(k::STATS, stats.win(r)).bind(k::DEV, dev.clone())
        }));
        let groups = |r| plan.for_rows(rows).row_groups(r);
        steps.extend(per_window(&k::FINISH, &groups, &|s, r| {
            s.bind(k::STATS, stats.win(r))
                .bind(k::PARTIALS, partials.win(r))
                .bind(k::COEFS, coefs.win(r))
        }));
        if let (true, Some(g)) = (b.want, &b.sides[0].grad) {
            steps.extend(sweep(&k::ROWS_GRAD, &|s, r, c| {
                s.bind(k::ROW_COEFS, coefs.win(r))
                    .bind(k::COL_COEFS, coefs.win(c))
                    .bind(k::GRAD, g.win(r))
                    .bind(k::TOTALS, dev.clone())
            })?);
        }
        if matches!(b.path, Path::Device) {
            steps.extend(per_window(&k::LOSS, &one, &|s, r| {
                s.bind(k::PARTIALS, partials.win(r))
                    .bind(k::DEV, dev.clone())
            }));
        }
        Ok(Built { steps, partials })
    }

    fn reduce(&self, partials: &[WeightingPartial], _want: bool) -> Reduced<WeightingCounts> {
        let (mut sum, mut counted) = (0.0f64, 0u64);
        let mut counts = WeightingCounts::default();
        for p in partials {
            sum += f64::from(p.loss);
            counts.positive_pairs += u64::from(p.positives);
            counts.negative_pairs += u64::from(p.negatives);
            counted += u64::from(p.counted);
        }
        let scale = self.cfg.scale(counted, &counts);
        counts.terms = if scale == 0.0 { 0 } else { counted };
        Reduced::plain(sum * scale, counts)
    }
}

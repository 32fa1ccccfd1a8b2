//! The softmax-contrastive losses' dispatches, for both paths: pair-engine sweeps over every
//! (row window, column window) of each orientation, and one-per-window reductions.

use std::mem::size_of;

use super::kernels::{self as k, SoftmaxParams, SoftmaxPartial, SoftmaxStats};
use super::{Softmax, SoftmaxCounts, SoftmaxLoss};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced, Sweep};
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::error::Result;
use crate::options::Reduction;

const PARTIAL: u64 = size_of::<SoftmaxPartial>() as u64;
const STATS: u64 = size_of::<SoftmaxStats>() as u64;

/// How a call's rows meet its columns (shaders/softmax.wgsl `PAIRING_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pairing {
    /// Two sides: CLIP's or InfoNCE's views, or queries against a reference set.
    Reference,
    /// Queries against reference rows among which they sit at this row: no pair of a query
    /// with its own row.
    ReferenceHasQueries(usize),
    /// One labelled batch against itself.
    Batch,
}

impl Pairing {
    /// The kernels' `PAIRING_*` code and the queries' offset among the references.
    fn code(self) -> (u32, u32) {
        match self {
            Pairing::Reference => (0, 0),
            Pairing::ReferenceHasQueries(o) => (1, o as u32),
            Pairing::Batch => (2, 0),
        }
    }
}

/// A validated softmax call: one side (a labelled batch) or two (CLIP's A and B, InfoNCE's
/// anchors and keys, queries and references).
pub(crate) struct Call {
    pub cfg: Softmax,
    pub pairing: Pairing,
    /// Whether side 1 gets a gradient (a detached reference set does not).
    pub second_grad: bool,
    /// The terms, counted on the host where the class ids alone do not give them (queries
    /// against references).
    pub terms: Option<u64>,
}

impl Call {
    /// A batch, or CLIP's or InfoNCE's two views.
    pub fn new(cfg: Softmax) -> Self {
        let pairing = if cfg.loss.takes_views() {
            Pairing::Reference
        } else {
            Pairing::Batch
        };
        Self {
            cfg,
            pairing,
            second_grad: true,
            terms: None,
        }
    }
}

impl LossCall for Call {
    type Counts = SoftmaxCounts;
    type Partial = SoftmaxPartial;
    const DURING: &'static str = "softmax loss";

    /// Every side is normalised once: the similarity is the dot product of unit rows.
    fn stages(&self) -> usize {
        1
    }

    fn side_has_grad(&self, k: usize) -> bool {
        k == 0 || self.second_grad
    }

    fn work(&self, plan: &Plan, want: bool) -> f64 {
        let loss = self.cfg.loss;
        let stats = match loss {
            SoftmaxLoss::NtXent => 2.0,
            SoftmaxLoss::SupCon => 1.0,
            _ if loss.symmetric() => 2.0,
            _ => 1.0,
        };
        let grad = match loss {
            _ if !want => 0.0,
            SoftmaxLoss::NtXent | SoftmaxLoss::SupCon => 1.0,
            _ => 2.0,
        };
        let (rows, dim) = (plan.rows as f64, plan.dim as f64);
        (stats + grad) * 2.0 * rows * rows * dim
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        let plan = b.plan;
        let cfg = &self.cfg;
        let views = cfg.loss.takes_views();
        // Rows of each side: the batch; or anchors (N) and keys (M ≥ N).
        let count: Vec<u64> = b.sides.iter().map(|s| s.plan.rows).collect();
        // dL/dterm: 1/terms from the host's labels, or counted on the device (softmax_count).
        let scale = match b.path {
            Path::Host(ids) => {
                let terms = match self.terms {
                    Some(t) => t,
                    None if views => count[0],
                    None => super::softmax_terms(cfg.loss, ids.unwrap_or(&[])),
                };
                // Every softmax loss is a mean over its terms.
                Some(Reduction::Mean.term_scale(terms))
            }
            Path::Device => None,
        };
        // NT-Xent with at most one positive a row (SimCLR's two views): the positives' sweep
        // is not needed, softmax_finish has the one logit (host path: the labels are here).
        let single = match b.path {
            Path::Host(Some(ids)) if self.pairing == Pairing::Batch => {
                cfg.loss == SoftmaxLoss::NtXent && crate::input::largest_class(ids) <= 2
            }
            _ => false,
        };
        let partials = b.rec.rows("partials", PARTIAL, false);
        const STATS_ROLES: [&str; 2] = ["stats_a", "stats_b"];
        let stats: Vec<_> = (0..b.sides.len())
            .map(|k| b.rec.rows(STATS_ROLES[k], STATS, false))
            .collect();
        const COEFS_ROLES: [&str; 2] = ["coefs_a", "coefs_b"];
        // The finished coefficients, one vec4 a row, for the gradient sweeps.
        let coefs: Vec<_> = (0..b.sides.len())
            .map(|k| b.rec.rows(COEFS_ROLES[k], 16, false))
            .collect();
        // Dispatch parameters for `rows` rows of side `a` (window r) against side `o`
        // (window c).
        let params =
            |r: u64, c: u64, accumulate: bool, (a, o): (usize, usize), rows: u64| SoftmaxParams {
                rows: rows as u32,
                cols: count[o] as u32,
                dim4: plan.dim4 as u32,
                family: cfg.loss.family(),
                row_start: plan.start(r) as u32,
                col_start: plan.start(c) as u32,
                window_rows: plan.window_rows as u32,
                accumulate: u32::from(accumulate),
                side: a as u32,
                device: u32::from(scale.is_none()),
                last: u32::from(r + 1 == plan.for_rows(rows).windows),
                inv_temp: (1.0 / f64::from(cfg.temperature)) as f32,
                scale: scale.unwrap_or(0.0),
                single_positive: u32::from(single),
                symmetric: u32::from(cfg.loss.symmetric()),
                pairing: self.pairing.code().0,
                offset: self.pairing.code().1,
                ..Default::default()
            };
        // (row side, column side) of each orientation: the batch against itself, or A
        // against B and B against A.
        let orientations: &[(usize, usize)] = if b.sides.len() == 1 {
            &[(0, 0)]
        } else {
            &[(0, 1), (1, 0)]
        };
        // Side 0's rows all have statistics; side 1's (the keys of a symmetric loss) only
        // for the first N keys, the matched ones.
        let stat_rows = |(a, o): (usize, usize)| {
            if a == 0 {
                count[a]
            } else {
                count[a].min(count[o])
            }
        };
        let loss = b.loss();
        // Every (row window, column window) of the given orientations on the pair engine,
        // with what `bind` adds for (row side, column side, r, c).
        let shape = b.rec.row_shape(plan.dim4, true);
        let sweep = |kernel: &'static k::K,
                     which: &[(usize, usize)],
                     rows: &dyn Fn((usize, usize)) -> u64,
                     bind: &dyn Fn(Step, usize, usize, u64, u64) -> Step,
                     steps: &mut Vec<Step>|
         -> Result<()> {
            for &(a, o) in which {
                let n = rows((a, o));
                let sweep = Sweep {
                    kernel,
                    shape,
                    sides: (a, o),
                    rows: n,
                };
                let params = |r, c| params(r, c, c > 0, (a, o), n);
                steps.extend(b.sweep(&sweep, &params, &|s, r, c| bind(s, a, o, r, c))?);
            }
            Ok(())
        };
        let own_stats = |s: Step, a: usize, _o, r, _c| s.bind(k::STATS, stats[a].win(r));
        // One dispatch per row window of the given orientations' row sides.
        let per_window = |which: &[(usize, usize)],
                          step: &dyn Fn(u64, (usize, usize)) -> Step,
                          steps: &mut Vec<Step>| {
            for &side in which {
                for r in 0..plan.for_rows(count[side.0]).windows {
                    steps.push(step(r, side));
                }
            }
        };
        let full = |(a, _): (usize, usize)| count[a];
        // Side 1's statistics only where its rows have terms (a symmetric loss's keys; never
        // references).
        let stat_sides = if orientations.len() == 2 && !cfg.loss.symmetric() {
            &orientations[..1]
        } else {
            orientations
        };
        // The gradient sweeps of the sides that get one.
        let grad_sides: Vec<(usize, usize)> = orientations
            .iter()
            .copied()
            .filter(|&(a, _)| b.sides[a].grad.is_some())
            .collect();
        let mut steps = Vec::new();
        sweep(
            &k::ROWS_STATS,
            stat_sides,
            &stat_rows,
            &own_stats,
            &mut steps,
        )?;
        if cfg.loss == SoftmaxLoss::NtXent && !single {
            sweep(
                &k::ROWS_POSITIVES,
                stat_sides,
                &full,
                &own_stats,
                &mut steps,
            )?;
        }
        if scale.is_none() {
            let count_step = |r, side: (usize, usize)| {
                Step::new(&k::COUNT, params(r, r, r > 0, side, count[side.0]), 1)
                    .bind(k::STATS, stats[side.0].win(r))
                    .bind(k::DEV, loss.clone())
            };
            per_window(&orientations[..1], &count_step, &mut steps);
        }
        let finish = |r, side: (usize, usize)| {
            let a = side.0;
            Step::new(
                &k::FINISH,
                params(r, r, r > 0, side, count[a]),
                plan.for_rows(count[a]).row_groups(r),
            )
            .bind(k::STATS, stats[a].win(r))
            .bind(k::PARTIALS, partials.win(r))
            .bind(k::DEV, loss.clone())
            .bind(k::COEFS, coefs[a].win(r))
        };
        per_window(orientations, &finish, &mut steps);
        if b.want {
            let grad = |s: Step, a: usize, o: usize, r, c| {
                let s = s
                    .bind(k::ROW_COEFS, coefs[a].win(r))
                    .bind(k::COL_COEFS, coefs[o].win(c))
                    .bind(k::PARTIALS, partials.win(r));
                match &b.sides[a].grad {
                    Some(g) => s.bind(k::GRAD, g.win(r)),
                    None => s,
                }
            };
            sweep(&k::ROWS_GRAD, &grad_sides, &full, &grad, &mut steps)?;
        }
        if scale.is_none() {
            let reduce = |r, side: (usize, usize)| {
                Step::new(&k::LOSS, params(r, r, r > 0, side, count[side.0]), 1)
                    .bind(k::PARTIALS, partials.win(r))
                    .bind(k::DEV, loss.clone())
            };
            per_window(&orientations[..1], &reduce, &mut steps);
        }
        Ok(Built { steps, partials })
    }

    fn reduce(&self, partials: &[SoftmaxPartial], want: bool) -> Reduced<SoftmaxCounts> {
        let (mut sum, mut tau, mut terms) = (0.0f64, 0.0f64, 0u64);
        for p in partials {
            sum += f64::from(p.loss) + f64::from(p.loss_b);
            tau += f64::from(p.grad_tau);
            terms += u64::from(p.terms);
        }
        // A symmetric loss is the mean of two averages over the same anchors.
        let per_term = if self.cfg.loss.symmetric() {
            2.0 * terms as f64
        } else {
            terms as f64
        };
        let loss = if terms == 0 { 0.0 } else { sum / per_term };
        Reduced {
            grad_temperature: want.then(|| -tau / f64::from(self.cfg.temperature)),
            ..Reduced::plain(loss, SoftmaxCounts { terms })
        }
    }

    fn has_grad_temperature(&self, want: bool) -> bool {
        want
    }
}

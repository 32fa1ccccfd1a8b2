//! The contrastive loss's dispatches over the windows of one call, for both paths.

use std::mem::size_of;

use super::kernels::{self as k, ContrastiveParams, ContrastivePartial};
use super::{Contrastive, ContrastiveCounts, Mode};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced};
use crate::engine::kernel::Bound;
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::engine::recorder::RowBuf;
use crate::engine::rows::RowShape;
use crate::error::Result;
use crate::options::{Distance, Reduction};

/// A validated contrastive call.
pub(crate) struct Call {
    pub cfg: Contrastive,
    pub mode: Mode,
}

/// Which pairs of a dispatch's rows and columns exist (shaders/contrastive.wgsl
/// `PAIRING_*`).
#[derive(Clone, Copy)]
enum Pairing {
    Batch = 0,
    Against = 1,
    AgainstItself = 2,
    RefsAgainst = 3,
    RefsAgainstItself = 4,
}

impl LossCall for Call {
    type Counts = ContrastiveCounts;
    type Partial = ContrastivePartial;
    const DURING: &'static str = "contrastive loss";

    fn stages(&self) -> usize {
        self.cfg.distance.normalize_stages(self.cfg.normalize)
    }

    fn work(&self, plan: &Plan, _want: bool) -> f64 {
        let (rows, dim) = (plan.rows as f64, plan.dim as f64);
        match self.mode {
            Mode::Batch | Mode::Against { .. } => 6.0 * rows * rows * dim,
            Mode::Pairs => 6.0 * rows * dim,
        }
    }

    fn side_has_grad(&self, k: usize) -> bool {
        match self.mode {
            Mode::Against { reference_grad, .. } => k == 0 || reference_grad,
            _ => true,
        }
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        let plan = b.plan;
        let partials = b
            .rec
            .rows("partials", size_of::<ContrastivePartial>() as u64, false);
        let scales = b.rec.small("scales", 48);
        let host = matches!(b.path, Path::Host(_));
        // mean and sum have dL/dterm from the number of pairs, known on the host; the device
        // path and mean-nonzero count it on the device (contrastive_finalize).
        let host_scales = host && self.cfg.reduction != Reduction::MeanNonzero;
        let loss = (!host).then(|| b.loss());
        let shape = b
            .rec
            .row_shape(plan.dim4, self.cfg.distance == Distance::Cosine);
        let against = match self.mode {
            Mode::Against { queries_at, .. } => Some(queries_at),
            _ => None,
        };
        let d = Dispatch {
            shape,
            cfg: &self.cfg,
            plan,
            x: b.sides[0].rows(),
            y: b.sides[b.sides.len() - 1].rows(),
            classes: b.classes()?,
            ref_classes: b.classes_of(1)?,
            rows: b.sides.iter().map(|s| s.plan.rows).collect(),
            against,
            partials: &partials,
        };
        let mut steps = Vec::new();
        match self.mode {
            // With gradients and host scales the fused pass computes the terms too.
            Mode::Batch | Mode::Against { .. } if !host_scales || !b.want => {
                steps.extend(d.batch_forward())
            }
            Mode::Batch | Mode::Against { .. } => {}
            Mode::Pairs => steps.extend(d.pairs(&k::PAIRS_FORWARD, None)),
        }
        if !host || (b.want && !host_scales) {
            steps.extend(d.per_window(&k::FINALIZE, |s| s.bind(k::SCALES, scales.clone())));
        }
        if let Some(loss) = loss {
            steps.extend(d.per_window(&k::LOSS, |s| {
                s.bind(k::SCALES, scales.clone())
                    .bind(k::LOSS_OUT, loss.clone())
            }));
        }
        if b.want {
            let grads: Vec<&RowBuf> = b.sides.iter().filter_map(|s| s.grad.as_ref()).collect();
            match self.mode {
                Mode::Batch | Mode::Against { .. } => {
                    let pass = if host_scales {
                        Pass::Fused
                    } else {
                        Pass::Backward
                    };
                    steps.extend(d.batch_backward(pass, &scales, grads[0]));
                    if let (Some(g), Some(_)) =
                        (b.sides[1..].first().and_then(|s| s.grad.as_ref()), against)
                    {
                        steps.extend(d.reference_backward(&scales, g));
                    }
                }
                Mode::Pairs => {
                    steps.extend(d.pairs(&k::PAIRS_BACKWARD, Some((&scales, grads[0], grads[1]))))
                }
            }
            if host_scales {
                let pairs = match self.mode {
                    Mode::Batch => plan.rows * plan.rows.saturating_sub(1) / 2,
                    // Σ_i (M − o − i − 1) over the queries, the pairs j > o + i.
                    Mode::Against {
                        queries_at: Some(o),
                        ..
                    } => (0..d.rows[0])
                        .map(|i| d.rows[1].saturating_sub(o as u64 + i + 1))
                        .sum(),
                    Mode::Against { .. } => d.rows[0] * d.rows[1],
                    Mode::Pairs => plan.rows,
                };
                let s = self.cfg.reduction.term_scale(pairs);
                b.rec
                    .write(&scales, bytemuck::cast_slice(&[s, s, 0.0, 0.0]));
            }
        }
        Ok(Built { steps, partials })
    }

    fn reduce(&self, partials: &[ContrastivePartial], _want: bool) -> Reduced<ContrastiveCounts> {
        let mut c = ContrastiveCounts::default();
        let (mut sim, mut dis) = (0.0f64, 0.0f64);
        // Row order: counts in u64, loss parts (Kahan sum minus its carried compensation) in
        // f64.
        for p in partials {
            sim += f64::from(p.sim_sum) - f64::from(p.sim_carry);
            dis += f64::from(p.dis_sum) - f64::from(p.dis_carry);
            c.similar_pairs += u64::from(p.sim_pairs);
            c.dissimilar_pairs += u64::from(p.dis_pairs);
            c.active_similar += u64::from(p.sim_active);
            c.active_dissimilar += u64::from(p.dis_active);
        }
        Reduced::plain(super::reduce(self.cfg.reduction, sim, dis, &c), c)
    }
}

/// The batch mode's passes over (row window, column window).
#[derive(Clone, Copy)]
enum Pass {
    /// The terms and counts of the pairs j > i.
    Forward,
    /// The gradient and, in the same sweep, the terms and counts.
    Fused,
    /// The gradient alone.
    Backward,
}

/// The uniform parameters and the steps over the windows of one call.
struct Dispatch<'a> {
    /// The pair engine's shape the batch mode runs on.
    shape: RowShape,
    cfg: &'a Contrastive,
    plan: &'a Plan,
    /// The rows the distance kernels read (X, or A in pair mode, or the queries) and B (X
    /// again in a batch, or the references).
    x: &'a RowBuf,
    y: &'a RowBuf,
    classes: &'a RowBuf,
    /// The references' class ids (the batch's again in a batch).
    ref_classes: &'a RowBuf,
    /// Rows of each side.
    rows: Vec<u64>,
    /// Queries against references: where the queries sit among them, if they do.
    against: Option<Option<usize>>,
    partials: &'a RowBuf,
}

impl Dispatch<'_> {
    /// The pairing of the queries' (or the batch's) sweeps.
    fn pairing(&self) -> Pairing {
        match self.against {
            None => Pairing::Batch,
            Some(None) => Pairing::Against,
            Some(Some(_)) => Pairing::AgainstItself,
        }
    }

    /// Windows of side `k`.
    fn windows(&self, k: usize) -> u64 {
        self.plan.for_rows(self.rows[k]).windows
    }

    /// Parameters of the dispatch over row window `r` and column window `c` (of the
    /// queries against the references, or of the batch).
    fn params(&self, r: u64, c: u64, accumulate: bool, last: bool) -> ContrastiveParams {
        let last_side = self.rows.len() - 1;
        self.oriented(r, c, accumulate, last, (0, last_side), self.pairing())
    }

    /// [`Dispatch::params`] with side `a`'s rows against side `o`'s.
    fn oriented(
        &self,
        r: u64,
        c: u64,
        accumulate: bool,
        last: bool,
        (a, o): (usize, usize),
        pairing: Pairing,
    ) -> ContrastiveParams {
        let (cfg, plan) = (self.cfg, self.plan);
        ContrastiveParams {
            rows: self.rows[a] as u32,
            cols: self.rows[o] as u32,
            pairing: pairing as u32,
            dim4: plan.dim4 as u32,
            distance: cfg.distance.kernel_kind(),
            hinge: cfg.hinge.kernel_kind(),
            reduction: cfg.reduction.kernel_code(),
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            last: u32::from(last),
            pos_margin: cfg.pos_margin,
            margin: cfg.margin,
            offset: self.against.flatten().unwrap_or(0) as u32,
            ..Default::default()
        }
    }

    /// A batch kernel over (r, c) on the pair engine, with the bindings every one of them
    /// takes: the queries' (or the batch's) rows against the references' (or its own).
    fn batch_step(&self, pass: Pass, r: u64, c: u64, accumulate: bool) -> Step {
        let params = self.params(r, c, accumulate, false);
        let kernel = match pass {
            Pass::Forward => &k::ROWS_FORWARD,
            Pass::Fused => &k::ROWS_FUSED,
            Pass::Backward => &k::ROWS_BACKWARD,
        };
        Step::new(
            kernel,
            params,
            self.plan.for_rows(self.rows[0]).row_blocks(r),
        )
        .shaped(self.shape)
        .bind(k::ROWS, self.x.win(r))
        .bind(k::COLS, self.y.win(c))
        .bind(k::ROW_CLASS, self.classes.win(r))
        .bind(k::COL_CLASS, self.ref_classes.win(c))
        .bind(k::PARTIALS, self.partials.win(r))
    }

    /// Loss terms and counts of the pairs: a batch's i < j (column windows from the row
    /// window on), or every (query, reference) pair.
    fn batch_forward(&self) -> Vec<Step> {
        let (n, m) = (self.windows(0), self.windows(self.rows.len() - 1));
        let upper = self.against.is_none();
        (0..n)
            .flat_map(|r| (if upper { r } else { 0 }..m).map(move |c| (r, c)))
            .map(|(r, c)| {
                let first = if upper { r } else { 0 };
                self.batch_step(Pass::Forward, r, c, c > first)
            })
            .collect()
    }

    /// The gradient over every (row window, column window), fused with the loss terms or not.
    fn batch_backward(&self, pass: Pass, scales: &Bound, grad: &RowBuf) -> Vec<Step> {
        let (n, m) = (self.windows(0), self.windows(self.rows.len() - 1));
        (0..n)
            .flat_map(|r| (0..m).map(move |c| (r, c)))
            .map(|(r, c)| {
                self.batch_step(pass, r, c, c > 0)
                    .bind(k::SCALES, scales.clone())
                    .bind(k::GRAD, grad.win(r))
            })
            .collect()
    }

    /// The references' gradient: their rows against the queries' (no terms).
    fn reference_backward(&self, scales: &Bound, grad: &RowBuf) -> Vec<Step> {
        let pairing = match self.against {
            Some(Some(_)) => Pairing::RefsAgainstItself,
            _ => Pairing::RefsAgainst,
        };
        let (n, m) = (self.windows(0), self.windows(1));
        (0..m)
            .flat_map(|r| (0..n).map(move |c| (r, c)))
            .map(|(r, c)| {
                let params = self.oriented(r, c, c > 0, false, (1, 0), pairing);
                Step::new(
                    &k::ROWS_BACKWARD,
                    params,
                    self.plan.for_rows(self.rows[1]).row_blocks(r),
                )
                .shaped(self.shape)
                .bind(k::ROWS, self.y.win(r))
                .bind(k::COLS, self.x.win(c))
                .bind(k::ROW_CLASS, self.ref_classes.win(r))
                .bind(k::COL_CLASS, self.classes.win(c))
                .bind(k::PARTIALS, self.partials.win(r))
                .bind(k::SCALES, scales.clone())
                .bind(k::GRAD, grad.win(r))
            })
            .collect()
    }

    /// One single-workgroup dispatch of `kernel` per row window (the partials bound, and
    /// what `bind` adds), flagging the last window.
    fn per_window(&self, kernel: &'static k::K, bind: impl Fn(Step) -> Step) -> Vec<Step> {
        let n = self.plan.windows;
        (0..n)
            .map(|r| {
                bind(
                    Step::new(kernel, self.params(r, r, r > 0, r + 1 == n), 1)
                        .bind(k::PARTIALS, self.partials.win(r)),
                )
            })
            .collect()
    }

    /// Pair mode, one invocation per pair, window by window: the forward kernel, or the
    /// backward one with (scales, dL/dA, dL/dB).
    fn pairs(
        &self,
        kernel: &'static k::K,
        backward: Option<(&Bound, &RowBuf, &RowBuf)>,
    ) -> Vec<Step> {
        (0..self.plan.windows)
            .map(|r| {
                let s = Step::new(
                    kernel,
                    self.params(r, r, false, false),
                    self.plan.row_groups(r),
                )
                .bind(k::ROWS, self.x.win(r))
                .bind(k::COLS, self.y.win(r))
                .bind(k::ROW_CLASS, self.classes.win(r));
                match backward {
                    None => s.bind(k::PARTIALS, self.partials.win(r)),
                    Some((scales, ga, gb)) => s
                        .bind(k::SCALES, scales.clone())
                        .bind(k::GRAD, ga.win(r))
                        .bind(k::GRAD_B, gb.win(r)),
                }
            })
            .collect()
    }
}

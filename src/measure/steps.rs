//! The measurements' dispatches on the pair engine and their one-submit runs: k-NN lists,
//! the largest pair distance, the histograms.

use std::mem::size_of;

use super::kernels::{self as k, KnnEntry, MeasureParams};
use crate::engine::call;
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::engine::recorder::{Recorder, RowBuf};
use crate::engine::rows::{RowShape, ROWS_PER_GROUP};
use crate::engine::sides::{self, Side};
use crate::engine::Gpu;
use crate::error::Result;
use crate::input::Embeddings;
use crate::options::Distance;

/// Which pairs of a dispatch's rows and columns exist (shaders/measure.wgsl `PAIRING_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pairing {
    /// Every (row, column) pair: queries against references.
    All = 0,
    /// The pairs j > i: a batch against itself, each unordered pair once.
    Upper = 1,
    /// Every pair but j = i: queries that are the references, each left out of its own
    /// neighbours.
    NotSelf = 2,
}

/// One measurement over the rows (side 0) against the columns (the last side: side 1, or
/// side 0 again for a batch against itself).
pub(crate) struct Sweep<'a> {
    pub distance: Distance,
    pub pairing: Pairing,
    pub rows: &'a Embeddings<'a>,
    pub cols: Option<&'a Embeddings<'a>>,
}

/// What a run's steps need: the plan, the sides, the engine's shape.
struct Ctx<'a> {
    plan: &'a Plan,
    sides: &'a [Side],
    shape: RowShape,
    distance: Distance,
    pairing: Pairing,
}

impl Ctx<'_> {
    fn x(&self) -> &RowBuf {
        self.sides[0].rows()
    }

    fn y(&self) -> &RowBuf {
        self.sides[self.sides.len() - 1].rows()
    }

    fn rows(&self, side: usize) -> u64 {
        self.sides[side].plan.rows
    }

    /// The parameters of (row window r, column window c); [`Ctx::sweep`] sets the span.
    fn params(&self, r: u64, c: u64) -> MeasureParams {
        let plan = self.plan;
        MeasureParams {
            rows: self.rows(0) as u32,
            dim4: plan.dim4 as u32,
            distance: self.distance.kernel_kind(),
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            cols: self.rows(self.sides.len() - 1) as u32,
            pairing: self.pairing as u32,
            ..Default::default()
        }
    }

    /// `kernel` over every (row window r, column window c), columns in order for each row
    /// window and, within a column window, in spans of `span` columns (one dispatch each);
    /// `bind(step, r, c)` adds the kernel's own slots, `after()` what follows each
    /// dispatch.
    fn sweep(
        &self,
        kernel: &'static k::K,
        span: u64,
        params: impl Fn(MeasureParams) -> MeasureParams,
        bind: impl Fn(Step, u64, u64) -> Step,
        after: impl Fn() -> Vec<Step>,
    ) -> Vec<Step> {
        let rows = self.sides[0].plan;
        let cols = self.sides[self.sides.len() - 1].plan;
        let mut steps = Vec::new();
        // The pairs j > i have none in a column window before the row window.
        let upper = self.pairing == Pairing::Upper;
        for r in 0..rows.windows {
            for c in (if upper { r } else { 0 })..cols.windows {
                for first in (0..cols.rows_in(c)).step_by(span as usize) {
                    let p = MeasureParams {
                        first: first as u32,
                        last: (first + span).min(cols.rows_in(c)) as u32,
                        accumulate: u32::from(c > u64::from(upper) * r || first > 0),
                        ..self.params(r, c)
                    };
                    let step = Step::new(kernel, params(p), rows.row_blocks(r))
                        .shaped(self.shape)
                        .bind(k::ROWS, self.x().win(r))
                        .bind(k::COLS, self.y().win(c));
                    steps.push(bind(step, r, c));
                    steps.extend(after());
                }
            }
        }
        steps
    }
}

/// Loop iterations one k-NN dispatch may take per invocation. lavapipe ends a shader's
/// data-dependent (divergent) loops after a fixed budget of iterations per dispatch
/// (observed: lists filled from the first few thousand columns only, from every
/// configuration of the engine, and complete once dispatches were shorter); a dispatch of
/// s columns takes at most s·(2k + 1) + 2k of them (two rows an invocation, an insertion
/// moving at most k entries), so the columns are split into spans that stay a quarter of
/// the way below 65,536.
const LOOP_BUDGET: u64 = 16_384;

/// Columns of one k-NN dispatch for lists of `k`.
pub(crate) fn knn_span(k: u64) -> u64 {
    (LOOP_BUDGET.saturating_sub(2 * k) / (2 * k + 1)).max(1)
}

/// Uploads the sides (normalised for cosine), records `body`'s steps after the
/// normalisation, submits once and reads back what `body` queued.
fn run(
    gpu: &Gpu,
    during: &'static str,
    sweep: &Sweep<'_>,
    state_bytes: u64,
    classes: &[&[u32]],
    body: impl FnOnce(&mut Recorder<'_>, &Ctx<'_>, &[RowBuf]) -> Result<Vec<Step>>,
) -> Result<Vec<u8>> {
    let inputs: Vec<&Embeddings<'_>> = std::iter::once(sweep.rows).chain(sweep.cols).collect();
    let counts: Vec<u64> = inputs.iter().map(|e| e.rows() as u64).collect();
    let longest = counts.iter().copied().max().unwrap_or(0);
    let dim = sweep.rows.dim() as u64;
    let columns = gpu.sweep_columns(dim);
    let plan = Plan::with_state(gpu.limits(), longest, dim, 0, state_bytes, columns)?;
    let data = call::uploads(gpu, &inputs)?;
    let cols = *counts.last().unwrap_or(&0) as f64;
    let work = 3.0 * counts[0] as f64 * cols * dim as f64;
    let stages = sweep.distance.normalize_stages(false);
    let ((), bytes) = gpu.execute(during, work, |rec| {
        let (sides, class_bufs, widen) =
            call::upload(rec, &plan, &data, stages, classes, |_| false)?;
        let ctx = Ctx {
            plan: &plan,
            sides: &sides,
            shape: rec.row_shape(plan.dim4, sweep.distance == Distance::Cosine),
            distance: sweep.distance,
            pairing: sweep.pairing,
        };
        let mut steps = widen;
        steps.extend(sides::forward(&sides));
        steps.extend(body(rec, &ctx, &class_bufs)?);
        rec.record(&steps)
    })?;
    Ok(bytes)
}

/// Each row's k nearest columns, ascending by (key, index).
pub(crate) fn knn(gpu: &Gpu, sweep: &Sweep<'_>, kk: usize) -> Result<Vec<KnnEntry>> {
    let per_row = (kk * size_of::<KnnEntry>()) as u64;
    let rows = sweep.rows.rows() as u64;
    let bytes = run(
        gpu,
        "k nearest neighbours",
        sweep,
        per_row,
        &[],
        |rec, ctx, _| {
            let lists = rec.rows("knn", per_row, false);
            let steps = ctx.sweep(
                &k::KNN_SWEEP,
                knn_span(kk as u64),
                |p| MeasureParams { k: kk as u32, ..p },
                |s, r, _| s.bind(k::KNN, lists.win(r)),
                Vec::new,
            );
            rec.read_back(&lists.whole(), rows * per_row);
            Ok(steps)
        },
    )?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

/// The largest distance of the pairs.
pub(crate) fn span(gpu: &Gpu, sweep: &Sweep<'_>) -> Result<f32> {
    let rows = sweep.rows.rows() as u64;
    let bytes = run(
        gpu,
        "pair-distance statistics",
        sweep,
        4,
        &[],
        |rec, ctx, _| {
            let top = rec.rows("span", 4, false);
            let steps = ctx.sweep(
                &k::SPAN_SWEEP,
                ctx.plan.window_rows,
                |p| p,
                |s, r, _| s.bind(k::SPAN, top.win(r)),
                Vec::new,
            );
            rec.read_back(&top.whole(), rows * 4);
            Ok(steps)
        },
    )?;
    let top: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(top.into_iter().fold(0.0f32, f32::max))
}

/// Histograms the workgroups of a dispatch add into: workgroup w into w mod HIST_COPIES,
/// so that memory is O(bins) and few workgroups share one.
const HIST_COPIES: u64 = 64;

/// Counts of the pairs per (similar, dissimilar) × (bins, then above `hi`): 2·(bins + 1)
/// values.
pub(crate) fn hist(
    gpu: &Gpu,
    sweep: &Sweep<'_>,
    classes: &[&[u32]],
    bins: usize,
    hi: f32,
) -> Result<Vec<u64>> {
    let slots = 2 * (bins as u64 + 1);
    let bytes = run(
        gpu,
        "pair-distance statistics",
        sweep,
        0,
        classes,
        |rec, ctx, ids| {
            let copies = ctx
                .plan
                .window_rows
                .div_ceil(ROWS_PER_GROUP)
                .min(HIST_COPIES);
            let counts = rec.small("hist_copies", copies * slots * 4);
            let totals = rec.small("hist_totals", slots * 8);
            rec.write(&counts, &vec![0u8; (copies * slots * 4) as usize]);
            rec.write(&totals, &vec![0u8; (slots * 8) as usize]);
            // A copy's u32 counts take the pairs of its workgroups' rows with one span of
            // columns, then go into the u64 totals: spans short enough not to overflow.
            let rows_per_copy = ROWS_PER_GROUP
                * ctx
                    .plan
                    .window_rows
                    .div_ceil(ROWS_PER_GROUP)
                    .div_ceil(copies);
            let span = (u64::from(u32::MAX) / rows_per_copy).min(ctx.plan.window_rows);
            let (row_ids, col_ids) = (&ids[0], &ids[ids.len() - 1]);
            let with = |p: MeasureParams| MeasureParams {
                bins: bins as u32,
                hi,
                copies: copies as u32,
                ..p
            };
            // The flush reads the bins and the copies alone.
            let flush = || {
                vec![
                    Step::new(&k::HIST_FLUSH, with(ctx.params(0, 0)), slots.div_ceil(64))
                        .shaped(ctx.shape)
                        .bind(k::HIST, counts.clone())
                        .bind(k::TOTALS, totals.clone()),
                ]
            };
            let steps = ctx.sweep(
                &k::HIST_SWEEP,
                span,
                with,
                |s, r, c| {
                    s.bind(k::ROW_CLASS, row_ids.win(r))
                        .bind(k::COL_CLASS, col_ids.win(c))
                        .bind(k::HIST, counts.clone())
                },
                flush,
            );
            rec.read_back(&totals, slots * 8);
            Ok(steps)
        },
    )?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}

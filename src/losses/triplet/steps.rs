//! The triplet losses' dispatches, for both paths: explicit triplets window by window, and
//! mined triplets chunk by chunk of 64 anchors.

use std::mem::size_of;

use super::kernels::{self as k, TripletParams, TripletPartial};
use super::{mined_terms, Mining, Mode, Triplet, TripletCounts, TripletTerm};
use crate::engine::call::{Build, Built, LossCall, Path, Reduced};
use crate::engine::kernel::Bound;
use crate::engine::kernel::Step;
use crate::engine::plan::Plan;
use crate::engine::recorder::RowBuf;
use crate::engine::rows::RowShape;
use crate::error::{Error, Result};
use crate::options::{Distance, Reduction};

/// Anchors per chunk of the mined kernels (shaders/triplet.wgsl `CHUNK`).
const CHUNK: u64 = 64;

/// Bytes per batch row of each per-chunk buffer (distances, weights, choices, non-zero
/// lists): 64 values.
pub(crate) const CHUNK_ROW_BYTES: u64 = CHUNK * 4;

const PARTIAL: u64 = size_of::<TripletPartial>() as u64;

/// A validated triplet call.
pub(crate) struct Call {
    pub cfg: Triplet,
    pub mode: Mode,
    /// Mined anchors against reference rows: where the anchors sit among them, whether
    /// the references get their gradient, and the terms counted on the host.
    pub reference: Option<Reference>,
}

/// Mined triplets of anchors against reference rows (the candidates).
#[derive(Clone, Copy)]
pub(crate) struct Reference {
    pub queries_at: Option<usize>,
    pub grad: bool,
    pub terms: u64,
}

impl Call {
    fn reduction(&self) -> Reduction {
        self.cfg.reduction_in(self.mode)
    }

    /// The parameters every dispatch shares.
    fn params(&self, plan: &Plan) -> TripletParams {
        let (soft, margin) = match self.cfg.term {
            TripletTerm::Margin(m) => (0, m),
            TripletTerm::Soft => (1, 0.0),
        };
        TripletParams {
            rows: plan.rows as u32,
            cols: plan.rows as u32,
            dim4: plan.dim4 as u32,
            distance: self.cfg.distance.kernel_kind(),
            soft,
            swap: u32::from(self.cfg.swap),
            margin,
            ..Default::default()
        }
    }
}

impl LossCall for Call {
    type Counts = TripletCounts;
    type Partial = TripletPartial;
    const DURING: &'static str = "triplet loss";

    fn stages(&self) -> usize {
        self.cfg.distance.normalize_stages(self.cfg.normalize)
    }

    fn side_has_grad(&self, k: usize) -> bool {
        k == 0 || self.reference.is_none_or(|r| r.grad)
    }

    fn whole_row_bytes(&self) -> u64 {
        match self.mode {
            Mode::Explicit => 0,
            Mode::Mined(_) => CHUNK_ROW_BYTES,
        }
    }

    fn work(&self, plan: &Plan, want: bool) -> f64 {
        let (b, d) = (plan.rows as f64, plan.dim as f64);
        match self.mode {
            Mode::Explicit => 18.0 * b * d,
            Mode::Mined(mining) => {
                2.0 * b * b * d * if want { 3.0 } else { 1.0 }
                    + match mining {
                        Mining::All => 2.0 * b * b * b,
                        Mining::Semihard => b * b * b,
                        Mining::Hard => b * b,
                    }
            }
        }
    }

    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built> {
        match self.mode {
            Mode::Explicit => Ok(self.explicit(b)),
            Mode::Mined(mining) => self.mined(b, mining),
        }
    }

    fn reduce(&self, partials: &[TripletPartial], _want: bool) -> Reduced<TripletCounts> {
        let mut c = TripletCounts::default();
        let mut sum = 0.0f64;
        // Row order: counts in u64, the loss (Kahan sum minus its carried compensation) in
        // f64, then the reduction.
        for p in partials {
            sum += f64::from(p.sum) - f64::from(p.carry);
            c.terms += u64::from(p.terms_lo) | u64::from(p.terms_hi) << 32;
            c.active += u64::from(p.active_lo) | u64::from(p.active_hi) << 32;
        }
        Reduced::plain(super::reduce(self.reduction(), sum, &c), c)
    }
}

impl Call {
    /// Explicit triplets: one invocation per triplet, window by window, the gradient fused
    /// (dL/dterm = 1/N or 1 is known whatever the path); the device path then reduces the
    /// loss window by window.
    fn explicit(&self, b: &mut Build<'_, '_>) -> Built {
        let plan = b.plan;
        let reduction = self.reduction();
        let partials = b.rec.rows("partials", PARTIAL, false);
        let mut steps = Vec::new();
        for w in 0..plan.windows {
            let p = TripletParams {
                row_start: plan.start(w) as u32,
                window_rows: plan.window_rows as u32,
                scale: reduction.term_scale(plan.rows),
                reduction: reduction.kernel_code(),
                ..self.params(plan)
            };
            let kernel = if b.want {
                &k::EXPLICIT_FUSED
            } else {
                &k::EXPLICIT_FORWARD
            };
            let mut s = Step::new(kernel, p, plan.row_groups(w))
                .bind(k::PARTIALS, partials.win(w))
                .bind(k::ROWS, b.sides[0].rows().win(w))
                .bind(k::COLS, b.sides[1].rows().win(w))
                .bind(k::NEGS, b.sides[2].rows().win(w));
            for (slot, side) in [k::GRAD, k::GRAD_P, k::GRAD_N].into_iter().zip(b.sides) {
                if let Some(g) = &side.grad {
                    s = s.bind(slot, g.win(w));
                }
            }
            steps.push(s);
        }
        if matches!(b.path, Path::Device) {
            steps.extend(self.device_loss(plan, plan.windows, &b.loss(), |w| {
                (partials.win(w), plan.start(w), plan.window_rows)
            }));
        }
        Built { steps, partials }
    }

    /// The device path's loss: `triplet_loss` over `windows` bindings of partials, each
    /// given as (binding, first row, rows).
    fn device_loss(
        &self,
        plan: &Plan,
        windows: u64,
        dev: &Bound,
        partials: impl Fn(u64) -> (Bound, u64, u64),
    ) -> Vec<Step> {
        let reduction = self.reduction().kernel_code();
        (0..windows)
            .map(|w| {
                let (bound, start, rows) = partials(w);
                let p = TripletParams {
                    rows: plan.rows as u32,
                    row_start: start as u32,
                    window_rows: rows as u32,
                    accumulate: u32::from(w > 0),
                    reduction,
                    last: u32::from(w + 1 == windows),
                    ..Default::default()
                };
                Step::new(&k::LOSS, p, 1)
                    .bind(k::PARTIALS, bound)
                    .bind(k::DEV, dev.clone())
            })
            .collect()
    }

    /// Batch-hard on the register-row shape (shaders/triplet_hard.wgsl): the selection in
    /// the sweep, the terms per anchor, then each row's gradient gathered; no chunk buffers.
    fn hard_rows(
        &self,
        b: &mut Build<'_, '_>,
        shape: RowShape,
        scale: Option<f32>,
        capacity: u64,
        binding: u64,
    ) -> Result<Built> {
        let plan = *b.plan;
        let rows = plan.rows;
        // Per-anchor buffers are bound whole (anchors index them globally).
        let bound = whole_rows(
            capacity,
            rows,
            PARTIAL,
            binding,
            "mined triplets: the per-anchor partials (32 bytes a row, one storage binding)",
        )?;
        let classes = b.classes()?.first_rows(bound);
        let partials_rows = b.rec.rows("partials", PARTIAL, false);
        let partials = partials_rows.first_rows(bound);
        let picks = b.rec.rows("picks", 16, false).first_rows(bound);
        let scales = scales_buffer(b, scale);
        let x = b.sides[0].rows();
        let base = self.params(&plan);
        let params = |r: u64, c: u64, accumulate: bool| TripletParams {
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            reduction: self.reduction().kernel_code(),
            ..base
        };
        let n = plan.windows;
        let pairs = || (0..n).flat_map(move |r| (0..n).map(move |c| (r, c)));
        let mut steps: Vec<Step> = pairs()
            .map(|(r, c)| {
                Step::new(&k::ROWS_HARD, params(r, c, c > 0), plan.row_blocks(r))
                    .shaped(shape)
                    .bind(k::ROWS, x.win(r))
                    .bind(k::COLS, x.win(c))
                    .bind(k::CLASSES, classes.clone())
                    .bind(k::PICKS, picks.clone())
            })
            .collect();
        steps.extend((0..n).map(|r| {
            Step::new(&k::ROWS_HARD_TERMS, params(r, r, false), plan.row_groups(r))
                .shaped(shape)
                .bind(k::PARTIALS, partials.clone())
                .bind(k::PICKS, picks.clone())
        }));
        if let Some(g) = b.sides[0].grad.as_ref() {
            if scale.is_none() || self.reduction() == Reduction::MeanNonzero {
                steps.push(
                    Step::new(&k::FINALIZE, params(0, 0, false), 1)
                        .bind(k::PARTIALS, partials.clone())
                        .bind(k::SCALES, scales.clone()),
                );
            }
            steps.extend(pairs().map(|(r, c)| {
                Step::new(&k::ROWS_HARD_GRAD, params(r, c, c > 0), plan.row_blocks(r))
                    .shaped(shape)
                    .bind(k::ROWS, x.win(r))
                    .bind(k::COLS, x.win(c))
                    .bind(k::SCALES, scales.clone())
                    .bind(k::GRAD, g.win(r))
                    .bind(k::PICKS, picks.clone())
            }));
        }
        if matches!(b.path, Path::Device) {
            steps.extend(self.device_loss(&plan, 1, &b.loss(), |_| (partials.clone(), 0, rows)));
        }
        Ok(Built {
            steps,
            partials: partials_rows,
        })
    }

    /// Mined triplets, chunk by chunk of 64 anchors (see shaders/triplet.wgsl).
    fn mined(&self, b: &mut Build<'_, '_>, mining: Mining) -> Result<Built> {
        let plan = *b.plan;
        let rows = plan.rows;
        // Anchors (the batch, or the queries) and candidates (the batch again, or the
        // reference rows), and a candidate that is an anchor's own row.
        let (n, m) = (b.sides[0].plan.rows, b.sides[b.sides.len() - 1].plan.rows);
        let self_at = match self.reference {
            None => 0,
            Some(r) => r.queries_at.map_or(u32::MAX, |o| o as u32),
        };
        let reduction = self.reduction();
        // dL/dterm: from the host's labels, or counted on the device (`triplet_finalize`).
        let scale = match (b.path, self.reference) {
            (Path::Host(_), Some(r)) => Some(reduction.term_scale(r.terms)),
            (Path::Host(ids), None) => {
                Some(reduction.term_scale(mined_terms(ids.unwrap_or(&[]), mining)))
            }
            (Path::Device, _) => None,
        };
        let limits = b.rec.limits().clone();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let capacity = b.rec.capacity();
        let shape = b
            .rec
            .row_shape(plan.dim4, self.cfg.distance == Distance::Cosine);
        if mining == Mining::Hard
            && matches!(shape, RowShape::Registers(_))
            && self.reference.is_none()
        {
            return self.hard_rows(b, shape, scale, capacity, binding);
        }
        // The chunk buffers are bound whole, one row of each per row of the batch.
        let stride = whole_rows(
            capacity,
            rows,
            CHUNK_ROW_BYTES,
            binding,
            "mined triplets: one chunk's distances to the batch (64 × rows × 4 bytes, one \
             storage binding)",
        )?;
        let groups = CHUNK * plan.dim4.div_ceil(64);
        if groups > u64::from(limits.max_compute_workgroups_per_dimension) {
            return Err(Error::LimitExceeded {
                what: "mined triplets: workgroups per dispatch (64 anchors × dim/256)".into(),
                needed: u128::from(groups),
                limit: u128::from(limits.max_compute_workgroups_per_dimension),
                hint: crate::error::SMALLER_DIM,
            });
        }
        let classes = b.classes()?.first_rows(stride);
        let ref_classes = b.classes_of(1)?.first_rows(stride);
        let partials_rows = b.rec.rows("partials", PARTIAL, false);
        let partials = partials_rows.first_rows(stride);
        let scales = scales_buffer(b, scale);
        let mut chunk_buf =
            |role: &'static str| b.rec.rows(role, CHUNK_ROW_BYTES, false).first_rows(stride);
        let dist = chunk_buf("chunk_distances");
        let weights = chunk_buf("chunk_weights");
        let chosen = (mining == Mining::Semihard).then(|| chunk_buf("chunk_choices"));
        let nonzero = chunk_buf("chunk_nonzero");
        let (x, y) = (b.sides[0].rows(), b.sides[b.sides.len() - 1].rows());
        let grad = b.sides[0].grad.as_ref();
        // The candidates' gradient: the batch's own, or the references' when returned.
        let cand_grad = b.sides[b.sides.len() - 1].grad.as_ref();
        let (anchors, cands) = (plan.for_rows(n), plan.for_rows(m));

        let params = |chunk: u64, col_w: u64, accumulate: bool| {
            let start = chunk * CHUNK;
            let row_w = start / plan.window_rows;
            let p = TripletParams {
                row_start: plan.start(row_w) as u32,
                col_start: plan.start(col_w) as u32,
                window_rows: plan.window_rows as u32,
                chunk_local: (start - plan.start(row_w)) as u32,
                stride: stride as u32,
                accumulate: u32::from(accumulate),
                reduction: reduction.kernel_code(),
                rows: n as u32,
                cols: m as u32,
                self_at,
                ..self.params(&plan)
            };
            (row_w, p)
        };
        let mine = match mining {
            Mining::All => &k::MINE_ALL,
            Mining::Hard => &k::MINE_HARD,
            Mining::Semihard => &k::MINE_SEMIHARD,
        };
        let forward = |c: u64, steps: &mut Vec<Step>| {
            for w in 0..cands.windows {
                let (r, p) = params(c, w, false);
                // The pair engine holds the candidates' column window and sweeps the chunk's
                // anchors: the windows (and the counts) swap places.
                let p = TripletParams {
                    row_start: p.col_start,
                    col_start: p.row_start,
                    rows: p.cols,
                    cols: p.rows,
                    ..p
                };
                steps.push(
                    Step::new(&k::ROWS_DISTANCES, p, cands.row_blocks(w))
                        .shaped(shape)
                        .bind(k::ROWS, y.win(w))
                        .bind(k::COLS, x.win(r))
                        .bind(k::DIST, dist.clone()),
                );
            }
            let mut s = Step::new(mine, params(c, 0, false).1, (n - c * CHUNK).min(CHUNK))
                .bind(k::CLASSES, classes.clone())
                .bind(k::REF_CLASSES, ref_classes.clone())
                .bind(k::PARTIALS, partials.clone())
                .bind(k::SCALES, scales.clone())
                .bind(k::DIST, dist.clone())
                .bind(k::WEIGHTS, weights.clone())
                .bind(k::NONZERO, nonzero.clone());
            if let Some(chosen) = &chosen {
                s = s.bind(k::CHOSEN, chosen.clone());
            }
            steps.push(s);
        };
        // Against reference rows, the anchors' gradient starts in their first column window
        // (no candidates' sweep wrote their rows); a batch's continues what it wrote.
        let against = self.reference.is_some();
        let backward = |c: u64, g: &RowBuf, steps: &mut Vec<Step>| {
            if let Some(gc) = cand_grad {
                for w in 0..cands.windows {
                    let (r, p) = params(c, w, c > 0);
                    steps.push(
                        Step::new(&k::GRAD_COLS, p, cands.row_groups(w))
                            .bind(k::ROWS, x.win(r))
                            .bind(k::COLS, y.win(w))
                            .bind(k::WEIGHTS, weights.clone())
                            .bind(k::GRAD, gc.win(w)),
                    );
                }
            }
            for w in 0..cands.windows {
                let (r, p) = params(c, w, !against || w > 0);
                steps.push(
                    Step::new(&k::GRAD_ROWS, p, groups)
                        .bind(k::ROWS, x.win(r))
                        .bind(k::COLS, y.win(w))
                        .bind(k::PARTIALS, partials.clone())
                        .bind(k::WEIGHTS, weights.clone())
                        .bind(k::GRAD, g.win(r))
                        .bind(k::NONZERO, nonzero.clone()),
                );
            }
        };
        let chunks = n.div_ceil(CHUNK);
        let mut steps = Vec::new();
        if b.want && (scale.is_none() || reduction == Reduction::MeanNonzero) {
            // dL/dterm = 1/active (or, counted on the device, 1/terms) needs every chunk's
            // counts first.
            for c in 0..chunks {
                forward(c, &mut steps);
            }
            steps.push(
                Step::new(&k::FINALIZE, params(0, 0, false).1, 1)
                    .bind(k::PARTIALS, partials.clone())
                    .bind(k::SCALES, scales.clone()),
            );
        }
        for c in 0..chunks {
            forward(c, &mut steps);
            if let Some(g) = grad {
                backward(c, g, &mut steps);
            }
        }
        if matches!(b.path, Path::Device) {
            // Mined partials are bound whole: every anchor at once.
            steps.extend(self.device_loss(&anchors, 1, &b.loss(), |_| (partials.clone(), 0, n)));
        }
        Ok(Built {
            steps,
            partials: partials_rows,
        })
    }
}

/// Rows of a buffer bound whole with `per_row` bytes a row: the workspace's capacity when
/// that fits one binding (the same bindings for every batch size), else the batch rounded
/// to 64 rows; `what` names it in the error when even that does not fit.
fn whole_rows(capacity: u64, rows: u64, per_row: u64, binding: u64, what: &str) -> Result<u64> {
    let bound = if capacity * per_row <= binding {
        capacity
    } else {
        rows.div_ceil(64) * 64
    };
    if bound * per_row > binding {
        return Err(Error::LimitExceeded {
            what: what.into(),
            needed: u128::from(bound * per_row),
            limit: u128::from(binding),
            hint: crate::error::SMALLER_BATCH,
        });
    }
    Ok(bound)
}

/// The mined calls' `scales` buffer, with dL/dterm written when the host knows it (else
/// `triplet_finalize` counts it on the device).
fn scales_buffer(b: &mut Build<'_, '_>, scale: Option<f32>) -> Bound {
    let scales = b.rec.small("scales", 48);
    if let Some(scale) = scale {
        b.rec
            .write(&scales, bytemuck::cast_slice(&[scale, 0.0, 0.0, 0.0]));
    }
    scales
}

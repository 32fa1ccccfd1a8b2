//! Triplet losses (explicit triplets, or mined from class labels): configuration and GPU
//! dispatch.

use std::borrow::Cow;

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::params::{TripletParams, TripletPartial};
use crate::gpu::Gpu;
use crate::loss::contrastive::Reduction;
use crate::loss::magnitude::{self, MarginWorst};
use crate::loss::plan::{Plan, ROW_TILE};
use crate::loss::steps::{
    finish_recording, normalize_forward, padded, row_groups, split_readback, upload_sides, Buffers,
    Step,
};
use crate::loss::{Distance, Grads, LossOutput};
use crate::shape::{same_rows, Embeddings, Labels};

/// The term of one triplet, with x = d(a, p) − d(a, n).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TripletTerm {
    /// relu(x + m) with margin m ≥ 0 (default m = 1).
    Margin(f32),
    /// log(1 + exp(x)): the soft margin of Hermans, Beyer and Leibe, "In Defense of the
    /// Triplet Loss" (2017). Explicit triplets only.
    Soft,
}

impl Default for TripletTerm {
    fn default() -> Self {
        Self::Margin(1.0)
    }
}

/// How triplets are formed from a labelled batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mining {
    /// Every (a, p, n) with a ≠ p, label(p) = label(a), label(n) ≠ label(a).
    /// Reductions: mean-nonzero (default) or mean over all such triplets.
    All,
    /// Batch-hard: per anchor with a positive and a negative, its farthest positive and its
    /// nearest negative. Reductions: mean (default) or sum over those anchors.
    Hard,
    /// Semi-hard (TensorFlow Addons' rule): per ordered positive pair (a, p), the nearest
    /// negative farther than p, or the farthest negative when none is. Reductions: mean
    /// (default) or sum over the positive pairs whose anchor has a negative.
    Semihard,
}

impl Mining {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Mining::All => "all",
            Mining::Hard => "hard",
            Mining::Semihard => "semihard",
        }
    }

    /// What one term stands for: "triplets", "anchors" or "positive_pairs".
    pub fn term_kind(self) -> &'static str {
        match self {
            Mining::All => "triplets",
            Mining::Hard => "anchors",
            Mining::Semihard => "positive_pairs",
        }
    }
}

/// Triplet margin loss with its options.
///
/// Explicit triplets (rows i of A, P, N): term relu(d(a,p) − d(a,n) + m), or the soft margin
/// log(1 + exp(d(a,p) − d(a,n))); with `swap` the negative distance is min(d(a,n), d(p,n))
/// (d(a,n) on a tie). Mined from labels: see [`Mining`]. Ties between candidates choose the
/// lowest index, and the gradient goes to the chosen rows only. At d = 0 the distance's
/// gradient is 0, and relu'(0) = 0 (a term is active iff its hinge argument is > 0).
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Labels, Mining, Triplet};
/// let gpu = Gpu::new()?;
/// let data = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 3.0];
/// let x = Embeddings::new("embeddings", &data, 4, 2)?;
/// let labels = Labels::new(&[0, 0, 1, 1]);
/// let out = Triplet::default().mined(&gpu, &x, &labels, Mining::Hard, Grads::Compute)?;
/// println!("loss {} over {} anchors", out.loss, out.counts.terms);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Triplet {
    /// Distance between rows. Default euclidean.
    pub distance: Distance,
    /// Divide every row by max(||row||, 1e-12) first (gradients flow through). Default off.
    pub normalize: bool,
    /// Margin hinge (default, m = 1) or soft margin.
    pub term: TripletTerm,
    /// Explicit triplets: use min(d(a,n), d(p,n)) as the negative distance.
    pub swap: bool,
    /// `None`: the mode's default (explicit, hard, semihard: mean; all: mean-nonzero).
    pub reduction: Option<Reduction>,
}

/// Counts of a triplet call (u64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TripletCounts {
    /// Valid terms: triplets (explicit and `all`), anchors with a positive and a negative
    /// (`hard`), or positive pairs whose anchor has a negative (`semihard`).
    pub terms: u64,
    /// Terms whose argument is > 0: hinge x + m > 0, or x > 0 for the soft margin.
    pub active: u64,
}

/// Output of a triplet call.
pub type TripletOutput = LossOutput<TripletCounts>;

const CHUNK: u64 = 64;
const MODULE: &str = "triplet.wgsl";

impl Triplet {
    /// Sets the margin m (and the margin hinge).
    pub fn margin(mut self, m: f32) -> Self {
        self.term = TripletTerm::Margin(m);
        self
    }

    /// Uses the soft margin log(1 + exp(x)).
    pub fn soft(mut self) -> Self {
        self.term = TripletTerm::Soft;
        self
    }

    /// Turns the swap on or off.
    pub fn swap(mut self, on: bool) -> Self {
        self.swap = on;
        self
    }

    /// Sets the distance.
    pub fn distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }

    /// Turns row normalisation on or off.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// The reduction in force: explicit triplets (`mining` None), or mined.
    pub fn reduction_for(&self, mining: Option<Mining>) -> Reduction {
        self.reduction.unwrap_or(match mining {
            Some(Mining::All) => Reduction::MeanNonzero,
            _ => Reduction::Mean,
        })
    }

    /// Checks the options for explicit triplets (`mining` None) or a mining rule.
    pub fn validate(&self, mining: Option<Mining>) -> Result<()> {
        if let TripletTerm::Margin(m) = self.term {
            if !(m.is_finite() && m >= 0.0 && f64::from(m) <= crate::MAX_ABS_VALUE) {
                return Err(Error::InvalidOption {
                    name: "margin",
                    value: f64::from(m),
                    rule: "must be finite, >= 0 and <= 1e15",
                });
            }
        }
        let reduction = self.reduction_for(mining);
        match mining {
            None if reduction == Reduction::MeanNonzero => Err(Error::OptionConflict {
                option: "reduction mean-nonzero",
                reason: "explicit triplets take mean or sum",
            }),
            None => Ok(()),
            Some(_) if self.swap => Err(Error::OptionConflict {
                option: "swap",
                reason: "it applies to explicit triplets only, not with mining",
            }),
            Some(_) if self.term == TripletTerm::Soft => Err(Error::OptionConflict {
                option: "soft",
                reason: "it applies to explicit triplets only, not with mining",
            }),
            Some(Mining::All) if reduction == Reduction::Sum => Err(Error::OptionConflict {
                option: "reduction sum",
                reason: "mining all takes mean-nonzero or mean",
            }),
            Some(Mining::Hard | Mining::Semihard) if reduction == Reduction::MeanNonzero => {
                Err(Error::OptionConflict {
                    option: "reduction mean-nonzero",
                    reason: "mining hard and semihard take mean or sum",
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// Loss over explicit triplets: row i of `a`, `p` and `n`. Gradients (with
    /// [`Grads::Compute`]) are `[dL/dA, dL/dP, dL/dN]`.
    pub fn explicit(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<TripletOutput> {
        check_explicit(self, a, p, n)?;
        run_explicit(gpu, self, [a, p, n], grads)
    }

    /// Loss over the triplets `mining` forms from the batch `x` and its labels. Gradients
    /// (with [`Grads::Compute`]) are `[dL/dX]`.
    pub fn mined(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        mining: Mining,
        grads: Grads,
    ) -> Result<TripletOutput> {
        check_mined(self, x, labels, mining)?;
        run_mined(gpu, self, mining, x, labels.ids(), grads)
    }

    /// The CPU reference of [`Triplet::explicit`] (f64 accumulation).
    pub fn explicit_cpu(
        &self,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<TripletOutput> {
        check_explicit(self, a, p, n)?;
        Ok(cpu::triplet::explicit(self, a, p, n, grads))
    }

    /// The CPU reference of [`Triplet::mined`] (f64 accumulation).
    pub fn mined_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        mining: Mining,
        grads: Grads,
    ) -> Result<TripletOutput> {
        check_mined(self, x, labels, mining)?;
        Ok(cpu::triplet::mined(self, x, labels.ids(), mining, grads))
    }

    fn params(&self, rows: u64, dim4: u64) -> TripletParams {
        let (soft, margin) = match self.term {
            TripletTerm::Margin(m) => (0, m),
            TripletTerm::Soft => (1, 0.0),
        };
        TripletParams {
            rows: rows as u32,
            dim4: dim4 as u32,
            distance: self.distance.kernel_kind(),
            soft,
            swap: u32::from(self.swap),
            margin,
            ..Default::default()
        }
    }
}

/// Number of terms `mining` forms from these class ids (what the mean divides by).
pub fn mined_terms(classes: &[u32], mining: Mining) -> u64 {
    let mut size = std::collections::HashMap::<u32, u64>::new();
    for &c in classes {
        *size.entry(c).or_default() += 1;
    }
    let b = classes.len() as u64;
    classes
        .iter()
        .map(|c| {
            let s = size[c];
            let (pos, neg) = (s - 1, b - s);
            match mining {
                Mining::All => pos * neg,
                Mining::Hard => u64::from(pos > 0 && neg > 0),
                Mining::Semihard if neg > 0 => pos,
                Mining::Semihard => 0,
            }
        })
        .sum()
}

fn check_explicit(
    cfg: &Triplet,
    a: &Embeddings<'_>,
    p: &Embeddings<'_>,
    n: &Embeddings<'_>,
) -> Result<()> {
    cfg.validate(None)?;
    same_rows("rows of positive", a.rows(), p.rows())?;
    same_rows("rows of negative", a.rows(), n.rows())?;
    same_rows("columns of positive", a.dim(), p.dim())?;
    same_rows("columns of negative", a.dim(), n.dim())?;
    let (rows, dim) = (a.rows(), a.dim());
    let limit = cfg.magnitude_limit(dim, rows as f64)?;
    for x in [a, p, n] {
        magnitude::check(x, limit, || cfg.describe("explicit", rows, dim))?;
    }
    Ok(())
}

fn check_mined(cfg: &Triplet, x: &Embeddings<'_>, labels: &Labels, mining: Mining) -> Result<()> {
    cfg.validate(Some(mining))?;
    same_rows("labels", x.rows(), labels.len())?;
    let terms = mined_terms(labels.ids(), mining) as f64;
    let limit = cfg.magnitude_limit(x.dim(), terms)?;
    magnitude::check(x, limit, || cfg.describe("mined", x.rows(), x.dim()))
}

impl Triplet {
    /// The largest input magnitude whose f32 intermediates stay finite (see
    /// [`magnitude`]), over `terms` terms. A term touches three rows, once each, so a
    /// row's gradient adds up at most 3 × terms contributions.
    pub(crate) fn magnitude_limit(&self, dim: usize, terms: f64) -> Result<f64> {
        let margin = match self.term {
            TripletTerm::Margin(m) => f64::from(m),
            TripletTerm::Soft => 0.0,
        };
        magnitude::margin_limit(&MarginWorst {
            distance: self.distance,
            normalize: self.normalize,
            squared: false,
            margin,
            additive: true,
            dim: dim as f64,
            terms,
            per_row: 3.0 * terms,
        })
    }

    fn describe(&self, mode: &str, rows: usize, dim: usize) -> String {
        magnitude::describe(
            &format!("triplet ({mode})"),
            self.distance,
            false,
            rows,
            dim,
        )
    }
}

/// Sums the per-row partials in row order: counts in u64, the loss (Kahan sum minus its
/// carried compensation) in f64, then the reduction.
fn reduce_partials(reduction: Reduction, partials: &[TripletPartial]) -> (f64, TripletCounts) {
    let mut c = TripletCounts::default();
    let mut sum = 0.0f64;
    for p in partials {
        sum += f64::from(p.sum) - f64::from(p.carry);
        c.terms += u64::from(p.terms_lo) | u64::from(p.terms_hi) << 32;
        c.active += u64::from(p.active_lo) | u64::from(p.active_hi) << 32;
    }
    (reduce(reduction, sum, &c), c)
}

/// The loss from the sum of the terms and the counts; shared with the CPU reference.
pub(crate) fn reduce(reduction: Reduction, sum: f64, c: &TripletCounts) -> f64 {
    let mean = |n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
    match reduction {
        Reduction::Mean => mean(c.terms),
        Reduction::Sum => sum,
        Reduction::MeanNonzero => mean(c.active),
    }
}

/// dL/dterm of mean and sum over `terms` terms.
fn host_scale(reduction: Reduction, terms: u64) -> f32 {
    match reduction {
        Reduction::Sum => 1.0,
        _ if terms == 0 => 0.0,
        _ => (1.0 / terms as f64) as f32,
    }
}

const PARTIAL: u64 = std::mem::size_of::<TripletPartial>() as u64;

/// The call's output from what [`finish_recording`] read back.
fn output(reduction: Reduction, bytes: &[u8], plan: &Plan, dim: usize) -> TripletOutput {
    let (partials, grads) = split_readback(bytes, plan, PARTIAL, dim);
    let (loss, counts) = reduce_partials(reduction, bytemuck::cast_slice(partials));
    LossOutput {
        loss,
        counts,
        grads,
        grad_temperature: None,
    }
}

fn run_explicit(
    gpu: &Gpu,
    cfg: &Triplet,
    inputs: [&Embeddings<'_>; 3],
    grads: Grads,
) -> Result<TripletOutput> {
    let (rows, dim) = (inputs[0].rows() as u64, inputs[0].dim() as u64);
    let data: Vec<Cow<'_, [f32]>> = inputs.iter().map(|e| padded(e)).collect();
    let want = grads == Grads::Compute;
    let reduction = cfg.reduction_for(None);
    let mut plan_out = None;
    let bytes = gpu.execute("triplet loss", 18.0 * (rows * dim) as f64, |rec| {
        let plan = Plan::new(rec, rows, dim, 0)?;
        plan_out = Some(plan);
        let mut bufs = Buffers::default();
        let sides = upload_sides(
            rec,
            &plan,
            &mut bufs,
            &data,
            cfg.distance.normalize_stages(cfg.normalize),
            want,
        );
        let partials = bufs.push(rec.rows_buffer("partials", plan.capacity * PARTIAL, false));
        let steps = explicit_steps(cfg, &plan, &sides, partials);
        finish_recording(rec, &plan, &bufs, steps, &sides, partials, PARTIAL);
        Ok(())
    })?;
    let plan = plan_out.unwrap_or_else(|| unreachable!("execute ran the recorder"));
    Ok(output(reduction, &bytes, &plan, dim as usize))
}

/// The normalisation and per-window kernels of explicit triplets over `sides` (A, P, N).
pub(crate) fn explicit_steps(
    cfg: &Triplet,
    plan: &Plan,
    sides: &[crate::loss::steps::Side],
    partials: usize,
) -> Vec<Step> {
    let (rows, rb) = (plan.rows, plan.row_bytes);
    let reduction = cfg.reduction_for(None);
    let want = sides[0].grad.is_some();
    let mut steps = normalize_forward(plan, sides);
    for w in 0..plan.windows {
        let mut p = cfg.params(rows, plan.dim4);
        p.row_start = plan.start(w) as u32;
        p.window_rows = plan.window_rows as u32;
        p.scale = host_scale(reduction, rows);
        p.reduction = reduction.kernel_code();
        let mut bindings = vec![(5, partials, PARTIAL, w)];
        for (k, side) in sides.iter().enumerate() {
            bindings.push((1 + k as u32, side.rows(), rb, w));
            if let Some(g) = side.grad {
                bindings.push((10 + k as u32, g, rb, w));
            }
        }
        steps.push(Step {
            module: MODULE,
            entry: if want {
                "triplet_explicit_fused"
            } else {
                "triplet_explicit_forward"
            },
            params: bytemuck::bytes_of(&p).to_vec(),
            bindings,
            groups: row_groups(plan, w),
        });
    }
    steps
}

/// Bytes per batch row of each per-chunk buffer (distances, weights, choices, non-zero
/// lists): 64 values.
pub(crate) const CHUNK_ROW_BYTES: u64 = CHUNK * 4;

fn run_mined(
    gpu: &Gpu,
    cfg: &Triplet,
    mining: Mining,
    x: &Embeddings<'_>,
    classes: &[u32],
    grads: Grads,
) -> Result<TripletOutput> {
    let (rows, dim) = (x.rows() as u64, x.dim() as u64);
    let data = [padded(x)];
    let want = grads == Grads::Compute;
    let reduction = cfg.reduction_for(Some(mining));
    let scale = host_scale(reduction, mined_terms(classes, mining));
    let (b, d) = (rows as f64, dim as f64);
    let work = 2.0 * b * b * d * if want { 3.0 } else { 1.0 }
        + match mining {
            Mining::All => 2.0 * b * b * b,
            Mining::Semihard => b * b * b,
            Mining::Hard => b * b,
        };
    let mut plan_out = None;
    let bytes = gpu.execute("triplet loss", work, |rec| {
        let plan = Plan::new(rec, rows, dim, CHUNK_ROW_BYTES)?;
        plan_out = Some(plan);
        let mut bufs = Buffers::default();
        let sides = upload_sides(
            rec,
            &plan,
            &mut bufs,
            &data,
            cfg.distance.normalize_stages(cfg.normalize),
            want,
        );
        let class_buf = rec.rows_buffer("classes", plan.capacity * 4, true);
        rec.write(&class_buf, bytemuck::cast_slice(classes));
        let class_i = bufs.push(class_buf);
        let (steps, partials) = mined_steps(
            rec,
            cfg,
            mining,
            &plan,
            &mut bufs,
            &sides,
            class_i,
            Some(scale),
        )?;
        finish_recording(rec, &plan, &bufs, steps, &sides, partials, PARTIAL);
        Ok(())
    })?;
    let plan = plan_out.unwrap_or_else(|| unreachable!("execute ran the recorder"));
    Ok(output(reduction, &bytes, &plan, dim as usize))
}

/// The chunked kernels of mined triplets over `sides` (one: X), with the class ids in
/// workspace buffer `class_full`. `scale`: dL/dterm from the host, or `None` to count it on
/// the device (`triplet_finalize`) before the gradient pass. Returns the steps (the
/// normalisation first) and the partials' buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mined_steps(
    rec: &mut crate::gpu::Recorder<'_>,
    cfg: &Triplet,
    mining: Mining,
    plan: &Plan,
    bufs: &mut Buffers,
    sides: &[crate::loss::steps::Side],
    class_full: usize,
    scale: Option<f32>,
) -> Result<(Vec<Step>, usize)> {
    let plan = *plan;
    let (rows, want) = (plan.rows, sides[0].grad.is_some());
    let reduction = cfg.reduction_for(Some(mining));
    let limits = rec.limits().clone();
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    // The chunk buffers are bound whole: their row stride is the capacity when that fits
    // one binding (the same bindings for every batch size), else the batch itself.
    let stride = if plan.capacity * CHUNK_ROW_BYTES <= binding {
        plan.capacity
    } else {
        rows.div_ceil(64) * 64
    };
    if stride * CHUNK_ROW_BYTES > binding {
        return Err(Error::LimitExceeded {
            what: "mined triplets: one chunk's distances to the batch (64 × rows × 4 bytes, \
                   one storage binding)"
                .into(),
            needed: stride * CHUNK_ROW_BYTES,
            limit: binding,
        });
    }
    let groups = CHUNK * plan.dim4.div_ceil(64);
    if groups > u64::from(limits.max_compute_workgroups_per_dimension) {
        return Err(Error::LimitExceeded {
            what: "mined triplets: workgroups per dispatch (64 anchors × dim/256)".into(),
            needed: groups,
            limit: u64::from(limits.max_compute_workgroups_per_dimension),
        });
    }
    let cap = plan.capacity;
    let class_i = bufs.push(bufs.list[class_full].window(0, stride * 4));
    let partials_buf = rec.rows_buffer("partials", cap * PARTIAL, false);
    let partials = bufs.push(partials_buf.window(0, stride * PARTIAL));
    let scales = rec.small("scales", 48);
    if let Some(scale) = scale {
        rec.write(&scales, bytemuck::cast_slice(&[scale, 0.0, 0.0, 0.0]));
    }
    let scales = bufs.push(scales);
    let mut chunk_buf = |role: &'static str| {
        let b = rec.rows_buffer(role, cap * CHUNK_ROW_BYTES, false);
        bufs.push(b.window(0, stride * CHUNK_ROW_BYTES))
    };
    let dist = chunk_buf("chunk_distances");
    let weights = chunk_buf("chunk_weights");
    let chosen = (mining == Mining::Semihard).then(|| chunk_buf("chunk_choices"));
    let nonzero = chunk_buf("chunk_nonzero");
    let (xr, grad) = (sides[0].rows(), sides[0].grad);
    let rb = plan.row_bytes;

    let params = |chunk: u64, col_w: u64, accumulate: bool| {
        let start = chunk * CHUNK;
        let row_w = start / plan.window_rows;
        let mut p = cfg.params(rows, plan.dim4);
        p.row_start = plan.start(row_w) as u32;
        p.col_start = plan.start(col_w) as u32;
        p.window_rows = plan.window_rows as u32;
        p.chunk_local = (start - plan.start(row_w)) as u32;
        p.stride = stride as u32;
        p.accumulate = u32::from(accumulate);
        p.reduction = reduction.kernel_code();
        (row_w, bytemuck::bytes_of(&p).to_vec())
    };
    let chunks = rows.div_ceil(CHUNK);
    let mine_entry = match mining {
        Mining::All => "triplet_mine_all",
        Mining::Hard => "triplet_mine_hard",
        Mining::Semihard => "triplet_mine_semihard",
    };
    let forward = |c: u64, steps: &mut Vec<Step>| {
        for w in 0..plan.windows {
            let (r, p) = params(c, w, false);
            steps.push(Step {
                module: MODULE,
                entry: "triplet_distances",
                params: p,
                bindings: vec![(1, xr, rb, r), (2, xr, rb, w), (7, dist, 0, 0)],
                groups: plan.rows_in(w).div_ceil(ROW_TILE),
            });
        }
        let mut bindings = vec![
            (4, class_i, 0, 0),
            (5, partials, 0, 0),
            (6, scales, 0, 0),
            (7, dist, 0, 0),
            (8, weights, 0, 0),
        ];
        bindings.extend(chosen.map(|i| (9, i, 0, 0)));
        bindings.push((13, nonzero, 0, 0));
        steps.push(Step {
            module: MODULE,
            entry: mine_entry,
            params: params(c, 0, false).1,
            bindings,
            groups: (rows - c * CHUNK).min(CHUNK),
        });
    };
    let backward = |c: u64, steps: &mut Vec<Step>| {
        let Some(g) = grad else { return };
        for w in 0..plan.windows {
            let (r, p) = params(c, w, c > 0);
            steps.push(Step {
                module: MODULE,
                entry: "triplet_grad_cols",
                params: p,
                bindings: vec![
                    (1, xr, rb, r),
                    (2, xr, rb, w),
                    (8, weights, 0, 0),
                    (10, g, rb, w),
                ],
                groups: row_groups(&plan, w),
            });
        }
        for w in 0..plan.windows {
            let (r, p) = params(c, w, true);
            steps.push(Step {
                module: MODULE,
                entry: "triplet_grad_rows",
                params: p,
                bindings: vec![
                    (1, xr, rb, r),
                    (2, xr, rb, w),
                    (5, partials, 0, 0),
                    (8, weights, 0, 0),
                    (10, g, rb, r),
                    (13, nonzero, 0, 0),
                ],
                groups,
            });
        }
    };
    let mut steps = normalize_forward(&plan, sides);
    if want && (scale.is_none() || reduction == Reduction::MeanNonzero) {
        // dL/dterm = 1/active (or, counted on the device, 1/terms) needs every chunk's
        // counts first.
        for c in 0..chunks {
            forward(c, &mut steps);
        }
        steps.push(Step {
            module: MODULE,
            entry: "triplet_finalize",
            params: params(0, 0, false).1,
            bindings: vec![(5, partials, 0, 0), (6, scales, 0, 0)],
            groups: 1,
        });
    }
    for c in 0..chunks {
        forward(c, &mut steps);
        backward(c, &mut steps);
    }
    Ok((steps, partials))
}

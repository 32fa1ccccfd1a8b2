//! Contrastive loss: configuration and GPU dispatch.

use std::borrow::Cow;

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::params::{ContrastiveParams, Partial};
use crate::gpu::Gpu;
use crate::loss::magnitude::{self, MarginWorst};
use crate::loss::plan::{Plan, PARTIAL_BYTES, ROW_TILE};
use crate::loss::steps::{
    finish_recording, normalize_forward, padded, row_groups, split_readback, upload_sides, Buffers,
    Step,
};
pub use crate::loss::Distance;
use crate::loss::{Grads, LossOutput};
use crate::shape::{same_rows, Embeddings, Labels};

/// Shape of the margin hinge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hinge {
    /// relu(x)².
    #[default]
    Squared,
    /// relu(x).
    Linear,
}

/// How terms are combined into the loss (shared by the margin losses; each family lists
/// the reductions it accepts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Sum of all terms / number of terms (0 when there are none).
    #[default]
    Mean,
    /// Sum of all terms.
    Sum,
    /// Contrastive: mean of the non-zero similar terms + mean of the non-zero dissimilar
    /// terms, each part 0 when it has no non-zero term; triplet: mean of the non-zero terms,
    /// 0 if none (pytorch-metric-learning's `AvgNonZeroReducer`).
    MeanNonzero,
}

impl Reduction {
    /// The name the CLI uses: "mean", "sum", "mean-nonzero".
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::MeanNonzero => "mean-nonzero",
        }
    }

    /// The kernels' code: 0 mean, 1 sum, 2 mean-nonzero.
    pub(crate) fn kernel_code(self) -> u32 {
        match self {
            Reduction::Mean => 0,
            Reduction::Sum => 1,
            Reduction::MeanNonzero => 2,
        }
    }
}

/// Contrastive loss (Hadsell, Chopra and LeCun, 2006) with its options.
///
/// Pair terms, with d the [`Distance`], p = `pos_margin`, m = `margin`:
/// similar pairs `relu(d − p)²`, dissimilar pairs `relu(m − d)²` (or without the square
/// with [`Hinge::Linear`]), combined by the [`Reduction`]. The defaults give
/// `L = mean(Y·D² + (1 − Y)·max(0, m − D)²)` with m = 1.
///
/// ```no_run
/// use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};
/// let gpu = Gpu::new()?;
/// let data = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0];
/// let x = Embeddings::new("embeddings", &data, 3, 2)?;
/// let labels = Labels::new(&[0, 0, 1]);
/// let out = Contrastive::default().batch(&gpu, &x, &labels, Grads::Compute)?;
/// println!("loss {} over {} pairs", out.loss, out.counts.pairs());
/// let dx = &out.grads[0]; // 3 × 2, row-major
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contrastive {
    /// Distance between rows. Default euclidean.
    pub distance: Distance,
    /// Divide every row by max(||row||, 1e-12) first (gradients flow through). Default off.
    pub normalize: bool,
    /// Margin p below which similar pairs cost nothing. Default 0.
    pub pos_margin: f32,
    /// Margin m beyond which dissimilar pairs cost nothing. Default 1.
    pub margin: f32,
    /// Squared (default) or linear hinge.
    pub hinge: Hinge,
    /// Reduction. Default mean.
    pub reduction: Reduction,
}

impl Default for Contrastive {
    fn default() -> Self {
        Self {
            distance: Distance::Euclidean,
            normalize: false,
            pos_margin: 0.0,
            margin: 1.0,
            hinge: Hinge::Squared,
            reduction: Reduction::Mean,
        }
    }
}

/// Pair counts of a contrastive call (u64: a batch of B rows has B(B−1)/2 pairs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContrastiveCounts {
    /// Pairs labelled similar.
    pub similar_pairs: u64,
    /// Pairs labelled dissimilar.
    pub dissimilar_pairs: u64,
    /// Similar pairs whose term is active (hinge argument d − p > 0).
    pub active_similar: u64,
    /// Dissimilar pairs whose term is active (hinge argument m − d > 0).
    pub active_dissimilar: u64,
}

impl ContrastiveCounts {
    /// All pairs.
    pub fn pairs(&self) -> u64 {
        self.similar_pairs + self.dissimilar_pairs
    }

    /// All active terms.
    pub fn active_terms(&self) -> u64 {
        self.active_similar + self.active_dissimilar
    }
}

/// Output of a contrastive call.
pub type ContrastiveOutput = LossOutput<ContrastiveCounts>;

impl Contrastive {
    /// Sets the margin m.
    pub fn margin(mut self, m: f32) -> Self {
        self.margin = m;
        self
    }

    /// Sets the positive margin p.
    pub fn pos_margin(mut self, p: f32) -> Self {
        self.pos_margin = p;
        self
    }

    /// Sets the distance.
    pub fn distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }

    /// Sets the hinge.
    pub fn hinge(mut self, h: Hinge) -> Self {
        self.hinge = h;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Turns row normalisation on or off.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }

    /// Checks the margins: finite, ≥ 0 and at most 1e15.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("pos_margin", self.pos_margin), ("margin", self.margin)] {
            if !(v.is_finite() && v >= 0.0 && f64::from(v) <= crate::MAX_ABS_VALUE) {
                return Err(Error::InvalidOption {
                    name,
                    value: f64::from(v),
                    rule: "must be finite, >= 0 and <= 1e15",
                });
            }
        }
        Ok(())
    }

    /// Loss over explicit pairs: row i of `a` with row i of `b`, `similar[i]` its label.
    /// Gradients (with [`Grads::Compute`]) are `[dL/dA, dL/dB]`.
    pub fn pairs(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_pairs(self, a, b, similar)?;
        let flags: Vec<u32> = similar.iter().map(|&s| u32::from(s)).collect();
        run(gpu, self, Mode::Pairs, a, Some(b), &flags, grads)
    }

    /// Loss over every unordered pair {i, j}, i < j, of the batch `x`; a pair is similar iff
    /// its labels are equal. Gradients (with [`Grads::Compute`]) are `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_batch(self, x, labels)?;
        run(gpu, self, Mode::Batch, x, None, labels.ids(), grads)
    }

    /// The CPU reference of [`Contrastive::pairs`] (f64 accumulation).
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_pairs(self, a, b, similar)?;
        Ok(cpu::contrastive::pairs(self, a, b, similar, grads))
    }

    /// The CPU reference of [`Contrastive::batch`] (f64 accumulation).
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_batch(self, x, labels)?;
        Ok(cpu::contrastive::batch(self, x, labels, grads))
    }

    pub(crate) fn params(&self, rows: usize, dim4: usize) -> ContrastiveParams {
        ContrastiveParams {
            rows: rows as u32,
            dim4: dim4 as u32,
            distance: self.distance.kernel_kind(),
            hinge: match self.hinge {
                Hinge::Squared => 0,
                Hinge::Linear => 1,
            },
            reduction: self.reduction.kernel_code(),
            pos_margin: self.pos_margin,
            margin: self.margin,
            ..Default::default()
        }
    }
}

fn check_pairs(
    cfg: &Contrastive,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    similar: &[bool],
) -> Result<()> {
    cfg.validate()?;
    same_rows("rows of B", a.rows(), b.rows())?;
    same_rows("columns of B", a.dim(), b.dim())?;
    same_rows("pair labels", a.rows(), similar.len())?;
    let limit = cfg.magnitude_limit(Mode::Pairs, a.rows(), a.dim())?;
    for x in [a, b] {
        magnitude::check(x, limit, || cfg.describe(Mode::Pairs, a.rows(), a.dim()))?;
    }
    Ok(())
}

fn check_batch(cfg: &Contrastive, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
    cfg.validate()?;
    same_rows("labels", x.rows(), labels.len())?;
    let limit = cfg.magnitude_limit(Mode::Batch, x.rows(), x.dim())?;
    magnitude::check(x, limit, || cfg.describe(Mode::Batch, x.rows(), x.dim()))
}

impl Contrastive {
    /// The largest input magnitude whose f32 intermediates stay finite (see
    /// [`magnitude`]); shared with the device-resident calls.
    pub(crate) fn magnitude_limit(&self, mode: Mode, rows: usize, dim: usize) -> Result<f64> {
        let n = rows as f64;
        let (terms, per_row) = match mode {
            Mode::Pairs => (n, 1.0),
            Mode::Batch => (n * (n - 1.0) / 2.0, n - 1.0),
        };
        magnitude::margin_limit(&MarginWorst::contrastive(self, dim, terms, per_row))
    }

    fn describe(&self, mode: Mode, rows: usize, dim: usize) -> String {
        let family = match mode {
            Mode::Pairs => "contrastive pairs",
            Mode::Batch => "contrastive batch",
        };
        let squared = self.hinge == Hinge::Squared;
        magnitude::describe(family, self.distance, squared, rows, dim)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Pairs,
    Batch,
}

const MODULE: &str = "contrastive.wgsl";

fn run(
    gpu: &Gpu,
    cfg: &Contrastive,
    mode: Mode,
    a: &Embeddings<'_>,
    b: Option<&Embeddings<'_>>,
    classes: &[u32],
    grads: Grads,
) -> Result<ContrastiveOutput> {
    let (rows, dim) = (a.rows() as u64, a.dim() as u64);
    let data: Vec<Cow<'_, [f32]>> = std::iter::once(a).chain(b).map(padded).collect();
    let want = grads == Grads::Compute;
    let work = match mode {
        Mode::Batch => 6.0 * (rows as f64) * (rows as f64) * dim as f64,
        Mode::Pairs => 6.0 * rows as f64 * dim as f64,
    };
    let mut plan_out = None;
    let bytes = gpu.execute("contrastive loss", work, |rec| {
        let plan = Plan::new(rec, rows, dim, 0)?;
        plan_out = Some(plan);
        let cap = plan.capacity;
        let mut bufs = Buffers::default();
        let sides = upload_sides(
            rec,
            &plan,
            &mut bufs,
            &data,
            cfg.distance.normalize_stages(cfg.normalize),
            want,
        );
        let class_buf = rec.rows_buffer("classes", cap * 4, true);
        rec.write(&class_buf, bytemuck::cast_slice(classes));
        let class_i = bufs.push(class_buf);
        let partials_i = bufs.push(rec.rows_buffer("partials", cap * PARTIAL_BYTES, false));
        let scales_i = bufs.push(rec.small("scales", 48));
        let grad_i: Vec<usize> = sides.iter().filter_map(|s| s.grad).collect();
        let (x_a, x_b) = (sides[0].rows(), sides[sides.len() - 1].rows());
        let rb = plan.row_bytes;

        let mut steps = normalize_forward(&plan, &sides);
        let d = Dispatch {
            cfg,
            plan: &plan,
            x: x_a,
            classes: class_i,
            partials: partials_i,
        };
        let n = plan.windows;
        let host_scales = cfg.reduction != Reduction::MeanNonzero;
        // Forward: loss terms and counts. Batch mode with gradients under mean or sum skips it:
        // the fused pass below computes them along with the gradient.
        match mode {
            Mode::Batch if !want || !host_scales => steps.extend(d.batch_forward()),
            Mode::Batch => {}
            Mode::Pairs => {
                for r in 0..n {
                    steps.push(Step {
                        module: MODULE,
                        entry: "contrastive_pairs_forward",
                        params: d.params(r, r, false, false),
                        bindings: vec![
                            (1, x_a, rb, r),
                            (2, x_b, rb, r),
                            (3, class_i, 4, r),
                            (5, partials_i, PARTIAL_BYTES, r),
                        ],
                        groups: row_groups(&plan, r),
                    });
                }
            }
        }
        // mean-nonzero: dL/dterm depends on the active counts, summed on the device.
        if want && !host_scales {
            steps.extend(d.per_window("contrastive_finalize", &[(6, scales_i)]));
        }
        if want {
            match mode {
                Mode::Batch => {
                    let entry = if host_scales {
                        "contrastive_batch_fused"
                    } else {
                        "contrastive_batch_backward"
                    };
                    steps.extend(d.batch_backward(entry, scales_i, grad_i[0]));
                }
                Mode::Pairs => {
                    for r in 0..n {
                        steps.push(Step {
                            module: MODULE,
                            entry: "contrastive_pairs_backward",
                            params: d.params(r, r, false, false),
                            bindings: vec![
                                (1, x_a, rb, r),
                                (2, x_b, rb, r),
                                (3, class_i, 4, r),
                                (6, scales_i, 0, 0),
                                (7, grad_i[0], rb, r),
                                (8, grad_i[1], rb, r),
                            ],
                            groups: row_groups(&plan, r),
                        });
                    }
                }
            }
            if host_scales {
                let s = scale_for(cfg.reduction, mode, rows);
                rec.write(
                    &bufs.list[scales_i],
                    bytemuck::cast_slice(&[s, s, 0.0, 0.0]),
                );
            }
        }
        finish_recording(rec, &plan, &bufs, steps, &sides, partials_i, PARTIAL_BYTES);
        Ok(())
    })?;

    let plan = plan_out.unwrap_or_else(|| unreachable!("execute ran the recorder"));
    let (partial_bytes, grads) = split_readback(&bytes, &plan, PARTIAL_BYTES, dim as usize);
    let partials: &[Partial] = bytemuck::cast_slice(partial_bytes);
    let (loss, counts) = reduce_partials(cfg.reduction, partials);
    Ok(LossOutput {
        loss,
        counts,
        grads,
        grad_temperature: None,
    })
}

/// The uniform parameters and the in-batch kernels' steps over the windows of one call,
/// shared by the host path and the device-resident one (`contrastive_device.rs`).
pub(crate) struct Dispatch<'a> {
    pub cfg: &'a Contrastive,
    pub plan: &'a Plan,
    /// The rows the distance kernels read (X).
    pub x: usize,
    pub classes: usize,
    pub partials: usize,
}

impl Dispatch<'_> {
    /// Parameters of the dispatch over row window `r` and column window `c`.
    pub fn params(&self, r: u64, c: u64, accumulate: bool, last: bool) -> Vec<u8> {
        let plan = self.plan;
        let mut p = self.cfg.params(plan.rows as usize, plan.dim4 as usize);
        p.row_start = plan.start(r) as u32;
        p.col_start = plan.start(c) as u32;
        p.window_rows = plan.window_rows as u32;
        p.accumulate = u32::from(accumulate);
        p.last = u32::from(last);
        bytemuck::bytes_of(&p).to_vec()
    }

    /// The bindings every batch kernel over (r, c) takes.
    fn core(&self, r: u64, c: u64) -> Vec<(u32, usize, u64, u64)> {
        let rb = self.plan.row_bytes;
        vec![
            (1, self.x, rb, r),
            (2, self.x, rb, c),
            (3, self.classes, 4, r),
            (4, self.classes, 4, c),
            (5, self.partials, PARTIAL_BYTES, r),
        ]
    }

    fn tiles(&self, r: u64) -> u64 {
        self.plan.rows_in(r).div_ceil(ROW_TILE)
    }

    /// Loss terms and counts of the pairs i < j (column windows from the row window on).
    pub fn batch_forward(&self) -> Vec<Step> {
        let n = self.plan.windows;
        let mut steps = Vec::new();
        for r in 0..n {
            for c in r..n {
                steps.push(Step {
                    module: MODULE,
                    entry: "contrastive_batch_forward",
                    params: self.params(r, c, c > r, false),
                    bindings: self.core(r, c),
                    groups: self.tiles(r),
                });
            }
        }
        steps
    }

    /// One single-workgroup dispatch of `entry` per row window (the partials and `extra`
    /// whole buffers bound), flagging the last window.
    pub fn per_window(&self, entry: &'static str, extra: &[(u32, usize)]) -> Vec<Step> {
        let n = self.plan.windows;
        (0..n)
            .map(|r| {
                let mut bindings = vec![(5, self.partials, PARTIAL_BYTES, r)];
                bindings.extend(extra.iter().map(|&(b, i)| (b, i, 0, 0)));
                Step {
                    module: MODULE,
                    entry,
                    params: self.params(r, r, r > 0, r + 1 == n),
                    bindings,
                    groups: 1,
                }
            })
            .collect()
    }

    /// The gradient over every (row window, column window), by `entry` (fused or not).
    pub fn batch_backward(&self, entry: &'static str, scales: usize, grad: usize) -> Vec<Step> {
        let (n, rb) = (self.plan.windows, self.plan.row_bytes);
        let mut steps = Vec::new();
        for r in 0..n {
            for c in 0..n {
                let mut bindings = self.core(r, c);
                bindings.push((6, scales, 0, 0));
                bindings.push((7, grad, rb, r));
                steps.push(Step {
                    module: MODULE,
                    entry,
                    params: self.params(r, c, c > 0, false),
                    bindings,
                    groups: self.tiles(r),
                });
            }
        }
        steps
    }
}

/// dL/dterm of mean and sum, known on the host: 1/pairs or 1 (as f32 bits for `scales`).
fn scale_for(reduction: Reduction, mode: Mode, rows: u64) -> f32 {
    let pairs = match mode {
        Mode::Batch => rows * rows.saturating_sub(1) / 2,
        Mode::Pairs => rows,
    };
    match reduction {
        Reduction::Sum => 1.0,
        _ if pairs == 0 => 0.0,
        _ => (1.0 / pairs as f64) as f32,
    }
}

/// Sums the per-row partials in row order: counts in u64, loss parts (Kahan sum minus its
/// carried compensation) in f64.
fn reduce_partials(reduction: Reduction, partials: &[Partial]) -> (f64, ContrastiveCounts) {
    let mut c = ContrastiveCounts::default();
    let (mut sim, mut dis) = (0.0f64, 0.0f64);
    for p in partials {
        sim += f64::from(p.sim_sum) - f64::from(p.sim_carry);
        dis += f64::from(p.dis_sum) - f64::from(p.dis_carry);
        c.similar_pairs += u64::from(p.sim_pairs);
        c.dissimilar_pairs += u64::from(p.dis_pairs);
        c.active_similar += u64::from(p.sim_active);
        c.active_dissimilar += u64::from(p.dis_active);
    }
    (reduce(reduction, sim, dis, &c), c)
}

/// Combines the similar and dissimilar sums by the reduction; shared with the CPU reference.
pub(crate) fn reduce(reduction: Reduction, sim: f64, dis: f64, c: &ContrastiveCounts) -> f64 {
    let mean = |s: f64, n: u64| if n == 0 { 0.0 } else { s / n as f64 };
    match reduction {
        Reduction::Mean => mean(sim + dis, c.pairs()),
        Reduction::Sum => sim + dis,
        Reduction::MeanNonzero => mean(sim, c.active_similar) + mean(dis, c.active_dissimilar),
    }
}

//! Softmax-contrastive losses (NT-Xent, SupCon, CLIP): configuration and GPU dispatch.

use std::borrow::Cow;

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::params::{SoftmaxParams, SoftmaxPartial, SoftmaxStats};
use crate::gpu::Gpu;
use crate::loss::magnitude;
use crate::loss::plan::{Plan, ROW_TILE};
use crate::loss::steps::{
    finish_recording, normalize_forward, padded, row_groups, split_readback, upload_sides, Buffers,
    Step,
};
use crate::loss::{Grads, LossOutput};
use crate::shape::{same_rows, Embeddings, Labels};

/// Which softmax-contrastive loss. With s_ij the cosine similarity of rows i and j (rows
/// divided by max(||row||, 1e-12), gradients through the division) and τ the temperature,
/// the logits are z_ij = s_ij / τ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxLoss {
    /// NT-Xent (SimCLR; pytorch-metric-learning's `NTXentLoss`), on a labelled batch: for
    /// every ordered positive pair (a, p), a ≠ p, same label,
    /// ℓ = −z_ap + log(exp(z_ap) + Σ over n with label(n) ≠ label(a) of exp(z_an)),
    /// averaged over the positive pairs. Two augmented views of N samples without labels
    /// are the batch [view 1; view 2] with labels (0..N, 0..N). Default τ = 0.07.
    NtXent,
    /// Supervised contrastive loss (Khosla et al. 2020, "L_out"), on a labelled batch: for
    /// each anchor a with at least one positive,
    /// ℓ_a = −(1/|P(a)|) Σ over p in P(a) of [z_ap − log Σ over k ≠ a of exp(z_ak)],
    /// averaged over those anchors. Default τ = 0.1.
    SupCon,
    /// CLIP's symmetric cross-entropy over two views A and B (N×D each), row i of A matching
    /// row i of B: (CE(S, I) + CE(Sᵀ, I)) / 2 with S_ij = s(a_i, b_j)/τ, each CE averaged over
    /// its N rows. Default τ = 0.07.
    Clip,
}

impl SoftmaxLoss {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            SoftmaxLoss::NtXent => "ntxent",
            SoftmaxLoss::SupCon => "supcon",
            SoftmaxLoss::Clip => "clip",
        }
    }

    /// What one term stands for: "positive_pairs", "anchors" or "pairs" (matched rows).
    pub fn term_kind(self) -> &'static str {
        match self {
            SoftmaxLoss::NtXent => "positive_pairs",
            SoftmaxLoss::SupCon => "anchors",
            SoftmaxLoss::Clip => "pairs",
        }
    }

    /// The default temperature.
    pub fn default_temperature(self) -> f32 {
        match self {
            SoftmaxLoss::SupCon => 0.1,
            _ => 0.07,
        }
    }

    fn family(self) -> u32 {
        match self {
            SoftmaxLoss::NtXent => 0,
            SoftmaxLoss::SupCon => 1,
            SoftmaxLoss::Clip => 2,
        }
    }
}

/// The smallest temperature accepted: below it the logits of the input domain leave the
/// range where f32 keeps a useful number of digits.
pub const MIN_TEMPERATURE: f32 = 1e-4;

/// A softmax-contrastive loss and its temperature. Every call also returns dL/dτ (in
/// [`LossOutput::grad_temperature`], with [`Grads::Compute`]), so that a learnable
/// temperature (CLIP's logit scale) can be trained.
///
/// Computed as the fused kernels do (Inf-CL): tiles of the similarity matrix, an online
/// log-sum-exp per row and a backward pass that recomputes the tiles; no B×B buffer exists.
/// A batch without any positive pair (NT-Xent, SupCon) gives loss 0, zero gradients and
/// `terms` 0.
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Labels, Softmax};
/// let gpu = Gpu::new()?;
/// // Two views of 2 samples: rows 0 and 2 are one sample, rows 1 and 3 the other.
/// let data = [1.0f32, 0.0, 0.0, 1.0, 0.9, 0.1, 0.2, 0.8];
/// let x = Embeddings::new("embeddings", &data, 4, 2)?;
/// let out = Softmax::ntxent().batch(&gpu, &x, &Labels::new(&[0, 1, 0, 1]), Grads::Compute)?;
/// println!("loss {} dL/dtau {:?}", out.loss, out.grad_temperature);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Softmax {
    /// Which loss.
    pub loss: SoftmaxLoss,
    /// τ: finite, ≥ 1e-4 and ≤ 1e15.
    pub temperature: f32,
}

/// Counts of a softmax-contrastive call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftmaxCounts {
    /// Terms averaged: positive pairs (NT-Xent), anchors with a positive (SupCon), matched
    /// pairs N (CLIP).
    pub terms: u64,
}

/// Output of a softmax-contrastive call.
pub type SoftmaxOutput = LossOutput<SoftmaxCounts>;

const MODULE: &str = "softmax.wgsl";
const PARTIAL: u64 = std::mem::size_of::<SoftmaxPartial>() as u64;
const STATS: u64 = std::mem::size_of::<SoftmaxStats>() as u64;
/// `DIST_DOT` in shaders/common/distance.wgsl.
const DIST_DOT: u32 = 3;

impl Softmax {
    /// `loss` at its default temperature.
    pub fn new(loss: SoftmaxLoss) -> Self {
        Self {
            loss,
            temperature: loss.default_temperature(),
        }
    }

    /// NT-Xent, τ = 0.07.
    pub fn ntxent() -> Self {
        Self::new(SoftmaxLoss::NtXent)
    }

    /// SupCon, τ = 0.1.
    pub fn supcon() -> Self {
        Self::new(SoftmaxLoss::SupCon)
    }

    /// CLIP, τ = 0.07.
    pub fn clip() -> Self {
        Self::new(SoftmaxLoss::Clip)
    }

    /// Sets the temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Checks the temperature.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= MIN_TEMPERATURE && f64::from(t) <= crate::MAX_ABS_VALUE) {
            return Err(Error::InvalidOption {
                name: "temperature",
                value: f64::from(t),
                rule: "must be finite, >= 1e-4 and <= 1e15",
            });
        }
        Ok(())
    }

    /// NT-Xent or SupCon over the batch `x` and its labels. Gradients (with
    /// [`Grads::Compute`]) are `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        check_batch(self, x, labels)?;
        run(gpu, self, &[x], labels.ids(), grads)
    }

    /// CLIP over the views `a` and `b` (row i of each match). Gradients (with
    /// [`Grads::Compute`]) are `[dL/dA, dL/dB]`.
    pub fn pairs(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        check_pairs(self, a, b)?;
        let ids: Vec<u32> = (0..a.rows() as u32).collect();
        run(gpu, self, &[a, b], &ids, grads)
    }

    /// The CPU reference of [`Softmax::batch`] (f64 accumulation).
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        check_batch(self, x, labels)?;
        let r = cpu::softmax::batch_f64(
            self.loss,
            f64::from(self.temperature),
            &cpu::distance::widen(x),
            x.dim(),
            labels.ids(),
            grads,
        );
        Ok(r.narrow())
    }

    /// The CPU reference of [`Softmax::pairs`] (f64 accumulation).
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        check_pairs(self, a, b)?;
        let r = cpu::softmax::clip_f64(
            f64::from(self.temperature),
            &cpu::distance::widen(a),
            &cpu::distance::widen(b),
            a.dim(),
            grads,
        );
        Ok(r.narrow())
    }
}

fn check_batch(cfg: &Softmax, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
    cfg.validate()?;
    if cfg.loss == SoftmaxLoss::Clip {
        return Err(Error::OptionConflict {
            option: "loss clip",
            reason: "it takes two views A and B (pairs), not a labelled batch",
        });
    }
    same_rows("labels", x.rows(), labels.len())?;
    let limit = magnitude::softmax_limit(x.dim(), x.rows(), cfg.temperature)?;
    magnitude::check(x, limit, || cfg.describe(x.rows(), x.dim()))
}

fn check_pairs(cfg: &Softmax, a: &Embeddings<'_>, b: &Embeddings<'_>) -> Result<()> {
    cfg.validate()?;
    if cfg.loss != SoftmaxLoss::Clip {
        return Err(Error::OptionConflict {
            option: "loss ntxent/supcon",
            reason: "it takes a labelled batch, not two views",
        });
    }
    same_rows("rows of b", a.rows(), b.rows())?;
    same_rows("columns of b", a.dim(), b.dim())?;
    let limit = magnitude::softmax_limit(a.dim(), 2 * a.rows(), cfg.temperature)?;
    for x in [a, b] {
        magnitude::check(x, limit, || cfg.describe(a.rows(), a.dim()))?;
    }
    Ok(())
}

impl Softmax {
    fn describe(&self, rows: usize, dim: usize) -> String {
        format!(
            "{:?} (temperature {}), {rows} rows of dimension {dim}",
            self.loss, self.temperature
        )
    }
}

/// Number of terms the loss averages over, from the class ids (CLIP: the rows).
pub fn softmax_terms(loss: SoftmaxLoss, classes: &[u32]) -> u64 {
    if loss == SoftmaxLoss::Clip {
        return classes.len() as u64;
    }
    let mut size = std::collections::HashMap::<u32, u64>::new();
    for &c in classes {
        *size.entry(c).or_default() += 1;
    }
    size.values()
        .map(|&n| match loss {
            SoftmaxLoss::NtXent => n * (n - 1),
            _ if n > 1 => n,
            _ => 0,
        })
        .sum()
}

/// The loss and dL/dτ from the per-row partials (row order, f64), shared with nothing else:
/// the CPU reference reduces its own f64 terms the same way.
fn reduce_partials(cfg: &Softmax, partials: &[SoftmaxPartial], want: bool) -> (f64, f64, u64) {
    let (mut sum, mut tau, mut terms) = (0.0f64, 0.0f64, 0u64);
    for p in partials {
        sum += f64::from(p.loss) + f64::from(p.loss_b);
        tau += f64::from(p.grad_tau);
        terms += u64::from(p.terms);
    }
    let per_term = match cfg.loss {
        SoftmaxLoss::Clip => 2.0 * terms as f64,
        _ => terms as f64,
    };
    let loss = if terms == 0 { 0.0 } else { sum / per_term };
    let grad_tau = if want {
        -tau / f64::from(cfg.temperature)
    } else {
        0.0
    };
    (loss, grad_tau, terms)
}

fn run(
    gpu: &Gpu,
    cfg: &Softmax,
    inputs: &[&Embeddings<'_>],
    classes: &[u32],
    grads: Grads,
) -> Result<SoftmaxOutput> {
    let (rows, dim) = (inputs[0].rows() as u64, inputs[0].dim() as u64);
    let data: Vec<Cow<'_, [f32]>> = inputs.iter().map(|e| padded(e)).collect();
    let want = grads == Grads::Compute;
    let terms = softmax_terms(cfg.loss, classes);
    let scale = if terms == 0 {
        0.0
    } else {
        (1.0 / terms as f64) as f32
    };
    let sweeps = match (cfg.loss, want) {
        (SoftmaxLoss::NtXent, false) => 2.0,
        (SoftmaxLoss::NtXent, true) => 3.0,
        (SoftmaxLoss::SupCon, false) => 1.0,
        (SoftmaxLoss::SupCon, true) => 2.0,
        (SoftmaxLoss::Clip, false) => 2.0,
        (SoftmaxLoss::Clip, true) => 4.0,
    };
    let work = sweeps * 2.0 * (rows as f64) * (rows as f64) * dim as f64;
    let mut plan_out = None;
    let bytes = gpu.execute("softmax loss", work, |rec| {
        let plan = Plan::new(rec, rows, dim, 0)?;
        plan_out = Some(plan);
        let mut bufs = Buffers::default();
        // Every side is normalised once: the similarity is the dot product of unit rows.
        let sides = upload_sides(rec, &plan, &mut bufs, &data, 1, want);
        let class_buf = rec.rows_buffer("classes", plan.capacity * 4, true);
        rec.write(&class_buf, bytemuck::cast_slice(classes));
        let class_i = bufs.push(class_buf);
        let built = build(
            rec,
            &plan,
            &mut bufs,
            cfg,
            &sides,
            class_i,
            Some(scale),
            want,
        );
        finish_recording(
            rec,
            &plan,
            &bufs,
            built.steps,
            &sides,
            built.partials,
            PARTIAL,
        );
        Ok(())
    })?;
    let plan = plan_out.unwrap_or_else(|| unreachable!("execute ran the recorder"));
    let (partials, grads) = split_readback(&bytes, &plan, PARTIAL, dim as usize);
    let (loss, grad_tau, terms) = reduce_partials(cfg, bytemuck::cast_slice(partials), want);
    Ok(LossOutput {
        loss,
        counts: SoftmaxCounts { terms },
        grads,
        grad_temperature: want.then_some(grad_tau),
    })
}

/// A call's dispatch list once its sides and class ids are on the device, and the buffers
/// it leaves results in.
pub(crate) struct Built {
    pub steps: Vec<Step>,
    /// Per-row partials (`SoftmaxPartial`).
    pub partials: usize,
    /// The device-resident results `[loss, Σ terms, terms, dL/dterm, dL/dτ, ...]`.
    pub dev: usize,
}

/// The normalisation, sweeps, finish and (with `want`) backward steps of one call over
/// `sides` (one: a batch; two: CLIP's A and B). `scale`: dL/dterm known on the host, or
/// `None` to count the terms on the device first (softmax_count) and reduce the loss and
/// dL/dτ there too (softmax_loss).
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    rec: &mut crate::gpu::Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    cfg: &Softmax,
    sides: &[crate::loss::steps::Side],
    class_i: usize,
    scale: Option<f32>,
    want: bool,
) -> Built {
    let cap = plan.capacity;
    let rows = plan.rows;
    let inv_temp = (1.0 / f64::from(cfg.temperature)) as f32;
    let partials = bufs.push(rec.rows_buffer("partials", cap * PARTIAL, false));
    const STATS_ROLES: [&str; 2] = ["stats_a", "stats_b"];
    let stats: Vec<usize> = (0..sides.len())
        .map(|k| bufs.push(rec.rows_buffer(STATS_ROLES[k], cap * STATS, false)))
        .collect();
    let dev = bufs.push(crate::device::loss_buffer(rec));
    let rb = plan.row_bytes;
    let n = plan.windows;
    let params = |r: u64, c: u64, accumulate: bool, side: usize| {
        bytemuck::bytes_of(&SoftmaxParams {
            rows: rows as u32,
            dim4: plan.dim4 as u32,
            distance: DIST_DOT,
            family: cfg.loss.family(),
            row_start: plan.start(r) as u32,
            col_start: plan.start(c) as u32,
            window_rows: plan.window_rows as u32,
            accumulate: u32::from(accumulate),
            side: side as u32,
            device: u32::from(scale.is_none()),
            last: u32::from(r + 1 == n),
            inv_temp,
            scale: scale.unwrap_or(0.0),
            ..Default::default()
        })
        .to_vec()
    };
    // (row side, column side) of each orientation: the batch against itself, or A
    // against B and B against A.
    let orientations: Vec<(usize, usize)> = if sides.len() == 1 {
        vec![(0, 0)]
    } else {
        vec![(0, 1), (1, 0)]
    };
    let tiles = |r: u64| plan.rows_in(r).div_ceil(ROW_TILE);
    // Every (row window, column window) of every orientation: the tile kernels.
    let sweep = |entry: &'static str, steps: &mut Vec<Step>| {
        for &(a, b) in &orientations {
            for r in 0..n {
                for c in 0..n {
                    let mut bindings = vec![
                        (1, sides[a].rows(), rb, r),
                        (2, sides[b].rows(), rb, c),
                        (3, class_i, 4, r),
                        (4, class_i, 4, c),
                    ];
                    match sides[a].grad {
                        Some(grad) if entry == "softmax_grad" => bindings.extend([
                            (6, stats[a], STATS, r),
                            (7, stats[b], STATS, c),
                            (8, partials, PARTIAL, r),
                            (9, grad, rb, r),
                        ]),
                        _ => bindings.push((5, stats[a], STATS, r)),
                    }
                    steps.push(Step {
                        module: MODULE,
                        entry,
                        params: params(r, c, c > 0, a),
                        bindings,
                        groups: tiles(r),
                    });
                }
            }
        }
    };
    // One dispatch per row window of side 0 (or of every side) of a one-workgroup or
    // one-invocation-per-row kernel.
    let per_window = |entry: &'static str, all_sides: bool, steps: &mut Vec<Step>| {
        let count = if all_sides { orientations.len() } else { 1 };
        for &(a, _) in &orientations[..count] {
            for r in 0..n {
                let (bindings, groups) = match entry {
                    "softmax_count" => (vec![(5, stats[a], STATS, r), (10, dev, 0, 0)], 1),
                    "softmax_loss" => (vec![(8, partials, PARTIAL, r), (10, dev, 0, 0)], 1),
                    _ => (
                        vec![
                            (5, stats[a], STATS, r),
                            (8, partials, PARTIAL, r),
                            (10, dev, 0, 0),
                        ],
                        row_groups(plan, r),
                    ),
                };
                steps.push(Step {
                    module: MODULE,
                    entry,
                    params: params(r, r, r > 0, a),
                    bindings,
                    groups,
                });
            }
        }
    };
    let mut steps = normalize_forward(plan, sides);
    sweep("softmax_stats", &mut steps);
    if cfg.loss == SoftmaxLoss::NtXent {
        sweep("softmax_positives", &mut steps);
    }
    if scale.is_none() {
        per_window("softmax_count", false, &mut steps);
    }
    per_window("softmax_finish", true, &mut steps);
    if want {
        sweep("softmax_grad", &mut steps);
    }
    if scale.is_none() {
        per_window("softmax_loss", false, &mut steps);
    }
    Built {
        steps,
        partials,
        dev,
    }
}

//! One pipeline for every call: validate (the family, before this) → plan (pure) → steps →
//! execute on the host path or record for the device-resident path → read back → reduce.
//!
//! A family implements [`LossCall`] for a validated call (its options and mode) and gets
//! both paths from [`run_host`] and [`run_device`]: the uploads or gathers of its inputs and
//! class ids, the normalisation stages before and after its own steps, the scatter of the
//! gradients into the caller's buffers, and the read back.

use std::borrow::Cow;

use bytemuck::Pod;

use super::gpu::Gpu;
use super::kernel::{self, Bound, Kernel, Step};
use super::plan::{self, Plan};
use super::recorder::{Recorder, RowBuf};
use super::resident::{self, DeviceClasses, DeviceLoss};
use super::rows::RowShape;
use super::sides::{self, Side};
use crate::error::{Error, Result};
use crate::input::{DeviceGrad, DeviceRows, Embeddings, Precision, Target, Values};
use crate::options::{Gradient, Grads, LossOutput};

/// Where dL/dterm comes from.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// The host path: the class ids are known here (`None` without labels), so counts a
    /// mean divides by can be computed on the host.
    Host(Option<&'a [u32]>),
    /// The device-resident path: the labels are only on the device, so such counts are
    /// counted there, and the family reduces its loss into [`Build::loss`].
    Device,
}

/// What a family's steps are built from.
pub(crate) struct Build<'r, 'a> {
    pub rec: &'r mut Recorder<'a>,
    pub plan: &'r Plan,
    /// The input sides, normalised as the family asked ([`LossCall::stages`]).
    pub sides: &'r [Side],
    /// The class ids, one u32 per row, when the call has labels: one array for every side,
    /// or one for each of the first two sides.
    pub classes: &'r [RowBuf],
    pub path: Path<'r>,
    pub want: bool,
}

/// The device-resident calls' result buffer: 8 words, the loss first (each family's shader
/// documents the rest). Held by the workspace, so every call of a step gets the same one.
fn device_loss(rec: &mut Recorder<'_>) -> Bound {
    rec.small("device_loss", 32)
}

impl Build<'_, '_> {
    /// The device-resident calls' result buffer (allocated on first use: host calls of
    /// most families never need it).
    pub fn loss(&mut self) -> Bound {
        device_loss(self.rec)
    }

    /// The class ids of a call whose family always has them (the first side's).
    pub fn classes(&self) -> Result<&RowBuf> {
        self.classes.first().ok_or(Error::Validation {
            during: "recording a dispatch",
            description: "internal: this call needs class ids and has none".into(),
        })
    }

    /// The class ids of side `k`: its own array, or the one every side shares.
    pub fn classes_of(&self, k: usize) -> Result<&RowBuf> {
        match self.classes.get(k) {
            Some(c) => Ok(c),
            None => self.classes(),
        }
    }
}

/// What the host path's partials reduce to: [`LossOutput`] but the rows' gradients.
pub(crate) struct Reduced<C> {
    pub loss: f64,
    pub counts: C,
    /// dL/dτ (softmax) or dL/dt′ (SigLIP).
    pub grad_temperature: Option<f64>,
    /// dL/db (SigLIP).
    pub grad_bias: Option<f64>,
}

impl<C> Reduced<C> {
    /// A loss and counts without scalar gradients.
    pub fn plain(loss: f64, counts: C) -> Self {
        Self {
            loss,
            counts,
            grad_temperature: None,
            grad_bias: None,
        }
    }
}

/// One sweep of side `a`'s rows against side `o`'s on the pair engine (see
/// [`Build::sweep`]).
pub(crate) struct Sweep<P: Pod> {
    pub kernel: &'static Kernel<P>,
    pub shape: RowShape,
    /// (row side, column side).
    pub sides: (usize, usize),
    /// The row side's rows the sweep covers (its first ones).
    pub rows: u64,
}

impl Build<'_, '_> {
    /// A step of the sweep for every (row window r, column window c), c inner: its
    /// parameters `params(r, c)`, the sides' rows and class ids bound at the pair engine's
    /// slots ([`kernel::ROWS`] and the others), then what `bind(step, r, c)` adds.
    pub fn sweep<P: Pod>(
        &self,
        sweep: &Sweep<P>,
        params: &dyn Fn(u64, u64) -> P,
        bind: &dyn Fn(Step, u64, u64) -> Step,
    ) -> Result<Vec<Step>> {
        let (a, o) = sweep.sides;
        let (ca, co) = (self.classes_of(a)?, self.classes_of(o)?);
        let (rp, cp) = (
            self.plan.for_rows(sweep.rows),
            self.plan.for_rows(self.sides[o].plan.rows),
        );
        let mut steps = Vec::new();
        for r in 0..rp.windows {
            for c in 0..cp.windows {
                let step = Step::new(sweep.kernel, params(r, c), rp.row_blocks(r))
                    .shaped(sweep.shape)
                    .bind(kernel::ROWS, self.sides[a].rows().win(r))
                    .bind(kernel::COLS, self.sides[o].rows().win(c))
                    .bind(kernel::ROW_CLASS, ca.win(r))
                    .bind(kernel::COL_CLASS, co.win(c));
                steps.push(bind(step, r, c));
            }
        }
        Ok(steps)
    }
}

/// What a family's dispatches left behind.
pub(crate) struct Built {
    pub steps: Vec<Step>,
    /// Per-row partials (a [`LossCall::Partial`] per row), read back by the host path.
    pub partials: RowBuf,
}

/// A validated call of one family: its options and mode.
pub(crate) trait LossCall {
    type Counts;
    /// The per-row partial result the host path reads back.
    type Partial: Pod;
    /// What the call was doing, for device errors: "contrastive loss".
    const DURING: &'static str;
    /// Normalisation stages of every input side before the family's kernels.
    fn stages(&self) -> usize;
    /// Bytes per row of row-indexed buffers the family binds whole (see [`Plan::new`]).
    fn whole_row_bytes(&self) -> u64 {
        0
    }
    /// Rows every window's length and start are a multiple of (besides 64): groups of rows
    /// a family's kernels read together (sub-centre ArcFace's classes) stay in one window.
    fn window_multiple(&self) -> u64 {
        1
    }
    /// Loop iterations the family's map adds per column of a sweep, for rows of `dim4`
    /// vec4s (they count against lavapipe's loop budget: the windows shrink to match).
    fn extra_loops(&self, _dim4: u64) -> u64 {
        0
    }
    /// The call's model work in FLOPs (scales the automatic timeout).
    fn work(&self, plan: &Plan, want: bool) -> f64;
    /// The family's dispatches, between the normalisation and its backward pass.
    fn steps(&self, b: &mut Build<'_, '_>) -> Result<Built>;
    /// The host path's loss, counts and scalar gradients from the per-row partials.
    fn reduce(&self, partials: &[Self::Partial], want: bool) -> Reduced<Self::Counts>;
    /// Whether the device-resident result holds dL/dτ or dL/dt′ (word 5).
    fn has_grad_temperature(&self, _want: bool) -> bool {
        false
    }
    /// Whether the device-resident result holds dL/db (word 6).
    fn has_grad_bias(&self, _want: bool) -> bool {
        false
    }
    /// The class-proxy losses: the device-resident result counts the queries whose label
    /// names no class (word 3), and `classes` is that number of classes.
    fn class_check(&self) -> Option<u64> {
        None
    }
    /// Whether input side `k` gets a gradient when gradients are wanted (a detached
    /// reference set does not).
    fn side_has_grad(&self, _k: usize) -> bool {
        true
    }
}

/// The workspace roles of the class id arrays (one shared, or one per side).
const CLASSES: [&str; 2] = ["classes", "classes_b"];

/// The workspace roles of the host path's f16 uploads, one per side.
const HALVES: [&str; 3] = ["a_half", "b_half", "n_half"];

/// A side's rows as the host path uploads them, zero-padded to whole vec4s.
pub(crate) enum Upload<'a> {
    /// Written into the side's raw rows.
    F32(Cow<'a, [f32]>),
    /// Written into a workspace buffer of their own and widened by the f16 gather.
    F16(Cow<'a, [half::f16]>),
}

/// The uploads of `inputs`; f16 inputs need `SHADER_F16` ([`Error::MissingFeature`]).
pub(crate) fn uploads<'a>(gpu: &Gpu, inputs: &[&Embeddings<'a>]) -> Result<Vec<Upload<'a>>> {
    if inputs.iter().any(|e| e.precision() == Precision::F16) {
        gpu.require_f16("f16 inputs")?;
    }
    Ok(inputs
        .iter()
        .map(|e| match e.values() {
            Values::F32(v) => Upload::F32(sides::padded(v, e.dim())),
            Values::F16(v) => Upload::F16(sides::padded(v, e.dim())),
        })
        .collect())
}

/// The host path's inputs on the device: reserves the plan's rows, writes each side's
/// zero-padded rows (`data`, one per side) and the class ids (none, one array for every
/// side, or one for each of the first two). Side k gets a gradient when `want_grad(k)`.
/// Returns the sides, the class id arrays and the steps that widen f16 sides.
pub(crate) fn upload(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    data: &[Upload<'_>],
    stages: usize,
    classes: &[&[u32]],
    want_grad: impl Fn(usize) -> bool,
) -> Result<(Vec<Side>, Vec<RowBuf>, Vec<Step>)> {
    let dim4 = plan.dim4 * 4;
    let counts: Vec<u64> = data
        .iter()
        .map(|d| match d {
            Upload::F32(v) => v.len() as u64 / dim4,
            Upload::F16(v) => v.len() as u64 / dim4,
        })
        .collect();
    rec.reserve(plan);
    let sides = sides::alloc(rec, plan, &counts, stages, want_grad);
    let mut widen = Vec::new();
    for (k, (side, d)) in sides.iter().zip(data).enumerate() {
        match d {
            Upload::F32(v) => rec.write(&side.raw().whole(), bytemuck::cast_slice(v)),
            Upload::F16(v) => {
                let half = rec.rows(HALVES[k], dim4 * 2, true);
                rec.write(&half.whole(), bytemuck::cast_slice(v));
                let src = resident::Source {
                    whole: half.whole(),
                    offset: 0,
                    dim: plan.dim,
                    stride: dim4,
                    precision: Precision::F16,
                };
                // Validated on the host: the flags are not read.
                let (flags, _) = resident::flags(rec);
                widen.extend(resident::gather_rows(rec, side, &src, &flags, f64::MAX)?);
            }
        }
    }
    let class_bufs = classes
        .iter()
        .zip(CLASSES)
        .map(|(ids, role)| {
            let b = rec.rows(role, 4, true);
            rec.write(&b.whole(), bytemuck::cast_slice(ids));
            b
        })
        .collect();
    Ok((sides, class_bufs, widen))
}

/// Runs `call` on host slices: uploads the inputs (and `classes`: none, one array for every
/// side, or one for each of the first two), runs, reads back. The sides may differ in
/// length; the partials are the first side's rows.
pub(crate) fn run_host<L: LossCall>(
    gpu: &Gpu,
    call: &L,
    inputs: &[&Embeddings<'_>],
    classes: &[&[u32]],
    grads: Grads,
) -> Result<LossOutput<L::Counts>> {
    let counts: Vec<u64> = inputs.iter().map(|e| e.rows() as u64).collect();
    let (rows, dim) = (counts[0], inputs[0].dim() as u64);
    let longest = counts.iter().copied().max().unwrap_or(rows);
    let columns = plan::with_extra_loops(gpu.sweep_columns(dim), call.extra_loops(dim.div_ceil(4)));
    let plan = Plan::new(gpu.limits(), longest, dim, call.whole_row_bytes(), columns)?
        .whole_groups(call.window_multiple())?;
    let want = grads.wanted();
    let data = uploads(gpu, inputs)?;
    let partial = std::mem::size_of::<L::Partial>() as u64;
    let ((), bytes) = gpu.execute(L::DURING, call.work(&plan, want), |rec| {
        let (sides, class_bufs, widen) = upload(rec, &plan, &data, call.stages(), classes, |k| {
            want && call.side_has_grad(k)
        })?;
        let built = call.steps(&mut Build {
            rec,
            plan: &plan,
            sides: &sides,
            classes: &class_bufs,
            path: Path::Host(classes.first().copied()),
            want,
        })?;
        let mut steps = widen;
        steps.extend(sides::forward(&sides));
        steps.extend(built.steps);
        steps.extend(sides::backward(&sides));
        rec.record(&steps)?;
        rec.read_back(&built.partials.whole(), rows * partial);
        for s in &sides {
            if let Some(g) = &s.grad {
                rec.read_back(&g.whole(), s.plan.rows * plan.row_bytes);
            }
        }
        Ok(())
    })?;
    let (partials, mut rest) = bytes.split_at((rows * partial) as usize);
    let grads = counts
        .iter()
        .enumerate()
        .filter(|&(k, _)| want && call.side_has_grad(k))
        .map(|(k, &n)| {
            let (c, tail) = rest.split_at((n * plan.row_bytes) as usize);
            rest = tail;
            let padded: &[f32] = bytemuck::cast_slice(c);
            let values = padded
                .chunks_exact((plan.dim4 * 4) as usize)
                .flat_map(|r| &r[..dim as usize])
                .copied()
                .collect();
            let precision = match grads {
                Grads::ComputeF32 => Precision::F32,
                _ => inputs[k].precision(),
            };
            Gradient::rounded(inputs[k].what(), values, dim as usize, precision)
        })
        .collect::<Result<_>>()?;
    let partials: Vec<L::Partial> = bytemuck::pod_collect_to_vec(partials);
    let r = call.reduce(&partials, want);
    Ok(LossOutput {
        loss: r.loss,
        counts: r.counts,
        grads,
        grad_temperature: r.grad_temperature,
        grad_bias: r.grad_bias,
    })
}

/// Runs `call` on the caller's buffers: gathers the inputs (checking their values against
/// `limit`) and class ids, runs, scatters the gradients, keeps the loss on the device.
/// The layouts were checked by the family.
pub(crate) fn run_device<L: LossCall>(
    gpu: &Gpu,
    call: &L,
    inputs: &[DeviceRows<'_>],
    classes: DeviceClasses<'_>,
    grads: &[Option<DeviceGrad<'_>>],
    target: Target<'_>,
    limit: f64,
) -> Result<DeviceLoss> {
    let counts: Vec<u64> = inputs.iter().map(|x| x.rows as u64).collect();
    let dim = inputs[0].dim as u64;
    let longest = counts.iter().copied().max().unwrap_or(0);
    let columns = plan::with_extra_loops(gpu.sweep_columns(dim), call.extra_loops(dim.div_ceil(4)));
    let plan = Plan::new(gpu.limits(), longest, dim, call.whole_row_bytes(), columns)?
        .whole_groups(call.window_multiple())?;
    let want = grads.iter().any(Option::is_some);
    let f16 = inputs.iter().any(|x| x.precision == Precision::F16)
        || grads
            .iter()
            .flatten()
            .any(|g| g.precision == Precision::F16);
    if f16 {
        gpu.require_f16("f16 inputs and gradients")?;
    }
    gpu.execute_device(L::DURING, target, |rec| {
        rec.reserve(&plan);
        let sides = sides::alloc(rec, &plan, &counts, call.stages(), |k| {
            want && call.side_has_grad(k)
        });
        let arrays = match classes {
            DeviceClasses::None => 0,
            DeviceClasses::PerSide(_) | DeviceClasses::LabelsThenIota(_) => 2,
            _ => 1,
        };
        let class_bufs: Vec<RowBuf> = CLASSES[..arrays]
            .iter()
            .map(|role| rec.rows(role, 4, true))
            .collect();
        let (mut steps, flags) =
            resident::gather(rec, &plan, &sides, inputs, (&classes, &class_bufs), limit)?;
        let built = call.steps(&mut Build {
            rec,
            plan: &plan,
            sides: &sides,
            classes: &class_bufs,
            path: Path::Device,
            want,
        })?;
        steps.extend(sides::forward(&sides));
        steps.extend(built.steps);
        steps.extend(sides::backward(&sides));
        steps.extend(resident::scatter(rec, &plan, &sides, grads, &flags)?);
        rec.record(&steps)?;
        Ok(DeviceLoss {
            loss: device_loss(rec),
            flags,
            limit,
            dim,
            call: rec.next_device_call(),
            temperature: call.has_grad_temperature(want),
            bias: call.has_grad_bias(want),
            classes: call.class_check(),
        })
    })
}

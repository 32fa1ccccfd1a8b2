//! Device-resident calls: the caller's buffers checked against the documented layout,
//! gathered into the workspace and scattered back (shaders/device.wgsl), and the loss kept
//! on the device ([`DeviceLoss`]).

use crate::engine::rows::GradLayout;
use bytemuck::{Pod, Zeroable};

use super::gpu::Gpu;
use super::kernel::Bound;
#[cfg(test)]
use super::kernel::Layout;
use super::kernel::{mirrored, Kernel, Slot, Step, Table};
use super::plan::Plan;
use super::recorder::{Recorder, RowBuf};
use super::shader::{self, Module};
use super::sides::Side;
use crate::error::{Error, Result};
use crate::input::{DeviceGrad, DeviceLabels, DeviceRows, Precision};

pub(crate) static MODULE: Module = Module {
    file: "device.wgsl",
    source: include_str!("../../shaders/device.wgsl"),
    includes: &[&shader::TRANSFER],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// Keep in sync with `DeviceParams` in shaders/common/transfer.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct DeviceParams {
    pub rows: u32,
    pub dim: u32,
    pub dim4: u32,
    pub row_start: u32,
    pub window_rows: u32,
    /// Index of the window's first value in the bound caller range.
    pub first: u32,
    /// Caller values between row starts.
    pub stride: u32,
    pub accumulate: u32,
    pub scale: f32,
    /// Gathers flag values beyond this magnitude (the call's limit, at most 1e15).
    pub max_abs: f32,
    /// An f16 scatter's flags word (1 + the side).
    pub flag: u32,
    pub _pad: u32,
}
mirrored!(
    DeviceParams,
    "DeviceParams",
    [
        rows,
        dim,
        dim4,
        row_start,
        window_rows,
        first,
        stride,
        accumulate,
        scale,
        max_abs,
        flag,
        _pad
    ]
);

const SRC: Slot = Slot::read(1, "src");
const ROWS: Slot = Slot::read_write(2, "rows");
const IDS: Slot = Slot::read_write(3, "ids");
const GRAD: Slot = Slot::read(4, "grad");
const DST: Slot = Slot::read_write(5, "dst");
const FLAGS: Slot = Slot::read_write(6, "flags");

static GATHER_ROWS: Kernel<DeviceParams> =
    Kernel::new(&MODULE, "device_gather_rows", &[SRC, ROWS, FLAGS]);
static GATHER_IDS: Kernel<DeviceParams> = Kernel::new(&MODULE, "device_gather_ids", &[SRC, IDS]);
static RESET: Kernel<DeviceParams> = Kernel::new(&MODULE, "device_reset", &[FLAGS]);
static IOTA: Kernel<DeviceParams> = Kernel::new(&MODULE, "device_iota", &[IDS]);
static SCATTER: Kernel<DeviceParams> = Kernel::new(&MODULE, "device_scatter_grad", &[GRAD, DST]);

/// The f16 forms of the gather and the scatter: a module of their own, built only where the
/// device has `SHADER_F16`.
pub(crate) static HALF_MODULE: Module = Module {
    file: "half.wgsl",
    source: include_str!("../../shaders/half.wgsl"),
    includes: &[&shader::TRANSFER],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

static HALF_GATHER: Kernel<DeviceParams> =
    Kernel::new(&HALF_MODULE, "half_gather_rows", &[SRC, ROWS, FLAGS]);
static HALF_SCATTER: Kernel<DeviceParams> =
    Kernel::new(&HALF_MODULE, "half_scatter_grad", &[GRAD, DST, FLAGS]);

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[
        &GATHER_ROWS.info,
        &GATHER_IDS.info,
        &RESET.info,
        &IOTA.info,
        &SCATTER.info,
    ],
    #[cfg(test)]
    structs: &[Layout::of::<DeviceParams>()],
};

pub(crate) static HALF_TABLE: Table = Table {
    #[cfg(test)]
    module: &HALF_MODULE,
    kernels: &[&HALF_GATHER.info, &HALF_SCATTER.info],
    #[cfg(test)]
    structs: &[Layout::of::<DeviceParams>()],
};

/// What an f16 gradient's overflow flag (flags word 1 + k) calls side k's input.
const SIDE_NAMES: [&str; 3] = ["the first input", "the second input", "the third input"];

/// Where a device-resident call's class ids come from.
pub(crate) enum DeviceClasses<'a> {
    /// No labels (explicit triplets).
    None,
    /// The caller's u32 values.
    Labels(DeviceLabels<'a>),
    /// Row indices 0..rows (CLIP: row i of A matches row i of B).
    Iota,
    /// The caller's u32 values for each of two sides (queries', references').
    PerSide([DeviceLabels<'a>; 2]),
    /// The caller's u32 values for the first side, the row indices for the second (the
    /// class-proxy losses: the queries' labels, and W's rows as classes 0..C).
    LabelsThenIota(DeviceLabels<'a>),
}

/// The loss of a device-resident call, on the device: a small buffer of f32 values
/// `[loss, ...]` in metric-loss's workspace, valid until the next device-resident call on
/// the same [`Gpu`] (from any thread), and the flag of values outside the input domain.
/// Reading it after that call fails with [`Error::StaleDeviceLoss`] rather than returning
/// the later call's loss.
pub struct DeviceLoss {
    pub(crate) loss: Bound,
    pub(crate) flags: Bound,
    /// The largest input magnitude the call accepted (see [`Error::TooLargeForLoss`]).
    pub(crate) limit: f64,
    /// Values per row of the inputs (for the row and column of a flagged value).
    pub(crate) dim: u64,
    /// Which device-resident call on its `Gpu` this was: the buffers hold its results only
    /// until the next one.
    pub(crate) call: u64,
    /// Softmax losses and SigLIP: dL/dτ (dL/dt′) is word 5 of the loss buffer.
    pub(crate) temperature: bool,
    /// SigLIP: dL/db is word 6.
    pub(crate) bias: bool,
    /// The class-proxy losses: word 3 counts the queries whose label names none of this
    /// many classes.
    pub(crate) classes: Option<u64>,
}

impl DeviceLoss {
    /// The buffer holding the loss as its first f32 (for the caller's own kernels; it is
    /// overwritten by the next call on this `Gpu`).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.loss.buffer
    }

    /// Reads the loss back (waits for the work; after the caller has submitted its
    /// encoder). Fails with [`Error::DeviceInputOutOfDomain`] when an embedding value was
    /// NaN, infinite or beyond the call's limit (1e15, or less where the loss's f32
    /// intermediates need it at this size: [`Error::TooLargeForLoss`]), with
    /// [`Error::GradientOverflow`] when an f16 gradient had a value beyond f16's range, and
    /// with
    /// [`Error::StaleDeviceLoss`] after a later device-resident call on this `Gpu`.
    pub fn read(&self, gpu: &Gpu) -> Result<f64> {
        Ok(self.read_all(gpu)?.0)
    }

    /// The loss and, for the softmax losses with a gradient, dL/dτ (f32 word 5 of the
    /// buffer); see [`DeviceLoss::read`].
    pub fn read_all(&self, gpu: &Gpu) -> Result<(f64, Option<f64>)> {
        let (loss, temperature, _) = self.read_scalars(gpu)?;
        Ok((loss, temperature))
    }

    /// The loss, dL/dτ (softmax) or dL/dt′ (SigLIP), and SigLIP's dL/db (f32 words 0, 5
    /// and 6), each scalar gradient where the call computed it; see [`DeviceLoss::read`].
    pub fn read_scalars(&self, gpu: &Gpu) -> Result<(f64, Option<f64>, Option<f64>)> {
        let bytes = gpu.read_device(self.call, &[(&self.flags, 16), (&self.loss, 28)])?;
        let (flags, words): (&[u32], &[u32]) = bytemuck::cast_slice(&bytes).split_at(4);
        if flags[0] != u32::MAX {
            let index = u64::from(flags[0]);
            return Err(Error::DeviceInputOutOfDomain {
                what: "embeddings",
                row: index / self.dim,
                column: index % self.dim,
                limit: self.limit,
            });
        }
        if let Some(k) = (1..4).find(|&k| flags[k] != u32::MAX) {
            let index = u64::from(flags[k]);
            return Err(Error::GradientOverflow {
                what: SIDE_NAMES[k - 1],
                row: index / self.dim,
                column: index % self.dim,
            });
        }
        if let (Some(classes), queries @ 1..) = (self.classes, words[3]) {
            return Err(Error::ClassOutOfRange {
                queries: u64::from(queries),
                classes,
                first: None,
            });
        }
        let value = |w: usize| f64::from(f32::from_bits(words[w]));
        Ok((
            value(0),
            self.temperature.then(|| value(5)),
            self.bias.then(|| value(6)),
        ))
    }

    /// [`DeviceLoss::read`] for callers that run an executor: yields to it until the
    /// device has finished, instead of blocking the thread on the wait.
    pub async fn read_async(&self, gpu: &Gpu) -> Result<f64> {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        gpu.queue_done(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        Yield { gpu, done: &done }.await;
        self.read(gpu)
    }
}

/// A future that polls the device without blocking and yields until `done` is set.
struct Yield<'a> {
    gpu: &'a Gpu,
    done: &'a std::sync::atomic::AtomicBool,
}

impl std::future::Future for Yield<'_> {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let _ = self.gpu.device().poll(wgpu::PollType::Poll);
        if self.done.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

fn invalid(what: &'static str, reason: String) -> Error {
    Error::InvalidBuffer { what, reason }
}

fn check_storage(what: &'static str, buffer: &wgpu::Buffer) -> Result<()> {
    if buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        Ok(())
    } else {
        Err(invalid(what, "the buffer needs STORAGE usage".into()))
    }
}

fn check_offset(what: &'static str, offset: u64) -> Result<()> {
    if offset.is_multiple_of(4) {
        Ok(())
    } else {
        Err(invalid(
            what,
            format!("offset {offset} is not a multiple of 4"),
        ))
    }
}

/// The bytes `rows` rows of `dim` values `stride` apart need from the buffer's start (f16:
/// up to the next multiple of 4, the unit storage bindings are sized in).
fn rows_end(
    offset: u64,
    rows: usize,
    dim: usize,
    stride: usize,
    precision: Precision,
) -> Option<u64> {
    let end = (rows as u64 - 1)
        .checked_mul(stride as u64)?
        .checked_add(dim as u64)?
        .checked_mul(precision.bytes())?
        .checked_add(offset)?;
    Some(end.div_ceil(4) * 4)
}

/// Checks a row layout: offset alignment, stride, usage and that every row lies inside the
/// buffer.
fn check_rows(
    what: &'static str,
    buffer: &wgpu::Buffer,
    (offset, rows, dim, stride): (u64, usize, usize, usize),
    precision: Precision,
) -> Result<()> {
    check_storage(what, buffer)?;
    check_offset(what, offset)?;
    if stride < dim {
        return Err(invalid(
            what,
            format!("stride {stride} is less than dim {dim}"),
        ));
    }
    let p = precision.name();
    match rows_end(offset, rows, dim, stride, precision) {
        Some(end) if end <= buffer.size() => Ok(()),
        Some(end) => Err(invalid(
            what,
            format!(
                "{rows} rows of {dim} {p} values with stride {stride} from byte {offset} need \
                 {end} bytes, but it has {}",
                buffer.size()
            ),
        )),
        None => Err(invalid(
            what,
            format!("{rows} rows of {dim} values with stride {stride} overflow 64-bit offsets"),
        )),
    }
}

/// Checks a labels layout: one u32 per row from an aligned offset.
pub(crate) fn check_labels(
    what: &'static str,
    labels: &DeviceLabels<'_>,
    rows: usize,
) -> Result<()> {
    check_storage(what, labels.buffer)?;
    check_offset(what, labels.offset)?;
    let need = labels.offset + 4 * rows as u64;
    if need > labels.buffer.size() {
        return Err(invalid(
            what,
            format!(
                "{rows} u32 values from byte {} need {need} bytes, but it has {}",
                labels.offset,
                labels.buffer.size()
            ),
        ));
    }
    Ok(())
}

/// Checks one side's rows and its gradient's layout.
pub(crate) fn check_side(
    what: &'static str,
    x: &DeviceRows<'_>,
    grad: Option<&DeviceGrad<'_>>,
) -> Result<()> {
    if x.rows == 0 {
        return Err(Error::EmptyInput { what });
    }
    if x.dim == 0 {
        return Err(Error::ZeroDim { what });
    }
    // The domain flag holds the first bad value's row-major index in 32 bits.
    let values = x.rows as u128 * x.dim as u128;
    if values > u128::from(u32::MAX) {
        return Err(Error::LimitExceeded {
            what: format!("{what}: rows × dim (32-bit value indices)"),
            needed: values,
            limit: u128::from(u32::MAX),
            hint: crate::error::SMALLER_BATCH,
        });
    }
    check_rows(
        what,
        x.buffer,
        (x.offset, x.rows, x.dim, x.stride),
        x.precision,
    )?;
    if let Some(g) = grad {
        let layout = (g.offset, x.rows, x.dim, g.stride);
        check_rows("gradient", g.buffer, layout, g.precision)?;
        if !g.scale.is_finite() {
            return Err(Error::InvalidOption {
                name: "gradient scale",
                value: f64::from(g.scale),
                rule: "must be finite",
            });
        }
    }
    Ok(())
}

/// Checks that every side has the first side's rows and dimension.
/// Queries said to sit at reference row `at` fit there (a device-resident call cannot
/// compare the rows themselves: the caller's promise).
pub(crate) fn check_queries_at(at: Option<usize>, queries: usize, refs: usize) -> Result<()> {
    match at {
        Some(o) if o + queries > refs => Err(Error::OptionConflict {
            option: "queries_at (the queries among the reference rows)",
            reason: "the queries do not fit in the reference rows there",
        }),
        _ => Ok(()),
    }
}

pub(crate) fn same_shape(
    what: &'static str,
    first: &DeviceRows<'_>,
    x: &DeviceRows<'_>,
) -> Result<()> {
    if (x.rows, x.dim) == (first.rows, first.dim) {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected: first.rows * first.dim,
            got: x.rows * x.dim,
        })
    }
}

/// A row layout in a buffer: a caller's, or the host path's f16 upload in the workspace.
pub(crate) struct Source {
    /// The whole buffer.
    pub whole: Bound,
    /// Byte offset of row 0.
    pub offset: u64,
    pub dim: u64,
    /// Values between row starts.
    pub stride: u64,
    pub precision: Precision,
}

impl Source {
    /// A caller's rows.
    fn rows(rec: &mut Recorder<'_>, x: &DeviceRows<'_>) -> Self {
        Self {
            whole: rec.external(x.buffer, 0, x.buffer.size()),
            offset: x.offset,
            dim: x.dim as u64,
            stride: x.stride as u64,
            precision: x.precision,
        }
    }

    /// A caller's u32 labels.
    fn labels(rec: &mut Recorder<'_>, l: &DeviceLabels<'_>) -> Self {
        Self {
            whole: rec.external(l.buffer, 0, l.buffer.size()),
            offset: l.offset,
            dim: 1,
            stride: 1,
            precision: Precision::F32,
        }
    }

    /// Window `w` of the layout as a binding: from the largest aligned offset at or below
    /// its first row, and the index of that row's first value in the binding.
    fn window(&self, rec: &Recorder<'_>, plan: &Plan, w: u64) -> Result<(Bound, u32)> {
        let bytes = self.precision.bytes();
        let align = u64::from(rec.limits().min_storage_buffer_offset_alignment).max(4);
        let start = self.offset + bytes * plan.start(w) * self.stride;
        let end = start + bytes * ((plan.rows_in(w) - 1) * self.stride + self.dim);
        let base = start / align * align;
        let size = (end - base).div_ceil(4) * 4;
        let limit = rec
            .limits()
            .max_storage_buffer_binding_size
            .min(rec.limits().max_buffer_size);
        if size > limit {
            return Err(Error::LimitExceeded {
                what: "one window of a caller's rows in one storage binding (bytes)".into(),
                needed: u128::from(size),
                limit: u128::from(limit),
                hint: crate::error::SMALLER_DIM,
            });
        }
        Ok((
            self.whole.window(base, size),
            ((start - base) / bytes) as u32,
        ))
    }
}

/// A row layout's parameters: `dim` values a row, `stride` apart; its gradient's scale and
/// accumulation, and the magnitude the gather flags.
struct Caller<'g> {
    dim: u64,
    stride: u64,
    grad: Option<&'g DeviceGrad<'g>>,
    max_abs: f64,
    /// The flags word of an f16 gradient's overflow.
    flag: u32,
}

impl Caller<'_> {
    /// The parameters of window `w`, whose first value sits at index `first` of its binding.
    fn params(&self, plan: &Plan, w: u64, first: u32) -> DeviceParams {
        DeviceParams {
            rows: plan.rows as u32,
            dim: self.dim as u32,
            dim4: plan.dim4 as u32,
            row_start: plan.start(w) as u32,
            window_rows: plan.window_rows as u32,
            first,
            stride: self.stride as u32,
            accumulate: u32::from(self.grad.is_some_and(|g| g.accumulate)),
            scale: self.grad.map_or(1.0, |g| g.scale),
            max_abs: self.max_abs as f32,
            flag: self.flag,
            ..Default::default()
        }
    }
}

const IDS_ONLY: Caller<'static> = Caller {
    dim: 1,
    stride: 1,
    grad: None,
    max_abs: 0.0,
    flag: 0,
};

/// The flags of a call (the domain's, and each side's f16 gradient overflow), and the step
/// that resets them to "none".
pub(crate) fn flags(rec: &mut Recorder<'_>) -> (Bound, Step) {
    let flags = rec.small("device_flags", 16);
    let reset = Step::new(&RESET, DeviceParams::default(), 1).bind(FLAGS, flags.clone());
    (flags, reset)
}

/// Steps that gather `src`'s rows into `side`'s raw rows (f32 or f16, widened), flagging
/// values beyond `limit`.
pub(crate) fn gather_rows(
    rec: &Recorder<'_>,
    side: &Side,
    src: &Source,
    flags: &Bound,
    limit: f64,
) -> Result<Vec<Step>> {
    let c = Caller {
        dim: src.dim,
        stride: src.stride,
        grad: None,
        max_abs: limit,
        flag: 0,
    };
    let kernel = match src.precision {
        Precision::F32 => &GATHER_ROWS,
        Precision::F16 => &HALF_GATHER,
    };
    // The side's own rows (a call's sides may differ in length).
    let plan = &side.plan;
    (0..plan.windows)
        .map(|w| {
            let (bound, first) = src.window(rec, plan, w)?;
            Ok(
                Step::new(kernel, c.params(plan, w, first), plan.row_groups(w))
                    .bind(SRC, bound)
                    .bind(ROWS, side.raw().win(w))
                    .bind(FLAGS, flags.clone()),
            )
        })
        .collect()
}

/// The first steps of a device-resident call: reset the flags (on the GPU timeline: a
/// queue write would land at the caller's next submit, after any later call's), then gather
/// every input side's rows from the caller's buffers, flagging values beyond `limit` (the
/// loss's magnitude limit, at most 1e15), then the class ids. Returns them and the flags.
pub(crate) fn gather(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    sides: &[Side],
    inputs: &[DeviceRows<'_>],
    classes: (&DeviceClasses<'_>, &[RowBuf]),
    limit: f64,
) -> Result<(Vec<Step>, Bound)> {
    let (flags, reset) = flags(rec);
    let mut steps = vec![reset];
    for (side, x) in sides.iter().zip(inputs) {
        let src = Source::rows(rec, x);
        steps.extend(gather_rows(rec, side, &src, &flags, limit)?);
    }
    // (labels, buffer, the rows they cover) of each class id array; Iota has no labels.
    let arrays: Vec<(Option<&DeviceLabels<'_>>, &RowBuf, &Plan)> = match (classes.0, classes.1) {
        (DeviceClasses::Labels(l), [ids]) => vec![(Some(l), ids, plan)],
        (DeviceClasses::Iota, [ids]) => vec![(None, ids, plan)],
        (DeviceClasses::PerSide([a, b]), [ia, ib]) => {
            vec![(Some(a), ia, &sides[0].plan), (Some(b), ib, &sides[1].plan)]
        }
        (DeviceClasses::LabelsThenIota(a), [ia, ib]) => {
            vec![(Some(a), ia, &sides[0].plan), (None, ib, &sides[1].plan)]
        }
        _ => Vec::new(),
    };
    for (labels, ids, plan) in arrays {
        let src = labels.map(|l| Source::labels(rec, l));
        for w in 0..plan.windows {
            match &src {
                Some(src) => {
                    let (bound, first) = src.window(rec, plan, w)?;
                    steps.push(
                        Step::new(
                            &GATHER_IDS,
                            IDS_ONLY.params(plan, w, first),
                            plan.row_groups(w),
                        )
                        .bind(SRC, bound)
                        .bind(IDS, ids.win(w)),
                    );
                }
                None => steps.push(
                    Step::new(&IOTA, IDS_ONLY.params(plan, w, 0), plan.row_groups(w))
                        .bind(IDS, ids.win(w)),
                ),
            }
        }
    }
    Ok((steps, flags))
}

/// Steps that write `scale · gradient` of every side that has one into the caller's
/// buffers (after the normalisation's backward pass), in each buffer's precision.
pub(crate) fn scatter(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    sides: &[Side],
    grads: &[Option<DeviceGrad<'_>>],
    flags: &Bound,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (k, (side, g)) in sides.iter().zip(grads).enumerate() {
        let (Some(g), Some(grad)) = (g, &side.grad) else {
            continue;
        };
        let c = Caller {
            dim: plan.dim,
            stride: g.stride as u64,
            grad: Some(g),
            max_abs: 0.0,
            flag: 1 + k as u32,
        };
        let dst = Source {
            whole: rec.external(g.buffer, 0, g.buffer.size()),
            offset: g.offset,
            dim: c.dim,
            stride: c.stride,
            precision: g.precision,
        };
        let plan = &side.plan;
        for w in 0..plan.windows {
            let (bound, first) = dst.window(rec, plan, w)?;
            let step = match g.precision {
                Precision::F32 => Step::new(&SCATTER, c.params(plan, w, first), plan.row_groups(w)),
                Precision::F16 => {
                    Step::new(&HALF_SCATTER, c.params(plan, w, first), plan.row_groups(w))
                        .bind(FLAGS, flags.clone())
                }
            };
            steps.push(step.bind(GRAD, grad.win(w)).bind(DST, bound));
        }
    }
    Ok(steps)
}

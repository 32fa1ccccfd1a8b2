//! The device-resident API: embeddings, labels and gradients in the caller's own `wgpu`
//! buffers on a device shared through [`Gpu::from_device`], the work recorded into the
//! caller's command encoder (or submitted), and the loss kept on the device until asked for.
//!
//! # Buffer layout
//! - Embeddings ([`DeviceRows`]): `rows` rows of `dim` f32 values, row-major, row r starting
//!   at byte `offset + 4·r·stride` (`stride` ≥ `dim` values; whatever lies between rows is
//!   ignored). `offset` is a multiple of 4. The buffer needs `STORAGE` usage. Values must be
//!   in the input domain (finite, |x| ≤ 1e15) and within the call's magnitude limit (see
//!   [`crate::Error::TooLargeForLoss`]; taken at the most terms the labels could form): the
//!   device checks them, and [`DeviceLoss::read`] reports the first one outside. At most 2³²
//!   values per input.
//! - Labels ([`DeviceLabels`]): `rows` u32 class ids from byte `offset` (a multiple of 4);
//!   rows with equal ids are similar. `STORAGE` usage.
//! - Gradient ([`DeviceGrad`]): the embeddings' layout with its own `offset` and `stride`;
//!   `scale · dL/dX` overwrites the `dim` values of each row or is added to them
//!   (`accumulate`). `STORAGE` usage. Values between rows are left alone.
//!
//! Layout problems are [`Error::InvalidBuffer`] errors, found before anything is recorded.
//!
//! # Which losses
//! [`Contrastive::batch_device`](crate::Contrastive::batch_device) and the softmax losses
//! ([`Softmax::batch_device`](crate::Softmax::batch_device) for NT-Xent and SupCon,
//! [`Softmax::pairs_device`](crate::Softmax::pairs_device) for CLIP), and the triplet losses
//! ([`Triplet::explicit_device`](crate::Triplet::explicit_device),
//! [`Triplet::mined_device`](crate::Triplet::mined_device)). Counts that a mean divides by
//! and that depend on the labels are counted on the device.
//!
//! # Ordering
//! Work recorded into the caller's encoder runs when the caller submits it. Until then any
//! other call on the same [`Gpu`] may run (host-slice or device-resident): each
//! device-resident call takes its own slots of a ring of
//! [`DEVICE_RING_SLOTS`](crate::gpu::DEVICE_RING_SLOTS) parameter slots, resets its flags
//! on the GPU timeline, and recomputes its workspace from the caller's buffers, so calls
//! recorded into one encoder, or into several before a submit, keep their own inputs.
//! Submit before that many dispatches are pending (a call over W row windows records about
//! 2W² + 10W; one window holds up to 128 MiB of rows on common devices). The loss buffer is
//! the workspace's: the last call's loss is the one [`DeviceLoss::read`] returns.
//! Caller buffers are bound in windows of rows, like the workspace, from the largest offset
//! at or below each window that the device's storage alignment allows; bind groups for them
//! are cached (at most 64 caller buffers are remembered, and held alive, at once), so a
//! training loop over the same buffers creates no wgpu object after its first step.
//!
//! ```no_run
//! use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
//! use metric_loss::{Contrastive, Gpu};
//! # fn demo(device: wgpu::Device, queue: wgpu::Queue, x: wgpu::Buffer, y: wgpu::Buffer,
//! #         g: wgpu::Buffer) -> Result<(), metric_loss::Error> {
//! let gpu = Gpu::from_device(device.clone(), queue.clone());
//! let (rows, dim) = (256, 64);
//! let mut encoder = device.create_command_encoder(&Default::default());
//! // ... the caller's forward pass writes the embeddings into `x` ...
//! let loss = Contrastive::default().batch_device(
//!     &gpu,
//!     DeviceRows::new(&x, rows, dim),
//!     DeviceLabels::new(&y),
//!     Some(DeviceGrad::new(&g, dim)),
//!     Target::Encoder(&mut encoder),
//! )?;
//! // ... the caller's backward pass reads dL/dX from `g` ...
//! queue.submit([encoder.finish()]);
//! println!("loss {}", loss.read(&gpu)?); // only when wanted: this waits for the GPU
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::gpu::params::DeviceParams;
use crate::gpu::{Bound, Gpu, Recorder};
use crate::loss::plan::{Plan, ROW_GROUP};
use crate::loss::steps::{normalize_backward, Buffers, Side, Step};

/// Where a device-resident call's work goes.
pub enum Target<'e> {
    /// metric-loss submits it to the queue now (without waiting for it).
    Submit,
    /// Recorded into the caller's encoder, after what it already holds; nothing is
    /// submitted. The caller submits the encoder before reading the loss.
    Encoder(&'e mut wgpu::CommandEncoder),
}

/// Embeddings in a caller's buffer (see the [module docs](self) for the layout).
#[derive(Clone, Copy, Debug)]
pub struct DeviceRows<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0 (a multiple of 4).
    pub offset: u64,
    /// Rows.
    pub rows: usize,
    /// Values per row.
    pub dim: usize,
    /// Values from one row's start to the next (≥ `dim`).
    pub stride: usize,
}

impl<'a> DeviceRows<'a> {
    /// Densely packed rows from the start of `buffer` (offset 0, stride `dim`).
    pub fn new(buffer: &'a wgpu::Buffer, rows: usize, dim: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            rows,
            dim,
            stride: dim,
        }
    }
}

/// u32 class ids in a caller's buffer, one per row.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLabels<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0's id (a multiple of 4).
    pub offset: u64,
}

impl<'a> DeviceLabels<'a> {
    /// Ids from the start of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }
}

/// Where the gradient dL/dX goes, and how.
#[derive(Clone, Copy, Debug)]
pub struct DeviceGrad<'a> {
    /// The buffer (`STORAGE` usage).
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0 (a multiple of 4).
    pub offset: u64,
    /// Values from one row's start to the next (≥ the embeddings' `dim`).
    pub stride: usize,
    /// dLoss/dloss: the gradient written is `scale · dL/dX` (a weighted sum of losses).
    pub scale: f32,
    /// Add into the buffer's values instead of overwriting them.
    pub accumulate: bool,
}

impl<'a> DeviceGrad<'a> {
    /// Densely packed rows from the start of `buffer`, scale 1, overwriting.
    pub fn new(buffer: &'a wgpu::Buffer, dim: usize) -> Self {
        Self {
            buffer,
            offset: 0,
            stride: dim,
            scale: 1.0,
            accumulate: false,
        }
    }

    /// Sets the scale.
    pub fn scale(mut self, s: f32) -> Self {
        self.scale = s;
        self
    }

    /// Adds into the buffer instead of overwriting it.
    pub fn accumulate(mut self, on: bool) -> Self {
        self.accumulate = on;
        self
    }
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
    /// Which device-resident call on its `Gpu` this was: the buffers hold its results only
    /// until the next one.
    pub(crate) call: u64,
    /// Softmax losses: dL/dτ is word 5 of the loss buffer.
    pub(crate) temperature: bool,
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
    /// intermediates need it at this size: [`Error::TooLargeForLoss`]), and with
    /// [`Error::StaleDeviceLoss`] after a later device-resident call on this `Gpu`.
    pub fn read(&self, gpu: &Gpu) -> Result<f64> {
        Ok(self.read_all(gpu)?.0)
    }

    /// The loss and, for the softmax losses with a gradient, dL/dτ (f32 word 5 of the
    /// buffer); see [`DeviceLoss::read`].
    pub fn read_all(&self, gpu: &Gpu) -> Result<(f64, Option<f64>)> {
        let (loss, flags) = (self.loss.clone(), self.flags.clone());
        let bytes = gpu.execute("reading the loss", 0.0, |rec| {
            // Checked under the Gpu's lock: no other call can record in between.
            if rec.last_device_call() != self.call {
                return Err(Error::StaleDeviceLoss);
            }
            rec.read_back(&flags, 4);
            rec.read_back(&loss, 24);
            Ok(())
        })?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        if words[0] != u32::MAX {
            return Err(Error::DeviceInputOutOfDomain {
                what: "embeddings",
                index: u64::from(words[0]),
                limit: self.limit,
            });
        }
        let value = |w: usize| f64::from(f32::from_bits(words[1 + w]));
        Ok((value(0), self.temperature.then(|| value(5))))
    }

    /// [`DeviceLoss::read`] for callers that run an executor: yields to it until the
    /// device has finished, instead of blocking the thread on the wait.
    pub async fn read_async(&self, gpu: &Gpu) -> Result<f64> {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        gpu.queue_done(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        Yield::until(gpu, &done).await;
        self.read(gpu)
    }
}

/// A future that polls the device without blocking and yields until `done` is set.
struct Yield<'a> {
    gpu: &'a Gpu,
    done: &'a std::sync::atomic::AtomicBool,
}

impl<'a> Yield<'a> {
    fn until(gpu: &'a Gpu, done: &'a std::sync::atomic::AtomicBool) -> Self {
        Self { gpu, done }
    }
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

/// The workspace buffer device-resident calls reduce their results into: 8 words, the
/// loss first (each family's kernel documents the rest; the softmax losses use all 8, so
/// one size serves every family and the shared buffer never regrows).
pub(crate) fn loss_buffer(rec: &mut Recorder<'_>) -> Bound {
    rec.small("device_loss", 32)
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

/// Checks a row layout: offset alignment, stride, usage and that every row lies inside the
/// buffer.
fn check_rows(
    what: &'static str,
    buffer: &wgpu::Buffer,
    offset: u64,
    rows: usize,
    dim: usize,
    stride: usize,
) -> Result<()> {
    check_storage(what, buffer)?;
    if !offset.is_multiple_of(4) {
        return Err(invalid(
            what,
            format!("offset {offset} is not a multiple of 4"),
        ));
    }
    if stride < dim {
        return Err(invalid(
            what,
            format!("stride {stride} is less than dim {dim}"),
        ));
    }
    let end = (rows as u64 - 1)
        .checked_mul(stride as u64)
        .and_then(|v| v.checked_add(dim as u64))
        .and_then(|v| v.checked_mul(4))
        .and_then(|v| v.checked_add(offset));
    match end {
        Some(end) if end <= buffer.size() => Ok(()),
        _ => Err(invalid(
            what,
            format!(
                "{rows} rows of {dim} values with stride {stride} from byte {offset} do not \
                 fit its {} bytes",
                buffer.size()
            ),
        )),
    }
}

/// Checks the three caller layouts of a batch call.
pub(crate) fn check_batch(
    x: &DeviceRows<'_>,
    labels: &DeviceLabels<'_>,
    grad: Option<&DeviceGrad<'_>>,
) -> Result<()> {
    check_side("embeddings", x, grad)?;
    check_rows("labels", labels.buffer, labels.offset, x.rows, 1, 1)
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
    let values = (x.rows as u64).saturating_mul(x.dim as u64);
    if values > u64::from(u32::MAX) {
        return Err(Error::LimitExceeded {
            what: format!("{what}: rows × dim (32-bit value indices)"),
            needed: values,
            limit: u64::from(u32::MAX),
        });
    }
    check_rows(what, x.buffer, x.offset, x.rows, x.dim, x.stride)?;
    if let Some(g) = grad {
        check_rows("gradient", g.buffer, g.offset, x.rows, x.dim, g.stride)?;
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

/// The window `w` of a caller's row layout as a binding: from the largest aligned offset at
/// or below its first row, and the index of that row's first value in the binding.
fn window(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    w: u64,
    buffer: &wgpu::Buffer,
    offset: u64,
    dim: u64,
    stride: u64,
) -> Result<(Bound, u32)> {
    let align = u64::from(rec.limits().min_storage_buffer_offset_alignment).max(4);
    let start = offset + 4 * plan.start(w) * stride;
    let end = start + 4 * ((plan.rows_in(w) - 1) * stride + dim);
    let base = start / align * align;
    let size = (end - base).div_ceil(4) * 4;
    let limit = rec
        .limits()
        .max_storage_buffer_binding_size
        .min(rec.limits().max_buffer_size);
    if size > limit {
        return Err(Error::LimitExceeded {
            what: "one window of a caller's rows in one storage binding (bytes)".into(),
            needed: size,
            limit,
        });
    }
    Ok((
        rec.external(buffer, base, size),
        ((start - base) / 4) as u32,
    ))
}

const MODULE: &str = "device.wgsl";

fn params(
    plan: &Plan,
    w: u64,
    dim: u64,
    first: u32,
    stride: u64,
    g: Option<&DeviceGrad<'_>>,
    max_abs: f64,
) -> Vec<u8> {
    bytemuck::bytes_of(&DeviceParams {
        rows: plan.rows as u32,
        dim: dim as u32,
        dim4: plan.dim4 as u32,
        row_start: plan.start(w) as u32,
        window_rows: plan.window_rows as u32,
        first,
        stride: stride as u32,
        accumulate: u32::from(g.is_some_and(|g| g.accumulate)),
        scale: g.map_or(1.0, |g| g.scale),
        max_abs: max_abs as f32,
        ..Default::default()
    })
    .to_vec()
}

/// The domain flag the gathers set, and the step that resets it to "none" (first in the
/// call, on the GPU timeline: a queue write would land at the caller's next submit, after
/// any later call's).
pub(crate) fn domain_flags(rec: &mut Recorder<'_>, bufs: &mut Buffers) -> (usize, Step) {
    let flags = bufs.push(rec.small("device_flags", 16));
    let reset = Step {
        module: MODULE,
        entry: "device_reset",
        params: vec![0; std::mem::size_of::<DeviceParams>()],
        bindings: vec![(6, flags, 0, 0)],
        groups: 1,
    };
    (flags, reset)
}

/// Steps that write class ids 0..rows into `ids` (CLIP's matching), window by window.
pub(crate) fn iota_ids(plan: &Plan, ids: usize) -> Vec<Step> {
    (0..plan.windows)
        .map(|w| Step {
            module: MODULE,
            entry: "device_iota",
            params: params(plan, w, 1, 0, 1, None, 0.0),
            bindings: vec![(3, ids, 4, w)],
            groups: plan.rows_in(w).div_ceil(ROW_GROUP),
        })
        .collect()
}

/// Steps that gather the caller's rows into `raw` (a workspace buffer), window by window,
/// recording the first value NaN, infinite or beyond `limit` in magnitude in `flags`.
pub(crate) fn gather_rows(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    x: &DeviceRows<'_>,
    (raw, flags, limit): (usize, usize, f64),
) -> Result<Vec<Step>> {
    let (dim, stride) = (x.dim as u64, x.stride as u64);
    let mut steps = Vec::new();
    for w in 0..plan.windows {
        let (src, first) = window(rec, plan, w, x.buffer, x.offset, dim, stride)?;
        let src = bufs.push(src);
        steps.push(Step {
            module: MODULE,
            entry: "device_gather_rows",
            params: params(plan, w, dim, first, stride, None, limit),
            bindings: vec![
                (1, src, 0, 0),
                (2, raw, plan.row_bytes, w),
                (6, flags, 0, 0),
            ],
            groups: plan.rows_in(w).div_ceil(ROW_GROUP),
        });
    }
    Ok(steps)
}

/// Steps that gather the caller's class ids into `ids` (a workspace buffer).
pub(crate) fn gather_ids(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    labels: &DeviceLabels<'_>,
    ids: usize,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for w in 0..plan.windows {
        let (src, first) = window(rec, plan, w, labels.buffer, labels.offset, 1, 1)?;
        let src = bufs.push(src);
        steps.push(Step {
            module: MODULE,
            entry: "device_gather_ids",
            params: params(plan, w, 1, first, 1, None, 0.0),
            bindings: vec![(1, src, 0, 0), (3, ids, 4, w)],
            groups: plan.rows_in(w).div_ceil(ROW_GROUP),
        });
    }
    Ok(steps)
}

/// The first steps of a device-resident call: reset the domain flag, then gather every
/// input side's rows from the caller's buffers, flagging values beyond `limit` (the
/// loss's magnitude limit, at most 1e15). Returns them and the flag's buffer.
pub(crate) fn gather_sides(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    sides: &[Side],
    inputs: &[DeviceRows<'_>],
    limit: f64,
) -> Result<(Vec<Step>, usize)> {
    let (flags, reset) = domain_flags(rec, bufs);
    let mut steps = vec![reset];
    for (side, x) in sides.iter().zip(inputs) {
        steps.extend(gather_rows(rec, plan, bufs, x, (side.raw(), flags, limit))?);
    }
    Ok((steps, flags))
}

/// The last steps of a device-resident call: back through the normalisation, then every
/// requested gradient into the caller's buffers.
pub(crate) fn scatter_sides(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    sides: &[Side],
    grads: &[Option<DeviceGrad<'_>>],
    dim: u64,
) -> Result<Vec<Step>> {
    let mut steps = normalize_backward(plan, sides);
    for (side, g) in sides.iter().zip(grads) {
        if let (Some(g), Some(gi)) = (g, side.grad) {
            steps.extend(scatter(rec, plan, bufs, g, dim, gi)?);
        }
    }
    Ok(steps)
}

/// Steps that write `scale · grad` (a workspace gradient) into the caller's buffer.
pub(crate) fn scatter(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    g: &DeviceGrad<'_>,
    dim: u64,
    grad: usize,
) -> Result<Vec<Step>> {
    let stride = g.stride as u64;
    let mut steps = Vec::new();
    for w in 0..plan.windows {
        let (dst, first) = window(rec, plan, w, g.buffer, g.offset, dim, stride)?;
        let dst = bufs.push(dst);
        steps.push(Step {
            module: MODULE,
            entry: "device_scatter_grad",
            params: params(plan, w, dim, first, stride, Some(g), 0.0),
            bindings: vec![(4, grad, plan.row_bytes, w), (5, dst, 0, 0)],
            groups: plan.rows_in(w).div_ceil(ROW_GROUP),
        });
    }
    Ok(steps)
}

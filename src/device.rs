//! The device-resident API: embeddings, labels and gradients in the caller's own `wgpu`
//! buffers on a device shared through [`Gpu::from_device`](crate::Gpu::from_device), the
//! work recorded into the caller's command encoder (or submitted), and the loss kept on the
//! device until asked for.
//!
//! # Buffer layout
//! - Embeddings ([`DeviceRows`]): `rows` rows of `dim` f32 values, row-major, row r starting
//!   at byte `offset + 4·r·stride` (`stride` ≥ `dim` values; whatever lies between rows is
//!   ignored). `offset` is a multiple of 4. The buffer needs `STORAGE` usage. Values must be
//!   in the input domain (finite, |x| ≤ 1e15) and within the call's magnitude limit (see
//!   [`crate::Error::TooLargeForLoss`]; taken at the most terms the labels could form): the
//!   device checks them, and [`DeviceLoss::read`] reports the first one outside. At most 2³²
//!   values per input. With [`Precision::F16`](crate::Precision) (needs `SHADER_F16`), rows
//!   of f16 values at byte `offset + 2·r·stride`, the buffer holding their bytes rounded up to
//!   a multiple of 4; they are widened to f32 exactly as they are gathered.
//! - Labels ([`DeviceLabels`]): one u32 per row from byte `offset` (a multiple of 4). For a
//!   batch, class ids: rows with equal ids are in one class, whatever the values
//!   ([`crate::Labels::ids`] gives dense ids for host labels, and
//!   [`Gpu::storage_buffer`](crate::Gpu::storage_buffer) uploads them). For contrastive
//!   pairs, pair labels: 0 dissimilar, anything else similar. `STORAGE` usage.
//! - Gradient ([`DeviceGrad`]): the embeddings' layout with its own `offset` and `stride`;
//!   `scale · dL/dX` overwrites the `dim` values of each row or is added to them
//!   (`accumulate`). `STORAGE` usage. Values between rows are left alone. Its own
//!   `precision`: an f16 gradient is rounded once (after the f32 sum when accumulating); a
//!   value beyond f16's range is written as ±65504 and reported by [`DeviceLoss::read`]
//!   ([`crate::Error::GradientOverflow`]).
//!
//! Layout problems are [`crate::Error::InvalidBuffer`] errors, found before anything is
//! recorded. [`Gpu::read_f32`](crate::Gpu::read_f32) reads a buffer back (after the work
//! submitted so far).
//!
//! # Which losses
//! Every mode of every family: `batch_device` and `pairs_device` of
//! [`Contrastive`](crate::Contrastive) and [`Softmax`](crate::Softmax) (NT-Xent and SupCon
//! batches, CLIP pairs, InfoNCE with more keys than anchors), `batch_device` and
//! `explicit_device` of [`Triplet`](crate::Triplet), and `against_device` of contrastive,
//! NT-Xent and SupCon (queries against a [`DeviceReference`]). Counts that a mean divides by
//! and that depend on the labels are counted on the device.
//!
//! # Ordering
//! Work recorded into the caller's encoder runs when the caller submits it. Until then any
//! other call on the same [`Gpu`](crate::Gpu) may run (host-slice or device-resident): each
//! device-resident call takes its own slots of a ring of [`DEVICE_RING_SLOTS`] parameter
//! slots, resets its flags on the GPU timeline, and recomputes its workspace from the
//! caller's buffers, so calls recorded into one encoder, or into several before a submit,
//! keep their own inputs. Submit before that many dispatches are pending (a call over W row
//! windows records about 2W² + 10W; one window holds up to 128 MiB of rows on common
//! devices). The loss buffer is the workspace's: the last call's loss is the one
//! [`DeviceLoss::read`] returns. Caller buffers are bound in windows of rows, like the
//! workspace, from the largest offset at or below each window that the device's storage
//! alignment allows; bind groups for them are cached (at most 64 caller buffers are
//! remembered, and held alive, at once), so a training loop over the same buffers creates no
//! wgpu object after its first step.
//!
//! ```no_run
//! use metric_loss::device::{DeviceGrad, DeviceLabels, DeviceRows, Target};
//! use metric_loss::{wgpu, Contrastive, Gpu};
//! # fn demo(device: wgpu::Device, queue: wgpu::Queue, x: wgpu::Buffer, y: wgpu::Buffer,
//! #         g: wgpu::Buffer) -> Result<(), metric_loss::Error> {
//! let gpu = Gpu::from_device(device.clone(), queue.clone())?;
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

pub use crate::engine::{DeviceLoss, DeviceQueue, DEVICE_RING_SLOTS};
pub use crate::input::{DeviceGrad, DeviceLabels, DeviceReference, DeviceRows, Target};

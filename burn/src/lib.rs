//! # metric-loss-burn
//!
//! metric-loss's losses as autodiff operations of [burn](https://burn.dev) 0.22 on its wgpu
//! backend (with or without fusion): contrastive, triplet (mined or explicit), the
//! softmax losses (NT-Xent, SupCon, CLIP, InfoNCE), SigLIP, Multi-Similarity, Circle,
//! ArcFace, CosFace and sub-center ArcFace, in-batch, on matched rows, against class
//! weights, or queries against reference rows. burn and metric-loss share one
//! `wgpu::Device`: a loss reads the embeddings' buffer where burn wrote it and writes dL/dX
//! into a burn tensor's buffer, with no copy through the host and no B×B tensor.
//!
//! ```no_run
//! use burn::tensor::{Distribution, Int, Tensor};
//! use metric_loss_burn::{contrastive, init, Contrastive, WgpuDevice};
//!
//! let device = init(WgpuDevice::default())?.autodiff(); // once, before burn uses the device
//! let x = Tensor::<2>::random([256, 64], Distribution::Default, &device).require_grad();
//! let labels = Tensor::<1, Int>::arange(0..256, &device).remainder_scalar(8);
//! let loss = contrastive(x.clone(), labels, &Contrastive::default())?;
//! let grads = loss.backward();
//! let dx = x.grad(&grads).expect("x is tracked"); // [256, 64], on the device
//! # Ok::<(), metric_loss_burn::Error>(())
//! ```
//!
//! # What is here
//! - [`init`] (or [`init_setup`] for an application's own wgpu device): brings up burn's
//!   wgpu runtime and metric-loss on one device; [`gpu`] gives metric-loss's side of it.
//! - The losses: [`contrastive`], [`contrastive_pairs`], [`contrastive_against`],
//!   [`softmax`], [`softmax_pairs`], [`softmax_pairs_labelled`], [`softmax_against`],
//!   [`siglip`], [`siglip_labelled`], [`weighting`], [`proxy`], [`triplet`],
//!   [`triplet_explicit`]. Each returns a `[1]` loss tensor; its backward pass
//!   gives every tracked input its gradient.
//! - [`MetricLossBackend`]: the backend operation behind them.
//!
//! # How the gradient flows
//! metric-loss computes the loss and dL/dinput in one pass, so the forward pass of a
//! tracked call asks for the gradients and keeps them; the backward pass multiplies them by
//! the loss's incoming gradient. An untracked call (no input requires a gradient) computes
//! the loss only.
//!
//! # Limits
//! - Inputs are f32 (`[rows, dim]`); labels are integers that fit in 32 bits (wider ones are
//!   cast on the device).
//! - ArcFace's and CosFace's class indices are not checked against the class weights' rows
//!   on this path either (that too needs a read back): an index ≥ C leaves its query's term
//!   out.
//! - Values are not checked for NaN or for metric-loss's magnitude limit on this path (that
//!   needs a read back): a NaN gives a NaN loss, as in any burn operation.
//! - A failure of the device itself (lost, out of memory) panics, as burn's own operations
//!   do; everything a caller controls is an [`Error`] before the call runs.
//! - The temperature is an option of [`Softmax`], and SigLIP's t′ and b options of
//!   [`Siglip`], not burn tensors: no dL/dτ, dL/dt′ or dL/db here (a learnable scalar would
//!   need its value on the host each step; metric-loss's own calls return all three).
//! - Mined triplets against reference rows are not here: metric-loss has no device-resident
//!   form of them (their term count comes from host labels).
#![warn(missing_docs)]

mod backend;
mod call;
mod cube;
mod error;
#[cfg(feature = "fusion")]
mod fusion;
mod ops;
mod setup;

pub use backend::MetricLossBackend;
pub use burn::backend::wgpu::{WgpuDevice, WgpuSetup};
pub use call::{Family, Form, LossCall};
pub use error::{Error, Result};
pub use metric_loss::{
    Contrastive, Mining, Reduction, Siglip, Softmax, SoftmaxLoss, Triplet, Weighting, WeightingLoss,
};
pub use ops::{
    contrastive, contrastive_against, contrastive_pairs, proxy, siglip, siglip_labelled, softmax,
    softmax_against, softmax_pairs, softmax_pairs_labelled, triplet, triplet_explicit, weighting,
    Reference,
};
pub use setup::{gpu, init, init_setup};

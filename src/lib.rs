//! # metric-loss
//!
//! Metric-learning losses with gradients — contrastive, triplet (explicit or mined:
//! all, batch-hard, semi-hard), softmax-contrastive (NT-Xent, SupCon, CLIP, InfoNCE, with
//! dL/dτ), SigLIP (with dL/dt′ and dL/db), Multi-Similarity and Circle, and ArcFace,
//! CosFace and sub-center ArcFace over class weights — and the measurements around them
//! (k-NN, retrieval metrics, margin statistics),
//! computed by WGSL compute kernels through [`wgpu`] on any GPU (Vulkan, Metal, DX12) or
//! on Mesa's software Vulkan driver. In-batch losses tile the pair space: no B×B buffer
//! exists, so any batch whose rows fit in device memory runs. Every loss has an f64 CPU
//! reference to check against.
//!
//! The lines a training loop writes:
//!
//! ```no_run
//! use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};
//!
//! let gpu = Gpu::new()?; // once: pipelines and buffers are reused by every call
//! let loss = Contrastive::default().margin(1.0)?;
//! # let (batch, rows, dim, labels) = (vec![0.0f32; 8], 4, 2, vec![0i64, 0, 1, 1]);
//! let x = Embeddings::new(&batch, rows, dim)?; // rows × dim, row-major; checks the values
//! let out = loss.batch(&gpu, &x, &Labels::new(&labels), Grads::Compute)?;
//! let dx = &out.grads[0]; // dL/dX, rows × dim
//! println!("loss {} over {} pairs, {:?} active", out.loss, out.terms(), out.active_terms());
//! # Ok::<(), metric_loss::Error>(())
//! ```
//!
//! # What is here
//! - The losses: [`Contrastive`], [`Triplet`], [`Softmax`], [`Siglip`], [`Weighting`]
//!   (Multi-Similarity, Circle) and [`Proxy`] (ArcFace, CosFace, sub-center ArcFace). Each
//!   has the same calls:
//!   a labelled `batch` (SigLIP: `pairs` of two views; the proxies: a batch against class
//!   weights) and, where the family has one, a mode of matched rows (`pairs`, or
//!   `explicit` triplets), each on host slices, as the f64 CPU reference (`*_cpu`), on the
//!   caller's own device buffers (`*_device`, see [`device`]) and as a GPU-versus-CPU
//!   [`tolerance::Verdict`] (`*_check`); `validate_*` checks an input without a device.
//!   [`BatchLoss`] is the labelled-batch calls as a trait, for code that switches losses.
//! - The inputs: [`Embeddings`] (validated rows of f32, or of [`half::f16`] with
//!   [`Embeddings::new_f16`] where the device has `SHADER_F16`: computed in f32, the
//!   gradient rounded to f16 unless [`Grads::ComputeF32`]), [`Labels`] (any integers,
//!   remapped).
//! - The outputs: [`LossOutput`] with the loss, the family's [`Counts`], one [`Gradient`]
//!   per input and the scalar gradients (dL/dτ; SigLIP's dL/dt′ and dL/db).
//! - The device: [`Gpu`] ([`Gpu::new`], or [`Gpu::from_device`] to share a framework's
//!   wgpu 30 device, re-exported as [`wgpu`]); the pair engine's shape for it,
//!   [`EngineConfig`] (chosen from the adapter, or [`GpuOptions::engine`] /
//!   [`ENGINE_ENV`]); its own FMA and bandwidth ceilings, [`Gpu::probe_peak`].
//! - Measuring an embedding ([`measure`]): exact k-NN, retrieval metrics (PML's
//!   `AccuracyCalculator`), anomaly scores and ROC AUC, pair-distance histograms that
//!   suggest a margin; on the same engine, with f64 references.
//! - Errors: one [`Error`] enum; nothing a caller can reach panics.
//!
//! This crate has no default features. Its `testing` feature is the test harness of its own
//! tests and CLI (seeded inputs, case grids, fuzz bodies); library users leave it off.
//! The exact definitions, the tolerance rule and the error taxonomy are in the repository's
//! `docs/`.
#![warn(missing_docs)]

pub mod device;
mod engine;
mod error;
mod input;
mod limit;
mod losses;
pub mod measure;
mod options;
pub mod ranks;
mod reference;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tolerance;

pub use engine::{
    AdapterSummary, Allocations, EngineConfig, Gpu, GpuOptions, Peak, DEFAULT_TIMEOUT, ENGINE_ENV,
};
pub use error::{Error, Result};
/// The wgpu this crate runs on (30): depend on it through this re-export, or on `wgpu = "30"`.
pub use half;
pub use input::{Embeddings, Labels, Precision, Values, MAX_ABS_VALUE};
pub use losses::contrastive::{Contrastive, ContrastiveCounts, ContrastiveOutput};
pub use losses::proxy::{Proxy, ProxyCounts, ProxyLoss, ProxyOutput, SIN_FLOOR};
pub use losses::sigmoid::{Siglip, SiglipCounts, SiglipOutput, MAX_BIAS, MAX_LOGIT_SCALE};
pub use losses::softmax::{Softmax, SoftmaxCounts, SoftmaxLoss, SoftmaxOutput, MIN_TEMPERATURE};
pub use losses::triplet::{Mining, Triplet, TripletCounts, TripletOutput, TripletTerm};
pub use losses::weighting::{
    Weighting, WeightingCounts, WeightingLoss, WeightingOutput, CIRCLE_FLOOR,
};
pub use losses::BatchLoss;
pub use options::{
    Counts, Distance, Gradient, Grads, Hinge, LossOutput, Reduction, ReferenceGrad, ReferenceSet,
};
pub use wgpu;

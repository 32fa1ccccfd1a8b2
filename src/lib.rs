//! # metric-loss
//!
//! Metric-learning losses with gradients, computed by WGSL compute kernels through `wgpu`
//! on any GPU (Vulkan, Metal, DX12) or on Mesa's software Vulkan driver, each with a CPU
//! reference in f64 to check against.
//!
//! So far: the contrastive loss ([`Contrastive`]) over explicit pairs or over every pair
//! of a labelled batch, the triplet loss ([`Triplet`]) over explicit triplets or mined
//! from a labelled batch (all, batch-hard, semi-hard), and the softmax-contrastive losses
//! ([`Softmax`]: NT-Xent, SupCon, CLIP) with dL/dτ. In-batch losses tile the pair space so
//! that no B×B buffer exists.
//!
//! ```no_run
//! use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};
//!
//! let gpu = Gpu::new()?; // once; reuse it for every step
//! let loss = Contrastive::default().margin(1.0);
//! # let (embeddings, rows, dim, labels) = (vec![0.0f32; 8], 4, 2, vec![0i64, 0, 1, 1]);
//! let x = Embeddings::new("embeddings", &embeddings, rows, dim)?;
//! let out = loss.batch(&gpu, &x, &Labels::new(&labels), Grads::Compute)?;
//! let (value, dx) = (out.loss, &out.grads[0]);
//! # Ok::<(), metric_loss::Error>(())
//! ```
#![warn(missing_docs)]

pub mod check;
pub mod cpu;
pub mod device;
mod error;
pub mod gpu;
pub mod loss;
pub mod npy;
mod shape;

pub use error::{Error, Result};
pub use gpu::{AdapterSummary, Gpu, GpuOptions};
pub use loss::contrastive::{
    Contrastive, ContrastiveCounts, ContrastiveOutput, Distance, Hinge, Reduction,
};
pub use loss::softmax::{Softmax, SoftmaxCounts, SoftmaxLoss, SoftmaxOutput, MIN_TEMPERATURE};
pub use loss::triplet::{Mining, Triplet, TripletCounts, TripletOutput, TripletTerm};
pub use loss::{Grads, LossOutput};
pub use shape::{check_domain, Embeddings, Labels, MAX_ABS_VALUE};

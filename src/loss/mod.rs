//! Loss configurations and their host-side dispatch, one file per family.

pub mod contrastive;
mod contrastive_device;
pub(crate) mod magnitude;
pub(crate) mod plan;
pub mod softmax;
mod softmax_device;
pub(crate) mod steps;
pub mod triplet;
mod triplet_device;

/// Distance between two rows u, v.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// ||u − v||₂.
    #[default]
    Euclidean,
    /// ||u − v||₂².
    SquaredEuclidean,
    /// 1 − u·v / (max(||u||, 1e-12)·max(||v||, 1e-12)).
    Cosine,
}

/// Whether a call also computes gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grads {
    /// Loss and counts only: the backward kernels are not run.
    Skip,
    /// Loss, counts and the gradient of every differentiable input.
    Compute,
}

/// The result of one loss call, on the GPU or the CPU reference.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput<C> {
    /// The loss value. GPU: per-row partial sums (f32, Kahan-compensated) added on the host
    /// in f64; CPU reference: f64 throughout.
    pub loss: f64,
    /// The family's counts.
    pub counts: C,
    /// One row-major gradient per differentiable input, in argument order (pairs: A then
    /// B; batch: X), each the input's shape. Empty with [`Grads::Skip`].
    pub grads: Vec<Vec<f32>>,
    /// dL/dτ of the softmax-contrastive losses ([`crate::Softmax`]) with
    /// [`Grads::Compute`]; `None` for the other families and with [`Grads::Skip`].
    pub grad_temperature: Option<f64>,
}

impl Distance {
    /// The kernels' distance kind (shaders/common/distance.wgsl): 0 euclidean, 1 squared
    /// euclidean, 2 one-minus-dot (cosine runs as one-minus-dot on normalised rows).
    pub(crate) fn kernel_kind(self) -> u32 {
        match self {
            Distance::Euclidean => 0,
            Distance::SquaredEuclidean => 1,
            Distance::Cosine => 2,
        }
    }

    /// Row normalisations before the distance kernels: one for `normalize`, one for cosine.
    pub(crate) fn normalize_stages(self, normalize: bool) -> usize {
        usize::from(normalize) + usize::from(self == Distance::Cosine)
    }
}

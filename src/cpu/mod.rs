//! CPU references: the same inputs and outputs as the GPU path, f64 accumulation, written
//! for clarity rather than speed. Tests and `metric-loss check` compare the two.

pub mod contrastive;
pub mod distance;
pub mod normalize;
pub mod softmax;
pub mod triplet;

use crate::loss::LossOutput;

/// An f64 result of a reference, with gradients in f64 (for finite-difference checks); `C`
/// is the family's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference<C> {
    /// The loss.
    pub loss: f64,
    /// The counts.
    pub counts: C,
    /// Gradients as in [`LossOutput::grads`], in f64.
    pub grads: Vec<Vec<f64>>,
    /// dL/dτ, as in [`LossOutput::grad_temperature`].
    pub grad_temperature: Option<f64>,
}

impl<C> Reference<C> {
    /// The loss and counts without gradients ([`crate::Grads::Skip`]).
    pub(crate) fn loss_only(loss: f64, counts: C) -> Self {
        Self {
            loss,
            counts,
            grads: Vec::new(),
            grad_temperature: None,
        }
    }

    /// The output with f32 gradients, as the GPU path returns it.
    pub fn narrow(self) -> LossOutput<C> {
        LossOutput {
            loss: self.loss,
            counts: self.counts,
            grads: self
                .grads
                .into_iter()
                .map(|g| g.into_iter().map(|v| v as f32).collect())
                .collect(),
            grad_temperature: self.grad_temperature,
        }
    }
}

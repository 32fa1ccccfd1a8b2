//! The losses as one backend operation of burn, and its backward pass.
//!
//! metric-loss's kernels compute the loss and dL/dside in one pass over the pairs, so the
//! forward pass asks for the gradients of the tracked inputs and keeps them; the backward
//! pass only scales them by the loss's incoming gradient (a burn multiply on the device).
//! That is one B×D tensor per tracked input held between the passes: the same memory a
//! gradient takes anyway, and no second sweep over the pairs.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::backend_extension;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::AutodiffBackend;
use burn::tensor::Shape;

use crate::call::LossCall;

/// A burn backend that runs metric-loss's losses: burn's wgpu backend (`Cube`, fused or
/// not) and `Autodiff` over it. The public functions of this crate ([`crate::contrastive`]
/// and the others) call it; it is public for code that composes backend operations.
#[backend_extension(Autodiff, Cube, Fusion: cfg(feature = "fusion"))]
pub trait MetricLossBackend: burn::backend::Backend {
    /// The loss (`[1]`) and dL/dside for the sides `call.grads` asks for (`[rows, dim]`;
    /// `[0, dim]` for the others). `b` and `c` are ignored (any tensor) where the form has
    /// fewer sides; `labels` are i32/u32 values, ignored where the form has none.
    #[fusion(meta = crate::fusion::outputs)]
    fn metric_loss_with_grads(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        labels: IntTensor<Self>,
        call: LossCall,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    );

    /// The loss (`[1]`); under `Autodiff`, differentiable in the sides.
    #[fusion(default)]
    fn metric_loss(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        labels: IntTensor<Self>,
        call: LossCall,
    ) -> FloatTensor<Self> {
        Self::metric_loss_with_grads(a, b, c, labels, call.without_grads()).0
    }
}

/// Scales the gradients the forward pass kept by the loss's incoming gradient.
#[derive(Debug)]
struct LossBackward;

impl<B: burn::backend::Backend> Backward<B, 3> for LossBackward {
    /// dL/dside of each tracked side.
    type State = [Option<FloatTensor<B>>; 3];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let upstream = grads.consume::<B>(&ops.node);
        let scale = B::float_reshape(upstream, Shape::new([1, 1]));
        for (parent, grad) in ops.parents.into_iter().zip(ops.state) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, B::float_mul(grad, scale.clone()));
            }
        }
    }
}

impl<B: MetricLossBackend, C: CheckpointStrategy> MetricLossBackend for Autodiff<B, C> {
    fn metric_loss_with_grads(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        labels: IntTensor<Self>,
        call: LossCall,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let [a, b, c] = [a, b, c].map(|t| t.into_primitive());
        let outputs = B::metric_loss_with_grads(a, b, c, labels, call);
        let untracked = <Self as AutodiffBackend>::from_inner;
        (
            untracked(outputs.0),
            untracked(outputs.1),
            untracked(outputs.2),
            untracked(outputs.3),
        )
    }

    fn metric_loss(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        labels: IntTensor<Self>,
        call: LossCall,
    ) -> FloatTensor<Self> {
        let sides = call.form.sides();
        let tracked = [a.is_tracked(), b.is_tracked(), c.is_tracked()];
        let tracked: [bool; 3] = std::array::from_fn(|i| i < sides && tracked[i]);
        let grads = LossCall::gradient_sides(call.form, tracked);
        let ((a, na), (b, nb), (c, nc)) = (a.into_parts(), b.into_parts(), c.into_parts());
        match LossBackward
            .prepare::<C>([na, nb, nc])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let call = LossCall { grads, ..call };
                let (loss, ga, gb, gc) = B::metric_loss_with_grads(a, b, c, labels, call);
                // Only the tracked sides' gradients are kept (a pair's detached side may
                // have had its gradient computed with the other's).
                let mut kept = [Some(ga), Some(gb), Some(gc)];
                for (g, wanted) in kept.iter_mut().zip(tracked) {
                    if !wanted {
                        *g = None;
                    }
                }
                prep.finish(kept, loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::metric_loss(a, b, c, labels, call.without_grads()))
            }
        }
    }
}

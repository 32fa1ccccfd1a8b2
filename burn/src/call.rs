//! What one loss operation computes: the family with its options, the form of its inputs,
//! and which of them want a gradient. It crosses burn's dispatch (and, under fusion, waits
//! in the fused stream) as an ordinary argument of the backend operation.

use metric_loss::{Contrastive, Proxy, Siglip, Softmax, Triplet, Weighting};

/// A loss with its options.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    /// [`Contrastive`].
    Contrastive(Contrastive),
    /// [`Softmax`]: NT-Xent, SupCon, CLIP, InfoNCE.
    Softmax(Softmax),
    /// [`Triplet`].
    Triplet(Triplet),
    /// [`Siglip`]: SigLIP's sigmoid loss.
    Siglip(Siglip),
    /// [`Weighting`]: Multi-Similarity, Circle.
    Weighting(Weighting),
    /// [`Proxy`]: ArcFace, CosFace, sub-center ArcFace.
    Proxy(Proxy),
}

/// How the loss's inputs are laid out. Sides are the float inputs in order (`a`, `b`, `c`);
/// labels are one int tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// One labelled batch (side a; labels: one class id per row).
    Batch,
    /// Matched rows of a and b (contrastive: labels are the pair labels; softmax: CLIP, or
    /// InfoNCE with b's extra rows as negatives; SigLIP, b's extra rows negatives; labels
    /// unused).
    Pairs,
    /// Softmax pairs with class ids masking false negatives, SigLIP's with class ids giving
    /// the positives: labels are a's `split` ids, then b's.
    PairsLabelled {
        /// Rows of a.
        split: usize,
    },
    /// Queries (a) against reference rows (b): labels are the queries' `split` class ids,
    /// then the references'; the queries are reference rows `queries_at..` when given.
    Against {
        /// Rows of a.
        split: usize,
        /// Where the queries sit among the reference rows.
        queries_at: Option<usize>,
    },
    /// Explicit triplets: anchors a, positives b, negatives c.
    Explicit,
    /// Queries (a) against class weights (b, one row per class): labels are the queries'
    /// class indices.
    Classes,
}

impl Form {
    /// How many float inputs the form reads.
    pub fn sides(self) -> usize {
        match self {
            Form::Batch => 1,
            Form::Explicit => 3,
            _ => 2,
        }
    }
}

/// One loss operation (the ordinary argument of [`crate::MetricLossBackend`]'s operations).
#[derive(Clone, Copy, Debug)]
pub struct LossCall {
    /// The loss.
    pub family: Family,
    /// Its inputs' layout.
    pub form: Form,
    /// Which sides get dL/dside (written by the kernels with the loss).
    pub grads: [bool; 3],
}

impl LossCall {
    /// The sides whose gradients a call computes when `tracked` are: a batch's rows, each
    /// side of queries against references (or class weights) on its own, and every side of matched rows
    /// (pairs, triplets) when any is tracked (their kernels write all of them or none).
    pub fn gradient_sides(form: Form, tracked: [bool; 3]) -> [bool; 3] {
        let sides = form.sides();
        let own: [bool; 3] = std::array::from_fn(|i| i < sides && tracked[i]);
        match form {
            Form::Batch | Form::Against { .. } | Form::Classes => own,
            _ if own.contains(&true) => std::array::from_fn(|i| i < sides),
            _ => own,
        }
    }

    /// The same call with no gradient (an untracked forward pass).
    pub fn without_grads(self) -> Self {
        Self {
            grads: [false; 3],
            ..self
        }
    }
}

/// The outputs' shapes: the loss `[1]`, then each side's gradient, `[rows, dim]` when asked
/// for and `[0, dim]` when not.
pub(crate) fn output_shapes(call: &LossCall, sides: [&[usize]; 3]) -> [Vec<usize>; 4] {
    let grad = |i: usize| {
        let s = sides[i];
        vec![if call.grads[i] { s[0] } else { 0 }, s[1]]
    };
    [vec![1], grad(0), grad(1), grad(2)]
}

//! The operation's outputs as burn's fusion backend needs them before it runs: shapes and
//! element types from the inputs' alone.

use burn::backend::fusion::custom::TensorSpec;
use burn::tensor::{DType, Shape};

use crate::call::{output_shapes, LossCall};

/// The loss `[1]` and the three gradients, all f32.
pub(crate) fn outputs(
    a: &TensorSpec,
    b: &TensorSpec,
    c: &TensorSpec,
    _labels: &TensorSpec,
    call: &LossCall,
) -> (TensorSpec, TensorSpec, TensorSpec, TensorSpec) {
    let dims = |t: &TensorSpec| t.shape.iter().copied().collect::<Vec<_>>();
    let [l, ga, gb, gc] = output_shapes(call, [&dims(a), &dims(b), &dims(c)]);
    let spec = |s: Vec<usize>| TensorSpec::new(Shape::from(s), DType::F32);
    (spec(l), spec(ga), spec(gb), spec(gc))
}

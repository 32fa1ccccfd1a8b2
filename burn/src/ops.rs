//! The losses on burn tensors. Each checks its inputs (device, element types, shapes, the
//! loss's options and size limits) and returns an error before anything runs, then calls the
//! backend operation, which differentiates in every tracked input.

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, Int, IntDType, Tensor};
use metric_loss::{
    Contrastive, Error as LossError, Proxy, Siglip, Softmax, SoftmaxLoss, Triplet, Weighting,
};

use crate::backend::MetricLossBackend;
use crate::call::{Family, Form, LossCall};
use crate::error::{Error, Result};
use crate::setup::gpu;

/// Reference rows that queries are compared with (`*_against`): a queue of earlier batches'
/// embeddings (MoCo), hard negatives, or every device's rows gathered. They get dL/dR when
/// they are tracked (`require_grad`, or computed from tracked tensors) and none when
/// detached, in which case their sweep is not run.
#[derive(Clone, Debug)]
pub struct Reference {
    /// The reference rows (M × D).
    pub rows: Tensor<2>,
    /// Their class ids (M).
    pub labels: Tensor<1, Int>,
    /// Where the queries sit among the rows: query i is reference row o + i, and is no pair
    /// of itself (see metric-loss's `ReferenceSet::queries_at`; not checked on the device).
    pub queries_at: Option<usize>,
}

/// The contrastive loss of a labelled batch: embeddings `[B, D]`, one class id per row.
pub fn contrastive(
    embeddings: Tensor<2>,
    labels: Tensor<1, Int>,
    loss: &Contrastive,
) -> Result<Tensor<1>> {
    let [rows, dim] = side("embeddings", &embeddings)?;
    same_len("labels", rows, &labels)?;
    loss.batch_limit(rows, dim)?;
    let call = call(Family::Contrastive(*loss), Form::Batch);
    run(
        call,
        [embeddings.clone(), embeddings.clone(), embeddings],
        labels,
    )
}

/// The contrastive loss of matched rows: pair i is (a_i, b_i), similar where `similar` is
/// non-zero.
pub fn contrastive_pairs(
    a: Tensor<2>,
    b: Tensor<2>,
    similar: Tensor<1, Int>,
    loss: &Contrastive,
) -> Result<Tensor<1>> {
    let [rows, dim] = side("a", &a)?;
    same_shape("b", [rows, dim], side("b", &b)?)?;
    same_len("pair labels", rows, &similar)?;
    loss.pairs_limit(rows, dim)?;
    let call = call(Family::Contrastive(*loss), Form::Pairs);
    run(call, [a, b.clone(), b], similar)
}

/// The contrastive loss of queries against reference rows (every pair of a query and a
/// reference row).
pub fn contrastive_against(
    queries: Tensor<2>,
    labels: Tensor<1, Int>,
    reference: Reference,
    loss: &Contrastive,
) -> Result<Tensor<1>> {
    let (call, labels, [rows, dim]) =
        against(&queries, labels, &reference, Family::Contrastive(*loss))?;
    loss.batch_limit(rows, dim)?;
    run(
        call,
        [queries, reference.rows.clone(), reference.rows],
        labels,
    )
}

/// A softmax loss of a labelled batch: NT-Xent or SupCon ([`Softmax::ntxent`],
/// [`Softmax::supcon`]).
pub fn softmax(embeddings: Tensor<2>, labels: Tensor<1, Int>, loss: &Softmax) -> Result<Tensor<1>> {
    let [rows, dim] = side("embeddings", &embeddings)?;
    same_len("labels", rows, &labels)?;
    loss.batch_limit(rows, dim)?;
    let call = call(Family::Softmax(*loss), Form::Batch);
    run(
        call,
        [embeddings.clone(), embeddings.clone(), embeddings],
        labels,
    )
}

/// A softmax loss of two views: CLIP (row i of a matches row i of b, both directions), or
/// InfoNCE (anchor i's positive is key i; keys beyond a's rows are extra negatives).
pub fn softmax_pairs(a: Tensor<2>, b: Tensor<2>, loss: &Softmax) -> Result<Tensor<1>> {
    views(&a, &b, loss)?;
    let labels = Tensor::<1, Int>::zeros([1], &a.device());
    let call = call(Family::Softmax(*loss), Form::Pairs);
    run(call, [a, b.clone(), b], labels)
}

/// [`softmax_pairs`] with class ids masking false negatives: `labels_a` for a's rows,
/// `labels_b` for b's.
pub fn softmax_pairs_labelled(
    a: Tensor<2>,
    b: Tensor<2>,
    labels_a: Tensor<1, Int>,
    labels_b: Tensor<1, Int>,
    loss: &Softmax,
) -> Result<Tensor<1>> {
    let (rows, keys, _) = views(&a, &b, loss)?;
    same_len("labels of a", rows, &labels_a)?;
    same_len("labels of b", keys, &labels_b)?;
    let labels = Tensor::cat(vec![ids(labels_a), ids(labels_b)], 0);
    let call = call(Family::Softmax(*loss), Form::PairsLabelled { split: rows });
    run(call, [a, b.clone(), b], labels)
}

/// SigLIP's sigmoid loss of two views: row i of a and of b a positive pair, every other
/// pair (b's rows beyond a's among them) a negative. t′ and b are the options' values: the
/// loss is differentiable in `a` and `b`.
pub fn siglip(a: Tensor<2>, b: Tensor<2>, loss: &Siglip) -> Result<Tensor<1>> {
    siglip_views(&a, &b, loss)?;
    let labels = Tensor::<1, Int>::zeros([1], &a.device());
    run(
        call(Family::Siglip(*loss), Form::Pairs),
        [a, b.clone(), b],
        labels,
    )
}

/// [`siglip`] with the positives from class ids: (i, j) is positive when `labels_a[i]`
/// equals `labels_b[j]`.
pub fn siglip_labelled(
    a: Tensor<2>,
    b: Tensor<2>,
    labels_a: Tensor<1, Int>,
    labels_b: Tensor<1, Int>,
    loss: &Siglip,
) -> Result<Tensor<1>> {
    let (rows, cols) = siglip_views(&a, &b, loss)?;
    same_len("labels of a", rows, &labels_a)?;
    same_len("labels of b", cols, &labels_b)?;
    let labels = Tensor::cat(vec![ids(labels_a), ids(labels_b)], 0);
    let call = call(Family::Siglip(*loss), Form::PairsLabelled { split: rows });
    run(call, [a, b.clone(), b], labels)
}

/// NT-Xent or SupCon of queries against reference rows: each query's positives and
/// negatives are the reference rows of its class and of the others.
pub fn softmax_against(
    queries: Tensor<2>,
    labels: Tensor<1, Int>,
    reference: Reference,
    loss: &Softmax,
) -> Result<Tensor<1>> {
    let (call, labels, [rows, dim]) =
        against(&queries, labels, &reference, Family::Softmax(*loss))?;
    // Also refuses CLIP and InfoNCE, which take two views.
    loss.batch_limit(rows, dim)?;
    run(
        call,
        [queries, reference.rows.clone(), reference.rows],
        labels,
    )
}

/// A pair-weighting loss of a labelled batch: Multi-Similarity (with or without its miner)
/// or Circle ([`Weighting::multi_similarity`], [`Weighting::circle`]).
pub fn weighting(
    embeddings: Tensor<2>,
    labels: Tensor<1, Int>,
    loss: &Weighting,
) -> Result<Tensor<1>> {
    let [rows, dim] = side("embeddings", &embeddings)?;
    same_len("labels", rows, &labels)?;
    loss.batch_limit(rows, dim)?;
    run(
        call(Family::Weighting(*loss), Form::Batch),
        [embeddings.clone(), embeddings.clone(), embeddings],
        labels,
    )
}

/// ArcFace, CosFace or sub-center ArcFace ([`Proxy::arcface`], [`Proxy::cosface`],
/// [`Proxy::subcenter_arcface`]) of `embeddings` `[B, D]` with their class indices `classes`
/// (0 .. C − 1) against the class weights `weights` `[C·K, D]` (rows jK .. jK + K − 1 class
/// j's, K = [`Proxy::sub_centers`]): differentiable in both. The indices are not checked on
/// the device (that needs a read back): one ≥ C leaves its query's term out.
pub fn proxy(
    embeddings: Tensor<2>,
    classes: Tensor<1, Int>,
    weights: Tensor<2>,
    loss: &Proxy,
) -> Result<Tensor<1>> {
    let [rows, dim] = side("embeddings", &embeddings)?;
    let [c, wdim] = side("weights", &weights)?;
    if wdim != dim {
        return Err(shape("columns of the class weights", dim, wdim));
    }
    same_len("classes", rows, &classes)?;
    let k = loss.sub_centers.max(1) as usize;
    if c % k != 0 {
        return Err(shape(
            "rows of the class weights (whole classes of sub-centres)",
            c.div_ceil(k) * k,
            c,
        ));
    }
    loss.batch_limit(rows, c, dim)?;
    run(
        call(Family::Proxy(*loss), Form::Classes),
        [embeddings, weights.clone(), weights],
        classes,
    )
}

/// The triplet loss of a labelled batch, triplets mined by [`Triplet::mining`].
pub fn triplet(embeddings: Tensor<2>, labels: Tensor<1, Int>, loss: &Triplet) -> Result<Tensor<1>> {
    let [rows, dim] = side("embeddings", &embeddings)?;
    same_len("labels", rows, &labels)?;
    loss.batch_limit(rows, dim)?;
    let call = call(Family::Triplet(*loss), Form::Batch);
    run(
        call,
        [embeddings.clone(), embeddings.clone(), embeddings],
        labels,
    )
}

/// The triplet loss of explicit triplets (anchor_i, positive_i, negative_i).
pub fn triplet_explicit(
    anchors: Tensor<2>,
    positives: Tensor<2>,
    negatives: Tensor<2>,
    loss: &Triplet,
) -> Result<Tensor<1>> {
    let [rows, dim] = side("anchors", &anchors)?;
    same_shape("positives", [rows, dim], side("positives", &positives)?)?;
    same_shape("negatives", [rows, dim], side("negatives", &negatives)?)?;
    loss.explicit_limit(rows, dim)?;
    let labels = Tensor::<1, Int>::zeros([1], &anchors.device());
    let call = call(Family::Triplet(*loss), Form::Explicit);
    run(call, [anchors, positives, negatives], labels)
}

fn call(family: Family, form: Form) -> LossCall {
    LossCall {
        family,
        form,
        grads: [false; 3],
    }
}

/// Checks the device, then runs the operation.
fn run(call: LossCall, sides: [Tensor<2>; 3], labels: Tensor<1, Int>) -> Result<Tensor<1>> {
    let device = sides[0].device();
    gpu(&device)?;
    for (i, s) in sides.iter().enumerate().take(call.form.sides()) {
        on_device(["a", "b", "c"][i], &device, &s.device())?;
    }
    on_device("labels", &device, &labels.device())?;
    let [a, b, c] = sides.map(Tensor::into_dispatch);
    let loss = Dispatch::metric_loss(a, b, c, ids(labels).into_dispatch(), call);
    Ok(Tensor::from_dispatch(loss))
}

/// Class ids as the kernels read them: 32-bit values (wider ids are cast on the device, so
/// ids must fit in 32 bits).
fn ids(labels: Tensor<1, Int>) -> Tensor<1, Int> {
    match labels.dtype() {
        DType::I32 | DType::U32 => labels,
        _ => labels.cast(IntDType::I32),
    }
}

/// Checks queries against reference rows. Returns the call, the labels (the queries', then
/// the references'), and the rows and width the magnitude limit is taken over.
fn against(
    queries: &Tensor<2>,
    labels: Tensor<1, Int>,
    reference: &Reference,
    family: Family,
) -> Result<(LossCall, Tensor<1, Int>, [usize; 2])> {
    let [n, dim] = side("queries", queries)?;
    let [m, rdim] = side("reference rows", &reference.rows)?;
    if rdim != dim {
        return Err(shape("columns of the reference rows", dim, rdim));
    }
    same_len("labels", n, &labels)?;
    same_len("reference labels", m, &reference.labels)?;
    if matches!(reference.queries_at, Some(o) if o + n > m) {
        return Err(LossError::OptionConflict {
            option: "queries_at (the queries among the reference rows)",
            reason: "the queries do not fit in the reference rows there",
        }
        .into());
    }
    let form = Form::Against {
        split: n,
        queries_at: reference.queries_at,
    };
    let labels = Tensor::cat(vec![ids(labels), ids(reference.labels.clone())], 0);
    Ok((call(family, form), labels, [n + m, dim]))
}

/// Two views' rows, keys and width, checked (and the loss's mode and limit).
fn views(a: &Tensor<2>, b: &Tensor<2>, loss: &Softmax) -> Result<(usize, usize, usize)> {
    let [rows, dim] = side("a", a)?;
    let [keys, bdim] = side("b", b)?;
    if bdim != dim {
        return Err(shape("columns of b", dim, bdim));
    }
    if loss.loss == SoftmaxLoss::Clip {
        same_shape("b", [rows, dim], [keys, bdim])?;
    } else if keys < rows {
        return Err(shape(
            "rows of b (at least as many keys as anchors)",
            rows,
            keys,
        ));
    }
    // Also refuses NT-Xent and SupCon, which take a labelled batch.
    loss.keys_limit(rows, keys, dim)?;
    Ok((rows, keys, dim))
}

/// SigLIP's two views' rows, checked (b at least a's rows, the same width, the limit).
fn siglip_views(a: &Tensor<2>, b: &Tensor<2>, loss: &Siglip) -> Result<(usize, usize)> {
    let [rows, dim] = side("a", a)?;
    let [cols, bdim] = side("b", b)?;
    if bdim != dim {
        return Err(shape("columns of b", dim, bdim));
    }
    if cols < rows {
        return Err(shape("rows of b (at least as many as a)", rows, cols));
    }
    loss.pairs_limit(rows, cols, dim)?;
    Ok((rows, cols))
}

/// An input's `[rows, dim]`, checked: f32, not empty, indices within 32 bits.
fn side(what: &'static str, x: &Tensor<2>) -> Result<[usize; 2]> {
    if x.dtype() != DType::F32 {
        return Err(Error::DType {
            what,
            expected: "f32",
            got: format!("{:?}", x.dtype()),
        });
    }
    let [rows, dim] = x.dims();
    if rows == 0 {
        return Err(LossError::EmptyInput { what }.into());
    }
    if dim == 0 {
        return Err(LossError::ZeroDim { what }.into());
    }
    Ok([rows, dim])
}

fn same_shape(what: &'static str, expected: [usize; 2], got: [usize; 2]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(shape(what, expected[0] * expected[1], got[0] * got[1]))
    }
}

fn same_len(what: &'static str, rows: usize, labels: &Tensor<1, Int>) -> Result<()> {
    let [len] = labels.dims();
    if len == rows {
        Ok(())
    } else {
        Err(shape(what, rows, len))
    }
}

fn shape(what: &'static str, expected: usize, got: usize) -> Error {
    LossError::ShapeMismatch {
        what,
        expected,
        got,
    }
    .into()
}

fn on_device(what: &'static str, device: &Device, other: &Device) -> Result<()> {
    if device == other {
        Ok(())
    } else {
        Err(Error::Device { what })
    }
}

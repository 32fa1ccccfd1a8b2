//! Verdicts for a loss and gradients computed outside this crate (metric-loss-burn's
//! operations, a framework's own tensor-op version of a loss): each is compared with the
//! f64 reference under the crate's tolerance rule, as the `*_check` calls compare the GPU's.
//! Such outputs carry no counts and no dL/dτ, so the verdict takes those from the reference:
//! it judges the loss and the gradients only.

use crate::losses::triplet::Mode;
use crate::options::{Gradient, Grads, LossOutput, ReferenceSet};
use crate::tolerance::Verdict;
use crate::{
    Contrastive, Embeddings, Labels, Proxy, Result, Siglip, SiglipOutput, Softmax, Triplet,
    Weighting,
};

/// A loss and one gradient per differentiable input (row-major, the input's shape),
/// computed elsewhere.
#[derive(Clone, Debug)]
pub struct Outside {
    /// The loss.
    pub loss: f64,
    /// dL/dinput for each input, in the call's argument order.
    pub grads: Vec<Vec<f32>>,
}

impl Outside {
    /// As an output of the reference's family, with the reference's counts and dL/dτ.
    fn adopt<C: Copy>(&self, reference: &LossOutput<C>, dim: usize) -> LossOutput<C> {
        LossOutput {
            loss: self.loss,
            counts: reference.counts,
            grads: self
                .grads
                .iter()
                .map(|g| Gradient::new(g.clone(), dim))
                .collect(),
            grad_temperature: reference.grad_temperature,
            grad_bias: reference.grad_bias,
        }
    }
}

/// Contrastive, a labelled batch.
pub fn contrastive_batch(
    cfg: &Contrastive,
    x: &Embeddings<'_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    let r = cfg.batch_cpu(x, labels, Grads::Compute)?;
    let name = cfg.case_name("batch");
    Ok(super::contrastive_batch_verdict(
        name,
        cfg,
        &out.adopt(&r, x.dim()),
        &r,
        x,
    ))
}

/// Contrastive, matched rows.
pub fn contrastive_pairs(
    cfg: &Contrastive,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    similar: &[bool],
    out: &Outside,
) -> Result<Verdict> {
    let r = cfg.pairs_cpu(a, b, similar, Grads::Compute)?;
    let name = cfg.case_name("pairs");
    Ok(super::contrastive_pairs_verdict(
        name,
        cfg,
        &out.adopt(&r, a.dim()),
        &r,
        a,
        b,
    ))
}

/// Contrastive, queries against reference rows.
pub fn contrastive_against(
    cfg: &Contrastive,
    queries: &Embeddings<'_>,
    reference: &ReferenceSet<'_, '_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    cfg.against_verdict(queries, reference, labels, |r| out.adopt(r, queries.dim()))
}

/// NT-Xent or SupCon, a labelled batch.
pub fn softmax_batch(
    cfg: &Softmax,
    x: &Embeddings<'_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    cfg.validate_batch(x, labels)?;
    Ok(cfg.batch_verdict(x, labels, |r| out.adopt(r, x.dim())))
}

/// CLIP or InfoNCE, two views (with class ids of a's then b's rows masking false
/// negatives when given).
pub fn softmax_pairs(
    cfg: &Softmax,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    labels: Option<&Labels>,
    out: &Outside,
) -> Result<Verdict> {
    match labels {
        Some(l) => cfg.validate_pairs_labelled(a, b, l)?,
        None => cfg.validate_pairs(a, b)?,
    }
    let ids = labels.map(|l| l.ids().split_at(a.rows()));
    Ok(cfg.keys_verdict(a, b, ids, |r| out.adopt(r, a.dim())))
}

/// NT-Xent or SupCon, queries against reference rows.
pub fn softmax_against(
    cfg: &Softmax,
    queries: &Embeddings<'_>,
    reference: &ReferenceSet<'_, '_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    cfg.validate_against(queries, reference, labels)?;
    Ok(cfg.against_verdict(queries, reference, labels, |r| out.adopt(r, queries.dim())))
}

/// Triplets mined from a labelled batch.
pub fn triplet_batch(
    cfg: &Triplet,
    x: &Embeddings<'_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    let r = cfg.batch_cpu(x, labels, Grads::Compute)?;
    let name = cfg.case_name(Mode::Mined(cfg.mining));
    Ok(super::triplet::batch_verdict(
        name,
        cfg,
        &out.adopt(&r, x.dim()),
        &r,
        x,
    ))
}

/// Explicit triplets.
pub fn triplet_explicit(
    cfg: &Triplet,
    inputs: [&Embeddings<'_>; 3],
    out: &Outside,
) -> Result<Verdict> {
    let [a, p, n] = inputs;
    let r = cfg.explicit_cpu(a, p, n, Grads::Compute)?;
    let name = cfg.case_name(Mode::Explicit);
    Ok(super::triplet::explicit_verdict(
        name,
        cfg,
        &out.adopt(&r, a.dim()),
        &r,
        inputs,
    ))
}

/// SigLIP over A and B (positives from `labels`, A's then B's, or the matched rows): a
/// whole output (the device-resident path's, with its scalar gradients) against the
/// reference.
pub fn siglip_output(
    cfg: &Siglip,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    labels: Option<&Labels>,
    out: SiglipOutput,
) -> Verdict {
    let iota: Vec<u32> = (0..b.rows() as u32).collect();
    let classes = labels.map_or((&iota[..], &iota[..]), |l| l.ids().split_at(a.rows()));
    cfg.verdict(a, b, classes, |_| out)
}

/// SigLIP, a loss and dL/dA, dL/dB computed elsewhere (the scalar gradients are the
/// reference's).
pub fn siglip_pairs(
    cfg: &Siglip,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    labels: Option<&Labels>,
    out: &Outside,
) -> Result<Verdict> {
    let r = match labels {
        Some(l) => cfg.pairs_labelled_cpu(a, b, l, Grads::Compute)?,
        None => cfg.pairs_cpu(a, b, Grads::Compute)?,
    };
    Ok(siglip_output(cfg, a, b, labels, out.adopt(&r, a.dim())))
}

/// Multi-Similarity or Circle, a labelled batch: a loss and dL/dX computed elsewhere.
pub fn weighting_batch(
    cfg: &Weighting,
    x: &Embeddings<'_>,
    labels: &Labels,
    out: &Outside,
) -> Result<Verdict> {
    let r = cfg.batch_cpu(x, labels, Grads::Compute)?;
    Ok(cfg.batch_verdict(x, labels, |_| out.adopt(&r, x.dim())))
}

/// ArcFace or CosFace: a loss, dL/dX and dL/dW computed elsewhere.
pub fn proxy_batch(
    cfg: &Proxy,
    x: &Embeddings<'_>,
    classes: &[u32],
    weights: &Embeddings<'_>,
    out: &Outside,
) -> Result<Verdict> {
    let r = cfg.batch_cpu(x, classes, weights, Grads::Compute)?;
    Ok(cfg.batch_verdict(x, classes, weights, |_| out.adopt(&r, x.dim())))
}

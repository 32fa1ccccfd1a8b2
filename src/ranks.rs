//! One loss over a batch spread across devices or processes (ranks), transport left to the
//! caller: the loss and every row's gradient come out as if one device had run the whole
//! batch, normalised by the global count (no world-size factor).
//!
//! Each rank all-gathers every rank's rows and labels (the global batch G), then calls
//! `against` with its own rows as the queries and G as a [`crate::ReferenceSet`]
//! `with_queries_at(first)` and [`crate::ReferenceGrad::Returned`]. [`contribution`] packs
//! what that call gives into one buffer; the caller sums those buffers over the ranks (one
//! all-reduce, or a reduce-scatter of the gradient part) and [`combine`] turns the sum into
//! the global loss and the gradient of the rank's own rows.
//!
//! ```no_run
//! # use metric_loss::{ranks, Contrastive, Embeddings, Gpu, Grads, Labels, Reduction,
//! #     ReferenceGrad, ReferenceSet};
//! # fn all_reduce_sum(v: &mut [f64]) {}
//! # fn f(gpu: &Gpu, mine: &Embeddings, gathered: &Embeddings, labels: &Labels, first: usize)
//! # -> metric_loss::Result<()> {
//! let cfg = Contrastive::default();
//! let set = ReferenceSet::new(gathered, ReferenceGrad::Returned).with_queries_at(first);
//! let out = cfg.against(gpu, mine, &set, labels, Grads::Compute)?;
//! let mut sum = ranks::contribution(
//!     Reduction::Mean, out.loss, out.counts.pairs(), out.grads[1].values())?;
//! all_reduce_sum(&mut sum); // MPI, NCCL, torch.distributed: any transport
//! let (loss, grad) = ranks::combine(
//!     Reduction::Mean, &sum, out.counts.pairs(), out.grads[0].values(), first, mine.dim())?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::options::Reduction;

/// Values before the reference gradient in a [`contribution`]: the loss part and the count.
pub const HEADER: usize = 2;

fn weight(reduction: Reduction, terms: u64) -> Result<f64> {
    match reduction {
        Reduction::Mean => Ok(terms as f64),
        Reduction::Sum => Ok(1.0),
        Reduction::MeanNonzero => Err(Error::OptionConflict {
            option: "mean-nonzero",
            reason: "its means count non-zero terms per kind, which one count per rank cannot \
                     combine; use mean or sum across ranks",
        }),
    }
}

/// What one rank adds into the sum over ranks: `[w·loss, terms, w·dL/dR …]` (2 + M·D
/// values), with w its terms for a mean and 1 for a sum. `terms` is the count the loss's
/// mean divides by (contrastive: `counts.pairs()`; softmax losses: `counts.terms`;
/// triplets: `counts.terms`); `grad_reference` is the call's dL/dG over the gathered rows.
pub fn contribution(
    reduction: Reduction,
    loss: f64,
    terms: u64,
    grad_reference: &[f32],
) -> Result<Vec<f64>> {
    let w = weight(reduction, terms)?;
    let mut out = Vec::with_capacity(HEADER + grad_reference.len());
    out.extend([w * loss, terms as f64]);
    out.extend(grad_reference.iter().map(|&g| w * f64::from(g)));
    Ok(out)
}

/// From the ranks' [`contribution`]s summed: the global loss, and the gradient of this rank's
/// rows (its `grad_queries`, weighted as in its contribution, plus its rows' part of the
/// summed reference gradient: gathered rows `first ..`), normalised by the global count for a
/// mean (0 when no rank has a term).
pub fn combine(
    reduction: Reduction,
    summed: &[f64],
    terms: u64,
    grad_queries: &[f32],
    first: usize,
    dim: usize,
) -> Result<(f64, Vec<f64>)> {
    let w = weight(reduction, terms)?;
    let start = HEADER + first * dim;
    let end = start + grad_queries.len();
    let Some(mine) = summed.get(start..end) else {
        return Err(Error::ShapeMismatch {
            what: "summed contributions (2 + gathered rows × D)",
            expected: end,
            got: summed.len(),
        });
    };
    let (part, total) = (summed[0], summed[1]);
    let norm = match reduction {
        Reduction::Mean if total > 0.0 => 1.0 / total,
        Reduction::Mean => 0.0,
        _ => 1.0,
    };
    let grad = grad_queries
        .iter()
        .zip(mine)
        .map(|(&q, &r)| (w * f64::from(q) + r) * norm)
        .collect();
    Ok((part * norm, grad))
}

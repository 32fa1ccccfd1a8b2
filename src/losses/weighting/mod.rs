//! The pair-weighting losses, Multi-Similarity (Wang et al. 2019) and Circle (Sun et al.
//! 2020), as pytorch-metric-learning defines them: options and public calls.

mod kernels;
mod limit;
pub mod reference;
mod steps;
pub mod tolerance;

pub(crate) use kernels::{ROWS_TABLE, TABLE};

use crate::engine::call::{run_device, run_host};
use crate::engine::resident::{self, DeviceClasses};
use crate::engine::{DeviceLoss, Gpu};
use crate::error::{Error, Result};
use crate::input::{DeviceGrad, DeviceLabels, DeviceRows, Embeddings, Labels, Target};
use crate::options::{same_rows, Counts, Grads, LossOutput};
use crate::tolerance::Verdict;
use kernels::WeightingParams;
use steps::Call;

/// ln 2⁻¹²⁶: a Circle anchor whose LSE u + LSE v is at or below it has a term below f32's
/// smallest normal value, and is left out of the mean (PML's AvgNonZeroReducer drops
/// anchors whose f32 term is 0).
pub const CIRCLE_FLOOR: f64 = -87.336_544_750_553_93;

/// Which pair-weighting loss, with its options. With s_ij the cosine similarity of rows i
/// and j (rows divided by max(‖row‖, 1e-12), gradients through the division), anchor i's
/// positives P_i are the other rows with its label and its negatives N_i the rows with
/// another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightingLoss {
    /// Multi-Similarity (pytorch-metric-learning's `MultiSimilarityLoss(alpha, beta, base)`,
    /// and with `epsilon` its `MultiSimilarityMiner(epsilon)` first):
    /// L_i = (1/α)·log(1 + Σ over P_i of e^(−α(s − λ))) + (1/β)·log(1 + Σ over N_i of
    /// e^(β(s − λ))), the mean over all B anchors. The miner keeps the positives with
    /// s − ε < the anchor's largest negative s and the negatives with s + ε > its smallest
    /// positive s. As PML, the loss is 0 when at most one positive and at most one negative
    /// pair are left (after mining).
    MultiSimilarity {
        /// α, the positives' weight: finite, > 0, ≤ 1e4. PML's default 2.
        alpha: f32,
        /// β, the negatives' weight: finite, > 0, ≤ 1e4. PML's default 50.
        beta: f32,
        /// λ, the similarity both exponents are shifted by: finite, |λ| ≤ 1e4. PML's 0.5.
        base: f32,
        /// The miner's ε (finite, ≥ 0, ≤ 1e4), or no miner. PML's miner default 0.1.
        epsilon: Option<f32>,
    },
    /// Circle loss (pytorch-metric-learning's `CircleLoss(m, gamma)`):
    /// L_i = softplus(log Σ over P_i of e^(−γ·[1 + m − s]₊·(s − (1 − m))) + log Σ over N_i
    /// of e^(γ·[s + m]₊·(s − m))) for the anchors with a positive and a negative, the
    /// weights [·]₊ constants of the gradient (as the paper and PML). The mean is over the
    /// anchors whose term is non-zero in f32 (PML's AvgNonZeroReducer): those with both
    /// sets and LSE sum above ln 2⁻¹²⁶ ([`CIRCLE_FLOOR`]; PML on a CPU also keeps
    /// subnormal terms down to about −103.3: their terms are below 1e-38).
    Circle {
        /// m, the relaxation: finite, 0 ≤ m ≤ 1e4. PML's default 0.4.
        m: f32,
        /// γ, the scale: finite, > 0, ≤ 1e4. PML's default 80.
        gamma: f32,
    },
}

/// A pair-weighting loss on a labelled batch. Computed on the pair engine: a sweep of
/// online log-sum-exps over each anchor's positives and negatives (after a sweep for the
/// miner's bounds), then a gradient sweep that recomputes the similarities; nothing B×B
/// exists.
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Labels, Weighting};
/// let gpu = Gpu::new()?;
/// let data = [1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
/// let x = Embeddings::new(&data, 4, 2)?;
/// let out = Weighting::circle().batch(&gpu, &x, &Labels::new(&[0, 0, 1, 1]), Grads::Compute)?;
/// println!("loss {} over {} anchors", out.loss, out.counts.terms);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weighting {
    /// Which loss, with its options.
    pub loss: WeightingLoss,
}

/// Counts of a pair-weighting call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightingCounts {
    /// The anchors averaged over: B for Multi-Similarity (0 under PML's rule of too few
    /// pairs), the counted anchors for Circle.
    pub terms: u64,
    /// Ordered (anchor, positive) pairs in the log-sum-exps (after mining).
    pub positive_pairs: u64,
    /// Ordered (anchor, negative) pairs in them (after mining).
    pub negative_pairs: u64,
}

impl Counts for WeightingCounts {
    fn terms(&self) -> u64 {
        self.terms
    }

    fn active(&self) -> Option<u64> {
        None
    }
}

/// Output of a pair-weighting call.
pub type WeightingOutput = LossOutput<WeightingCounts>;

/// A value of an option: finite and within `lo ≤ v ≤ 1e4` (`lo` excluded when `open`).
fn check(name: &'static str, v: f32, lo: f32, open: bool, rule: &'static str) -> Result<()> {
    let above = if open { v > lo } else { v >= lo };
    if v.is_finite() && above && v <= 1e4 {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            name,
            value: f64::from(v),
            rule,
        })
    }
}

impl Weighting {
    /// Multi-Similarity with PML's defaults: α = 2, β = 50, λ = 0.5, no miner.
    pub fn multi_similarity() -> Self {
        Self {
            loss: WeightingLoss::MultiSimilarity {
                alpha: 2.0,
                beta: 50.0,
                base: 0.5,
                epsilon: None,
            },
        }
    }

    /// Circle with PML's defaults: m = 0.4, γ = 80.
    pub fn circle() -> Self {
        Self {
            loss: WeightingLoss::Circle {
                m: 0.4,
                gamma: 80.0,
            },
        }
    }

    /// The loss with its options checked.
    pub fn new(loss: WeightingLoss) -> Result<Self> {
        let w = Self { loss };
        w.validate()?;
        Ok(w)
    }

    /// The name the CLI uses: "multi-similarity" or "circle".
    pub fn name(&self) -> &'static str {
        match self.loss {
            WeightingLoss::MultiSimilarity { .. } => "multi-similarity",
            WeightingLoss::Circle { .. } => "circle",
        }
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        match self.loss {
            WeightingLoss::MultiSimilarity {
                alpha,
                beta,
                base,
                epsilon,
            } => {
                check("alpha", alpha, 0.0, true, "must be finite, > 0 and <= 1e4")?;
                check("beta", beta, 0.0, true, "must be finite, > 0 and <= 1e4")?;
                check(
                    "base",
                    base.abs(),
                    0.0,
                    false,
                    "must be finite with |base| <= 1e4",
                )?;
                if let Some(e) = epsilon {
                    check("epsilon", e, 0.0, false, "must be finite, >= 0 and <= 1e4")?;
                }
            }
            WeightingLoss::Circle { m, gamma } => {
                check("m", m, 0.0, false, "must be finite, >= 0 and <= 1e4")?;
                check("gamma", gamma, 0.0, true, "must be finite, > 0 and <= 1e4")?;
            }
        }
        Ok(())
    }

    /// Whether the call runs the miner (and its bounds sweep).
    pub(crate) fn mines(&self) -> bool {
        matches!(
            self.loss,
            WeightingLoss::MultiSimilarity {
                epsilon: Some(_),
                ..
            }
        )
    }

    /// dL/dterm from the counted anchors and the pairs: 1/anchors, or 0 (no anchor; or
    /// Multi-Similarity with at most one positive and one negative pair, PML's rule).
    pub(crate) fn scale(&self, counted: u64, counts: &WeightingCounts) -> f64 {
        let few = counts.positive_pairs <= 1 && counts.negative_pairs <= 1;
        match self.loss {
            WeightingLoss::MultiSimilarity { .. } if few => 0.0,
            _ if counted == 0 => 0.0,
            _ => 1.0 / counted as f64,
        }
    }

    /// The options as the kernels' parameters (the sizes left at 0).
    fn kernel_params(&self) -> WeightingParams {
        match self.loss {
            WeightingLoss::MultiSimilarity {
                alpha,
                beta,
                base,
                epsilon,
            } => WeightingParams {
                loss: 0,
                mine: u32::from(epsilon.is_some()),
                alpha,
                beta,
                base,
                epsilon: epsilon.unwrap_or(0.0),
                ..Default::default()
            },
            WeightingLoss::Circle { m, gamma } => WeightingParams {
                loss: 1,
                margin: m,
                gamma,
                ..Default::default()
            },
        }
    }

    /// The largest |x| [`Weighting::batch`] accepts for `rows × dim` (see
    /// [`crate::Error::TooLargeForLoss`]). No device or data needed.
    pub fn batch_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate()?;
        self.magnitude_limit(dim, rows)
    }

    /// Everything [`Weighting::batch`] checks before it runs: options, shapes and the
    /// magnitude limit.
    pub fn validate_batch(&self, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
        same_rows("labels", x.rows(), labels.len())?;
        let limit = self.batch_limit(x.rows(), x.dim())?;
        crate::limit::check(&x.as_input("embeddings"), limit, || {
            self.describe(x.rows(), x.dim())
        })
    }

    /// The loss over the batch `x` and its labels. Gradients (with [`Grads::Compute`]) are
    /// `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<WeightingOutput> {
        self.validate_batch(x, labels)?;
        run_host(gpu, &Call { cfg: *self }, &[x], &[labels.ids()], grads)
    }

    /// The f64 CPU reference of [`Weighting::batch`].
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<WeightingOutput> {
        self.validate_batch(x, labels)?;
        let w = crate::reference::widen(x);
        let (r, _) = reference::batch_with_mass(self, &w, x.dim(), labels.ids(), grads);
        Ok(r.narrow(x.dim()))
    }

    /// [`Weighting::batch`] on embeddings and u32 class ids in the caller's buffers (see
    /// [`crate::device`]): the counts are taken on the device, the loss stays there
    /// ([`DeviceLoss::read`]), and the gradient (when `grad` is given) is written into the
    /// caller's buffer, scaled and overwriting or accumulating.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        resident::check_side("embeddings", &x, grad.as_ref())?;
        resident::check_labels("labels", &labels, x.rows)?;
        let limit = self.batch_limit(x.rows, x.dim)?;
        let classes = DeviceClasses::Labels(labels);
        run_device(
            gpu,
            &Call { cfg: *self },
            &[x],
            classes,
            &[grad],
            target,
            limit,
        )
    }

    /// Runs [`Weighting::batch`] and [`Weighting::batch_cpu`] with gradients and compares
    /// them (loss, gradient, counts) under the crate's tolerance rule ([`crate::tolerance`]).
    pub fn batch_check(&self, gpu: &Gpu, x: &Embeddings<'_>, labels: &Labels) -> Result<Verdict> {
        let g = self.batch(gpu, x, labels, Grads::Compute)?;
        Ok(self.batch_verdict(x, labels, |_| g))
    }

    /// [`Weighting::batch_check`]'s comparison of the output `output` makes from the
    /// reference's (the GPU's, or one computed elsewhere).
    pub(crate) fn batch_verdict(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        output: impl FnOnce(&WeightingOutput) -> WeightingOutput,
    ) -> Verdict {
        let w = crate::reference::widen(x);
        let (r, mass) = reference::batch_with_mass(self, &w, x.dim(), labels.ids(), Grads::Compute);
        let r = r.narrow(x.dim());
        tolerance::verdict(self.case_name(), self, &output(&r), &r, x, &mass)
    }

    /// The loss and its options, for a verdict's name.
    pub fn case_name(&self) -> String {
        match self.loss {
            WeightingLoss::MultiSimilarity {
                alpha,
                beta,
                base,
                epsilon,
            } => {
                let mine = epsilon.map_or(String::new(), |e| format!(" eps {e}"));
                format!("multi-similarity a {alpha} b {beta} base {base}{mine}")
            }
            WeightingLoss::Circle { m, gamma } => format!("circle m {m} gamma {gamma}"),
        }
    }
}

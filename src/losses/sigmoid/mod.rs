//! SigLIP's sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image
//! Pre-Training"; open_clip's `SigLipLoss`): options and public calls.

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
use steps::Call;

/// The largest logit scale t = exp(t′) accepted (the softmax losses' largest 1/τ).
pub const MAX_LOGIT_SCALE: f32 = 1e4;

/// The largest |b| accepted.
pub const MAX_BIAS: f32 = 1e4;

/// SigLIP's pairwise sigmoid loss over two views A (N×D) and B (M×D, M ≥ N; rows past N
/// are extra negatives, as the chunks from other devices are in open_clip's distributed
/// form). With â, b̂ the rows divided by max(‖row‖, 1e-12) (gradients through the
/// division), t = exp(t′) the logit scale and b the bias, the logits are
/// x_ij = t·â_i·b̂_j + b and
///
/// L = −(1/N) Σ_{i<N} Σ_{j<M} log σ(z_ij·x_ij) = (1/N) Σ_ij softplus(−z_ij·x_ij),
///
/// z_ij = +1 for a positive pair and −1 otherwise: the matched rows j = i
/// ([`Siglip::pairs`]), or the pairs whose labels agree ([`Siglip::pairs_labelled`]). It is
/// open_clip's `SigLipLoss` (which takes normalised features, `logit_scale` = t already
/// exponentiated, and `logit_bias` = b) and big_vision's. Every pair is its own term: no
/// softmax across a row, so no all-gather of the logits is needed and one sweep gives the
/// loss and its gradient. softplus is evaluated as max(u, 0) + log1p(exp(−|u|)), σ with
/// one exp of a non-positive argument: finite for every logit.
///
/// Every call with gradients returns `[dL/dA, dL/dB]`, dL/dt′
/// ([`LossOutput::grad_temperature`]) and dL/db ([`LossOutput::grad_bias`]), so that both
/// learnable scalars train. Defaults are the paper's initialisation: t′ = ln 10, b = −10.
/// No N×M buffer exists: the similarity tiles are recomputed per sweep.
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Siglip};
/// let gpu = Gpu::new()?;
/// let (img, txt) = ([1.0f32, 0.0, 0.0, 1.0], [0.9f32, 0.1, 0.2, 0.8]);
/// let (a, b) = (Embeddings::new(&img, 2, 2)?, Embeddings::new(&txt, 2, 2)?);
/// let out = Siglip::default().pairs(&gpu, &a, &b, Grads::Compute)?;
/// println!("loss {} dL/dt' {:?} dL/db {:?}", out.loss, out.grad_temperature, out.grad_bias);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Siglip {
    /// t′, the log of the logit scale: finite, exp(t′) ≤ 1e4.
    pub log_scale: f32,
    /// b: finite, |b| ≤ 1e4.
    pub bias: f32,
}

impl Default for Siglip {
    /// The paper's initialisation: t′ = ln 10, b = −10.
    fn default() -> Self {
        Self {
            log_scale: std::f32::consts::LN_10,
            bias: -10.0,
        }
    }
}

/// Counts of a SigLIP call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiglipCounts {
    /// N, the rows of A the loss is averaged over.
    pub terms: u64,
    /// Pairs with z = +1.
    pub positive_pairs: u64,
}

impl Counts for SiglipCounts {
    fn terms(&self) -> u64 {
        self.terms
    }

    fn active(&self) -> Option<u64> {
        None
    }
}

/// Output of a SigLIP call.
pub type SiglipOutput = LossOutput<SiglipCounts>;

impl Siglip {
    /// t′ and b, checked.
    pub fn new(log_scale: f32, bias: f32) -> Result<Self> {
        let s = Self { log_scale, bias };
        s.validate()?;
        Ok(s)
    }

    /// The logit scale t = exp(t′).
    pub fn scale(&self) -> f32 {
        f64::from(self.log_scale).exp() as f32
    }

    /// Checks t′ and b.
    pub fn validate(&self) -> Result<()> {
        let t = self.log_scale;
        if !(t.is_finite() && f64::from(t).exp() <= f64::from(MAX_LOGIT_SCALE)) {
            return Err(Error::InvalidOption {
                name: "log_scale",
                value: f64::from(t),
                rule: "must be finite with exp(log_scale) <= 1e4",
            });
        }
        if !(self.bias.is_finite() && self.bias.abs() <= MAX_BIAS) {
            return Err(Error::InvalidOption {
                name: "bias",
                value: f64::from(self.bias),
                rule: "must be finite with |bias| <= 1e4",
            });
        }
        Ok(())
    }

    /// The largest |x| [`Siglip::pairs`] accepts for `rows` rows of A and `cols` of B (see
    /// [`crate::Error::TooLargeForLoss`]). No device or data needed.
    pub fn pairs_limit(&self, rows: usize, cols: usize, dim: usize) -> Result<f64> {
        self.validate()?;
        self.magnitude_limit(dim, rows + cols)
    }

    /// Everything [`Siglip::pairs`] checks before it runs: options, B at least as many rows
    /// as A, the same width, and the magnitude limit.
    pub fn validate_pairs(&self, a: &Embeddings<'_>, b: &Embeddings<'_>) -> Result<()> {
        self.validate()?;
        check_shapes((a.rows(), a.dim()), (b.rows(), b.dim()))?;
        let limit = self.pairs_limit(a.rows(), b.rows(), a.dim())?;
        for (what, x) in [("a", a), ("b", b)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe(a.rows() + b.rows(), a.dim())
            })?;
        }
        Ok(())
    }

    /// Everything [`Siglip::pairs_labelled`] checks before it runs.
    pub fn validate_pairs_labelled(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
    ) -> Result<()> {
        self.validate_pairs(a, b)?;
        same_rows("labels (A's, then B's)", a.rows() + b.rows(), labels.len())
    }

    /// The loss over A (`a`) against B (`b`), row i of each a positive pair and every other
    /// pair negative. Gradients (with [`Grads::Compute`]) are `[dL/dA, dL/dB]`, with dL/dt′
    /// and dL/db.
    pub fn pairs(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SiglipOutput> {
        self.validate_pairs(a, b)?;
        let ids = iota(b.rows());
        run_host(gpu, &Call { cfg: *self }, &[a, b], &[&ids], grads)
    }

    /// [`Siglip::pairs`] with the positives from labels: `labels` holds A's labels then B's
    /// (N + M), and (i, j) is positive when they agree (several captions of one image,
    /// several images of one class).
    pub fn pairs_labelled(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SiglipOutput> {
        self.validate_pairs_labelled(a, b, labels)?;
        let (la, lb) = labels.ids().split_at(a.rows());
        run_host(gpu, &Call { cfg: *self }, &[a, b], &[la, lb], grads)
    }

    /// The f64 CPU reference of [`Siglip::pairs`].
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SiglipOutput> {
        self.validate_pairs(a, b)?;
        let ids = iota(b.rows());
        Ok(self.reference(a, b, (&ids, &ids), grads).0.narrow(a.dim()))
    }

    /// The f64 CPU reference of [`Siglip::pairs_labelled`].
    pub fn pairs_labelled_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SiglipOutput> {
        self.validate_pairs_labelled(a, b, labels)?;
        let ids = labels.ids().split_at(a.rows());
        Ok(self.reference(a, b, ids, grads).0.narrow(a.dim()))
    }

    fn reference(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        classes: (&[u32], &[u32]),
        grads: Grads,
    ) -> (reference::Reference, reference::Mass) {
        let w = crate::reference::widen;
        let p = reference::Pairs {
            scale: f64::from(self.log_scale).exp(),
            bias: f64::from(self.bias),
            classes,
        };
        reference::pairs_with_mass(&p, &w(a), &w(b), a.dim(), grads)
    }

    /// Runs [`Siglip::pairs`] and [`Siglip::pairs_cpu`] with gradients and compares them
    /// (loss, both gradients, dL/dt′, dL/db, counts) under the crate's tolerance rule
    /// ([`crate::tolerance`]).
    pub fn pairs_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
    ) -> Result<Verdict> {
        let g = self.pairs(gpu, a, b, Grads::Compute)?;
        let ids = iota(b.rows());
        Ok(self.verdict(a, b, (&ids, &ids), |_| g))
    }

    /// Runs [`Siglip::pairs_labelled`] and its reference and compares them.
    pub fn pairs_labelled_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
    ) -> Result<Verdict> {
        let g = self.pairs_labelled(gpu, a, b, labels, Grads::Compute)?;
        Ok(self.verdict(a, b, labels.ids().split_at(a.rows()), |_| g))
    }

    /// The checks' comparison of the output `output` makes from the reference's (the
    /// GPU's, or one computed elsewhere).
    pub(crate) fn verdict(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        classes: (&[u32], &[u32]),
        output: impl FnOnce(&SiglipOutput) -> SiglipOutput,
    ) -> Verdict {
        let (r, mass) = self.reference(a, b, classes, Grads::Compute);
        let r = r.narrow(a.dim());
        let name = format!("siglip t' {:<6} b {:<5}", self.log_scale, self.bias);
        tolerance::verdict(name, self, &output(&r), &r, [a, b], &mass)
    }

    /// [`Siglip::pairs`] on views A and B in the caller's buffers (see [`crate::device`]):
    /// the loss, dL/dt′ and dL/db stay on the device ([`DeviceLoss::read_scalars`]), and
    /// dL/dA and dL/dB (when `grads` are given) go into the caller's buffers, scaled and
    /// overwriting or accumulating.
    pub fn pairs_device(
        &self,
        gpu: &Gpu,
        a: DeviceRows<'_>,
        b: DeviceRows<'_>,
        grads: Option<[DeviceGrad<'_>; 2]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.views_device(gpu, [a, b], DeviceClasses::Iota, grads, target)
    }

    /// [`Siglip::pairs_labelled`] on the caller's buffers: A's class ids `la`, B's `lb`.
    #[allow(clippy::too_many_arguments)]
    pub fn pairs_labelled_device(
        &self,
        gpu: &Gpu,
        a: DeviceRows<'_>,
        b: DeviceRows<'_>,
        la: DeviceLabels<'_>,
        lb: DeviceLabels<'_>,
        grads: Option<[DeviceGrad<'_>; 2]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        resident::check_labels("labels of a", &la, a.rows)?;
        resident::check_labels("labels of b", &lb, b.rows)?;
        self.views_device(gpu, [a, b], DeviceClasses::PerSide([la, lb]), grads, target)
    }

    fn views_device(
        &self,
        gpu: &Gpu,
        [a, b]: [DeviceRows<'_>; 2],
        classes: DeviceClasses<'_>,
        grads: Option<[DeviceGrad<'_>; 2]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        let [ga, gb] = grads.map_or([None, None], |[a, b]| [Some(a), Some(b)]);
        resident::check_side("a", &a, ga.as_ref())?;
        resident::check_side("b", &b, gb.as_ref())?;
        check_shapes((a.rows, a.dim), (b.rows, b.dim))?;
        let limit = self.pairs_limit(a.rows, b.rows, a.dim)?;
        let call = Call { cfg: *self };
        run_device(gpu, &call, &[a, b], classes, &[ga, gb], target, limit)
    }
}

/// B has at least A's rows (its first N are the matched ones) and A's width.
fn check_shapes((n, d): (usize, usize), (m, e): (usize, usize)) -> Result<()> {
    if m < n {
        return Err(Error::ShapeMismatch {
            what: "rows of b (at least as many as a: row i of each is a positive pair)",
            expected: n,
            got: m,
        });
    }
    same_rows("columns of b", d, e)
}

/// Row indices as class ids: only the matched rows agree.
fn iota(rows: usize) -> Vec<u32> {
    (0..rows as u32).collect()
}

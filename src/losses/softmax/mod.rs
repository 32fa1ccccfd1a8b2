//! The softmax-contrastive losses (NT-Xent, SupCon, CLIP, InfoNCE): options and public
//! calls.

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
use crate::input::{
    DeviceGrad, DeviceLabels, DeviceReference, DeviceRows, Embeddings, Labels, Target,
    MAX_ABS_VALUE,
};
use crate::options::{same_rows, Counts, Grads, LossOutput, ReferenceGrad, ReferenceSet};
use crate::tolerance::Verdict;
use steps::{Call, Pairing};

/// Which softmax-contrastive loss. With s_ij the cosine similarity of rows i and j (rows
/// divided by max(‖row‖, 1e-12), gradients through the division) and τ the temperature,
/// the logits are z_ij = s_ij / τ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxLoss {
    /// NT-Xent (SimCLR; pytorch-metric-learning's `NTXentLoss`), on a labelled batch: for
    /// every ordered positive pair (a, p), a ≠ p, same label,
    /// ℓ = −z_ap + log(exp(z_ap) + Σ over n with label(n) ≠ label(a) of exp(z_an)),
    /// averaged over the positive pairs. Two augmented views of N samples without labels
    /// are the batch [view 1; view 2] with labels (0..N, 0..N). Default τ = 0.07.
    NtXent,
    /// Supervised contrastive loss (Khosla et al. 2020, "L_out"), on a labelled batch: for
    /// each anchor a with at least one positive,
    /// ℓ_a = −(1/|P(a)|) Σ over p in P(a) of [z_ap − log Σ over k ≠ a of exp(z_ak)],
    /// averaged over those anchors. Default τ = 0.1.
    SupCon,
    /// CLIP's symmetric cross-entropy over two views A and B (N×D each), row i of A matching
    /// row i of B: (CE(S, I) + CE(Sᵀ, I)) / 2 with S_ij = s(a_i, b_j)/τ, each CE averaged over
    /// its N rows. Default τ = 0.07. It is symmetric InfoNCE with M = N keys, and runs on
    /// the same kernels.
    Clip,
    /// InfoNCE, sentence-transformers' `MultipleNegativesRankingLoss`: anchors A (N×D)
    /// against keys K (M×D, M ≥ N), key i the positive of anchor i and every other key (the
    /// other anchors' positives and any extra hard-negative rows) a negative, with logits
    /// S_ij = scale · s(a_i, k_j) (scale = 1/τ, sentence-transformers' default 20):
    /// CE(S, i) = log Σ_j exp(S_ij) − S_ii averaged over the N anchors. `symmetric` adds the
    /// positives-only reverse term (`MultipleNegativesSymmetricRankingLoss`): for each of the
    /// first N keys j, log Σ_i exp(S_ij) − S_jj over the anchors, and the loss is the mean of
    /// the two averages. Optional labels (one per anchor and per key) mask false negatives:
    /// a key j ≠ i with anchor i's label is left out of anchor i's sum (and, in the reverse
    /// term, anchor i ≠ j with key j's label out of key j's). Every anchor has its positive,
    /// so the loss is always defined; N = 0 gives loss 0 and no terms.
    InfoNce {
        /// With the reverse term.
        symmetric: bool,
    },
}

impl SoftmaxLoss {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            SoftmaxLoss::NtXent => "ntxent",
            SoftmaxLoss::SupCon => "supcon",
            SoftmaxLoss::Clip => "clip",
            SoftmaxLoss::InfoNce { .. } => "infonce",
        }
    }

    /// What one term stands for: "positive_pairs", "anchors" or "pairs" (matched rows).
    pub fn term_kind(self) -> &'static str {
        match self {
            SoftmaxLoss::NtXent => "positive_pairs",
            SoftmaxLoss::SupCon | SoftmaxLoss::InfoNce { .. } => "anchors",
            SoftmaxLoss::Clip => "pairs",
        }
    }

    /// The default temperature (InfoNCE: 1/20, sentence-transformers' scale 20).
    pub fn default_temperature(self) -> f32 {
        match self {
            SoftmaxLoss::SupCon => 0.1,
            SoftmaxLoss::InfoNce { .. } => 0.05,
            _ => 0.07,
        }
    }

    /// The kernels' code (shaders/softmax.wgsl `FAMILY_*`): CLIP and InfoNCE share one.
    pub(crate) fn family(self) -> u32 {
        match self {
            SoftmaxLoss::NtXent => 0,
            SoftmaxLoss::SupCon => 1,
            SoftmaxLoss::Clip | SoftmaxLoss::InfoNce { .. } => 2,
        }
    }

    /// Whether the loss takes two views (anchors and keys) rather than a labelled batch.
    pub fn takes_views(self) -> bool {
        matches!(self, SoftmaxLoss::Clip | SoftmaxLoss::InfoNce { .. })
    }

    /// Whether the loss has the reverse term (CE over the anchors per matched key).
    pub fn symmetric(self) -> bool {
        match self {
            SoftmaxLoss::Clip => true,
            SoftmaxLoss::InfoNce { symmetric } => symmetric,
            _ => false,
        }
    }
}

/// The smallest temperature accepted: below it the logits of the input domain leave the
/// range where f32 keeps a useful number of digits.
pub const MIN_TEMPERATURE: f32 = 1e-4;

/// A softmax-contrastive loss and its temperature. Every call with gradients also returns
/// dL/dτ ([`LossOutput::grad_temperature`]), so that a learnable temperature (CLIP's logit
/// scale) can be trained.
///
/// Computed as the fused kernels do (Inf-CL): tiles of the similarity matrix, an online
/// log-sum-exp per row and a backward pass that recomputes the tiles; no B×B buffer exists.
/// A batch without any positive pair (NT-Xent, SupCon) gives loss 0, zero gradients and
/// `terms` 0.
///
/// Two modes, each on host slices, the f64 CPU reference (`*_cpu`), the caller's device
/// buffers (`*_device`) and as a GPU-versus-CPU verdict (`*_check`): `batch` (NT-Xent,
/// SupCon: a labelled batch, gradient `[dL/dX]`) and `pairs` (CLIP: row i of A matches row
/// i of B, gradients `[dL/dA, dL/dB]`).
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Labels, Softmax};
/// let gpu = Gpu::new()?;
/// // Two views of 2 samples: rows 0 and 2 are one sample, rows 1 and 3 the other.
/// let data = [1.0f32, 0.0, 0.0, 1.0, 0.9, 0.1, 0.2, 0.8];
/// let x = Embeddings::new(&data, 4, 2)?;
/// let out = Softmax::ntxent().batch(&gpu, &x, &Labels::new(&[0, 1, 0, 1]), Grads::Compute)?;
/// println!("loss {} dL/dtau {:?}", out.loss, out.grad_temperature);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Softmax {
    /// Which loss.
    pub loss: SoftmaxLoss,
    /// τ: finite, ≥ 1e-4 and ≤ 1e15.
    pub temperature: f32,
}

/// Counts of a softmax-contrastive call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftmaxCounts {
    /// Terms averaged: positive pairs (NT-Xent), anchors with a positive (SupCon), matched
    /// pairs N (CLIP).
    pub terms: u64,
}

impl Counts for SoftmaxCounts {
    fn terms(&self) -> u64 {
        self.terms
    }

    fn active(&self) -> Option<u64> {
        None
    }
}

/// Output of a softmax-contrastive call.
pub type SoftmaxOutput = LossOutput<SoftmaxCounts>;

impl Softmax {
    /// `loss` at its default temperature.
    pub fn new(loss: SoftmaxLoss) -> Self {
        Self {
            loss,
            temperature: loss.default_temperature(),
        }
    }

    /// NT-Xent, τ = 0.07.
    pub fn ntxent() -> Self {
        Self::new(SoftmaxLoss::NtXent)
    }

    /// SupCon, τ = 0.1.
    pub fn supcon() -> Self {
        Self::new(SoftmaxLoss::SupCon)
    }

    /// CLIP, τ = 0.07.
    pub fn clip() -> Self {
        Self::new(SoftmaxLoss::Clip)
    }

    /// InfoNCE (`MultipleNegativesRankingLoss`), scale 20 (τ = 0.05), with or without the
    /// reverse term.
    pub fn infonce(symmetric: bool) -> Self {
        Self::new(SoftmaxLoss::InfoNce { symmetric })
    }

    /// Sets the logit scale, 1/τ (finite, > 0, 1e-15 ≤ 1/scale ≤ ... as the temperature's
    /// range: scale ≤ 1e4).
    pub fn scale(self, scale: f32) -> Result<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::InvalidOption {
                name: "scale",
                value: f64::from(scale),
                rule: "must be finite and > 0",
            });
        }
        self.temperature((1.0 / f64::from(scale)) as f32)
    }

    /// The logit scale, 1/τ. dL/dscale = −τ² · dL/dτ.
    pub fn logit_scale(&self) -> f32 {
        (1.0 / f64::from(self.temperature)) as f32
    }

    /// Sets the temperature (finite, 1e-4 ≤ τ ≤ 1e15).
    pub fn temperature(mut self, t: f32) -> Result<Self> {
        self.temperature = t;
        self.validate()?;
        Ok(self)
    }

    /// Checks the temperature.
    pub fn validate(&self) -> Result<()> {
        let t = self.temperature;
        if !(t.is_finite() && t >= MIN_TEMPERATURE && f64::from(t) <= MAX_ABS_VALUE) {
            return Err(Error::InvalidOption {
                name: "temperature",
                value: f64::from(t),
                rule: "must be finite, >= 1e-4 and <= 1e15",
            });
        }
        Ok(())
    }

    /// The options for a labelled batch (NT-Xent, SupCon) or two views (CLIP, InfoNCE).
    fn validate_mode(&self, views: bool) -> Result<()> {
        self.validate()?;
        match (self.loss.takes_views(), views) {
            (true, false) => Err(Error::OptionConflict {
                option: "loss clip/infonce",
                reason: "it takes two views A and B (pairs), not a labelled batch",
            }),
            (false, true) => Err(Error::OptionConflict {
                option: "loss ntxent/supcon",
                reason: "it takes a labelled batch (batch), not two views",
            }),
            _ => Ok(()),
        }
    }

    /// The largest |x| [`Softmax::batch`] accepts for `rows × dim` (the magnitude limit, see
    /// [`crate::Error::TooLargeForLoss`]), or the error when the temperature is too small for
    /// that many rows. No device or data needed.
    pub fn batch_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate_mode(false)?;
        self.magnitude_limit(dim, rows)
    }

    /// [`Softmax::batch_limit`] for [`Softmax::pairs`] (`rows` matched rows of each view;
    /// InfoNCE with more keys: [`Softmax::keys_limit`]).
    pub fn pairs_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.keys_limit(rows, rows, dim)
    }

    /// [`Softmax::batch_limit`] for `anchors` anchors against `keys` keys.
    pub fn keys_limit(&self, anchors: usize, keys: usize, dim: usize) -> Result<f64> {
        self.validate_mode(true)?;
        self.magnitude_limit(dim, anchors + keys)
    }

    /// Everything [`Softmax::batch`] checks before it runs: options, shapes and the
    /// magnitude limit ([`crate::Error::TooLargeForLoss`]). No device needed.
    pub fn validate_batch(&self, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
        self.validate_mode(false)?;
        same_rows("labels", x.rows(), labels.len())?;
        let limit = self.batch_limit(x.rows(), x.dim())?;
        crate::limit::check(&x.as_input("embeddings"), limit, || {
            self.describe(x.rows(), x.dim())
        })
    }

    /// Everything [`Softmax::pairs`] checks before it runs: CLIP's views have the same
    /// rows, InfoNCE's keys at least as many as its anchors.
    pub fn validate_pairs(&self, a: &Embeddings<'_>, b: &Embeddings<'_>) -> Result<()> {
        self.validate_mode(true)?;
        if self.loss == SoftmaxLoss::Clip {
            same_rows("rows of b", a.rows(), b.rows())?;
        } else if b.rows() < a.rows() {
            return Err(Error::ShapeMismatch {
                what: "rows of b (at least as many keys as anchors)",
                expected: a.rows(),
                got: b.rows(),
            });
        }
        same_rows("columns of b", a.dim(), b.dim())?;
        let limit = self.keys_limit(a.rows(), b.rows(), a.dim())?;
        for (what, x) in [("a", a), ("b", b)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe(a.rows(), a.dim())
            })?;
        }
        Ok(())
    }

    /// NT-Xent or SupCon over the batch `x` and its labels. Gradients (with
    /// [`Grads::Compute`]) are `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_batch(x, labels)?;
        run_host(gpu, &Call::new(*self), &[x], &[labels.ids()], grads)
    }

    /// CLIP over the views `a` and `b` (row i of each match), or InfoNCE over anchors `a`
    /// and keys `b` (key i is anchor i's positive). Gradients (with [`Grads::Compute`]) are
    /// `[dL/dA, dL/dB]`.
    pub fn pairs(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_pairs(a, b)?;
        // Every row its own label: no key is masked.
        let ids: Vec<u32> = (0..b.rows() as u32).collect();
        run_host(gpu, &Call::new(*self), &[a, b], &[&ids], grads)
    }

    /// Everything [`Softmax::pairs_labelled`] checks before it runs.
    pub fn validate_pairs_labelled(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
    ) -> Result<()> {
        self.validate_pairs(a, b)?;
        same_rows(
            "labels (anchors', then keys')",
            a.rows() + b.rows(),
            labels.len(),
        )
    }

    /// [`Softmax::pairs`] with labels masking false negatives: `labels` holds the anchors'
    /// labels then the keys' (N + M), so that one mapping covers both; a key other than
    /// anchor i's own with anchor i's label is not one of its negatives (see
    /// [`SoftmaxLoss::InfoNce`]).
    pub fn pairs_labelled(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_pairs_labelled(a, b, labels)?;
        let (la, lb) = labels.ids().split_at(a.rows());
        run_host(gpu, &Call::new(*self), &[a, b], &[la, lb], grads)
    }

    /// Everything [`Softmax::against`] checks before it runs: NT-Xent or SupCon, the rows'
    /// widths, the labels (the queries' then the references': N + M), the queries' rows and
    /// labels where `queries_at` puts them, and the magnitude limit.
    pub fn validate_against(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<()> {
        self.validate_mode(false)?;
        let r = reference.rows;
        reference.check(queries, labels)?;
        let limit = self.magnitude_limit(queries.dim(), queries.rows() + r.rows())?;
        for (what, x) in [("queries", queries), ("reference rows", r)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe(queries.rows() + r.rows(), queries.dim())
            })?;
        }
        Ok(())
    }

    /// NT-Xent or SupCon of `queries` against a reference set (a MoCo queue, a cross-batch
    /// memory, rows gathered from other devices, or the batch itself): every pair (query i,
    /// reference j) — but a query with its own row, when the queries are among the
    /// references (`queries_at`) — with the family's
    /// roles (a positive has the query's label; NT-Xent's denominator is the references
    /// with another label, SupCon's every reference); the loss is over the queries, as
    /// [`SoftmaxLoss`] defines it per anchor, averaged over its terms (NT-Xent: the
    /// (query, positive reference) pairs; SupCon: the queries with a positive reference).
    /// No positive anywhere: loss 0, no terms. `labels` holds the queries' labels then the
    /// references' (one mapping for both). Gradients (with [`Grads::Compute`]) are
    /// `[dL/dQ]`, and `dL/dR` after it when the reference's gradient is
    /// [`ReferenceGrad::Returned`]. With the batch as its own reference (`queries_at`
    /// `Some(0)`, the gradient returned), the loss is [`Softmax::batch`]'s and dL/dQ + dL/dR
    /// its gradient.
    pub fn against(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_against(queries, reference, labels)?;
        let (cq, cr) = labels.ids().split_at(queries.rows());
        let call = Call {
            pairing: match reference.queries_at {
                Some(o) => Pairing::ReferenceHasQueries(o),
                None => Pairing::Reference,
            },
            second_grad: reference.grad == ReferenceGrad::Returned,
            terms: Some(reference_terms(
                self.loss,
                cq,
                cr,
                reference.queries_at.is_some(),
            )),
            ..Call::new(*self)
        };
        run_host(gpu, &call, &[queries, reference.rows], &[cq, cr], grads)
    }

    /// The f64 CPU reference of [`Softmax::against`].
    pub fn against_cpu(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_against(queries, reference, labels)?;
        let (r, _) = self.against_reference(queries, reference, labels, grads);
        Ok(r.narrow_against(reference.grad, queries.dim()))
    }

    fn against_reference(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> (reference::Reference, [Vec<f64>; 2]) {
        let w = crate::reference::widen;
        let q = reference::Queries {
            loss: self.loss,
            tau: f64::from(self.temperature),
            classes: labels.ids().split_at(queries.rows()),
            queries_at: reference.queries_at,
        };
        reference::against_with_mass(&q, &w(queries), &w(reference.rows), queries.dim(), grads)
    }

    /// Runs [`Softmax::against`] and its reference and compares them (see
    /// [`Softmax::batch_check`]).
    pub fn against_check(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<Verdict> {
        let g = self.against(gpu, queries, reference, labels, Grads::Compute)?;
        Ok(self.against_verdict(queries, reference, labels, |_| g))
    }

    /// [`Softmax::against_check`]'s comparison of the output `output` makes from the
    /// reference's (the GPU's, or one computed elsewhere: `testing::outside`).
    pub(crate) fn against_verdict(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        output: impl FnOnce(&SoftmaxOutput) -> SoftmaxOutput,
    ) -> Verdict {
        let (r, [mq, mr]) = self.against_reference(queries, reference, labels, Grads::Compute);
        let mut r = r.narrow(queries.dim());
        let (mut inputs, mut masses) = (vec![queries, reference.rows], vec![mq, mr]);
        if reference.grad == ReferenceGrad::Detached {
            r.grads.truncate(1);
            inputs.truncate(1);
            masses.truncate(1);
        }
        let name = format!(
            "{:<6} tau {:<4} against",
            self.loss.name(),
            self.temperature
        );
        tolerance::verdict(name, self, &output(&r), &r, &inputs, &masses)
    }

    /// The f64 CPU reference of [`Softmax::batch`].
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_batch(x, labels)?;
        let w = crate::reference::widen(x);
        let tau = f64::from(self.temperature);
        let r = reference::batch_f64(self.loss, tau, &w, x.dim(), labels.ids(), grads);
        Ok(r.narrow(x.dim()))
    }

    /// The f64 CPU reference of [`Softmax::pairs`].
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_pairs(a, b)?;
        Ok(self.keys_reference(a, b, None, grads).0.narrow(a.dim()))
    }

    /// The f64 CPU reference of [`Softmax::pairs_labelled`].
    pub fn pairs_labelled_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<SoftmaxOutput> {
        self.validate_pairs_labelled(a, b, labels)?;
        let ids = labels.ids().split_at(a.rows());
        Ok(self
            .keys_reference(a, b, Some(ids), grads)
            .0
            .narrow(a.dim()))
    }

    /// The reference of the anchors `a` against the keys `b` and the rows' masses.
    fn keys_reference(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: Option<(&[u32], &[u32])>,
        grads: Grads,
    ) -> (reference::Reference, [Vec<f64>; 2]) {
        let w = crate::reference::widen;
        let keys = reference::Keys {
            tau: f64::from(self.temperature),
            symmetric: self.loss.symmetric(),
            labels,
        };
        reference::keys_with_mass(&keys, &w(a), &w(b), a.dim(), grads)
    }

    /// [`Softmax::batch`] (NT-Xent, SupCon) on embeddings and u32 class ids in the caller's
    /// buffers (see [`crate::device`]). dL/dterm is counted on the device from the labels;
    /// the loss and dL/dτ stay on the device ([`DeviceLoss::read_all`]), and the gradient
    /// (when `grad` is given) is written into the caller's buffer, scaled and overwriting or
    /// accumulating.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_mode(false)?;
        resident::check_side("embeddings", &x, grad.as_ref())?;
        resident::check_labels("labels", &labels, x.rows)?;
        let limit = self.batch_limit(x.rows, x.dim)?;
        let classes = DeviceClasses::Labels(labels);
        run_device(
            gpu,
            &Call::new(*self),
            &[x],
            classes,
            &[grad],
            target,
            limit,
        )
    }

    /// [`Softmax::pairs`] (CLIP, or InfoNCE: keys B at least as many as anchors A, without
    /// labels) on views A and B in the caller's buffers; `grads` are where dL/dA and dL/dB
    /// go.
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

    /// [`Softmax::pairs_labelled`] on the caller's buffers: [`Softmax::pairs_device`] with
    /// the anchors' class ids `la` and the keys' `lb` masking false negatives.
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
        self.validate_mode(true)?;
        let [ga, gb] = grads.map_or([None, None], |[a, b]| [Some(a), Some(b)]);
        resident::check_side("a", &a, ga.as_ref())?;
        resident::check_side("b", &b, gb.as_ref())?;
        if self.loss == SoftmaxLoss::Clip {
            resident::same_shape("b (rows × dim)", &a, &b)?;
        } else {
            same_rows("columns of b", a.dim, b.dim)?;
            if b.rows < a.rows {
                return Err(Error::ShapeMismatch {
                    what: "rows of b (at least as many keys as anchors)",
                    expected: a.rows,
                    got: b.rows,
                });
            }
        }
        let limit = self.keys_limit(a.rows, b.rows, a.dim)?;
        let call = Call::new(*self);
        run_device(gpu, &call, &[a, b], classes, &[ga, gb], target, limit)
    }

    /// [`Softmax::against`] (NT-Xent, SupCon) on queries, their class ids and a reference
    /// set in the caller's buffers (see [`crate::device`]): the terms are counted on the
    /// device, the loss and dL/dτ stay there ([`DeviceLoss::read_all`]); dL/dQ goes to
    /// `grad` and dL/dR to the reference's `grad` when given. A
    /// [`crate::device::DeviceQueue`]'s rows and labels can be the reference.
    pub fn against_device(
        &self,
        gpu: &Gpu,
        queries: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        reference: DeviceReference<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_mode(false)?;
        let r = reference.rows;
        resident::check_side("queries", &queries, grad.as_ref())?;
        resident::check_side("reference rows", &r, reference.grad.as_ref())?;
        same_rows("columns of the reference rows", queries.dim, r.dim)?;
        resident::check_labels("labels", &labels, queries.rows)?;
        resident::check_labels("reference labels", &reference.labels, r.rows)?;
        resident::check_queries_at(reference.queries_at, queries.rows, r.rows)?;
        let limit = self.magnitude_limit(queries.dim, queries.rows + r.rows)?;
        let call = Call {
            pairing: match reference.queries_at {
                Some(o) => Pairing::ReferenceHasQueries(o),
                None => Pairing::Reference,
            },
            second_grad: reference.grad.is_some(),
            ..Call::new(*self)
        };
        let classes = DeviceClasses::PerSide([labels, reference.labels]);
        let grads = [grad, reference.grad];
        run_device(gpu, &call, &[queries, r], classes, &grads, target, limit)
    }

    /// Runs [`Softmax::batch`] and [`Softmax::batch_cpu`] with gradients and compares them
    /// (loss, gradient, dL/dτ, counts) under the crate's tolerance rule
    /// ([`crate::tolerance`]).
    pub fn batch_check(&self, gpu: &Gpu, x: &Embeddings<'_>, labels: &Labels) -> Result<Verdict> {
        let g = self.batch(gpu, x, labels, Grads::Compute)?;
        Ok(self.batch_verdict(x, labels, |_| g))
    }

    /// [`Softmax::batch_check`]'s comparison of the output `output` makes from the
    /// reference's (see [`Softmax::against_verdict`]).
    pub(crate) fn batch_verdict(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        output: impl FnOnce(&SoftmaxOutput) -> SoftmaxOutput,
    ) -> Verdict {
        let w = crate::reference::widen(x);
        // One reference run gives both the output and the masses.
        let tau = f64::from(self.temperature);
        let (r, mass) =
            reference::batch_with_mass(self.loss, tau, &w, x.dim(), labels.ids(), Grads::Compute);
        let r = r.narrow(x.dim());
        let name = format!("{:<6} tau {:<4}", self.loss.name(), self.temperature);
        tolerance::verdict(name, self, &output(&r), &r, &[x], &[mass])
    }

    /// Runs [`Softmax::pairs`] and [`Softmax::pairs_cpu`] and compares them (see
    /// [`Softmax::batch_check`]).
    pub fn pairs_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
    ) -> Result<Verdict> {
        let g = self.pairs(gpu, a, b, Grads::Compute)?;
        Ok(self.keys_verdict(a, b, None, |_| g))
    }

    /// Runs [`Softmax::pairs_labelled`] and its reference and compares them.
    pub fn pairs_labelled_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: &Labels,
    ) -> Result<Verdict> {
        let g = self.pairs_labelled(gpu, a, b, labels, Grads::Compute)?;
        Ok(self.keys_verdict(a, b, Some(labels.ids().split_at(a.rows())), |_| g))
    }

    /// The pairs checks' comparison of the output `output` makes from the reference's (see
    /// [`Softmax::against_verdict`]).
    pub(crate) fn keys_verdict(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        labels: Option<(&[u32], &[u32])>,
        output: impl FnOnce(&SoftmaxOutput) -> SoftmaxOutput,
    ) -> Verdict {
        let (r, [ma, mb]) = self.keys_reference(a, b, labels, Grads::Compute);
        let r = r.narrow(a.dim());
        let name = format!("{:<6} tau {:<4}", self.loss.name(), self.temperature);
        tolerance::verdict(name, self, &output(&r), &r, &[a, b], &[ma, mb])
    }
}

/// Terms of NT-Xent or SupCon queries (class ids `queries`) against references (`refs`):
/// the (query, positive reference) pairs, or the queries with a positive reference; with
/// `among` the references each query's own row is one of them, no positive of its own.
pub(crate) fn reference_terms(
    loss: SoftmaxLoss,
    queries: &[u32],
    refs: &[u32],
    among: bool,
) -> u64 {
    let mut size = std::collections::HashMap::<u32, u64>::new();
    for &c in refs {
        *size.entry(c).or_default() += 1;
    }
    queries
        .iter()
        .map(|c| {
            size.get(c)
                .copied()
                .unwrap_or(0)
                .saturating_sub(u64::from(among))
        })
        .map(|n| match loss {
            SoftmaxLoss::NtXent => n,
            _ => u64::from(n > 0),
        })
        .sum()
}

/// Number of terms the loss averages over, from the class ids (NT-Xent, SupCon; CLIP and
/// InfoNCE average over their anchors).
pub(crate) fn softmax_terms(loss: SoftmaxLoss, classes: &[u32]) -> u64 {
    let mut size = std::collections::HashMap::<u32, u64>::new();
    for &c in classes {
        *size.entry(c).or_default() += 1;
    }
    size.values()
        .map(|&n| match loss {
            SoftmaxLoss::NtXent => n * (n - 1),
            _ if n > 1 => n,
            _ => 0,
        })
        .sum()
}

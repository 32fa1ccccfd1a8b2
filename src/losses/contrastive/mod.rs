//! The contrastive loss (Hadsell, Chopra and LeCun, 2006): its options and public calls.

mod kernels;
mod limit;
pub mod reference;
mod steps;
pub mod tolerance;

pub(crate) use kernels::{ROWS_TABLE, TABLE};

use crate::engine::call::{run_device, run_host};
use crate::engine::resident::{self, DeviceClasses};
use crate::engine::{DeviceLoss, Gpu};
use crate::error::Result;
use crate::input::{
    DeviceGrad, DeviceLabels, DeviceReference, DeviceRows, Embeddings, Labels, Target,
};
use crate::options::{
    check_margin, same_rows, Counts, Distance, Grads, Hinge, LossOutput, Reduction, ReferenceGrad,
    ReferenceSet,
};
use crate::tolerance::Verdict;
use steps::Call;

/// Contrastive loss (Hadsell, Chopra and LeCun, 2006) with its options.
///
/// Pair terms, with d the [`Distance`], p = `pos_margin`, m = `margin`:
/// similar pairs `relu(d − p)²`, dissimilar pairs `relu(m − d)²` (or without the square
/// with [`Hinge::Linear`]), combined by the [`Reduction`]. The defaults give
/// `L = mean(Y·D² + (1 − Y)·max(0, m − D)²)` with m = 1.
///
/// Two modes, each on host slices (`batch`, `pairs`), the f64 CPU reference (`*_cpu`), the
/// caller's device buffers (`*_device`) and as a GPU-versus-CPU verdict (`*_check`):
/// - batch: every unordered pair {i, j}, i < j, of a labelled batch; similar iff the labels
///   are equal; gradient `[dL/dX]`;
/// - pairs: row i of A with row i of B, similar or not by a flag; gradients `[dL/dA, dL/dB]`.
///
/// ```no_run
/// use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};
/// let gpu = Gpu::new()?;
/// let data = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0];
/// let x = Embeddings::new(&data, 3, 2)?;
/// let labels = Labels::new(&[0, 0, 1]);
/// let out = Contrastive::default().batch(&gpu, &x, &labels, Grads::Compute)?;
/// println!("loss {} over {} pairs", out.loss, out.terms());
/// let dx = &out.grads[0]; // 3 × 2, row-major
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contrastive {
    /// Distance between rows. Default euclidean.
    pub distance: Distance,
    /// Divide every row by max(‖row‖, 1e-12) first (gradients flow through). Default off.
    pub normalize: bool,
    /// Margin p below which similar pairs cost nothing: finite, 0 ≤ p ≤ 1e15. Default 0.
    pub pos_margin: f32,
    /// Margin m beyond which dissimilar pairs cost nothing: finite, 0 ≤ m ≤ 1e15. Default 1.
    pub margin: f32,
    /// Squared (default) or linear hinge.
    pub hinge: Hinge,
    /// Reduction: mean (default), sum or mean-nonzero.
    pub reduction: Reduction,
}

impl Default for Contrastive {
    fn default() -> Self {
        Self {
            distance: Distance::Euclidean,
            normalize: false,
            pos_margin: 0.0,
            margin: 1.0,
            hinge: Hinge::Squared,
            reduction: Reduction::Mean,
        }
    }
}

/// Pair counts of a contrastive call (u64: a batch of B rows has B(B−1)/2 pairs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContrastiveCounts {
    /// Pairs labelled similar.
    pub similar_pairs: u64,
    /// Pairs labelled dissimilar.
    pub dissimilar_pairs: u64,
    /// Similar pairs whose term is active (hinge argument d − p > 0).
    pub active_similar: u64,
    /// Dissimilar pairs whose term is active (hinge argument m − d > 0).
    pub active_dissimilar: u64,
}

impl ContrastiveCounts {
    /// All pairs.
    pub fn pairs(&self) -> u64 {
        self.similar_pairs + self.dissimilar_pairs
    }
}

impl Counts for ContrastiveCounts {
    fn terms(&self) -> u64 {
        self.pairs()
    }

    fn active(&self) -> Option<u64> {
        Some(self.active_similar + self.active_dissimilar)
    }
}

/// Output of a contrastive call.
pub type ContrastiveOutput = LossOutput<ContrastiveCounts>;

/// The two modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Pairs,
    Batch,
    /// Queries against a reference set.
    Against {
        /// Where the queries sit among the references: only the pairs (i, j), j > o + i.
        queries_at: Option<usize>,
        /// The references get their gradient.
        reference_grad: bool,
    },
}

impl Contrastive {
    /// Sets the margin m (finite, 0 ≤ m ≤ 1e15).
    pub fn margin(mut self, m: f32) -> Result<Self> {
        self.margin = check_margin("margin", m)?;
        Ok(self)
    }

    /// Sets the positive margin p (finite, 0 ≤ p ≤ 1e15).
    pub fn pos_margin(mut self, p: f32) -> Result<Self> {
        self.pos_margin = check_margin("pos_margin", p)?;
        Ok(self)
    }

    /// Sets the distance.
    pub fn distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }

    /// Sets the hinge.
    pub fn hinge(mut self, h: Hinge) -> Self {
        self.hinge = h;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = r;
        self
    }

    /// Turns row normalisation on or off.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }

    /// Checks the options (the margins; fields set directly are checked here, and by every
    /// call).
    pub fn validate(&self) -> Result<()> {
        check_margin("pos_margin", self.pos_margin)?;
        check_margin("margin", self.margin)?;
        Ok(())
    }

    /// Everything [`Contrastive::batch`] checks before it runs: options, shapes and the
    /// magnitude limit ([`crate::Error::TooLargeForLoss`]). No device needed.
    pub fn validate_batch(&self, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
        self.validate()?;
        same_rows("labels", x.rows(), labels.len())?;
        let limit = self.batch_limit(x.rows(), x.dim())?;
        crate::limit::check(&x.as_input("embeddings"), limit, || {
            self.describe(Mode::Batch, x.rows(), x.dim())
        })
    }

    /// Everything [`Contrastive::pairs`] checks before it runs.
    pub fn validate_pairs(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
    ) -> Result<()> {
        self.validate()?;
        same_rows("rows of B", a.rows(), b.rows())?;
        same_rows("columns of B", a.dim(), b.dim())?;
        same_rows("pair labels", a.rows(), similar.len())?;
        let limit = self.pairs_limit(a.rows(), a.dim())?;
        for (what, x) in [("a", a), ("b", b)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe(Mode::Pairs, a.rows(), a.dim())
            })?;
        }
        Ok(())
    }

    /// The largest |x| [`Contrastive::batch`] accepts for `rows × dim` (the magnitude limit,
    /// see [`crate::Error::TooLargeForLoss`]), or the error when the options alone are too
    /// large for that size. No device or data needed.
    pub fn batch_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate()?;
        self.magnitude_limit(Mode::Batch, rows, dim)
    }

    /// [`Contrastive::batch_limit`] for [`Contrastive::pairs`].
    pub fn pairs_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate()?;
        self.magnitude_limit(Mode::Pairs, rows, dim)
    }

    fn call(&self, mode: Mode) -> Call {
        Call { cfg: *self, mode }
    }

    /// Loss over every unordered pair {i, j}, i < j, of the batch `x`; a pair is similar iff
    /// its labels are equal. Gradients (with [`Grads::Compute`]) are `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_batch(x, labels)?;
        run_host(gpu, &self.call(Mode::Batch), &[x], &[labels.ids()], grads)
    }

    /// Loss over explicit pairs: row i of `a` with row i of `b`, `similar[i]` its label.
    /// Gradients (with [`Grads::Compute`]) are `[dL/dA, dL/dB]`.
    pub fn pairs(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_pairs(a, b, similar)?;
        let flags: Vec<u32> = similar.iter().map(|&s| u32::from(s)).collect();
        run_host(gpu, &self.call(Mode::Pairs), &[a, b], &[&flags], grads)
    }

    /// Everything [`Contrastive::against`] checks before it runs: options, the rows'
    /// widths, the labels (the queries' then the references': N + M), the queries' rows and
    /// labels where `queries_at` puts them, and the magnitude limit.
    pub fn validate_against(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<()> {
        self.validate()?;
        let r = reference.rows;
        reference.check(queries, labels)?;
        let rows = queries.rows() + r.rows();
        let limit = self.magnitude_limit(Mode::Batch, rows, queries.dim())?;
        for (what, x) in [("queries", queries), ("reference rows", r)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe(Mode::Batch, rows, queries.dim())
            })?;
        }
        Ok(())
    }

    /// The loss of `queries` against a reference set (a memory of past embeddings, rows
    /// gathered from other devices, or the batch itself): every pair (query i, reference j),
    /// similar iff their labels are equal — or, when the queries are among the references at
    /// row o (`queries_at`), the pairs (i, j) with j > o + i, each pair of rows once: with the
    /// batch as its own reference, [`Contrastive::batch`]'s pairs; with the rows of every
    /// device gathered, each device's queries take the pairs no other device takes. The
    /// reduction runs over
    /// these pairs (mean: all of them; sum; mean-nonzero: the active similar and dissimilar
    /// ones, as in a batch); none gives loss 0. `labels` holds the queries' labels then the
    /// references' (one mapping for both). Gradients (with [`Grads::Compute`]) are `[dL/dQ]`,
    /// and `dL/dR` after it when the reference's gradient is [`ReferenceGrad::Returned`];
    /// with the batch as its own reference, dL/dQ + dL/dR is the batch's gradient.
    pub fn against(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_against(queries, reference, labels)?;
        let (cq, cr) = labels.ids().split_at(queries.rows());
        let call = self.call(Mode::Against {
            queries_at: reference.queries_at,
            reference_grad: reference.grad == ReferenceGrad::Returned,
        });
        run_host(gpu, &call, &[queries, reference.rows], &[cq, cr], grads)
    }

    /// The f64 CPU reference of [`Contrastive::against`].
    pub fn against_cpu(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_against(queries, reference, labels)?;
        let w = crate::reference::widen;
        let r = reference::against_f64(
            self,
            &w(queries),
            &w(reference.rows),
            queries.dim(),
            labels.ids().split_at(queries.rows()),
            reference.queries_at,
            grads,
        );
        Ok(r.narrow_against(reference.grad, queries.dim()))
    }

    /// Runs [`Contrastive::against`] and [`Contrastive::against_cpu`] and compares them (see
    /// [`Contrastive::batch_check`]).
    pub fn against_check(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<Verdict> {
        let g = self.against(gpu, queries, reference, labels, Grads::Compute)?;
        self.against_verdict(queries, reference, labels, |_| g)
    }

    /// [`Contrastive::against_check`]'s comparison of the output `output` makes from the
    /// reference's (the GPU's, or one computed elsewhere: `testing::outside`).
    pub(crate) fn against_verdict(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        output: impl FnOnce(&ContrastiveOutput) -> ContrastiveOutput,
    ) -> Result<Verdict> {
        let r = self.against_cpu(queries, reference, labels, Grads::Compute)?;
        let g = output(&r);
        let d = tolerance::against_distances(self, queries, reference);
        let terms = queries.rows().max(reference.rows.rows()) as u64;
        let inputs = [queries, reference.rows];
        let inputs = &inputs[..g.grads.len().max(1)];
        let name = self.case_name("against");
        Ok(tolerance::verdict(name, self, &g, &r, &d, terms, inputs))
    }

    /// The f64 CPU reference of [`Contrastive::batch`].
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_batch(x, labels)?;
        let dim = x.dim();
        Ok(
            reference::batch_f64(self, &crate::reference::widen(x), dim, labels.ids(), grads)
                .narrow(dim),
        )
    }

    /// The f64 CPU reference of [`Contrastive::pairs`].
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        self.validate_pairs(a, b, similar)?;
        let (wa, wb) = (crate::reference::widen(a), crate::reference::widen(b));
        let dim = a.dim();
        Ok(reference::pairs_f64(self, &wa, &wb, dim, similar, grads).narrow(dim))
    }

    /// [`Contrastive::batch`] on embeddings and u32 class ids in the caller's buffers (see
    /// [`crate::device`]): the gradient (when `grad` is given) is written into the caller's
    /// buffer, scaled and overwriting or accumulating, and the loss stays on the device
    /// ([`DeviceLoss`]), reduced there in f32 in a fixed order. The work is submitted, or
    /// recorded into the caller's encoder ([`Target`]); nothing is read back.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        resident::check_side("embeddings", &x, grad.as_ref())?;
        resident::check_labels("labels", &labels, x.rows)?;
        let limit = self.batch_limit(x.rows, x.dim)?;
        let classes = DeviceClasses::Labels(labels);
        let call = self.call(Mode::Batch);
        run_device(gpu, &call, &[x], classes, &[grad], target, limit)
    }

    /// [`Contrastive::against`] on queries, their class ids and a reference set in the
    /// caller's buffers (see [`crate::device`]): the pairs and the reduction's counts are
    /// counted on the device; dL/dQ goes to `grad` and dL/dR to the reference's `grad` when
    /// given.
    pub fn against_device(
        &self,
        gpu: &Gpu,
        queries: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        reference: DeviceReference<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        let r = reference.rows;
        resident::check_side("queries", &queries, grad.as_ref())?;
        resident::check_side("reference rows", &r, reference.grad.as_ref())?;
        same_rows("columns of the reference rows", queries.dim, r.dim)?;
        resident::check_labels("labels", &labels, queries.rows)?;
        resident::check_labels("reference labels", &reference.labels, r.rows)?;
        resident::check_queries_at(reference.queries_at, queries.rows, r.rows)?;
        let limit = self.magnitude_limit(Mode::Batch, queries.rows + r.rows, queries.dim)?;
        let call = self.call(Mode::Against {
            queries_at: reference.queries_at,
            reference_grad: reference.grad.is_some(),
        });
        let classes = DeviceClasses::PerSide([labels, reference.labels]);
        let grads = [grad, reference.grad];
        run_device(gpu, &call, &[queries, r], classes, &grads, target, limit)
    }

    /// [`Contrastive::pairs`] on rows of A and B and u32 pair labels (0 dissimilar, anything
    /// else similar) in the caller's buffers; `grads` are where dL/dA and dL/dB go. The
    /// counts the reduction needs are counted on the device.
    pub fn pairs_device(
        &self,
        gpu: &Gpu,
        a: DeviceRows<'_>,
        b: DeviceRows<'_>,
        similar: DeviceLabels<'_>,
        grads: Option<[DeviceGrad<'_>; 2]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate()?;
        let [ga, gb] = grads.map_or([None, None], |[a, b]| [Some(a), Some(b)]);
        resident::check_side("a", &a, ga.as_ref())?;
        resident::check_side("b", &b, gb.as_ref())?;
        resident::same_shape("b (rows × dim)", &a, &b)?;
        resident::check_labels("pair labels", &similar, a.rows)?;
        let limit = self.pairs_limit(a.rows, a.dim)?;
        let classes = DeviceClasses::Labels(similar);
        let call = self.call(Mode::Pairs);
        run_device(gpu, &call, &[a, b], classes, &[ga, gb], target, limit)
    }

    /// Runs [`Contrastive::batch`] and [`Contrastive::batch_cpu`] with gradients and
    /// compares them under the crate's tolerance rule ([`crate::tolerance`]). Counts compare
    /// exactly, so a margin within f32 rounding of a pair's distance can rightly fail.
    pub fn batch_check(&self, gpu: &Gpu, x: &Embeddings<'_>, labels: &Labels) -> Result<Verdict> {
        let g = self.batch(gpu, x, labels, Grads::Compute)?;
        let r = self.batch_cpu(x, labels, Grads::Compute)?;
        let d = tolerance::batch_distances(self, x);
        let name = self.case_name("batch");
        Ok(tolerance::verdict(
            name,
            self,
            &g,
            &r,
            &d,
            x.rows() as u64,
            &[x],
        ))
    }

    /// Runs [`Contrastive::pairs`] and [`Contrastive::pairs_cpu`] and compares them (see
    /// [`Contrastive::batch_check`]).
    pub fn pairs_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
    ) -> Result<Verdict> {
        let g = self.pairs(gpu, a, b, similar, Grads::Compute)?;
        let r = self.pairs_cpu(a, b, similar, Grads::Compute)?;
        let d = tolerance::pair_distances(self, a, b);
        let name = self.case_name("pairs");
        Ok(tolerance::verdict(name, self, &g, &r, &d, 1, &[a, b]))
    }

    /// The case's name in a verdict: mode and options.
    pub(crate) fn case_name(&self, mode: &str) -> String {
        format!(
            "{:<5} {:<17} {:<7} {:<12} {}",
            mode,
            format!("{:?}", self.distance),
            format!("{:?}", self.hinge),
            format!("{:?}", self.reduction),
            if self.normalize { "normalize" } else { "" }
        )
    }
}

/// Combines the similar and dissimilar sums by the reduction; shared by the GPU path and
/// the reference.
pub(crate) fn reduce(reduction: Reduction, sim: f64, dis: f64, c: &ContrastiveCounts) -> f64 {
    let mean = |s: f64, n: u64| if n == 0 { 0.0 } else { s / n as f64 };
    match reduction {
        Reduction::Mean => mean(sim + dis, c.pairs()),
        Reduction::Sum => sim + dis,
        Reduction::MeanNonzero => mean(sim, c.active_similar) + mean(dis, c.active_dissimilar),
    }
}

//! The triplet losses (explicit triplets, or mined from class labels): options and public
//! calls.

mod kernels;
mod limit;
pub mod reference;
mod steps;
pub mod tolerance;

pub(crate) use kernels::{HARD_TABLE, ROWS_TABLE, TABLE};

use crate::engine::call::{run_device, run_host};
use crate::engine::resident::{self, DeviceClasses};
use crate::engine::{DeviceLoss, Gpu};
use crate::error::{Error, Result};
use crate::input::{DeviceGrad, DeviceLabels, DeviceRows, Embeddings, Labels, Target};
use crate::options::{
    check_margin, same_rows, Counts, Distance, Grads, LossOutput, Reduction, ReferenceGrad,
    ReferenceSet,
};
use crate::tolerance::Verdict;
use steps::Call;

/// The term of one triplet, with x = d(a, p) − d(a, n).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TripletTerm {
    /// relu(x + m) with margin m ≥ 0 (default m = 1).
    Margin(f32),
    /// log(1 + exp(x)): the soft margin of Hermans, Beyer and Leibe, "In Defense of the
    /// Triplet Loss" (2017). Explicit triplets only.
    Soft,
}

impl Default for TripletTerm {
    fn default() -> Self {
        Self::Margin(1.0)
    }
}

/// How triplets are formed from a labelled batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mining {
    /// Every (a, p, n) with a ≠ p, label(p) = label(a), label(n) ≠ label(a).
    /// Reductions: mean-nonzero (default) or mean over all such triplets.
    #[default]
    All,
    /// Batch-hard: per anchor with a positive and a negative, its farthest positive and its
    /// nearest negative. Reductions: mean (default) or sum over those anchors.
    Hard,
    /// Semi-hard (TensorFlow Addons' rule): per ordered positive pair (a, p), the nearest
    /// negative farther than p, or the farthest negative when none is. Reductions: mean
    /// (default) or sum over the positive pairs whose anchor has a negative.
    Semihard,
}

impl Mining {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Mining::All => "all",
            Mining::Hard => "hard",
            Mining::Semihard => "semihard",
        }
    }

    /// What one term stands for: "triplets", "anchors" or "positive_pairs".
    pub fn term_kind(self) -> &'static str {
        match self {
            Mining::All => "triplets",
            Mining::Hard => "anchors",
            Mining::Semihard => "positive_pairs",
        }
    }
}

/// Triplet margin loss with its options.
///
/// Two modes, each on host slices, the f64 CPU reference (`*_cpu`), the caller's device
/// buffers (`*_device`) and as a GPU-versus-CPU verdict (`*_check`):
/// - explicit (`explicit`): rows i of A, P, N form term i: relu(d(a,p) − d(a,n) + m), or
///   the soft margin log(1 + exp(d(a,p) − d(a,n))); with `swap` the negative distance is
///   min(d(a,n), d(p,n)) (d(a,n) on a tie); gradients `[dL/dA, dL/dP, dL/dN]`;
/// - batch (`batch`): the triplets [`Mining`] forms from a labelled batch; gradient
///   `[dL/dX]`.
///
/// Ties between candidates choose the lowest index, and the gradient goes to the chosen
/// rows only. At d = 0 the distance's gradient is 0, and relu'(0) = 0 (a term is active
/// iff its hinge argument is > 0).
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Labels, Mining, Triplet};
/// let gpu = Gpu::new()?;
/// let data = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 3.0];
/// let x = Embeddings::new(&data, 4, 2)?;
/// let labels = Labels::new(&[0, 0, 1, 1]);
/// let loss = Triplet::default().mining(Mining::Hard);
/// let out = loss.batch(&gpu, &x, &labels, Grads::Compute)?;
/// println!("loss {} over {} anchors", out.loss, out.counts.terms);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Triplet {
    /// Distance between rows. Default euclidean.
    pub distance: Distance,
    /// Divide every row by max(‖row‖, 1e-12) first (gradients flow through). Default off.
    pub normalize: bool,
    /// Margin hinge (default, m = 1) or soft margin.
    pub term: TripletTerm,
    /// Explicit triplets: use min(d(a,n), d(p,n)) as the negative distance.
    pub swap: bool,
    /// How `batch` forms triplets. Default all.
    pub mining: Mining,
    /// `None`: the mode's default (explicit, hard, semihard: mean; all: mean-nonzero).
    pub reduction: Option<Reduction>,
}

/// Counts of a triplet call (u64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TripletCounts {
    /// Valid terms: triplets (explicit and `all`), anchors with a positive and a negative
    /// (`hard`), or positive pairs whose anchor has a negative (`semihard`).
    pub terms: u64,
    /// Terms whose argument is > 0: hinge x + m > 0, or x > 0 for the soft margin.
    pub active: u64,
}

impl Counts for TripletCounts {
    fn terms(&self) -> u64 {
        self.terms
    }

    fn active(&self) -> Option<u64> {
        Some(self.active)
    }
}

/// Output of a triplet call.
pub type TripletOutput = LossOutput<TripletCounts>;

/// The two modes: explicit triplets, or mined by a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Explicit,
    Mined(Mining),
}

impl Triplet {
    /// Sets the margin m (finite, 0 ≤ m ≤ 1e15) and the margin hinge.
    pub fn margin(mut self, m: f32) -> Result<Self> {
        self.term = TripletTerm::Margin(check_margin("margin", m)?);
        Ok(self)
    }

    /// Uses the soft margin log(1 + exp(x)).
    pub fn soft(mut self) -> Self {
        self.term = TripletTerm::Soft;
        self
    }

    /// Turns the swap on or off.
    pub fn swap(mut self, on: bool) -> Self {
        self.swap = on;
        self
    }

    /// Sets the distance.
    pub fn distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }

    /// Turns row normalisation on or off.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }

    /// Sets how `batch` forms triplets.
    pub fn mining(mut self, m: Mining) -> Self {
        self.mining = m;
        self
    }

    /// Sets the reduction.
    pub fn reduction(mut self, r: Reduction) -> Self {
        self.reduction = Some(r);
        self
    }

    /// The reduction in force for `batch`: the one set, else the mining rule's default.
    pub fn batch_reduction(&self) -> Reduction {
        self.reduction_in(Mode::Mined(self.mining))
    }

    /// The reduction in force for `explicit`: the one set, else mean.
    pub fn explicit_reduction(&self) -> Reduction {
        self.reduction_in(Mode::Explicit)
    }

    pub(crate) fn reduction_in(&self, mode: Mode) -> Reduction {
        self.reduction.unwrap_or(match mode {
            Mode::Mined(Mining::All) => Reduction::MeanNonzero,
            _ => Reduction::Mean,
        })
    }

    /// Checks the options alone (the margin).
    pub fn validate(&self) -> Result<()> {
        if let TripletTerm::Margin(m) = self.term {
            check_margin("margin", m)?;
        }
        Ok(())
    }

    /// The options for `mode`: what each mode takes.
    fn validate_mode(&self, mode: Mode) -> Result<()> {
        self.validate()?;
        let reduction = self.reduction_in(mode);
        let conflict = |option, reason| Err(Error::OptionConflict { option, reason });
        match mode {
            Mode::Explicit if reduction == Reduction::MeanNonzero => conflict(
                "reduction mean-nonzero",
                "explicit triplets take mean or sum",
            ),
            Mode::Explicit => Ok(()),
            Mode::Mined(_) if self.swap => conflict(
                "swap",
                "it applies to explicit triplets only, not with mining",
            ),
            Mode::Mined(_) if self.term == TripletTerm::Soft => conflict(
                "soft",
                "it applies to explicit triplets only, not with mining",
            ),
            Mode::Mined(Mining::All) if reduction == Reduction::Sum => {
                conflict("reduction sum", "mining all takes mean-nonzero or mean")
            }
            Mode::Mined(Mining::Hard | Mining::Semihard) if reduction == Reduction::MeanNonzero => {
                conflict(
                    "reduction mean-nonzero",
                    "mining hard and semihard take mean or sum",
                )
            }
            Mode::Mined(_) => Ok(()),
        }
    }

    /// Everything [`Triplet::batch`] checks before it runs: options, shapes and the
    /// magnitude limit ([`crate::Error::TooLargeForLoss`]). No device needed.
    pub fn validate_batch(&self, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
        self.validate_mode(Mode::Mined(self.mining))?;
        same_rows("labels", x.rows(), labels.len())?;
        let terms = mined_terms(labels.ids(), self.mining) as f64;
        let limit = self.magnitude_limit(x.dim(), terms)?;
        crate::limit::check(&x.as_input("embeddings"), limit, || {
            self.describe("mined", x.rows(), x.dim())
        })
    }

    /// Everything [`Triplet::explicit`] checks before it runs.
    pub fn validate_explicit(
        &self,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
    ) -> Result<()> {
        self.validate_mode(Mode::Explicit)?;
        same_rows("rows of positive", a.rows(), p.rows())?;
        same_rows("rows of negative", a.rows(), n.rows())?;
        same_rows("columns of positive", a.dim(), p.dim())?;
        same_rows("columns of negative", a.dim(), n.dim())?;
        let (rows, dim) = (a.rows(), a.dim());
        let limit = self.magnitude_limit(dim, rows as f64)?;
        for (what, x) in [("anchor", a), ("positive", p), ("negative", n)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe("explicit", rows, dim)
            })?;
        }
        Ok(())
    }

    /// The largest |x| [`Triplet::batch_device`] accepts for `rows × dim` (the magnitude
    /// limit, see [`crate::Error::TooLargeForLoss`], at the most terms the mining rule can
    /// form from any labels; [`Triplet::batch`] counts its labels' terms and may accept
    /// more), or the error when the options alone are too large for that size.
    pub fn batch_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate_mode(Mode::Mined(self.mining))?;
        let n = rows as f64;
        let terms = match self.mining {
            Mining::Hard => n,
            Mining::All => n * n * n,
            Mining::Semihard => n * n,
        };
        self.magnitude_limit(dim, terms)
    }

    /// [`Triplet::batch_limit`] for [`Triplet::explicit`].
    pub fn explicit_limit(&self, rows: usize, dim: usize) -> Result<f64> {
        self.validate_mode(Mode::Explicit)?;
        self.magnitude_limit(dim, rows as f64)
    }

    fn call(&self, mode: Mode) -> Call {
        Call {
            cfg: *self,
            mode,
            reference: None,
        }
    }

    /// Everything [`Triplet::against`] checks before it runs: options, the rows' widths,
    /// the labels (the anchors' then the references': N + M), the anchors' rows and labels
    /// where `queries_at` puts them, and the magnitude limit.
    pub fn validate_against(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<()> {
        self.validate_mode(Mode::Mined(self.mining))?;
        let r = reference.rows;
        let (cq, cr) = reference.check(queries, labels)?;
        let terms = against_terms(cq, cr, reference.queries_at.is_some(), self.mining) as f64;
        let limit = self.magnitude_limit(queries.dim(), terms)?;
        for (what, x) in [("queries", queries), ("reference rows", r)] {
            crate::limit::check(&x.as_input(what), limit, || {
                self.describe("mined", queries.rows() + r.rows(), queries.dim())
            })?;
        }
        Ok(())
    }

    /// Mined triplets of the anchors `queries` against a reference set (a memory of past
    /// embeddings, rows gathered from other devices, or the batch itself): each anchor's
    /// positives (references with its label) and negatives (the others) are the reference
    /// rows, its own row left out when the anchors are among them (`queries_at`), and the
    /// mining rule picks its triplets among them as in a batch; the reduction runs over
    /// every anchor's terms as in a batch (an anchor without a positive or a negative has
    /// none). `labels` holds the anchors' labels then the references'. Gradients (with
    /// [`Grads::Compute`]) are `[dL/dQ]`, and `dL/dR` after it when the reference's
    /// gradient is [`ReferenceGrad::Returned`]; with the batch as its own reference
    /// (`queries_at` `Some(0)`) the loss is [`Triplet::batch`]'s and dL/dQ + dL/dR its
    /// gradient.
    pub fn against(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<TripletOutput> {
        self.validate_against(queries, reference, labels)?;
        let (cq, cr) = labels.ids().split_at(queries.rows());
        let call = Call {
            reference: Some(steps::Reference {
                queries_at: reference.queries_at,
                grad: reference.grad == ReferenceGrad::Returned,
                terms: against_terms(cq, cr, reference.queries_at.is_some(), self.mining),
            }),
            ..self.call(Mode::Mined(self.mining))
        };
        run_host(gpu, &call, &[queries, reference.rows], &[cq, cr], grads)
    }

    /// The f64 CPU reference of [`Triplet::against`].
    pub fn against_cpu(
        &self,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<TripletOutput> {
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

    /// Runs [`Triplet::against`] and [`Triplet::against_cpu`] and compares them (see
    /// [`Triplet::batch_check`]).
    pub fn against_check(
        &self,
        gpu: &Gpu,
        queries: &Embeddings<'_>,
        reference: &ReferenceSet<'_, '_>,
        labels: &Labels,
    ) -> Result<Verdict> {
        let g = self.against(gpu, queries, reference, labels, Grads::Compute)?;
        let r = self.against_cpu(queries, reference, labels, Grads::Compute)?;
        let mode = Mode::Mined(self.mining);
        let inputs = [queries, reference.rows];
        let name = format!("{} against", self.case_name(mode));
        Ok(tolerance::verdict(name, self, mode, &g, &r, &inputs))
    }

    /// Loss over the triplets the mining rule forms from the batch `x` and its labels.
    /// Gradients (with [`Grads::Compute`]) are `[dL/dX]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<TripletOutput> {
        self.validate_batch(x, labels)?;
        let call = self.call(Mode::Mined(self.mining));
        run_host(gpu, &call, &[x], &[labels.ids()], grads)
    }

    /// Loss over explicit triplets: row i of `a`, `p` and `n`. Gradients (with
    /// [`Grads::Compute`]) are `[dL/dA, dL/dP, dL/dN]`.
    pub fn explicit(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<TripletOutput> {
        self.validate_explicit(a, p, n)?;
        run_host(gpu, &self.call(Mode::Explicit), &[a, p, n], &[], grads)
    }

    /// The f64 CPU reference of [`Triplet::batch`].
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<TripletOutput> {
        self.validate_batch(x, labels)?;
        let w = crate::reference::widen(x);
        Ok(reference::batch_f64(self, &w, x.dim(), labels.ids(), grads).narrow(x.dim()))
    }

    /// The f64 CPU reference of [`Triplet::explicit`].
    pub fn explicit_cpu(
        &self,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<TripletOutput> {
        self.validate_explicit(a, p, n)?;
        let w = crate::reference::widen;
        let dim = a.dim();
        Ok(reference::explicit_f64(self, &w(a), &w(p), &w(n), dim, grads).narrow(dim))
    }

    /// [`Triplet::batch`] on embeddings and u32 class ids in the caller's buffers (see
    /// [`crate::device`]). The term count the mean divides by is counted on the device, so
    /// `mean` with gradients runs the chunks' forward pass twice, as `mean-nonzero` does.
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        grad: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_mode(Mode::Mined(self.mining))?;
        resident::check_side("embeddings", &x, grad.as_ref())?;
        resident::check_labels("labels", &labels, x.rows)?;
        // The labels are on the device: the limit takes the most terms the rule can form.
        let limit = self.batch_limit(x.rows, x.dim)?;
        let call = self.call(Mode::Mined(self.mining));
        let classes = DeviceClasses::Labels(labels);
        run_device(gpu, &call, &[x], classes, &[grad], target, limit)
    }

    /// [`Triplet::explicit`] on rows i of A, P and N in the caller's buffers; `grads` are
    /// where dL/dA, dL/dP and dL/dN go. The loss stays on the device ([`DeviceLoss`]).
    pub fn explicit_device(
        &self,
        gpu: &Gpu,
        a: DeviceRows<'_>,
        p: DeviceRows<'_>,
        n: DeviceRows<'_>,
        grads: Option<[DeviceGrad<'_>; 3]>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        self.validate_mode(Mode::Explicit)?;
        let g = grads.map_or([None, None, None], |[a, p, n]| [Some(a), Some(p), Some(n)]);
        let inputs = [a, p, n];
        for ((what, x), gr) in ["anchor", "positive", "negative"]
            .into_iter()
            .zip(&inputs)
            .zip(&g)
        {
            resident::check_side(what, x, gr.as_ref())?;
            resident::same_shape(what, &a, x)?;
        }
        let limit = self.explicit_limit(a.rows, a.dim)?;
        let call = self.call(Mode::Explicit);
        run_device(gpu, &call, &inputs, DeviceClasses::None, &g, target, limit)
    }

    /// Runs [`Triplet::batch`] and [`Triplet::batch_cpu`] with gradients and compares them
    /// under the crate's tolerance rule ([`crate::tolerance`]). f32 and f64 may rightly
    /// choose different rows where two candidate distances lie within rounding of each
    /// other, or disagree on a term's activity at its kink: such inputs can fail.
    pub fn batch_check(&self, gpu: &Gpu, x: &Embeddings<'_>, labels: &Labels) -> Result<Verdict> {
        let g = self.batch(gpu, x, labels, Grads::Compute)?;
        let r = self.batch_cpu(x, labels, Grads::Compute)?;
        let mode = Mode::Mined(self.mining);
        Ok(tolerance::verdict(
            self.case_name(mode),
            self,
            mode,
            &g,
            &r,
            &[x],
        ))
    }

    /// Runs [`Triplet::explicit`] and [`Triplet::explicit_cpu`] and compares them (see
    /// [`Triplet::batch_check`]).
    pub fn explicit_check(
        &self,
        gpu: &Gpu,
        a: &Embeddings<'_>,
        p: &Embeddings<'_>,
        n: &Embeddings<'_>,
    ) -> Result<Verdict> {
        let g = self.explicit(gpu, a, p, n, Grads::Compute)?;
        let r = self.explicit_cpu(a, p, n, Grads::Compute)?;
        let mode = Mode::Explicit;
        Ok(tolerance::verdict(
            self.case_name(mode),
            self,
            mode,
            &g,
            &r,
            &[a, p, n],
        ))
    }

    /// The case's name in a verdict: mode and options.
    pub(crate) fn case_name(&self, mode: Mode) -> String {
        let name = match mode {
            Mode::Explicit => "explicit",
            Mode::Mined(m) => m.name(),
        };
        format!(
            "triplet {:<8} {:<17} {:<6} {:<12} {}{}",
            name,
            format!("{:?}", self.distance),
            if self.term == TripletTerm::Soft {
                "soft"
            } else {
                "margin"
            },
            format!("{:?}", self.reduction_in(mode)),
            if self.swap { "swap " } else { "" },
            if self.normalize { "normalize" } else { "" },
        )
    }
}

/// Terms the mining rule forms from anchors (class ids `anchors`) against candidates
/// (`cands`); `among`: each anchor's own row is one of the candidates (not a positive).
pub fn against_terms(anchors: &[u32], cands: &[u32], among: bool, mining: Mining) -> u64 {
    let mut size = std::collections::HashMap::<u32, u64>::new();
    for &c in cands {
        *size.entry(c).or_default() += 1;
    }
    let m = cands.len() as u64;
    anchors
        .iter()
        .map(|c| {
            let s = size.get(c).copied().unwrap_or(0);
            let (pos, neg) = (s.saturating_sub(u64::from(among)), m - s);
            match mining {
                Mining::All => pos * neg,
                Mining::Hard => u64::from(pos > 0 && neg > 0),
                Mining::Semihard if neg > 0 => pos,
                Mining::Semihard => 0,
            }
        })
        .sum()
}

/// Number of terms `mining` forms from these class ids (what the mean divides by): the batch
/// against itself.
pub fn mined_terms(classes: &[u32], mining: Mining) -> u64 {
    against_terms(classes, classes, true, mining)
}

/// The loss from the sum of the terms and the counts; shared by the GPU path and the
/// reference.
pub(crate) fn reduce(reduction: Reduction, sum: f64, c: &TripletCounts) -> f64 {
    let mean = |n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
    match reduction {
        Reduction::Mean => mean(c.terms),
        Reduction::Sum => sum,
        Reduction::MeanNonzero => mean(c.active),
    }
}

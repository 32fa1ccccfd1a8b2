//! What every family shares: the distance, hinge and reduction options, whether gradients
//! are computed, and the output of a call.

use crate::error::{Error, Result};
use crate::input::{Precision, MAX_ABS_VALUE};

/// Distance between two rows u, v.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// ‖u − v‖₂.
    #[default]
    Euclidean,
    /// ‖u − v‖₂².
    SquaredEuclidean,
    /// 1 − u·v / (max(‖u‖, 1e-12)·max(‖v‖, 1e-12)).
    Cosine,
}

impl Distance {
    /// The name the CLI uses: "euclidean", "squared-euclidean", "cosine".
    pub fn name(self) -> &'static str {
        match self {
            Distance::Euclidean => "euclidean",
            Distance::SquaredEuclidean => "squared-euclidean",
            Distance::Cosine => "cosine",
        }
    }

    /// The kernels' distance kind (shaders/common/distance.wgsl): 0 euclidean, 1 squared
    /// euclidean, 2 one-minus-dot (cosine runs as one-minus-dot on normalised rows).
    pub(crate) fn kernel_kind(self) -> u32 {
        match self {
            Distance::Euclidean => 0,
            Distance::SquaredEuclidean => 1,
            Distance::Cosine => 2,
        }
    }

    /// Row normalisations before the distance kernels: one for `normalize`, one for cosine.
    pub(crate) fn normalize_stages(self, normalize: bool) -> usize {
        usize::from(normalize) + usize::from(self == Distance::Cosine)
    }
}

/// Shape of a margin hinge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hinge {
    /// relu(x)².
    #[default]
    Squared,
    /// relu(x).
    Linear,
}

impl Hinge {
    /// The name the CLI uses: "squared", "linear".
    pub fn name(self) -> &'static str {
        match self {
            Hinge::Squared => "squared",
            Hinge::Linear => "linear",
        }
    }

    /// The kernels' hinge kind (shaders/common/hinge.wgsl): 0 squared, 1 linear.
    pub(crate) fn kernel_kind(self) -> u32 {
        match self {
            Hinge::Squared => 0,
            Hinge::Linear => 1,
        }
    }
}

/// How terms are combined into the loss (each family lists the reductions it accepts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Sum of all terms / number of terms (0 when there are none).
    #[default]
    Mean,
    /// Sum of all terms.
    Sum,
    /// Contrastive: mean of the non-zero similar terms + mean of the non-zero dissimilar
    /// terms, each part 0 when it has no non-zero term; triplet: mean of the non-zero terms,
    /// 0 if none (pytorch-metric-learning's `AvgNonZeroReducer`).
    MeanNonzero,
}

impl Reduction {
    /// The name the CLI uses: "mean", "sum", "mean-nonzero".
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::MeanNonzero => "mean-nonzero",
        }
    }

    /// The kernels' code: 0 mean, 1 sum, 2 mean-nonzero.
    pub(crate) fn kernel_code(self) -> u32 {
        match self {
            Reduction::Mean => 0,
            Reduction::Sum => 1,
            Reduction::MeanNonzero => 2,
        }
    }

    /// dL/dterm when the host knows the number of terms: 1 for a sum, else 1/terms (0 for
    /// none). Mean-nonzero's divisor is counted on the device.
    pub(crate) fn term_scale(self, terms: u64) -> f32 {
        match self {
            Reduction::Sum => 1.0,
            _ if terms == 0 => 0.0,
            _ => (1.0 / terms as f64) as f32,
        }
    }
}

/// Whether a call also computes gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grads {
    /// Loss and counts only: the backward kernels are not run.
    Skip,
    /// Loss, counts and the gradient of every differentiable input, in that input's
    /// precision (an f16 input's gradient rounded to f16: see [`Gradient::precision`]).
    Compute,
    /// As `Compute`, with every gradient in f32 whatever its input's precision.
    ComputeF32,
}

impl Grads {
    /// Whether gradients are computed.
    pub fn wanted(self) -> bool {
        self != Self::Skip
    }
}

/// Whether a reference set's rows get their gradient (see [`ReferenceSet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceGrad {
    /// Detached, as a MoCo queue or cross-batch memory of past embeddings: only the
    /// queries get a gradient, and the sweep that would form the references' is not run.
    Detached,
    /// Returned after the queries' (for references that are this step's own rows, or
    /// negatives gathered from other devices whose gradient goes back to them).
    Returned,
}

/// The reference rows a call's queries are compared with (`against` calls): every pair
/// (query i, reference j) exists, except, when the queries are among the reference rows
/// (`queries_at`), a query with its own row. With the batch as its own reference
/// (`queries_at: Some(0)`, M = N) a loss equals its in-batch form.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceSet<'r, 'a> {
    /// The reference rows (M × D, the queries' D).
    pub rows: &'r crate::input::Embeddings<'a>,
    /// Where the queries sit among the reference rows: query i is reference row o + i (the
    /// same values and label; checked). Its own row is then no pair of query i, and a loss
    /// over pairs of rows (contrastive) takes each pair of these rows once, (i, j) with
    /// j > o + i. `Some(0)` with the queries as the rows: the batch itself; the batch
    /// followed by a queue of other rows: MoCo's keys; every device's rows gathered: the
    /// local queries' place among them.
    pub queries_at: Option<usize>,
    /// Whether the reference rows get their gradient.
    pub grad: ReferenceGrad,
}

impl<'r, 'a> ReferenceSet<'r, 'a> {
    /// Reference rows other than the queries.
    pub fn new(rows: &'r crate::input::Embeddings<'a>, grad: ReferenceGrad) -> Self {
        Self {
            rows,
            queries_at: None,
            grad,
        }
    }

    /// The same rows, with the queries at row `o` of them.
    pub fn with_queries_at(self, o: usize) -> Self {
        Self {
            queries_at: Some(o),
            ..self
        }
    }

    /// Checks `queries` and `labels` (the queries' then the references': N + M) against
    /// these rows: the same width, one label per row, and, at `queries_at`, the queries'
    /// own rows and labels. Returns the class ids split into the queries' and the
    /// references'.
    pub(crate) fn check<'l>(
        &self,
        queries: &crate::input::Embeddings<'_>,
        labels: &'l crate::input::Labels,
    ) -> Result<(&'l [u32], &'l [u32])> {
        let r = self.rows;
        same_rows("columns of the reference rows", queries.dim(), r.dim())?;
        same_rows(
            "labels (the queries', then the references')",
            queries.rows() + r.rows(),
            labels.len(),
        )?;
        let (cq, cr) = labels.ids().split_at(queries.rows());
        self.check_queries(queries, cq, cr)?;
        Ok((cq, cr))
    }

    fn check_queries(
        &self,
        queries: &crate::input::Embeddings<'_>,
        cq: &[u32],
        cr: &[u32],
    ) -> Result<()> {
        let Some(o) = self.queries_at else {
            return Ok(());
        };
        let (n, d) = (queries.rows(), queries.dim());
        let conflict = |reason| {
            Err(crate::error::Error::OptionConflict {
                option: "queries_at (the queries among the reference rows)",
                reason,
            })
        };
        if o + n > self.rows.rows() {
            return conflict("the queries do not fit in the reference rows there");
        }
        if self.rows.data()[o * d..(o + n) * d] != *queries.data() {
            return conflict("the reference rows there are not the queries' rows");
        }
        if cr[o..o + n] != *cq {
            return conflict("the reference rows there do not have the queries' labels");
        }
        Ok(())
    }
}

/// What every family's counts answer, so that code can switch losses without matching on
/// the family.
pub trait Counts: Copy + std::fmt::Debug + PartialEq {
    /// The terms the loss is made of: pairs (contrastive), triplets, anchors or positive
    /// pairs (triplet, by mode), positive pairs, anchors or matched rows (softmax).
    fn terms(&self) -> u64;
    /// The terms whose hinge is active (argument > 0); `None` for the softmax losses, whose
    /// terms all have a gradient.
    fn active(&self) -> Option<u64>;
}

/// A gradient, row-major with the shape of the input it belongs to.
///
/// An f16 input's gradient (unless [`Grads::ComputeF32`]) is in f16: each value is an f16
/// number (the f32 gradient rounded to nearest), held as the f32 of the same value;
/// [`Gradient::to_f16`] gives them as `half::f16`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradient {
    values: Vec<f32>,
    dim: usize,
    precision: Precision,
}

impl Gradient {
    /// Row-major f32 `values` of `dim` values a row.
    pub fn new(values: Vec<f32>, dim: usize) -> Self {
        Self {
            values,
            dim,
            precision: Precision::F32,
        }
    }

    /// `values` rounded to `precision` (to nearest, ties to even). A value beyond f16's
    /// range (65504) is an error, [`crate::Error::GradientOverflow`] (of input `what`),
    /// not an infinity.
    pub fn rounded(
        what: &'static str,
        mut values: Vec<f32>,
        dim: usize,
        precision: Precision,
    ) -> Result<Self> {
        if precision == Precision::F16 {
            for (index, v) in values.iter_mut().enumerate() {
                let h = half::f16::from_f32(*v);
                if h.is_infinite() {
                    return Err(Error::GradientOverflow {
                        what,
                        row: (index / dim.max(1)) as u64,
                        column: (index % dim.max(1)) as u64,
                    });
                }
                *v = h.to_f32();
            }
        }
        Ok(Self {
            values,
            dim,
            precision,
        })
    }

    /// The format the values were written in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The values as f16 (exact when [`Gradient::precision`] is f16, else rounded).
    pub fn to_f16(&self) -> Vec<half::f16> {
        self.values
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect()
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, row-major, as an owned vector.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`, or `None` past the last row.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        self.values.get(start..start.checked_add(self.dim)?)
    }
}

impl std::ops::Deref for Gradient {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values
    }
}

impl std::ops::DerefMut for Gradient {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }
}

impl<'a> IntoIterator for &'a Gradient {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.values.iter()
    }
}

impl PartialEq<Vec<f32>> for Gradient {
    fn eq(&self, other: &Vec<f32>) -> bool {
        &self.values == other
    }
}

/// The result of one loss call, on the GPU or the CPU reference.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput<C> {
    /// The loss value. GPU: per-row partial sums (f32, Kahan-compensated) added on the host
    /// in f64; CPU reference: f64 throughout.
    pub loss: f64,
    /// The family's counts.
    pub counts: C,
    /// One gradient per differentiable input, in argument order (pairs: A then B; explicit
    /// triplets: A, P, N; batch: X). Empty with [`Grads::Skip`].
    pub grads: Vec<Gradient>,
    /// dL/dτ of the softmax-contrastive losses ([`crate::Softmax`]), dL/dt′ of SigLIP's
    /// log-temperature ([`crate::Siglip`]), with [`Grads::Compute`]; `None` for the other
    /// families and with [`Grads::Skip`].
    pub grad_temperature: Option<f64>,
    /// dL/db of SigLIP's bias ([`crate::Siglip`]) with [`Grads::Compute`]; `None` for the
    /// other families and with [`Grads::Skip`].
    pub grad_bias: Option<f64>,
}

impl<C: Counts> LossOutput<C> {
    /// The number of terms (see [`Counts::terms`]).
    pub fn terms(&self) -> u64 {
        self.counts.terms()
    }

    /// The number of active terms (see [`Counts::active`]).
    pub fn active_terms(&self) -> Option<u64> {
        self.counts.active()
    }
}

/// A margin's value: finite, ≥ 0 and at most 1e15.
pub(crate) fn check_margin(name: &'static str, v: f32) -> Result<f32> {
    if v.is_finite() && v >= 0.0 && f64::from(v) <= MAX_ABS_VALUE {
        Ok(v)
    } else {
        Err(Error::InvalidOption {
            name,
            value: f64::from(v),
            rule: "must be finite, >= 0 and <= 1e15",
        })
    }
}

/// Checks that `got` rows match `expected` rows.
pub(crate) fn same_rows(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            what,
            expected,
            got,
        })
    }
}

//! Contrastive loss: configuration and GPU dispatch.

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::params::{ContrastiveParams, NormalizeParams, Partial};
use crate::gpu::{Bound, Gpu, Recorder};
use crate::loss::{Grads, LossOutput};
use crate::shape::{same_rows, Embeddings, Labels};

/// Distance between two rows u, v.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// ||u − v||₂.
    #[default]
    Euclidean,
    /// ||u − v||₂².
    SquaredEuclidean,
    /// 1 − u·v / (max(||u||, 1e-12)·max(||v||, 1e-12)).
    Cosine,
}

/// Shape of the margin hinge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hinge {
    /// relu(x)².
    #[default]
    Squared,
    /// relu(x).
    Linear,
}

/// How pair terms are combined into the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Sum of all pair terms / number of pairs (0 when there are no pairs).
    #[default]
    Mean,
    /// Sum of all pair terms.
    Sum,
    /// Mean of the non-zero similar terms + mean of the non-zero dissimilar terms, each part
    /// 0 when it has no non-zero term (pytorch-metric-learning's `AvgNonZeroReducer`).
    MeanNonzero,
}

/// Contrastive loss (Hadsell, Chopra and LeCun, 2006) with its options.
///
/// Pair terms, with d the [`Distance`], p = `pos_margin`, m = `margin`:
/// similar pairs `relu(d − p)²`, dissimilar pairs `relu(m − d)²` (or without the square
/// with [`Hinge::Linear`]), combined by the [`Reduction`]. The defaults give
/// `L = mean(Y·D² + (1 − Y)·max(0, m − D)²)` with m = 1.
///
/// ```no_run
/// use metric_loss::{Contrastive, Embeddings, Gpu, Grads, Labels};
/// let gpu = Gpu::new()?;
/// let data = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0];
/// let x = Embeddings::new("embeddings", &data, 3, 2)?;
/// let labels = Labels::new(&[0, 0, 1]);
/// let out = Contrastive::default().batch(&gpu, &x, &labels, Grads::Compute)?;
/// println!("loss {} over {} pairs", out.loss, out.counts.pairs());
/// let dx = &out.grads[0]; // 3 × 2, row-major
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contrastive {
    /// Distance between rows. Default euclidean.
    pub distance: Distance,
    /// Divide every row by max(||row||, 1e-12) first (gradients flow through). Default off.
    pub normalize: bool,
    /// Margin p below which similar pairs cost nothing. Default 0.
    pub pos_margin: f32,
    /// Margin m beyond which dissimilar pairs cost nothing. Default 1.
    pub margin: f32,
    /// Squared (default) or linear hinge.
    pub hinge: Hinge,
    /// Reduction. Default mean.
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

    /// All active terms.
    pub fn active_terms(&self) -> u64 {
        self.active_similar + self.active_dissimilar
    }
}

/// Output of a contrastive call.
pub type ContrastiveOutput = LossOutput<ContrastiveCounts>;

impl Contrastive {
    /// Sets the margin m.
    pub fn margin(mut self, m: f32) -> Self {
        self.margin = m;
        self
    }

    /// Sets the positive margin p.
    pub fn pos_margin(mut self, p: f32) -> Self {
        self.pos_margin = p;
        self
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

    /// Checks the margins: finite, ≥ 0 and at most 1e15.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("pos_margin", self.pos_margin), ("margin", self.margin)] {
            if !(v.is_finite() && v >= 0.0 && f64::from(v) <= crate::MAX_ABS_VALUE) {
                return Err(Error::InvalidOption {
                    name,
                    value: f64::from(v),
                    rule: "must be finite, >= 0 and <= 1e15",
                });
            }
        }
        Ok(())
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
        check_pairs(self, a, b, similar)?;
        let flags: Vec<u32> = similar.iter().map(|&s| u32::from(s)).collect();
        run(gpu, self, Mode::Pairs, a, Some(b), &flags, grads)
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
        check_batch(self, x, labels)?;
        run(gpu, self, Mode::Batch, x, None, labels.ids(), grads)
    }

    /// The CPU reference of [`Contrastive::pairs`] (f64 accumulation).
    pub fn pairs_cpu(
        &self,
        a: &Embeddings<'_>,
        b: &Embeddings<'_>,
        similar: &[bool],
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_pairs(self, a, b, similar)?;
        Ok(cpu::contrastive::pairs(self, a, b, similar, grads))
    }

    /// The CPU reference of [`Contrastive::batch`] (f64 accumulation).
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        labels: &Labels,
        grads: Grads,
    ) -> Result<ContrastiveOutput> {
        check_batch(self, x, labels)?;
        Ok(cpu::contrastive::batch(self, x, labels, grads))
    }

    fn params(&self, rows: usize, dim: usize) -> ContrastiveParams {
        ContrastiveParams {
            rows: rows as u32,
            dim: dim as u32,
            distance: match self.distance {
                Distance::Euclidean => 0,
                Distance::SquaredEuclidean => 1,
                Distance::Cosine => 2,
            },
            hinge: match self.hinge {
                Hinge::Squared => 0,
                Hinge::Linear => 1,
            },
            reduction: match self.reduction {
                Reduction::Mean => 0,
                Reduction::Sum => 1,
                Reduction::MeanNonzero => 2,
            },
            pos_margin: self.pos_margin,
            margin: self.margin,
            ..Default::default()
        }
    }

    /// Number of row normalisations before the distance: one for `normalize`, one for cosine.
    fn normalize_stages(&self) -> usize {
        usize::from(self.normalize) + usize::from(self.distance == Distance::Cosine)
    }
}

fn check_pairs(
    cfg: &Contrastive,
    a: &Embeddings<'_>,
    b: &Embeddings<'_>,
    similar: &[bool],
) -> Result<()> {
    cfg.validate()?;
    same_rows("rows of B", a.rows(), b.rows())?;
    same_rows("columns of B", a.dim(), b.dim())?;
    same_rows("pair labels", a.rows(), similar.len())
}

fn check_batch(cfg: &Contrastive, x: &Embeddings<'_>, labels: &Labels) -> Result<()> {
    cfg.validate()?;
    same_rows("labels", x.rows(), labels.len())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pairs,
    Batch,
}

const MODULE: &str = "contrastive.wgsl";
const NORMALIZE: &str = "normalize.wgsl";
const BATCH_TILE: u64 = 16;
const PAIRS_GROUP: u64 = 64;
const NORMALIZE_GROUP: u64 = 64;
const STAGE_ROLES: [[(&str, &str); 2]; 2] = [
    [("a_norm1", "a_norms1"), ("a_norm2", "a_norms2")],
    [("b_norm1", "b_norms1"), ("b_norm2", "b_norms2")],
];

fn run(
    gpu: &Gpu,
    cfg: &Contrastive,
    mode: Mode,
    a: &Embeddings<'_>,
    b: Option<&Embeddings<'_>>,
    classes: &[u32],
    grads: Grads,
) -> Result<ContrastiveOutput> {
    let (rows, dim) = (a.rows(), a.dim());
    let emb_bytes = (rows as u64) * (dim as u64) * 4;
    let partial_bytes = (rows as u64) * std::mem::size_of::<Partial>() as u64;
    if (rows as u64) * (dim as u64) >= u64::from(u32::MAX) {
        return Err(Error::LimitExceeded {
            what: "rows × dim (32-bit indices)".into(),
            needed: (rows as u64) * (dim as u64),
            limit: u64::from(u32::MAX) - 1,
        });
    }
    gpu.check_binding("embeddings", emb_bytes)?;
    gpu.check_binding("per-row partials", partial_bytes)?;
    let groups = match mode {
        Mode::Batch => (rows as u64).div_ceil(BATCH_TILE),
        Mode::Pairs => (rows as u64).div_ceil(PAIRS_GROUP),
    };
    gpu.check_workgroups("the pair kernels", groups)?;
    let norm_groups = (rows as u64).div_ceil(NORMALIZE_GROUP);
    gpu.check_workgroups("row normalisation", norm_groups)?;
    let stages = cfg.normalize_stages();
    let want_grads = grads == Grads::Compute;

    let bytes = gpu.execute("contrastive loss", |rec| {
        let params = rec.uniform(
            "contrastive_params",
            bytemuck::bytes_of(&cfg.params(rows, dim)),
        );
        let norm_params = rec.uniform(
            "normalize_params",
            bytemuck::bytes_of(&NormalizeParams {
                rows: rows as u32,
                dim: dim as u32,
                _pad: [0; 2],
            }),
        );
        let classes_buf = rec.upload("classes", bytemuck::cast_slice(classes));
        let inputs: Vec<&Embeddings<'_>> = std::iter::once(a).chain(b).collect();
        // Per input: its raw rows, then each normalisation stage's (rows, norms).
        let mut chains = Vec::new();
        for (side, e) in inputs.iter().enumerate() {
            let raw = rec.upload(["a_raw", "b_raw"][side], bytemuck::cast_slice(e.data()));
            let mut chain = vec![(raw, None)];
            for &(rows_role, norms_role) in STAGE_ROLES[side].iter().take(stages) {
                let src = chain
                    .last()
                    .map(|(r, _)| r)
                    .cloned()
                    .unwrap_or_else(|| unreachable!());
                let dst = rec.scratch(rows_role, emb_bytes);
                let norms = rec.scratch(norms_role, (rows as u64) * 4);
                rec.dispatch(
                    NORMALIZE,
                    "normalize_forward",
                    &[(0, &norm_params), (1, &src), (2, &dst), (3, &norms)],
                    norm_groups as u32,
                );
                chain.push((dst, Some(norms)));
            }
            chains.push(chain);
        }
        let emb_a = chains[0]
            .last()
            .map(|(r, _)| r.clone())
            .unwrap_or_else(|| unreachable!());
        let emb_b = chains.get(1).and_then(|c| c.last()).map(|(r, _)| r.clone());
        let partials = rec.scratch("partials", partial_bytes);
        let forward = match mode {
            Mode::Batch => "contrastive_batch_forward",
            Mode::Pairs => "contrastive_pairs_forward",
        };
        let mut fwd: Vec<(u32, &Bound)> =
            vec![(0, &params), (1, &emb_a), (2, &classes_buf), (3, &partials)];
        if let Some(eb) = &emb_b {
            fwd.push((6, eb));
        }
        rec.dispatch(MODULE, forward, &fwd, groups as u32);
        if !want_grads {
            return Ok(rec.read_back(&[&partials]));
        }
        let scales = rec.scratch("scales", 16);
        rec.dispatch(
            MODULE,
            "contrastive_finalize",
            &[(0, &params), (3, &partials), (4, &scales)],
            1,
        );
        let grad_a = rec.scratch("grad_a", emb_bytes);
        let grad_b = emb_b.as_ref().map(|_| rec.scratch("grad_b", emb_bytes));
        match (&emb_b, &grad_b) {
            (Some(eb), Some(gb)) => rec.dispatch(
                MODULE,
                "contrastive_pairs_backward",
                &[
                    (0, &params),
                    (1, &emb_a),
                    (2, &classes_buf),
                    (4, &scales),
                    (5, &grad_a),
                    (6, eb),
                    (7, gb),
                ],
                groups as u32,
            ),
            _ => rec.dispatch(
                MODULE,
                "contrastive_batch_backward",
                &[
                    (0, &params),
                    (1, &emb_a),
                    (2, &classes_buf),
                    (4, &scales),
                    (5, &grad_a),
                ],
                groups as u32,
            ),
        }
        let grad_bufs: Vec<&Bound> = std::iter::once(&grad_a).chain(grad_b.as_ref()).collect();
        for (chain, grad) in chains.iter().zip(&grad_bufs) {
            backward_normalize(rec, &norm_params, chain, grad, norm_groups as u32);
        }
        let mut sources = vec![&partials];
        sources.extend(grad_bufs.iter().copied());
        Ok(rec.read_back(&sources))
    })?;

    let (partial_bytes_read, rest) = bytes.split_at(partial_bytes as usize);
    let partials: &[Partial] = bytemuck::cast_slice(partial_bytes_read);
    let (loss, counts) = reduce_partials(cfg.reduction, partials);
    let grads = if want_grads {
        rest.chunks_exact(emb_bytes as usize)
            .map(|c| bytemuck::cast_slice::<u8, f32>(c).to_vec())
            .collect()
    } else {
        Vec::new()
    };
    Ok(LossOutput {
        loss,
        counts,
        grads,
    })
}

/// Runs the normalisation stages' backward passes, last stage first, in place on `grad`.
fn backward_normalize(
    rec: &mut Recorder<'_>,
    norm_params: &Bound,
    chain: &[(Bound, Option<Bound>)],
    grad: &Bound,
    groups: u32,
) {
    for (rows, norms) in chain.iter().rev() {
        if let Some(norms) = norms {
            rec.dispatch(
                NORMALIZE,
                "normalize_backward",
                &[(0, norm_params), (2, rows), (3, norms), (4, grad)],
                groups,
            );
        }
    }
}

/// Sums the per-row partials in row order: counts in u64, loss parts in f64.
fn reduce_partials(reduction: Reduction, partials: &[Partial]) -> (f64, ContrastiveCounts) {
    let mut c = ContrastiveCounts::default();
    let (mut sim, mut dis) = (0.0f64, 0.0f64);
    for p in partials {
        sim += f64::from(p.sim_sum);
        dis += f64::from(p.dis_sum);
        c.similar_pairs += u64::from(p.sim_pairs);
        c.dissimilar_pairs += u64::from(p.dis_pairs);
        c.active_similar += u64::from(p.sim_active);
        c.active_dissimilar += u64::from(p.dis_active);
    }
    (reduce(reduction, sim, dis, &c), c)
}

/// Combines the similar and dissimilar sums by the reduction; shared with the CPU reference.
pub(crate) fn reduce(reduction: Reduction, sim: f64, dis: f64, c: &ContrastiveCounts) -> f64 {
    let mean = |s: f64, n: u64| if n == 0 { 0.0 } else { s / n as f64 };
    match reduction {
        Reduction::Mean => mean(sim + dis, c.pairs()),
        Reduction::Sum => sim + dis,
        Reduction::MeanNonzero => mean(sim, c.active_similar) + mean(dis, c.active_dissimilar),
    }
}

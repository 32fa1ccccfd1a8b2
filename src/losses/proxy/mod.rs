//! The class-proxy losses, ArcFace (Deng et al. 2019), CosFace (Wang et al. 2018) and
//! sub-center ArcFace (Deng et al. 2020), as pytorch-metric-learning computes them: options
//! and public calls.

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
use crate::input::{DeviceGrad, DeviceLabels, DeviceRows, Embeddings, Target};
use crate::options::{same_rows, Counts, Grads, LossOutput};
use crate::tolerance::Verdict;
use kernels::ProxyParams;
use steps::Call;

/// The floor under sin θ in ArcFace's slope ψ′(c) = cos m + c·sin m / sin θ: a query on its
/// class's weights (c = 1) gets a finite gradient. Every f32 cosine below 1 has sin θ ≥
/// 3.4e-4, above it.
pub const SIN_FLOOR: f64 = 1e-4;

/// Which class-proxy loss, with its margin. Query i's logits against the C classes are
/// z_ij = s·c_ij, c_ij the cosine of the query and class j's weights (both divided by
/// max(‖row‖, 1e-12), gradients through the division), but for its own class y_i, whose
/// cosine gets the margin: z_iy = s·ψ(c_iy). L_i = log Σ_j e^(z_ij) − z_iy, the mean over
/// the queries (PML's `CrossEntropyLoss` and `MeanReducer`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProxyLoss {
    /// ArcFace, PML's `ArcFaceLoss(margin=28.6, scale=64)`: with θ = acos(c) and m the margin
    /// in radians, ψ(c) = cos(θ + m) while θ ≤ π − m, and c − m·sin m beyond (PML's
    /// continuation, which keeps ψ decreasing in θ; it does not meet cos(θ + m) at θ = π − m).
    /// The gradient is cos m + c·sin m / sin θ there, sin θ floored at [`SIN_FLOOR`].
    ArcFace {
        /// m in degrees, as PML takes it: finite, 0 ≤ m < 180. PML's default 28.6.
        margin_degrees: f32,
    },
    /// CosFace, PML's `CosFaceLoss(margin=0.35, scale=64)`: ψ(c) = c − m.
    CosFace {
        /// m: finite, 0 ≤ m ≤ 2. PML's default 0.35.
        margin: f32,
    },
}

/// A class-proxy loss, its scale s and its sub-centres per class K. The class weights W
/// (C·K × D: PML's `W` is its transpose) are the reference set the queries are compared
/// with, and get their gradient; nothing B×C exists, so C can be large (10⁶ classes are a
/// 10⁶-row W).
///
/// With K > 1 (sub-center ArcFace, PML's `SubCenterArcFaceLoss`), rows c·K .. c·K + K − 1 of
/// W are class c's sub-centres (PML's `view(-1, C, K)` of the cosines) and c_ic, the cosine
/// the logits use, is the largest of query i's cosines with them; its gradient goes to that
/// sub-centre alone (the first of equal ones, as `torch.max`). Which sub-centre is largest
/// is a decision: where two are within a cosine's rounding, the gradient may go to either.
///
/// ```no_run
/// use metric_loss::{Embeddings, Gpu, Grads, Proxy};
/// let gpu = Gpu::new()?;
/// let (x, w) = ([1.0f32, 0.1, 0.2, 0.9], [1.0f32, 0.0, 0.0, 1.0, -1.0, 0.0]);
/// let (x, w) = (Embeddings::new(&x, 2, 2)?, Embeddings::new(&w, 3, 2)?);
/// let out = Proxy::arcface().batch(&gpu, &x, &[0, 1], &w, Grads::Compute)?;
/// let (dx, dw) = (&out.grads[0], &out.grads[1]);
/// # Ok::<(), metric_loss::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proxy {
    /// Which loss, with its margin.
    pub loss: ProxyLoss,
    /// s: finite, > 0, ≤ 1e4. PML's default 64.
    pub scale: f32,
    /// K, sub-centres per class: 1 ≤ K ≤ 64; 1 for ArcFace and CosFace, PML's
    /// `SubCenterArcFaceLoss` default 3. W's windows hold whole classes (multiples of
    /// lcm(64, K) rows), so a K the device's window cannot hold fails with
    /// [`Error::LimitExceeded`].
    pub sub_centers: u32,
}

/// Counts of a class-proxy call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// B, the queries averaged over.
    pub terms: u64,
}

impl Counts for ProxyCounts {
    fn terms(&self) -> u64 {
        self.terms
    }

    fn active(&self) -> Option<u64> {
        None
    }
}

/// Output of a class-proxy call.
pub type ProxyOutput = LossOutput<ProxyCounts>;

impl Proxy {
    /// ArcFace with PML's defaults: m = 28.6°, s = 64.
    pub fn arcface() -> Self {
        Self {
            loss: ProxyLoss::ArcFace {
                margin_degrees: 28.6,
            },
            scale: 64.0,
            sub_centers: 1,
        }
    }

    /// CosFace with PML's defaults: m = 0.35, s = 64.
    pub fn cosface() -> Self {
        Self {
            loss: ProxyLoss::CosFace { margin: 0.35 },
            scale: 64.0,
            sub_centers: 1,
        }
    }

    /// Sub-center ArcFace with PML's defaults: m = 28.6°, s = 64, K = 3.
    pub fn subcenter_arcface() -> Self {
        Self {
            sub_centers: 3,
            ..Self::arcface()
        }
    }

    /// The loss and scale with one sub-centre per class, checked.
    pub fn new(loss: ProxyLoss, scale: f32) -> Result<Self> {
        let p = Self {
            loss,
            scale,
            sub_centers: 1,
        };
        p.validate()?;
        Ok(p)
    }

    /// The same loss with `k` sub-centres per class, checked.
    pub fn with_sub_centers(self, k: u32) -> Result<Self> {
        let p = Self {
            sub_centers: k,
            ..self
        };
        p.validate()?;
        Ok(p)
    }

    /// The name the CLI uses: "arcface", "cosface", "subcenter-arcface" (K > 1), or
    /// "subcenter-cosface" (K > 1; the library's own generalisation, not in PML).
    pub fn name(&self) -> &'static str {
        match (self.loss, self.sub_centers > 1) {
            (ProxyLoss::ArcFace { .. }, false) => "arcface",
            (ProxyLoss::CosFace { .. }, false) => "cosface",
            (ProxyLoss::ArcFace { .. }, true) => "subcenter-arcface",
            (ProxyLoss::CosFace { .. }, true) => "subcenter-cosface",
        }
    }

    /// The loss and its options, for a verdict's name.
    pub fn case_name(&self) -> String {
        let k = match self.sub_centers {
            1 => String::new(),
            k => format!(" K {k}"),
        };
        match self.loss {
            ProxyLoss::ArcFace { margin_degrees } => {
                format!("{} m {margin_degrees}° s {}{k}", self.name(), self.scale)
            }
            ProxyLoss::CosFace { margin } => {
                format!("{} m {margin} s {}{k}", self.name(), self.scale)
            }
        }
    }

    /// C, the classes of a W of `rows` rows.
    pub fn classes_of(&self, rows: usize) -> usize {
        rows / self.sub_centers.max(1) as usize
    }

    /// Checks the margin, the scale and the sub-centres.
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.sub_centers) {
            return Err(Error::InvalidOption {
                name: "sub-centers",
                value: f64::from(self.sub_centers),
                rule: "must be >= 1 and <= 64",
            });
        }
        let s = self.scale;
        if !(s.is_finite() && s > 0.0 && s <= 1e4) {
            return Err(Error::InvalidOption {
                name: "scale",
                value: f64::from(s),
                rule: "must be finite, > 0 and <= 1e4",
            });
        }
        let (m, ok, rule) = match self.loss {
            ProxyLoss::ArcFace { margin_degrees: m } => (
                m,
                (0.0..180.0).contains(&m),
                "must be finite, >= 0 and < 180 (degrees)",
            ),
            ProxyLoss::CosFace { margin: m } => {
                (m, (0.0..=2.0).contains(&m), "must be finite, >= 0 and <= 2")
            }
        };
        if !ok {
            return Err(Error::InvalidOption {
                name: "margin",
                value: f64::from(m),
                rule,
            });
        }
        Ok(())
    }

    /// m in the kernels' unit (ArcFace: radians), in f64; also the margin's largest shift
    /// of a cosine, |ψ(c) − c| ≤ m.
    fn margin(&self) -> f64 {
        match self.loss {
            ProxyLoss::ArcFace { margin_degrees } => f64::from(margin_degrees).to_radians(),
            ProxyLoss::CosFace { margin } => f64::from(margin),
        }
    }

    /// sin θ of a cosine, √((1 − c)(1 + c)).
    fn sin_of(c: f64) -> f64 {
        ((1.0 - c) * (1.0 + c)).max(0.0).sqrt()
    }

    /// Whether ArcFace's cos(θ + m) applies (θ ≤ π − m).
    fn on_arc(&self, c: f64) -> bool {
        matches!(self.loss, ProxyLoss::ArcFace { .. }) && c >= -self.margin().cos()
    }

    /// ψ(c): the target's cosine with the margin (mirrors proxy.wgsl's with_margin).
    pub(crate) fn with_margin(&self, c: f64) -> f64 {
        let m = self.margin();
        match self.loss {
            ProxyLoss::CosFace { .. } => c - m,
            _ if self.on_arc(c) => c * m.cos() - Self::sin_of(c) * m.sin(),
            _ => c - m * m.sin(),
        }
    }

    /// ψ′(c), sin θ floored at [`SIN_FLOOR`] (mirrors margin_slope).
    pub(crate) fn margin_slope(&self, c: f64) -> f64 {
        let m = self.margin();
        if self.on_arc(c) {
            m.cos() + c * m.sin() / Self::sin_of(c).max(SIN_FLOOR)
        } else {
            1.0
        }
    }

    /// |ψ″(c)| = sin m / sin³θ on the arc (sin θ floored), 0 elsewhere.
    pub(crate) fn margin_curvature(&self, c: f64) -> f64 {
        if self.on_arc(c) {
            self.margin().sin() / Self::sin_of(c).max(SIN_FLOOR).powi(3)
        } else {
            0.0
        }
    }

    /// The largest |ψ′|: cos m + sin m / [`SIN_FLOOR`] for ArcFace, 1 for CosFace.
    pub(crate) fn slope_bound(&self) -> f64 {
        match self.loss {
            ProxyLoss::ArcFace { .. } => {
                let m = self.margin();
                (m.cos() + m.sin() / SIN_FLOOR).max(1.0)
            }
            ProxyLoss::CosFace { .. } => 1.0,
        }
    }

    /// The options as the kernels' parameters for `queries` queries (the sizes left at 0).
    fn kernel_params(&self, queries: u64) -> ProxyParams {
        let m = self.margin();
        ProxyParams {
            loss: match self.loss {
                ProxyLoss::ArcFace { .. } => 0,
                ProxyLoss::CosFace { .. } => 1,
            },
            scale: self.scale,
            margin: m as f32,
            cos_m: m.cos() as f32,
            sin_m: m.sin() as f32,
            inv_b: if queries == 0 {
                0.0
            } else {
                (1.0 / queries as f64) as f32
            },
            sub_centers: self.sub_centers,
            ..Default::default()
        }
    }

    /// The largest |x| [`Proxy::batch`] accepts for `queries` queries against `classes`
    /// classes (see [`crate::Error::TooLargeForLoss`]). No device or data needed.
    pub fn batch_limit(&self, queries: usize, classes: usize, dim: usize) -> Result<f64> {
        self.validate()?;
        self.magnitude_limit(dim, queries.max(classes))
    }

    /// Everything [`Proxy::batch`] checks before it runs: options, shapes (W's rows a
    /// multiple of K), every class index below C ([`Error::ClassOutOfRange`]) and the
    /// magnitude limit.
    pub fn validate_batch(
        &self,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
    ) -> Result<()> {
        same_rows("class indices", x.rows(), classes.len())?;
        same_rows("columns of the class weights", x.dim(), weights.dim())?;
        self.validate()?;
        let c = self.whole_classes(weights.rows())?;
        let out: Vec<(usize, u32)> = classes
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, id)| id as usize >= c)
            .collect();
        if let Some(&first) = out.first() {
            return Err(Error::ClassOutOfRange {
                queries: out.len() as u64,
                classes: c as u64,
                first: Some(first),
            });
        }
        let limit = self.batch_limit(x.rows(), weights.rows(), x.dim())?;
        for (what, e) in [("embeddings", x), ("class weights", weights)] {
            crate::limit::check(&e.as_input(what), limit, || {
                self.describe(x.rows(), c, x.dim())
            })?;
        }
        Ok(())
    }

    /// C for a W of `rows` rows: [`Error::ShapeMismatch`] unless K divides them.
    fn whole_classes(&self, rows: usize) -> Result<usize> {
        let k = self.sub_centers.max(1) as usize;
        same_rows(
            "rows of the class weights (whole classes of sub-centres)",
            rows.div_ceil(k) * k,
            rows,
        )?;
        Ok(rows / k)
    }

    /// The loss of the queries `x` with their class indices `classes` (one per query, each
    /// < C) against the class weights `weights` (C·K × D, rows c·K .. c·K + K − 1 class
    /// c's). Gradients (with [`Grads::Compute`]) are `[dL/dX, dL/dW]`.
    pub fn batch(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<ProxyOutput> {
        self.validate_batch(x, classes, weights)?;
        let iota: Vec<u32> = (0..weights.rows() as u32).collect();
        let call = Call {
            cfg: *self,
            queries: x.rows() as u64,
            classes: self.classes_of(weights.rows()) as u64,
        };
        run_host(gpu, &call, &[x, weights], &[classes, &iota], grads)
    }

    /// The f64 CPU reference of [`Proxy::batch`].
    pub fn batch_cpu(
        &self,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
        grads: Grads,
    ) -> Result<ProxyOutput> {
        self.validate_batch(x, classes, weights)?;
        Ok(self.reference(x, classes, weights, grads).0.narrow(x.dim()))
    }

    fn reference(
        &self,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
        grads: Grads,
    ) -> (reference::Reference, reference::Mass) {
        let w = crate::reference::widen;
        reference::batch_with_mass(self, &w(x), classes, &w(weights), x.dim(), grads)
    }

    /// Runs [`Proxy::batch`] and [`Proxy::batch_cpu`] with gradients and compares them
    /// under the crate's tolerance rule ([`crate::tolerance`]).
    pub fn batch_check(
        &self,
        gpu: &Gpu,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
    ) -> Result<Verdict> {
        let g = self.batch(gpu, x, classes, weights, Grads::Compute)?;
        Ok(self.batch_verdict(x, classes, weights, |_| g))
    }

    /// [`Proxy::batch_check`]'s comparison of the output `output` makes from the
    /// reference's (the GPU's, or one computed elsewhere).
    pub(crate) fn batch_verdict(
        &self,
        x: &Embeddings<'_>,
        classes: &[u32],
        weights: &Embeddings<'_>,
        output: impl FnOnce(&ProxyOutput) -> ProxyOutput,
    ) -> Verdict {
        let (r, mass) = self.reference(x, classes, weights, Grads::Compute);
        let r = r.narrow(x.dim());
        tolerance::verdict(self.case_name(), self, &output(&r), &r, [x, weights], &mass)
    }

    /// [`Proxy::batch`] on the queries, their u32 class indices and the class weights in
    /// the caller's buffers (see [`crate::device`]): the loss stays on the device
    /// ([`DeviceLoss::read`], which fails with [`Error::ClassOutOfRange`] when an index
    /// named no class: those queries' terms and gradients are left out), dL/dX goes to
    /// `grad` and dL/dW to `grad_weights` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_device(
        &self,
        gpu: &Gpu,
        x: DeviceRows<'_>,
        labels: DeviceLabels<'_>,
        weights: DeviceRows<'_>,
        grad: Option<DeviceGrad<'_>>,
        grad_weights: Option<DeviceGrad<'_>>,
        target: Target<'_>,
    ) -> Result<DeviceLoss> {
        resident::check_side("embeddings", &x, grad.as_ref())?;
        resident::check_side("class weights", &weights, grad_weights.as_ref())?;
        same_rows("columns of the class weights", x.dim, weights.dim)?;
        resident::check_labels("class indices", &labels, x.rows)?;
        self.validate()?;
        self.whole_classes(weights.rows)?;
        let limit = self.batch_limit(x.rows, weights.rows, x.dim)?;
        let call = Call {
            cfg: *self,
            queries: x.rows as u64,
            classes: self.classes_of(weights.rows) as u64,
        };
        let classes = DeviceClasses::LabelsThenIota(labels);
        run_device(
            gpu,
            &call,
            &[x, weights],
            classes,
            &[grad, grad_weights],
            target,
            limit,
        )
    }
}

//! `metric-loss eval`: read and validate everything, then open the device, compute, write
//! the gradients and print one JSON line.
//!
//! The flags are parsed together (one command line) in groups by what they are for; each
//! loss then takes the groups it uses into its own arguments (`contrastive.rs`,
//! `triplet.rs`, `softmax.rs`). A flag of another loss is refused by one rule, from the
//! table of which loss takes which flag ([`TAKES`]).

mod contrastive;
mod proxy;
mod siglip;
mod softmax;
mod triplet;
mod weighting;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, ValueEnum};
use metric_loss::{Distance, Gpu, Grads, Reduction, ReferenceGrad, ReferenceSet};

use crate::io;
use crate::Failure;

/// The losses `--loss` names.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LossName {
    Contrastive,
    Triplet,
    Ntxent,
    Supcon,
    Clip,
    Infonce,
    Siglip,
    MultiSimilarity,
    Circle,
    Arcface,
    Cosface,
    SubcenterArcface,
}

impl LossName {
    pub fn name(self) -> &'static str {
        match self {
            LossName::Contrastive => "contrastive",
            LossName::Triplet => "triplet",
            LossName::Ntxent => "ntxent",
            LossName::Supcon => "supcon",
            LossName::Clip => "clip",
            LossName::Infonce => "infonce",
            LossName::Siglip => "siglip",
            LossName::MultiSimilarity => "multi-similarity",
            LossName::Circle => "circle",
            LossName::Arcface => "arcface",
            LossName::Cosface => "cosface",
            LossName::SubcenterArcface => "subcenter-arcface",
        }
    }
}

/// Where a loss runs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeviceArg {
    Gpu,
    Cpu,
}

impl DeviceArg {
    /// The device for `gpu`; `None` for the CPU reference. Called once the input is valid.
    pub(crate) fn open(self) -> Result<Option<Gpu>, Failure> {
        Ok(match self {
            DeviceArg::Gpu => Some(Gpu::new()?),
            DeviceArg::Cpu => None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            DeviceArg::Gpu => "gpu",
            DeviceArg::Cpu => "cpu",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum MiningArg {
    All,
    Hard,
    Semihard,
}

impl From<MiningArg> for metric_loss::Mining {
    fn from(m: MiningArg) -> Self {
        match m {
            MiningArg::All => Self::All,
            MiningArg::Hard => Self::Hard,
            MiningArg::Semihard => Self::Semihard,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DistanceArg {
    Euclidean,
    SquaredEuclidean,
    Cosine,
}

impl From<DistanceArg> for Distance {
    fn from(d: DistanceArg) -> Self {
        match d {
            DistanceArg::Euclidean => Distance::Euclidean,
            DistanceArg::SquaredEuclidean => Distance::SquaredEuclidean,
            DistanceArg::Cosine => Distance::Cosine,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum HingeArg {
    Squared,
    Linear,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReductionArg {
    Mean,
    Sum,
    MeanNonzero,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Self {
        match r {
            ReductionArg::Mean => Reduction::Mean,
            ReductionArg::Sum => Reduction::Sum,
            ReductionArg::MeanNonzero => Reduction::MeanNonzero,
        }
    }
}

/// A labelled batch and its gradient.
#[derive(Args)]
pub(crate) struct BatchFlags {
    /// Batch mode: embeddings (B×D .npy).
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Batch mode: integer class labels (B .npy).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Batch mode: write dL/dX here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad: Option<PathBuf>,
}

/// A reference set the batch's rows (the queries) are compared with, instead of with each
/// other.
#[derive(Args)]
pub(crate) struct ReferenceFlags {
    /// contrastive, triplet (mined), ntxent, supcon: reference rows (M×D .npy; a MoCo queue,
    /// a memory of past embeddings); the --embeddings are the queries (the anchors).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// contrastive, ntxent, supcon: the reference rows' integer labels (M .npy).
    #[arg(long)]
    pub reference_labels: Option<PathBuf>,
    /// contrastive, ntxent, supcon with --reference: write dL/dR here (.npy,
    /// float16 for float16 inputs, else float32);
    /// without it the reference is detached.
    #[arg(long)]
    pub grad_reference: Option<PathBuf>,
}

/// Two matched inputs (contrastive pairs, CLIP views, InfoNCE anchors and keys) and their
/// gradients.
#[derive(Args)]
pub(crate) struct PairFlags {
    /// Pair mode (contrastive), views (clip): first rows (N×D .npy); infonce: anchors.
    #[arg(long)]
    pub a: Option<PathBuf>,
    /// Pair mode (contrastive), views (clip): second rows (N×D .npy); infonce: keys (M×D,
    /// M ≥ N, key i anchor i's positive).
    #[arg(long)]
    pub b: Option<PathBuf>,
    /// Contrastive pair mode: 1 similar, 0 dissimilar (N .npy).
    #[arg(long)]
    pub y: Option<PathBuf>,
    /// Pair mode: write dL/dA here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad_a: Option<PathBuf>,
    /// Pair mode: write dL/dB here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad_b: Option<PathBuf>,
}

/// Explicit triplets, their gradients, and how triplets are mined from a batch.
#[derive(Args)]
pub(crate) struct TripletFlags {
    /// Triplet: anchors (N×D .npy).
    #[arg(long)]
    pub anchor: Option<PathBuf>,
    /// Triplet: positives (N×D .npy).
    #[arg(long)]
    pub positive: Option<PathBuf>,
    /// Triplet: negatives (N×D .npy).
    #[arg(long)]
    pub negative: Option<PathBuf>,
    /// Triplet: write dL/dA here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad_anchor: Option<PathBuf>,
    /// Triplet: write dL/dP here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad_positive: Option<PathBuf>,
    /// Triplet: write dL/dN here (.npy: float16 for float16 inputs, else float32).
    #[arg(long)]
    pub grad_negative: Option<PathBuf>,
    /// Triplet: form triplets from --embeddings and --labels.
    #[arg(long, value_enum)]
    pub mining: Option<MiningArg>,
    /// Triplet: negative distance min(d(a,n), d(p,n)) (explicit triplets).
    #[arg(long)]
    pub swap: bool,
    /// Triplet: soft margin log(1 + exp(d(a,p) − d(a,n))) (explicit triplets).
    #[arg(long)]
    pub soft: bool,
}

/// The options of the pair-weighting losses (Multi-Similarity, Circle; Circle's m is
/// --margin).
#[derive(Args)]
pub(crate) struct WeightingFlags {
    /// multi-similarity: α, the positives' weight (default 2).
    #[arg(long, allow_hyphen_values = true)]
    pub alpha: Option<f64>,
    /// multi-similarity: β, the negatives' weight (default 50).
    #[arg(long, allow_hyphen_values = true)]
    pub beta: Option<f64>,
    /// multi-similarity: λ, the shift of both exponents (default 0.5).
    #[arg(long, allow_hyphen_values = true)]
    pub base: Option<f64>,
    /// multi-similarity: mine the pairs first with PML's MultiSimilarityMiner(ε) (its
    /// default is 0.1); without it every pair counts.
    #[arg(long, allow_hyphen_values = true)]
    pub epsilon: Option<f64>,
    /// circle: γ, the scale (default 80).
    #[arg(long, allow_hyphen_values = true)]
    pub gamma: Option<f64>,
}

/// The options of the margin losses.
#[derive(Args)]
pub(crate) struct MarginFlags {
    /// Margin m (default 1; contrastive: the dissimilar margin; circle: its relaxation m,
    /// default 0.4; arcface: degrees, default 28.6; cosface: default 0.35).
    #[arg(long, allow_hyphen_values = true)]
    pub margin: Option<f64>,
    /// Contrastive: positive margin p (default 0).
    #[arg(long, allow_hyphen_values = true)]
    pub pos_margin: Option<f64>,
    /// Contrastive, triplet: distance between rows (default euclidean).
    #[arg(long, value_enum)]
    pub distance: Option<DistanceArg>,
    /// Contrastive: hinge shape (default squared).
    #[arg(long, value_enum)]
    pub hinge: Option<HingeArg>,
    /// Reduction (default mean; triplet with --mining all: mean-nonzero).
    #[arg(long, value_enum)]
    pub reduction: Option<ReductionArg>,
    /// Contrastive, triplet: divide each row by its norm first.
    #[arg(long)]
    pub normalize: bool,
}

impl MarginFlags {
    /// The distance (euclidean when not given).
    pub fn distance(&self) -> Distance {
        self.distance.unwrap_or(DistanceArg::Euclidean).into()
    }
}

/// A margin flag's value, checked: finite, >= 0, <= 1e15.
pub(crate) fn margin_value(flag: &str, v: f64) -> Result<f32, Failure> {
    if !(0.0..=metric_loss::MAX_ABS_VALUE).contains(&v) {
        return Err(Failure::usage(format!(
            "{flag} {v}: must be finite, >= 0 and <= 1e15"
        )));
    }
    Ok(v as f32)
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// The loss.
    #[arg(long, value_enum)]
    pub loss: LossName,
    /// Where the loss runs.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// Write every gradient as float32, also for float16 inputs (whose gradients are
    /// float16 by default).
    #[arg(long)]
    pub grad_f32: bool,
    #[command(flatten)]
    pub batch: BatchFlags,
    #[command(flatten)]
    pub reference: ReferenceFlags,
    #[command(flatten)]
    pub pairs: PairFlags,
    #[command(flatten)]
    pub triplet: TripletFlags,
    #[command(flatten)]
    pub margin: MarginFlags,
    #[command(flatten)]
    pub weighting: WeightingFlags,
    /// ntxent, supcon, clip: the temperature τ (default 0.07; supcon 0.1); >= 1e-4.
    #[arg(long, allow_hyphen_values = true)]
    pub temperature: Option<f64>,
    /// infonce: the logit scale, 1/τ (default 20, sentence-transformers'); > 0, <= 1e4.
    /// arcface, cosface, subcenter-arcface: the scale s (default 64).
    #[arg(long, allow_hyphen_values = true)]
    pub scale: Option<f64>,
    /// arcface, cosface: the class weights (C×D .npy, row j class j's; PML's W transposed);
    /// subcenter-arcface: C·K×D, rows cK .. cK + K − 1 class c's sub-centres.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// arcface, cosface, subcenter-arcface: write dL/dW here (the weights' shape, float16
    /// for float16 weights, else float32).
    #[arg(long)]
    pub grad_weights: Option<PathBuf>,
    /// subcenter-arcface: K, sub-centres per class (default 3; 1 ..= 64).
    #[arg(long)]
    pub sub_centers: Option<u32>,
    /// infonce: add the reverse term over the anchors for each of the first N keys
    /// (MultipleNegativesSymmetricRankingLoss).
    #[arg(long)]
    pub symmetric: bool,
    /// infonce: the anchors' integer labels (N .npy); keys with an anchor's label are not
    /// its negatives. siglip: A's labels; pairs with equal labels are positive. With
    /// --labels-b.
    #[arg(long)]
    pub labels_a: Option<PathBuf>,
    /// infonce: the keys' integer labels (M .npy); siglip: B's. With --labels-a.
    #[arg(long)]
    pub labels_b: Option<PathBuf>,
    /// siglip: t′, the log of the logit scale t = exp(t′) (default ln 10 = 2.302585);
    /// exp(t′) <= 1e4.
    #[arg(long, allow_hyphen_values = true)]
    pub log_scale: Option<f64>,
    /// siglip: the logit bias b (default −10); |b| <= 1e4.
    #[arg(long, allow_hyphen_values = true)]
    pub bias: Option<f64>,
}

impl EvalArgs {
    /// The gradients wanted when any gradient output is asked for: in the inputs'
    /// precision, or f32 with --grad-f32.
    pub(crate) fn grads(&self, asked: bool) -> Grads {
        match (asked, self.grad_f32) {
            (false, _) => Grads::Skip,
            (true, false) => Grads::Compute,
            (true, true) => Grads::ComputeF32,
        }
    }
}

const BATCH: [&str; 3] = ["embeddings", "labels", "grad"];
const REFERENCE: [&str; 3] = ["reference", "reference_labels", "grad_reference"];
const MARGIN: [&str; 4] = ["margin", "distance", "reduction", "normalize"];

/// Which loss takes which flag (clap's ids, the flag without `--`, `_` for `-`), beside
/// `--loss` and `--device`, which all take.
pub(crate) const TAKES: [(LossName, &[&[&str]]); 12] = [
    (
        LossName::Contrastive,
        &[
            &BATCH,
            &REFERENCE,
            &MARGIN,
            &["a", "b", "y", "grad_a", "grad_b", "pos_margin", "hinge"],
        ],
    ),
    (
        LossName::Triplet,
        &[
            &BATCH,
            &REFERENCE,
            &MARGIN,
            &[
                "anchor",
                "positive",
                "negative",
                "grad_anchor",
                "grad_positive",
                "grad_negative",
                "mining",
                "swap",
                "soft",
            ],
        ],
    ),
    (LossName::Ntxent, &[&BATCH, &REFERENCE, &["temperature"]]),
    (LossName::Supcon, &[&BATCH, &REFERENCE, &["temperature"]]),
    (
        LossName::Clip,
        &[&["a", "b", "grad_a", "grad_b", "temperature"]],
    ),
    (
        LossName::Infonce,
        &[&[
            "a",
            "b",
            "grad_a",
            "grad_b",
            "scale",
            "symmetric",
            "labels_a",
            "labels_b",
        ]],
    ),
    (
        LossName::Siglip,
        &[&[
            "a",
            "b",
            "grad_a",
            "grad_b",
            "log_scale",
            "bias",
            "labels_a",
            "labels_b",
        ]],
    ),
    (
        LossName::MultiSimilarity,
        &[&[
            "embeddings",
            "labels",
            "grad",
            "alpha",
            "beta",
            "base",
            "epsilon",
        ]],
    ),
    (
        LossName::Circle,
        &[&["embeddings", "labels", "grad", "margin", "gamma"]],
    ),
    (LossName::Arcface, &[&PROXY]),
    (LossName::Cosface, &[&PROXY]),
    (LossName::SubcenterArcface, &[&PROXY, &["sub_centers"]]),
];

const PROXY: [&str; 7] = [
    "embeddings",
    "labels",
    "grad",
    "weights",
    "grad_weights",
    "margin",
    "scale",
];

fn takes(loss: LossName, id: &str) -> bool {
    TAKES
        .iter()
        .filter(|(l, _)| *l == loss)
        .flat_map(|(_, groups)| groups.iter().copied().flatten())
        .any(|f| *f == id)
}

/// Refuses the first flag given on the command line that `loss` does not take, naming the
/// losses that do.
fn refuse_others(m: &ArgMatches, loss: LossName) -> Result<(), Failure> {
    // The arguments themselves, not the groups clap makes of the flattened structs.
    let command = <EvalArgs as Args>::augment_args(clap::Command::new("eval"));
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let given = m.value_source(id) == Some(ValueSource::CommandLine);
        if !given || ["loss", "device", "grad_f32"].contains(&id) || takes(loss, id) {
            continue;
        }
        let others: Vec<&str> = TAKES
            .iter()
            .filter(|(l, _)| takes(*l, id))
            .map(|(l, _)| l.name())
            .collect();
        return Err(Failure::usage(format!(
            "--{} does not apply to --loss {}; it applies to --loss {}",
            id.replace('_', "-"),
            loss.name(),
            others.join(", ")
        )));
    }
    Ok(())
}

/// A labelled batch of queries against reference rows (`--reference`,
/// `--reference-labels`), read and checked for shape.
pub(crate) struct Against {
    pub q: io::Matrix,
    pub r: io::Matrix,
    /// The queries' labels, then the references'.
    pub labels: metric_loss::Labels,
    pub grad: ReferenceGrad,
}

impl Against {
    /// The queries (`--embeddings`, `--labels` at `px`, `pl`) against the reference rows,
    /// or `None` without `--reference` (then `--grad-reference` is refused).
    pub fn read(rf: &ReferenceFlags, px: &Path, pl: &Path) -> Result<Option<Self>, Failure> {
        let (pr, prl) = match (&rf.reference, &rf.reference_labels) {
            (None, None) => {
                if rf.grad_reference.is_some() {
                    return Err(Failure::usage("--grad-reference needs --reference"));
                }
                return Ok(None);
            }
            (Some(pr), Some(prl)) => (pr, prl),
            _ => {
                return Err(Failure::usage(
                    "--reference and --reference-labels go together",
                ))
            }
        };
        let q = io::matrix("embeddings", px)?;
        let r = io::matrix("reference", pr)?;
        let mut ids = io::int_labels("labels", pl, "the embeddings", q.rows)?;
        ids.extend(io::int_labels(
            "reference-labels",
            prl,
            "the reference rows",
            r.rows,
        )?);
        let grad = match rf.grad_reference {
            Some(_) => ReferenceGrad::Returned,
            None => ReferenceGrad::Detached,
        };
        Ok(Some(Self {
            q,
            r,
            labels: metric_loss::Labels::new(&ids),
            grad,
        }))
    }

    /// The reference rows as a [`ReferenceSet`] (rows other than the queries).
    pub fn set<'r, 'a>(&self, rows: &'r metric_loss::Embeddings<'a>) -> ReferenceSet<'r, 'a> {
        ReferenceSet::new(rows, self.grad)
    }

    /// Checks the call with `validate` (the loss's `validate_against`) and prepares its
    /// outputs: `--grad` (dL/dQ) and `--grad-reference` (dL/dR).
    pub fn prepare(
        &self,
        grad: &Option<PathBuf>,
        rf: &ReferenceFlags,
        validate: impl FnOnce(
            &metric_loss::Embeddings<'_>,
            &ReferenceSet<'_, '_>,
            &metric_loss::Labels,
        ) -> metric_loss::Result<()>,
    ) -> Result<io::Outputs, Failure> {
        let rv = self.r.view("reference")?;
        validate(&self.q.view("embeddings")?, &self.set(&rv), &self.labels)?;
        io::Outputs::prepare(&[("grad", grad), ("grad-reference", &rf.grad_reference)])
    }

    /// The JSON line's fields of a call against reference rows.
    pub fn report(&self, json: &mut serde_json::Map<String, serde_json::Value>) {
        json.insert("reference_rows".into(), self.r.rows.into());
        let g = match self.grad {
            ReferenceGrad::Returned => "returned",
            ReferenceGrad::Detached => "detached",
        };
        json.insert("reference_grad".into(), g.into());
    }
}

/// The two views' labels (`--labels-a`, `--labels-b`: A's then B's, checked against each
/// view's rows; `what` names each view in messages), or `None` without them.
pub(crate) fn view_labels(
    args: &EvalArgs,
    (a, what_a): (&io::Matrix, &str),
    (b, what_b): (&io::Matrix, &str),
) -> Result<Option<metric_loss::Labels>, Failure> {
    match (&args.labels_a, &args.labels_b) {
        (None, None) => Ok(None),
        (Some(pa), Some(pb)) => {
            let mut ids = io::int_labels("labels-a", pa, what_a, a.rows)?;
            ids.extend(io::int_labels("labels-b", pb, what_b, b.rows)?);
            Ok(Some(metric_loss::Labels::new(&ids)))
        }
        _ => Err(Failure::usage(
            "--labels-a and --labels-b go together (A's and B's labels)",
        )),
    }
}

/// The JSON line's fields every loss reports first.
pub(crate) fn head(loss: f64, gpu: &Option<Gpu>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("loss".into(), loss.into());
    m.insert(
        "device".into(),
        if gpu.is_some() { "gpu" } else { "cpu" }.into(),
    );
    m.insert(
        "adapter".into(),
        gpu.as_ref().map(|g| g.adapter().name.clone()).into(),
    );
    m
}

pub(crate) fn run(args: EvalArgs, m: &ArgMatches) -> Result<ExitCode, Failure> {
    refuse_others(m, args.loss)?;
    match args.loss {
        LossName::Contrastive => contrastive::run(&args),
        LossName::Triplet => triplet::run(&args),
        LossName::Ntxent => softmax::run(&args, metric_loss::SoftmaxLoss::NtXent),
        LossName::Supcon => softmax::run(&args, metric_loss::SoftmaxLoss::SupCon),
        LossName::Clip => softmax::run(&args, metric_loss::SoftmaxLoss::Clip),
        LossName::Infonce => softmax::run(
            &args,
            metric_loss::SoftmaxLoss::InfoNce {
                symmetric: args.symmetric,
            },
        ),
        LossName::Siglip => siglip::run(&args),
        LossName::MultiSimilarity | LossName::Circle => weighting::run(&args, args.loss),
        LossName::Arcface | LossName::Cosface | LossName::SubcenterArcface => {
            proxy::run(&args, args.loss)
        }
    }
}

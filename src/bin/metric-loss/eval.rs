//! `metric-loss eval`: validate everything, then open the device, compute, print one JSON line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use metric_loss::{
    npy, Contrastive, Distance, Embeddings, Gpu, Grads, Hinge, Labels, Reduction, SoftmaxLoss,
};

use crate::Failure;

#[derive(Clone, Copy, ValueEnum)]
pub enum LossName {
    Contrastive,
    Triplet,
    Ntxent,
    Supcon,
    Clip,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MiningArg {
    All,
    Hard,
    Semihard,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DistanceArg {
    Euclidean,
    SquaredEuclidean,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HingeArg {
    Squared,
    Linear,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReductionArg {
    Mean,
    Sum,
    MeanNonzero,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
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
}

/// Writes each gradient whose path was given, as float32 .npy of `shape`.
pub(crate) fn write_grads(
    paths: &[&Option<PathBuf>],
    shape: [usize; 2],
    grads: &[Vec<f32>],
) -> Result<(), Failure> {
    for (path, grad) in paths.iter().zip(grads) {
        if let Some(p) = path {
            npy::write_f32(p, &shape, grad)
                .map_err(|e| Failure::runtime(format!("writing {}: {e}", p.display())))?;
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// The loss.
    #[arg(long, value_enum)]
    pub(crate) loss: LossName,
    /// Pair mode: first rows (N×D .npy).
    #[arg(long)]
    pub(crate) a: Option<PathBuf>,
    /// Pair mode: second rows (N×D .npy).
    #[arg(long)]
    pub(crate) b: Option<PathBuf>,
    /// Pair mode: 1 similar, 0 dissimilar (N .npy).
    #[arg(long)]
    pub(crate) y: Option<PathBuf>,
    /// Batch mode: embeddings (B×D .npy).
    #[arg(long)]
    pub(crate) embeddings: Option<PathBuf>,
    /// Batch mode: integer class labels (B .npy).
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Margin m (default 1; contrastive: the dissimilar margin).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) margin: Option<f64>,
    /// Contrastive: positive margin p (default 0).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) pos_margin: Option<f64>,
    /// Contrastive, triplet: distance between rows (default euclidean).
    #[arg(long, value_enum)]
    pub(crate) distance: Option<DistanceArg>,
    /// Contrastive: hinge shape (default squared).
    #[arg(long, value_enum)]
    pub(crate) hinge: Option<HingeArg>,
    /// Reduction (default mean; triplet with --mining all: mean-nonzero).
    #[arg(long, value_enum)]
    pub(crate) reduction: Option<ReductionArg>,
    /// Contrastive, triplet: divide each row by its norm first.
    #[arg(long)]
    pub(crate) normalize: bool,
    /// ntxent, supcon, clip: the temperature τ (default 0.07; supcon 0.1); >= 1e-4.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) temperature: Option<f64>,
    /// Where the loss runs.
    #[arg(long, value_enum, default_value = "gpu")]
    pub(crate) device: DeviceArg,
    /// Pair mode: write dL/dA here (float32 .npy).
    #[arg(long)]
    pub(crate) grad_a: Option<PathBuf>,
    /// Pair mode: write dL/dB here (float32 .npy).
    #[arg(long)]
    pub(crate) grad_b: Option<PathBuf>,
    /// Batch mode: write dL/dX here (float32 .npy).
    #[arg(long)]
    pub(crate) grad: Option<PathBuf>,
    /// Triplet: anchors (N×D .npy).
    #[arg(long)]
    pub(crate) anchor: Option<PathBuf>,
    /// Triplet: positives (N×D .npy).
    #[arg(long)]
    pub(crate) positive: Option<PathBuf>,
    /// Triplet: negatives (N×D .npy).
    #[arg(long)]
    pub(crate) negative: Option<PathBuf>,
    /// Triplet: form triplets from --embeddings and --labels.
    #[arg(long, value_enum)]
    pub(crate) mining: Option<MiningArg>,
    /// Triplet: negative distance min(d(a,n), d(p,n)) (explicit triplets).
    #[arg(long)]
    pub(crate) swap: bool,
    /// Triplet: soft margin log(1 + exp(d(a,p) − d(a,n))) (explicit triplets).
    #[arg(long)]
    pub(crate) soft: bool,
    /// Triplet: write dL/dA here (float32 .npy).
    #[arg(long)]
    pub(crate) grad_anchor: Option<PathBuf>,
    /// Triplet: write dL/dP here (float32 .npy).
    #[arg(long)]
    pub(crate) grad_positive: Option<PathBuf>,
    /// Triplet: write dL/dN here (float32 .npy).
    #[arg(long)]
    pub(crate) grad_negative: Option<PathBuf>,
}

impl EvalArgs {
    /// The first of `flags` (name, given) that was given, as a usage error naming `why`.
    pub(crate) fn reject(flags: &[(&str, bool)], why: &str) -> Result<(), Failure> {
        match flags.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(Failure::usage(format!("{name} {why}"))),
            None => Ok(()),
        }
    }
}

pub(crate) struct Matrix {
    pub(crate) data: Vec<f32>,
    pub(crate) rows: usize,
    pub(crate) dim: usize,
}

enum Input {
    Pairs {
        a: Matrix,
        b: Matrix,
        similar: Vec<bool>,
    },
    Batch {
        x: Matrix,
        labels: Labels,
    },
}

/// Why a softmax-only flag is refused by the other losses.
pub(crate) const NOT_SOFTMAX: &str = "applies to --loss ntxent, supcon and clip";

fn load(flag: &str, path: &Path) -> Result<npy::NpyArray, Failure> {
    npy::read(path).map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))
}

pub(crate) fn matrix(flag: &'static str, path: &Path) -> Result<Matrix, Failure> {
    let arr = load(flag, path)?;
    if arr.shape.len() != 2 {
        return Err(Failure::usage(format!(
            "--{flag} {}: expected a 2-D array (rows × dim), got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    let (rows, dim) = (arr.shape[0], arr.shape[1]);
    let data = arr
        .to_f32()
        .map_err(|e| Failure::usage(format!("--{flag} {}: {e}", path.display())))?;
    // float64 values beyond f32's range become infinite here and are caught below.
    Embeddings::new(flag, &data, rows, dim).map_err(|e| in_domain_message(flag, dim, e))?;
    Ok(Matrix { data, rows, dim })
}

fn in_domain_message(flag: &str, dim: usize, e: metric_loss::Error) -> Failure {
    match e {
        metric_loss::Error::OutOfDomain { index, value, .. } => Failure::usage(format!(
            "--{flag}: value {value} at row {}, column {} is outside the input domain \
             (finite, |x| <= 1e15)",
            index / dim.max(1),
            index % dim.max(1)
        )),
        metric_loss::Error::EmptyInput { .. } => {
            Failure::usage(format!("--{flag}: the array has no rows (empty batch)"))
        }
        metric_loss::Error::ZeroDim { .. } => {
            Failure::usage(format!("--{flag}: the array has dimension 0 (D = 0)"))
        }
        other => Failure::from(other),
    }
}

fn vector(flag: &str, path: &Path) -> Result<npy::NpyArray, Failure> {
    let arr = load(flag, path)?;
    if arr.shape.len() != 1 {
        return Err(Failure::usage(format!(
            "--{flag} {}: expected a 1-D array, got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    Ok(arr)
}

pub(crate) fn rows_match(flag: &str, expected: usize, got: usize) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--{flag} has {got} rows but the embeddings have {expected}"
        )))
    }
}

/// Reads batch-mode embeddings and labels: (values, rows, dim, labels).
pub fn read_batch(px: &Path, pl: &Path) -> Result<(Vec<f32>, usize, usize, Vec<i64>), Failure> {
    let x = matrix("embeddings", px)?;
    let l = vector("labels", pl)?;
    if !matches!(l.dtype, npy::Dtype::Int(4) | npy::Dtype::Int(8)) {
        return Err(Failure::usage(format!(
            "--labels {}: dtype {} is not int32 or int64",
            pl.display(),
            l.dtype.name()
        )));
    }
    rows_match("labels", x.rows, l.len())?;
    let ids = l
        .to_i64()
        .map_err(|e| Failure::usage(format!("--labels {}: {e}", pl.display())))?;
    Ok((x.data, x.rows, x.dim, ids))
}

fn read_input(args: &EvalArgs) -> Result<Input, Failure> {
    let pairs = args.a.is_some() || args.b.is_some() || args.y.is_some();
    let batch = args.embeddings.is_some() || args.labels.is_some();
    match (pairs, batch) {
        (true, true) => Err(Failure::usage(
            "give either --a/--b/--y (pair mode) or --embeddings/--labels (batch mode), not both",
        )),
        (false, false) => Err(Failure::usage(
            "no input: give --a/--b/--y (pair mode) or --embeddings/--labels (batch mode)",
        )),
        (true, false) => {
            if args.grad.is_some() {
                return Err(Failure::usage(
                    "--grad applies to batch mode; in pair mode use --grad-a and --grad-b",
                ));
            }
            let need = |p: &Option<PathBuf>, flag: &str| {
                p.clone().ok_or_else(|| {
                    Failure::usage(format!(
                        "pair mode needs --a, --b and --y; --{flag} is missing"
                    ))
                })
            };
            let (pa, pb, py) = (
                need(&args.a, "a")?,
                need(&args.b, "b")?,
                need(&args.y, "y")?,
            );
            let a = matrix("a", &pa)?;
            let b = matrix("b", &pb)?;
            rows_match("b", a.rows, b.rows)?;
            if a.dim != b.dim {
                return Err(Failure::usage(format!(
                    "--b has dimension {} but --a has {}",
                    b.dim, a.dim
                )));
            }
            let y = vector("y", &py)?;
            rows_match("y", a.rows, y.len())?;
            let values = y
                .to_f64_any()
                .map_err(|e| Failure::usage(format!("--y {}: {e}", py.display())))?;
            let similar = values
                .iter()
                .enumerate()
                .map(|(i, &v)| match v {
                    1.0 => Ok(true),
                    0.0 => Ok(false),
                    v => Err(Failure::usage(format!(
                        "--y[{i}] = {v}: pair labels must be 0 (dissimilar) or 1 (similar)"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Input::Pairs { a, b, similar })
        }
        (false, true) => {
            if args.grad_a.is_some() || args.grad_b.is_some() {
                return Err(Failure::usage(
                    "--grad-a/--grad-b apply to pair mode; in batch mode use --grad",
                ));
            }
            let px = args.embeddings.clone().ok_or_else(|| {
                Failure::usage(
                    "batch mode needs --embeddings and --labels; --embeddings is missing",
                )
            })?;
            let pl = args.labels.clone().ok_or_else(|| {
                Failure::usage("batch mode needs --embeddings and --labels; --labels is missing")
            })?;
            let (data, rows, dim, ids) = read_batch(&px, &pl)?;
            Ok(Input::Batch {
                x: Matrix { data, rows, dim },
                labels: Labels::new(&ids),
            })
        }
    }
}

/// The distance flag as the library's enum (euclidean when not given).
pub(crate) fn distance(arg: Option<DistanceArg>) -> Distance {
    match arg.unwrap_or(DistanceArg::Euclidean) {
        DistanceArg::Euclidean => Distance::Euclidean,
        DistanceArg::SquaredEuclidean => Distance::SquaredEuclidean,
        DistanceArg::Cosine => Distance::Cosine,
    }
}

/// The reduction flag as the library's enum.
pub(crate) fn reduction(arg: ReductionArg) -> Reduction {
    match arg {
        ReductionArg::Mean => Reduction::Mean,
        ReductionArg::Sum => Reduction::Sum,
        ReductionArg::MeanNonzero => Reduction::MeanNonzero,
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

fn config(args: &EvalArgs) -> Result<Contrastive, Failure> {
    let cfg = Contrastive {
        distance: distance(args.distance),
        hinge: match args.hinge.unwrap_or(HingeArg::Squared) {
            HingeArg::Squared => Hinge::Squared,
            HingeArg::Linear => Hinge::Linear,
        },
        reduction: reduction(args.reduction.unwrap_or(ReductionArg::Mean)),
        normalize: args.normalize,
        margin: margin_value("--margin", args.margin.unwrap_or(1.0))?,
        pos_margin: margin_value("--pos-margin", args.pos_margin.unwrap_or(0.0))?,
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(args: EvalArgs) -> Result<ExitCode, Failure> {
    match args.loss {
        LossName::Contrastive => {}
        LossName::Triplet => return crate::eval_triplet::run(args),
        LossName::Ntxent => return crate::eval_softmax::run(args, SoftmaxLoss::NtXent),
        LossName::Supcon => return crate::eval_softmax::run(args, SoftmaxLoss::SupCon),
        LossName::Clip => return crate::eval_softmax::run(args, SoftmaxLoss::Clip),
    }
    EvalArgs::reject(
        &[("--temperature", args.temperature.is_some())],
        NOT_SOFTMAX,
    )?;
    EvalArgs::reject(
        &[
            ("--anchor", args.anchor.is_some()),
            ("--positive", args.positive.is_some()),
            ("--negative", args.negative.is_some()),
            ("--mining", args.mining.is_some()),
            ("--swap", args.swap),
            ("--soft", args.soft),
            ("--grad-anchor", args.grad_anchor.is_some()),
            ("--grad-positive", args.grad_positive.is_some()),
            ("--grad-negative", args.grad_negative.is_some()),
        ],
        "applies to --loss triplet, not contrastive",
    )?;
    let cfg = config(&args)?;
    let input = read_input(&args)?;
    let want = if args.grad.is_some() || args.grad_a.is_some() || args.grad_b.is_some() {
        Grads::Compute
    } else {
        Grads::Skip
    };
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let (out, shape) = match &input {
        Input::Pairs { a, b, similar } => {
            let ea = Embeddings::new("a", &a.data, a.rows, a.dim)?;
            let eb = Embeddings::new("b", &b.data, b.rows, b.dim)?;
            let out = match &gpu {
                Some(g) => cfg.pairs(g, &ea, &eb, similar, want)?,
                None => cfg.pairs_cpu(&ea, &eb, similar, want)?,
            };
            (out, [a.rows, a.dim])
        }
        Input::Batch { x, labels } => {
            let ex = Embeddings::new("embeddings", &x.data, x.rows, x.dim)?;
            let out = match &gpu {
                Some(g) => cfg.batch(g, &ex, labels, want)?,
                None => cfg.batch_cpu(&ex, labels, want)?,
            };
            (out, [x.rows, x.dim])
        }
    };
    let targets: Vec<&Option<PathBuf>> = match input {
        Input::Pairs { .. } => vec![&args.grad_a, &args.grad_b],
        Input::Batch { .. } => vec![&args.grad],
    };
    write_grads(&targets, shape, &out.grads)?;
    let json = serde_json::json!({
        "loss": out.loss,
        "device": if gpu.is_some() { "gpu" } else { "cpu" },
        "adapter": gpu.as_ref().map(|g| g.adapter().name.clone()),
        "similar_pairs": out.counts.similar_pairs,
        "dissimilar_pairs": out.counts.dissimilar_pairs,
        "active_terms": out.counts.active_terms(),
    });
    out!("{json}");
    Ok(ExitCode::SUCCESS)
}

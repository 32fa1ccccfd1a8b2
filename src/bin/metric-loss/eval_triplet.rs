//! `metric-loss eval --loss triplet`: explicit triplets (--anchor/--positive/--negative) or
//! triplets mined from --embeddings and --labels (--mining).

use std::path::PathBuf;
use std::process::ExitCode;

use metric_loss::{Embeddings, Grads, Labels, Mining, Triplet, TripletTerm};

use crate::eval::{
    distance, margin_value, matrix, read_batch, reduction, rows_match, write_grads, EvalArgs,
    Matrix, MiningArg,
};
use crate::Failure;

enum Input {
    Explicit([Matrix; 3]),
    Mined {
        x: Matrix,
        labels: Labels,
        mining: Mining,
    },
}

fn read_input(args: &EvalArgs) -> Result<Input, Failure> {
    let explicit = args.anchor.is_some() || args.positive.is_some() || args.negative.is_some();
    let mined = args.embeddings.is_some() || args.labels.is_some() || args.mining.is_some();
    match (explicit, mined) {
        (true, true) => Err(Failure::usage(
            "give either --anchor/--positive/--negative (explicit triplets) or \
             --embeddings/--labels/--mining (mined triplets), not both",
        )),
        (false, false) => Err(Failure::usage(
            "no input: give --anchor/--positive/--negative (explicit triplets) or \
             --embeddings/--labels/--mining (mined triplets)",
        )),
        (true, false) => {
            EvalArgs::reject(
                &[("--grad", args.grad.is_some())],
                "applies to mined triplets; explicit triplets take --grad-anchor, \
                 --grad-positive and --grad-negative",
            )?;
            let need = |p: &Option<PathBuf>, flag: &str| {
                p.clone().ok_or_else(|| {
                    Failure::usage(format!(
                        "explicit triplets need --anchor, --positive and --negative; \
                         --{flag} is missing"
                    ))
                })
            };
            let a = matrix("anchor", &need(&args.anchor, "anchor")?)?;
            let p = matrix("positive", &need(&args.positive, "positive")?)?;
            let n = matrix("negative", &need(&args.negative, "negative")?)?;
            for (flag, m) in [("positive", &p), ("negative", &n)] {
                rows_match(flag, a.rows, m.rows)?;
                if m.dim != a.dim {
                    return Err(Failure::usage(format!(
                        "--{flag} has dimension {} but --anchor has {}",
                        m.dim, a.dim
                    )));
                }
            }
            Ok(Input::Explicit([a, p, n]))
        }
        (false, true) => {
            EvalArgs::reject(
                &[
                    ("--grad-anchor", args.grad_anchor.is_some()),
                    ("--grad-positive", args.grad_positive.is_some()),
                    ("--grad-negative", args.grad_negative.is_some()),
                ],
                "applies to explicit triplets; mined triplets take --grad",
            )?;
            let missing = |flag: &str| {
                Failure::usage(format!(
                    "mined triplets need --embeddings, --labels and --mining; --{flag} is missing"
                ))
            };
            let px = args
                .embeddings
                .clone()
                .ok_or_else(|| missing("embeddings"))?;
            let pl = args.labels.clone().ok_or_else(|| missing("labels"))?;
            let mining = match args.mining.ok_or_else(|| missing("mining"))? {
                MiningArg::All => Mining::All,
                MiningArg::Hard => Mining::Hard,
                MiningArg::Semihard => Mining::Semihard,
            };
            let (data, rows, dim, ids) = read_batch(&px, &pl)?;
            Ok(Input::Mined {
                x: Matrix { data, rows, dim },
                labels: Labels::new(&ids),
                mining,
            })
        }
    }
}

fn config(args: &EvalArgs) -> Result<Triplet, Failure> {
    let term = match (args.soft, args.margin) {
        (true, Some(_)) => {
            return Err(Failure::usage(
                "--margin does not apply with --soft (the soft margin has no margin)",
            ))
        }
        (true, None) => TripletTerm::Soft,
        (false, m) => TripletTerm::Margin(margin_value("--margin", m.unwrap_or(1.0))?),
    };
    Ok(Triplet {
        distance: distance(args.distance),
        normalize: args.normalize,
        term,
        swap: args.swap,
        reduction: args.reduction.map(reduction),
    })
}

pub fn run(args: EvalArgs) -> Result<ExitCode, Failure> {
    EvalArgs::reject(
        &[
            ("--a", args.a.is_some()),
            ("--b", args.b.is_some()),
            ("--y", args.y.is_some()),
            ("--pos-margin", args.pos_margin.is_some()),
            ("--hinge", args.hinge.is_some()),
            ("--grad-a", args.grad_a.is_some()),
            ("--grad-b", args.grad_b.is_some()),
        ],
        "applies to --loss contrastive, not triplet",
    )?;
    EvalArgs::reject(
        &[("--temperature", args.temperature.is_some())],
        crate::eval::NOT_SOFTMAX,
    )?;
    let cfg = config(&args)?;
    let input = read_input(&args)?;
    let mining = match &input {
        Input::Explicit(_) => None,
        Input::Mined { mining, .. } => Some(*mining),
    };
    cfg.validate(mining)?;
    let targets: Vec<&Option<PathBuf>> = match mining {
        None => vec![&args.grad_anchor, &args.grad_positive, &args.grad_negative],
        Some(_) => vec![&args.grad],
    };
    let want = if targets.iter().any(|t| t.is_some()) {
        Grads::Compute
    } else {
        Grads::Skip
    };
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let (out, shape) = match &input {
        Input::Explicit([a, p, n]) => {
            let ea = Embeddings::new("anchor", &a.data, a.rows, a.dim)?;
            let ep = Embeddings::new("positive", &p.data, p.rows, p.dim)?;
            let en = Embeddings::new("negative", &n.data, n.rows, n.dim)?;
            let out = match &gpu {
                Some(g) => cfg.explicit(g, &ea, &ep, &en, want)?,
                None => cfg.explicit_cpu(&ea, &ep, &en, want)?,
            };
            (out, [a.rows, a.dim])
        }
        Input::Mined { x, labels, mining } => {
            let ex = Embeddings::new("embeddings", &x.data, x.rows, x.dim)?;
            let out = match &gpu {
                Some(g) => cfg.mined(g, &ex, labels, *mining, want)?,
                None => cfg.mined_cpu(&ex, labels, *mining, want)?,
            };
            (out, [x.rows, x.dim])
        }
    };
    write_grads(&targets, shape, &out.grads)?;
    let json = serde_json::json!({
        "loss": out.loss,
        "device": if gpu.is_some() { "gpu" } else { "cpu" },
        "adapter": gpu.as_ref().map(|g| g.adapter().name.clone()),
        "mining": mining.map(Mining::name),
        "reduction": cfg.reduction_for(mining).name(),
        "terms": out.counts.terms,
        "term_kind": mining.map_or("triplets", Mining::term_kind),
        "active_terms": out.counts.active,
    });
    out!("{json}");
    Ok(ExitCode::SUCCESS)
}

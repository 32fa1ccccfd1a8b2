//! `eval --loss multi-similarity|circle`: a labelled batch (--embeddings, --labels, --grad)
//! with Multi-Similarity's --alpha, --beta, --base and --epsilon (the miner), or Circle's
//! --margin (m) and --gamma; PML's defaults where not given.

use std::process::ExitCode;

use metric_loss::{Weighting, WeightingLoss};

use super::{head, EvalArgs, LossName};
use crate::io::{self, Outputs};
use crate::Failure;

/// The options from the flags, checked by the library (a value beyond f32 fails its check
/// as infinite).
fn options(args: &EvalArgs, loss: LossName) -> Result<Weighting, Failure> {
    let w = &args.weighting;
    let f = |v: Option<f64>, default: f32| v.map_or(default, |v| v as f32);
    let loss = match (
        loss,
        Weighting::multi_similarity().loss,
        Weighting::circle().loss,
    ) {
        (
            LossName::MultiSimilarity,
            WeightingLoss::MultiSimilarity {
                alpha, beta, base, ..
            },
            _,
        ) => WeightingLoss::MultiSimilarity {
            alpha: f(w.alpha, alpha),
            beta: f(w.beta, beta),
            base: f(w.base, base),
            epsilon: w.epsilon.map(|e| e as f32),
        },
        (_, _, WeightingLoss::Circle { m, gamma }) => WeightingLoss::Circle {
            m: f(args.margin.margin, m),
            gamma: f(w.gamma, gamma),
        },
        _ => unreachable!("the defaults are one loss each"),
    };
    Ok(Weighting::new(loss)?)
}

pub(super) fn run(args: &EvalArgs, loss: LossName) -> Result<ExitCode, Failure> {
    let cfg = options(args, loss)?;
    let bt = &args.batch;
    let needs = format!("--loss {} needs --embeddings and --labels", loss.name());
    let (px, pl) = (
        io::need(&bt.embeddings, "embeddings", &needs)?,
        io::need(&bt.labels, "labels", &needs)?,
    );
    let (x, labels) = io::batch(px, pl)?;
    let ex = x.view("embeddings")?;
    cfg.validate_batch(&ex, &labels)?;
    let outputs = Outputs::prepare(&[("grad", &bt.grad)])?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = args.grads(bt.grad.is_some());
    let out = match &gpu {
        Some(g) => cfg.batch(g, &ex, &labels, want)?,
        None => cfg.batch_cpu(&ex, &labels, want)?,
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    match cfg.loss {
        WeightingLoss::MultiSimilarity {
            alpha,
            beta,
            base,
            epsilon,
        } => {
            json.insert("alpha".into(), f64::from(alpha).into());
            json.insert("beta".into(), f64::from(beta).into());
            json.insert("base".into(), f64::from(base).into());
            json.insert("epsilon".into(), epsilon.map(f64::from).into());
        }
        WeightingLoss::Circle { m, gamma } => {
            json.insert("margin".into(), f64::from(m).into());
            json.insert("gamma".into(), f64::from(gamma).into());
        }
    }
    json.insert("terms".into(), out.counts.terms.into());
    json.insert("positive_pairs".into(), out.counts.positive_pairs.into());
    json.insert("negative_pairs".into(), out.counts.negative_pairs.into());
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

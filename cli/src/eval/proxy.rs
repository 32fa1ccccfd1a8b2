//! `eval --loss arcface|cosface|subcenter-arcface`: queries (--embeddings), their class
//! indices (--labels, integers 0 .. C − 1, not remapped), the class weights (--weights, C×D;
//! subcenter-arcface C·K×D with --sub-centers K), --margin and --scale; --grad writes dL/dX
//! and --grad-weights dL/dW.

use std::process::ExitCode;

use metric_loss::{Proxy, ProxyLoss};

use super::{head, EvalArgs, LossName};
use crate::io::{self, Outputs};
use crate::Failure;

/// The options from the flags (PML's defaults where not given), checked by the library (a
/// value beyond f32 fails its check as infinite).
fn options(args: &EvalArgs, loss: LossName) -> Result<Proxy, Failure> {
    let d = match loss {
        LossName::Arcface => Proxy::arcface(),
        LossName::SubcenterArcface => Proxy::subcenter_arcface(),
        _ => Proxy::cosface(),
    };
    let m = args.margin.margin.map(|v| v as f32);
    let loss = match d.loss {
        ProxyLoss::ArcFace { margin_degrees } => ProxyLoss::ArcFace {
            margin_degrees: m.unwrap_or(margin_degrees),
        },
        ProxyLoss::CosFace { margin } => ProxyLoss::CosFace {
            margin: m.unwrap_or(margin),
        },
    };
    let scale = args.scale.map_or(d.scale, |v| v as f32);
    let k = args.sub_centers.unwrap_or(d.sub_centers);
    Ok(Proxy::new(loss, scale)?.with_sub_centers(k)?)
}

pub(super) fn run(args: &EvalArgs, loss: LossName) -> Result<ExitCode, Failure> {
    let cfg = options(args, loss)?;
    let bt = &args.batch;
    let needs = format!(
        "--loss {} needs --embeddings, --labels and --weights",
        loss.name()
    );
    let x = io::matrix(
        "embeddings",
        io::need(&bt.embeddings, "embeddings", &needs)?,
    )?;
    let w = io::matrix("weights", io::need(&args.weights, "weights", &needs)?)?;
    let pl = io::need(&bt.labels, "labels", &needs)?;
    let classes: Vec<u32> = io::int_labels("labels", pl, "the embeddings", x.rows)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| {
            u32::try_from(v).map_err(|_| {
                Failure::usage(format!(
                    "--labels: row {row} has class index {v}; class indices are 0 .. {} \
                     (the classes of --weights)",
                    cfg.classes_of(w.rows)
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let (ex, ew) = (x.view("embeddings")?, w.view("weights")?);
    cfg.validate_batch(&ex, &classes, &ew)?;
    let outputs = Outputs::prepare(&[("grad", &bt.grad), ("grad-weights", &args.grad_weights)])?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = args.grads(bt.grad.is_some() || args.grad_weights.is_some());
    let out = match &gpu {
        Some(g) => cfg.batch(g, &ex, &classes, &ew, want)?,
        None => cfg.batch_cpu(&ex, &classes, &ew, want)?,
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    let margin = match cfg.loss {
        ProxyLoss::ArcFace { margin_degrees } => margin_degrees,
        ProxyLoss::CosFace { margin } => margin,
    };
    json.insert("margin".into(), f64::from(margin).into());
    json.insert("scale".into(), f64::from(cfg.scale).into());
    json.insert("classes".into(), cfg.classes_of(w.rows).into());
    json.insert("sub_centers".into(), cfg.sub_centers.into());
    json.insert("terms".into(), out.counts.terms.into());
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

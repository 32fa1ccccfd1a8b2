//! `eval --loss siglip`: --a and --b (B at least A's rows), --log-scale, --bias, and
//! optionally --labels-a/--labels-b for the positives. The gradients are always computed,
//! so that `grad_log_scale` and `grad_bias` are always in the JSON line; --grad-a/--grad-b
//! also write dL/dA and dL/dB.

use std::process::ExitCode;

use metric_loss::Siglip;

use super::{head, view_labels, EvalArgs};
use crate::io::{self, Outputs};
use crate::Failure;

/// t′ and b from the flags (the paper's initialisation where not given), checked by the
/// library (a value beyond f32 fails its check as infinite).
fn options(args: &EvalArgs) -> Result<Siglip, Failure> {
    let d = Siglip::default();
    let t = args.log_scale.map_or(d.log_scale, |v| v as f32);
    let b = args.bias.map_or(d.bias, |v| v as f32);
    Ok(Siglip::new(t, b)?)
}

pub(super) fn run(args: &EvalArgs) -> Result<ExitCode, Failure> {
    let cfg = options(args)?;
    let p = &args.pairs;
    let needs = "--loss siglip needs --a and --b";
    let a = io::matrix("a", io::need(&p.a, "a", needs)?)?;
    let b = io::matrix("b", io::need(&p.b, "b", needs)?)?;
    if b.rows < a.rows {
        return Err(Failure::usage(format!(
            "--b has {} rows but --a has {}: siglip needs B's row i for A's row i (a positive \
             pair) and takes extra rows of B as negatives",
            b.rows, a.rows
        )));
    }
    let labels = view_labels(args, (&a, "the rows of --a"), (&b, "the rows of --b"))?;
    let (ea, eb) = (a.view("a")?, b.view("b")?);
    match &labels {
        Some(l) => cfg.validate_pairs_labelled(&ea, &eb, l)?,
        None => cfg.validate_pairs(&ea, &eb)?,
    }
    let outputs = Outputs::prepare(&[("grad-a", &p.grad_a), ("grad-b", &p.grad_b)])?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = args.grads(true);
    let out = match (&gpu, &labels) {
        (Some(g), Some(l)) => cfg.pairs_labelled(g, &ea, &eb, l, want)?,
        (Some(g), None) => cfg.pairs(g, &ea, &eb, want)?,
        (None, Some(l)) => cfg.pairs_labelled_cpu(&ea, &eb, l, want)?,
        (None, None) => cfg.pairs_cpu(&ea, &eb, want)?,
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    json.insert("log_scale".into(), f64::from(cfg.log_scale).into());
    json.insert("bias".into(), f64::from(cfg.bias).into());
    json.insert("terms".into(), out.counts.terms.into());
    json.insert("positive_pairs".into(), out.counts.positive_pairs.into());
    json.insert("grad_log_scale".into(), out.grad_temperature.into());
    json.insert("grad_bias".into(), out.grad_bias.into());
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

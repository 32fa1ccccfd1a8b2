//! `metric-loss eval --loss ntxent|supcon` (--embeddings and --labels) and `--loss clip`
//! (--a and --b). The gradients are always computed, so that `grad_temperature` is always
//! in the JSON line; --grad (or --grad-a/--grad-b) also writes the embeddings' gradients.

use std::path::PathBuf;
use std::process::ExitCode;

use metric_loss::{Embeddings, Grads, Labels, Softmax, SoftmaxLoss};

use crate::eval::{matrix, read_batch, rows_match, write_grads, EvalArgs, Matrix};
use crate::Failure;

enum Input {
    Batch { x: Matrix, labels: Labels },
    Views { a: Matrix, b: Matrix },
}

fn read_input(args: &EvalArgs, loss: SoftmaxLoss) -> Result<Input, Failure> {
    let name = loss.name();
    if loss == SoftmaxLoss::Clip {
        EvalArgs::reject(
            &[
                ("--embeddings", args.embeddings.is_some()),
                ("--labels", args.labels.is_some()),
                ("--grad", args.grad.is_some()),
            ],
            "does not apply to --loss clip, which takes two views --a and --b (and --grad-a, \
             --grad-b)",
        )?;
        let need = |p: &Option<PathBuf>, flag: &str| {
            p.clone().ok_or_else(|| {
                Failure::usage(format!(
                    "--loss clip needs --a and --b; --{flag} is missing"
                ))
            })
        };
        let a = matrix("a", &need(&args.a, "a")?)?;
        let b = matrix("b", &need(&args.b, "b")?)?;
        rows_match("b", a.rows, b.rows)?;
        if a.dim != b.dim {
            return Err(Failure::usage(format!(
                "--b has dimension {} but --a has {}",
                b.dim, a.dim
            )));
        }
        return Ok(Input::Views { a, b });
    }
    EvalArgs::reject(
        &[
            ("--a", args.a.is_some()),
            ("--b", args.b.is_some()),
            ("--grad-a", args.grad_a.is_some()),
            ("--grad-b", args.grad_b.is_some()),
        ],
        &format!(
            "does not apply to --loss {name}, which takes --embeddings and --labels (and --grad)"
        ),
    )?;
    let missing = |flag: &str| {
        Failure::usage(format!(
            "--loss {name} needs --embeddings and --labels; --{flag} is missing"
        ))
    };
    let px = args
        .embeddings
        .clone()
        .ok_or_else(|| missing("embeddings"))?;
    let pl = args.labels.clone().ok_or_else(|| missing("labels"))?;
    let (data, rows, dim, ids) = read_batch(&px, &pl)?;
    Ok(Input::Batch {
        x: Matrix { data, rows, dim },
        labels: Labels::new(&ids),
    })
}

pub fn run(args: EvalArgs, loss: SoftmaxLoss) -> Result<ExitCode, Failure> {
    EvalArgs::reject(
        &[
            ("--y", args.y.is_some()),
            ("--margin", args.margin.is_some()),
            ("--pos-margin", args.pos_margin.is_some()),
            ("--distance", args.distance.is_some()),
            ("--hinge", args.hinge.is_some()),
            ("--reduction", args.reduction.is_some()),
            ("--normalize", args.normalize),
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
        "does not apply to the softmax losses (ntxent, supcon, clip: cosine similarity of \
         normalised rows, mean over the terms)",
    )?;
    let t = args
        .temperature
        .unwrap_or(f64::from(loss.default_temperature()));
    if !(f64::from(metric_loss::MIN_TEMPERATURE)..=metric_loss::MAX_ABS_VALUE).contains(&t) {
        return Err(Failure::usage(format!(
            "--temperature {t}: must be finite, >= 1e-4 and <= 1e15"
        )));
    }
    let cfg = Softmax::new(loss).temperature(t as f32);
    cfg.validate()?;
    let input = read_input(&args, loss)?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = Grads::Compute;
    let (out, targets, shape) = match &input {
        Input::Batch { x, labels } => {
            let ex = Embeddings::new("embeddings", &x.data, x.rows, x.dim)?;
            let out = match &gpu {
                Some(g) => cfg.batch(g, &ex, labels, want)?,
                None => cfg.batch_cpu(&ex, labels, want)?,
            };
            (out, vec![&args.grad], [x.rows, x.dim])
        }
        Input::Views { a, b } => {
            let ea = Embeddings::new("a", &a.data, a.rows, a.dim)?;
            let eb = Embeddings::new("b", &b.data, b.rows, b.dim)?;
            let out = match &gpu {
                Some(g) => cfg.pairs(g, &ea, &eb, want)?,
                None => cfg.pairs_cpu(&ea, &eb, want)?,
            };
            (out, vec![&args.grad_a, &args.grad_b], [a.rows, a.dim])
        }
    };
    write_grads(&targets, shape, &out.grads)?;
    let json = serde_json::json!({
        "loss": out.loss,
        "device": if gpu.is_some() { "gpu" } else { "cpu" },
        "adapter": gpu.as_ref().map(|g| g.adapter().name.clone()),
        "temperature": t,
        "terms": out.counts.terms,
        "term_kind": loss.term_kind(),
        "grad_temperature": out.grad_temperature,
    });
    out!("{json}");
    Ok(ExitCode::SUCCESS)
}

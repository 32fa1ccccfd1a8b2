//! `eval --loss ntxent|supcon` (--embeddings and --labels) and `--loss clip` (--a and --b).
//! The gradients are always computed, so that `grad_temperature` is always in the JSON line;
//! --grad (or --grad-a/--grad-b) also writes the embeddings' gradients.

use std::process::ExitCode;

use metric_loss::{Grads, Labels, Softmax, SoftmaxLoss};

use super::{head, EvalArgs};
use crate::io::{self, Matrix, Outputs};
use crate::Failure;

enum Input {
    Batch { x: Matrix, labels: Labels },
    Views { a: Matrix, b: Matrix },
}

/// What `eval --loss ntxent|supcon|clip` takes, read and checked.
struct Eval {
    cfg: Softmax,
    /// τ as given (the JSON line reports it so).
    temperature: f64,
    input: Input,
    outputs: Outputs,
}

impl Eval {
    fn from_args(args: &EvalArgs, loss: SoftmaxLoss) -> Result<Self, Failure> {
        let t = args
            .temperature
            .unwrap_or(f64::from(loss.default_temperature()));
        if !(f64::from(metric_loss::MIN_TEMPERATURE)..=metric_loss::MAX_ABS_VALUE).contains(&t) {
            return Err(Failure::usage(format!(
                "--temperature {t}: must be finite, >= 1e-4 and <= 1e15"
            )));
        }
        let cfg = Softmax::new(loss).temperature(t as f32)?;
        let (input, outputs) = if loss == SoftmaxLoss::Clip {
            let p = &args.pairs;
            let needs = "--loss clip needs --a and --b";
            let a = io::matrix("a", io::need(&p.a, "a", needs)?)?;
            let b = io::matrix("b", io::need(&p.b, "b", needs)?)?;
            a.same_shape("b", &b, "a")?;
            cfg.validate_pairs(&a.view("a")?, &b.view("b")?)?;
            let outputs = Outputs::prepare(&[("grad-a", &p.grad_a), ("grad-b", &p.grad_b)])?;
            (Input::Views { a, b }, outputs)
        } else {
            let bt = &args.batch;
            let needs = format!("--loss {} needs --embeddings and --labels", loss.name());
            let (x, labels) = io::batch(
                io::need(&bt.embeddings, "embeddings", &needs)?,
                io::need(&bt.labels, "labels", &needs)?,
            )?;
            cfg.validate_batch(&x.view("embeddings")?, &labels)?;
            let outputs = Outputs::prepare(&[("grad", &bt.grad)])?;
            (Input::Batch { x, labels }, outputs)
        };
        Ok(Self {
            cfg,
            temperature: t,
            input,
            outputs,
        })
    }
}

pub(super) fn run(args: &EvalArgs, loss: SoftmaxLoss) -> Result<ExitCode, Failure> {
    let Eval {
        cfg,
        temperature,
        input,
        outputs,
    } = Eval::from_args(args, loss)?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = Grads::Compute;
    let (out, shape) = match &input {
        Input::Batch { x, labels } => {
            let ex = x.view("embeddings")?;
            let out = match &gpu {
                Some(g) => cfg.batch(g, &ex, labels, want)?,
                None => cfg.batch_cpu(&ex, labels, want)?,
            };
            (out, [x.rows, x.dim])
        }
        Input::Views { a, b } => {
            let (ea, eb) = (a.view("a")?, b.view("b")?);
            let out = match &gpu {
                Some(g) => cfg.pairs(g, &ea, &eb, want)?,
                None => cfg.pairs_cpu(&ea, &eb, want)?,
            };
            (out, [a.rows, a.dim])
        }
    };
    outputs.commit(shape, &out.grads)?;
    let mut json = head(out.loss, &gpu);
    json.insert("temperature".into(), temperature.into());
    json.insert("terms".into(), out.counts.terms.into());
    json.insert("term_kind".into(), loss.term_kind().into());
    json.insert("grad_temperature".into(), out.grad_temperature.into());
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

//! `eval --loss ntxent|supcon` (--embeddings and --labels, optionally against --reference
//! and --reference-labels), `--loss clip` (--a and --b) and
//! `--loss infonce` (--a anchors, --b keys, --scale, --symmetric, --labels-a/--labels-b).
//! The gradients are always computed, so that `grad_temperature` (infonce: `grad_scale`) is
//! always in the JSON line; --grad (or --grad-a/--grad-b) also writes the embeddings'
//! gradients.

use std::process::ExitCode;

use metric_loss::{Labels, Softmax, SoftmaxLoss};

use super::{head, view_labels, Against, EvalArgs};
use crate::io::{self, Matrix, Outputs};
use crate::Failure;

enum Input {
    Batch {
        x: Matrix,
        labels: Labels,
    },
    /// Queries against reference rows.
    Against(Against),
    /// CLIP's views, or InfoNCE's anchors and keys (with the anchors' then the keys' labels).
    Views {
        a: Matrix,
        b: Matrix,
        labels: Option<Labels>,
    },
}

/// What `eval --loss ntxent|supcon|clip|infonce` takes, read and checked.
struct Eval {
    cfg: Softmax,
    /// τ (infonce: the scale) as given: the JSON line reports it so.
    given: f64,
    input: Input,
    outputs: Outputs,
}

/// The options: τ, or InfoNCE's scale (1/τ).
fn options(args: &EvalArgs, loss: SoftmaxLoss) -> Result<(Softmax, f64), Failure> {
    if let SoftmaxLoss::InfoNce { .. } = loss {
        let s = args.scale.unwrap_or(20.0);
        if !(s.is_finite() && s > 0.0 && s <= 1e4) {
            return Err(Failure::usage(format!(
                "--scale {s}: must be finite, > 0 and <= 1e4"
            )));
        }
        return Ok((Softmax::new(loss).scale(s as f32)?, s));
    }
    let t = args
        .temperature
        .unwrap_or(f64::from(loss.default_temperature()));
    if !(f64::from(metric_loss::MIN_TEMPERATURE)..=metric_loss::MAX_ABS_VALUE).contains(&t) {
        return Err(Failure::usage(format!(
            "--temperature {t}: must be finite, >= 1e-4 and <= 1e15"
        )));
    }
    Ok((Softmax::new(loss).temperature(t as f32)?, t))
}

impl Eval {
    fn from_args(args: &EvalArgs, loss: SoftmaxLoss) -> Result<Self, Failure> {
        let (cfg, given) = options(args, loss)?;
        let (input, outputs) = if loss.takes_views() {
            let p = &args.pairs;
            let needs = format!("--loss {} needs --a and --b", loss.name());
            let a = io::matrix("a", io::need(&p.a, "a", &needs)?)?;
            let b = io::matrix("b", io::need(&p.b, "b", &needs)?)?;
            if loss == SoftmaxLoss::Clip {
                a.same_shape("b", &b, "a")?;
            } else if b.rows < a.rows {
                return Err(Failure::usage(format!(
                    "--b has {} rows but --a has {}: infonce needs a key per anchor (key i is \
                     anchor i's positive) and takes extra keys as negatives",
                    b.rows, a.rows
                )));
            }
            let labels = view_labels(args, (&a, "the anchors (--a)"), (&b, "the keys (--b)"))?;
            let (ea, eb) = (a.view("a")?, b.view("b")?);
            match &labels {
                Some(l) => cfg.validate_pairs_labelled(&ea, &eb, l)?,
                None => cfg.validate_pairs(&ea, &eb)?,
            }
            let outputs = Outputs::prepare(&[("grad-a", &p.grad_a), ("grad-b", &p.grad_b)])?;
            (Input::Views { a, b, labels }, outputs)
        } else {
            let bt = &args.batch;
            let needs = format!("--loss {} needs --embeddings and --labels", loss.name());
            let (px, pl) = (
                io::need(&bt.embeddings, "embeddings", &needs)?,
                io::need(&bt.labels, "labels", &needs)?,
            );
            match Against::read(&args.reference, px, pl)? {
                None => {
                    let (x, labels) = io::batch(px, pl)?;
                    cfg.validate_batch(&x.view("embeddings")?, &labels)?;
                    let outputs = Outputs::prepare(&[("grad", &bt.grad)])?;
                    (Input::Batch { x, labels }, outputs)
                }
                Some(ag) => {
                    let outputs = ag.prepare(&bt.grad, &args.reference, |q, r, l| {
                        cfg.validate_against(q, r, l)
                    })?;
                    (Input::Against(ag), outputs)
                }
            }
        };
        Ok(Self {
            cfg,
            given,
            input,
            outputs,
        })
    }
}

pub(super) fn run(args: &EvalArgs, loss: SoftmaxLoss) -> Result<ExitCode, Failure> {
    let Eval {
        cfg,
        given,
        input,
        outputs,
    } = Eval::from_args(args, loss)?;
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let want = args.grads(true);
    let out = match &input {
        Input::Batch { x, labels } => {
            let ex = x.view("embeddings")?;
            match &gpu {
                Some(g) => cfg.batch(g, &ex, labels, want)?,
                None => cfg.batch_cpu(&ex, labels, want)?,
            }
        }
        Input::Against(ag) => {
            let (eq, er) = (ag.q.view("embeddings")?, ag.r.view("reference")?);
            let set = ag.set(&er);
            match &gpu {
                Some(g) => cfg.against(g, &eq, &set, &ag.labels, want)?,
                None => cfg.against_cpu(&eq, &set, &ag.labels, want)?,
            }
        }
        Input::Views { a, b, labels } => {
            let (ea, eb) = (a.view("a")?, b.view("b")?);
            match (&gpu, labels) {
                (Some(g), Some(l)) => cfg.pairs_labelled(g, &ea, &eb, l, want)?,
                (Some(g), None) => cfg.pairs(g, &ea, &eb, want)?,
                (None, Some(l)) => cfg.pairs_labelled_cpu(&ea, &eb, l, want)?,
                (None, None) => cfg.pairs_cpu(&ea, &eb, want)?,
            }
        }
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    if let SoftmaxLoss::InfoNce { symmetric } = loss {
        // scale = 1/τ: dL/dscale = −τ² · dL/dτ.
        let tau = f64::from(cfg.temperature);
        json.insert("scale".into(), given.into());
        json.insert("symmetric".into(), symmetric.into());
        json.insert("terms".into(), out.counts.terms.into());
        json.insert("term_kind".into(), loss.term_kind().into());
        let grad_scale = out.grad_temperature.map(|g| -tau * tau * g);
        json.insert("grad_scale".into(), grad_scale.into());
    } else {
        json.insert("temperature".into(), given.into());
        if let Input::Against(ag) = &input {
            ag.report(&mut json);
        }
        json.insert("terms".into(), out.counts.terms.into());
        json.insert("term_kind".into(), loss.term_kind().into());
        json.insert("grad_temperature".into(), out.grad_temperature.into());
    }
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

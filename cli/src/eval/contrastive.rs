//! `eval --loss contrastive`: every pair of a labelled batch (--embeddings, --labels),
//! optionally against reference rows (--reference, --reference-labels), or explicit pairs
//! (--a, --b, --y).

use std::process::ExitCode;

use metric_loss::{Contrastive, Hinge, Labels, Reduction};

use super::{head, margin_value, Against, EvalArgs, HingeArg};
use crate::io::{self, Matrix, Outputs};
use crate::Failure;

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
    Against(Against),
}

/// What `eval --loss contrastive` takes, read and checked.
struct Eval {
    cfg: Contrastive,
    input: Input,
    outputs: Outputs,
}

impl Eval {
    fn from_args(args: &EvalArgs) -> Result<Self, Failure> {
        let m = &args.margin;
        let cfg = Contrastive::default()
            .margin(margin_value("--margin", m.margin.unwrap_or(1.0))?)?
            .pos_margin(margin_value("--pos-margin", m.pos_margin.unwrap_or(0.0))?)?
            .distance(m.distance())
            .hinge(match m.hinge.unwrap_or(HingeArg::Squared) {
                HingeArg::Squared => Hinge::Squared,
                HingeArg::Linear => Hinge::Linear,
            })
            .reduction(m.reduction.map_or(Reduction::Mean, Reduction::from))
            .normalize(m.normalize);
        let (p, bt) = (&args.pairs, &args.batch);
        let pairs = p.a.is_some() || p.b.is_some() || p.y.is_some();
        let batch = bt.embeddings.is_some() || bt.labels.is_some();
        let (input, outputs) =
            match (pairs, batch) {
                (true, true) => return Err(Failure::usage(
                    "give either --a/--b/--y (pair mode) or --embeddings/--labels (batch mode), \
                     not both",
                )),
                (false, false) => return Err(Failure::usage(
                    "no input: give --a/--b/--y (pair mode) or --embeddings/--labels (batch mode)",
                )),
                (true, false) => {
                    if bt.grad.is_some() {
                        return Err(Failure::usage(
                            "--grad applies to batch mode; in pair mode use --grad-a and --grad-b",
                        ));
                    }
                    let needs = "pair mode needs --a, --b and --y";
                    let a = io::matrix("a", io::need(&p.a, "a", needs)?)?;
                    let b = io::matrix("b", io::need(&p.b, "b", needs)?)?;
                    a.same_shape("b", &b, "a")?;
                    let similar = io::pair_labels(io::need(&p.y, "y", needs)?, a.rows)?;
                    cfg.validate_pairs(&a.view("a")?, &b.view("b")?, &similar)?;
                    let outputs =
                        Outputs::prepare(&[("grad-a", &p.grad_a), ("grad-b", &p.grad_b)])?;
                    (Input::Pairs { a, b, similar }, outputs)
                }
                (false, true) => {
                    if p.grad_a.is_some() || p.grad_b.is_some() {
                        return Err(Failure::usage(
                            "--grad-a/--grad-b apply to pair mode; in batch mode use --grad",
                        ));
                    }
                    let needs = "batch mode needs --embeddings and --labels";
                    let px = io::need(&bt.embeddings, "embeddings", needs)?;
                    let pl = io::need(&bt.labels, "labels", needs)?;
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
                }
            };
        Ok(Self {
            cfg,
            input,
            outputs,
        })
    }
}

pub(super) fn run(args: &EvalArgs) -> Result<ExitCode, Failure> {
    let Eval {
        cfg,
        input,
        outputs,
    } = Eval::from_args(args)?;
    let asked = [
        &args.batch.grad,
        &args.pairs.grad_a,
        &args.pairs.grad_b,
        &args.reference.grad_reference,
    ];
    let want = args.grads(asked.iter().any(|p| p.is_some()));
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let out = match &input {
        Input::Pairs { a, b, similar } => {
            let (ea, eb) = (a.view("a")?, b.view("b")?);
            match &gpu {
                Some(g) => cfg.pairs(g, &ea, &eb, similar, want)?,
                None => cfg.pairs_cpu(&ea, &eb, similar, want)?,
            }
        }
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
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    json.insert("similar_pairs".into(), out.counts.similar_pairs.into());
    json.insert(
        "dissimilar_pairs".into(),
        out.counts.dissimilar_pairs.into(),
    );
    json.insert("active_terms".into(), out.active_terms().into());
    if let Input::Against(ag) = &input {
        ag.report(&mut json);
    }
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

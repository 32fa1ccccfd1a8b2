//! `eval --loss triplet`: explicit triplets (--anchor/--positive/--negative) or triplets
//! mined from --embeddings and --labels (--mining).

use std::process::ExitCode;

use metric_loss::{Labels, Mining, Reduction, Triplet, TripletTerm};

use super::{head, margin_value, Against, EvalArgs};
use crate::io::{self, Matrix, Outputs};
use crate::Failure;

enum Input {
    Explicit([Matrix; 3]),
    Mined {
        x: Matrix,
        labels: Labels,
    },
    /// Mined triplets of the anchors against reference rows.
    Against(Against),
}

/// What `eval --loss triplet` takes, read and checked.
struct Eval {
    cfg: Triplet,
    input: Input,
    outputs: Outputs,
}

impl Eval {
    fn from_args(args: &EvalArgs) -> Result<Self, Failure> {
        let (m, t, bt) = (&args.margin, &args.triplet, &args.batch);
        let term = match (t.soft, m.margin) {
            (true, Some(_)) => {
                return Err(Failure::usage(
                    "--margin does not apply with --soft (the soft margin has no margin)",
                ))
            }
            (true, None) => TripletTerm::Soft,
            (false, v) => TripletTerm::Margin(margin_value("--margin", v.unwrap_or(1.0))?),
        };
        let mut cfg = Triplet {
            distance: m.distance(),
            normalize: m.normalize,
            term,
            swap: t.swap,
            reduction: m.reduction.map(Reduction::from),
            ..Default::default()
        };
        let explicit = t.anchor.is_some() || t.positive.is_some() || t.negative.is_some();
        let mined = bt.embeddings.is_some() || bt.labels.is_some() || t.mining.is_some();
        let (input, outputs) = match (explicit, mined) {
            (true, true) => {
                return Err(Failure::usage(
                    "give either --anchor/--positive/--negative (explicit triplets) or \
                     --embeddings/--labels/--mining (mined triplets), not both",
                ))
            }
            (false, false) => {
                return Err(Failure::usage(
                    "no input: give --anchor/--positive/--negative (explicit triplets) or \
                     --embeddings/--labels/--mining (mined triplets)",
                ))
            }
            (true, false) => {
                if bt.grad.is_some() {
                    return Err(Failure::usage(
                        "--grad applies to mined triplets; explicit triplets take \
                         --grad-anchor, --grad-positive and --grad-negative",
                    ));
                }
                let rf = &args.reference;
                if rf.reference.is_some() || rf.reference_labels.is_some() {
                    return Err(Failure::usage(
                        "--reference/--reference-labels apply to mined triplets",
                    ));
                }
                let needs = "explicit triplets need --anchor, --positive and --negative";
                let a = io::matrix("anchor", io::need(&t.anchor, "anchor", needs)?)?;
                let p = io::matrix("positive", io::need(&t.positive, "positive", needs)?)?;
                let n = io::matrix("negative", io::need(&t.negative, "negative", needs)?)?;
                a.same_shape("positive", &p, "anchor")?;
                a.same_shape("negative", &n, "anchor")?;
                cfg.validate_explicit(
                    &a.view("anchor")?,
                    &p.view("positive")?,
                    &n.view("negative")?,
                )?;
                let outputs = Outputs::prepare(&[
                    ("grad-anchor", &t.grad_anchor),
                    ("grad-positive", &t.grad_positive),
                    ("grad-negative", &t.grad_negative),
                ])?;
                (Input::Explicit([a, p, n]), outputs)
            }
            (false, true) => {
                if t.grad_anchor.is_some() || t.grad_positive.is_some() || t.grad_negative.is_some()
                {
                    return Err(Failure::usage(
                        "--grad-anchor/--grad-positive/--grad-negative apply to explicit \
                         triplets; mined triplets take --grad",
                    ));
                }
                let needs = "mined triplets need --embeddings, --labels and --mining";
                let px = io::need(&bt.embeddings, "embeddings", needs)?;
                let pl = io::need(&bt.labels, "labels", needs)?;
                let mining = t
                    .mining
                    .ok_or_else(|| Failure::usage(format!("{needs}; --mining is missing")))?;
                cfg = cfg.mining(Mining::from(mining));
                match Against::read(&args.reference, px, pl)? {
                    None => {
                        let (x, labels) = io::batch(px, pl)?;
                        cfg.validate_batch(&x.view("embeddings")?, &labels)?;
                        let outputs = Outputs::prepare(&[("grad", &bt.grad)])?;
                        (Input::Mined { x, labels }, outputs)
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
    let t = &args.triplet;
    let wanted = [
        &t.grad_anchor,
        &t.grad_positive,
        &t.grad_negative,
        &args.batch.grad,
        &args.reference.grad_reference,
    ];
    let want = args.grads(wanted.iter().any(|p| p.is_some()));
    // All input is valid: only now open the device.
    let gpu = args.device.open()?;
    let (out, mining, reduction) = match &input {
        Input::Explicit([a, p, n]) => {
            let (ea, ep, en) = (a.view("anchor")?, p.view("positive")?, n.view("negative")?);
            let out = match &gpu {
                Some(g) => cfg.explicit(g, &ea, &ep, &en, want)?,
                None => cfg.explicit_cpu(&ea, &ep, &en, want)?,
            };
            (out, None, cfg.explicit_reduction())
        }
        Input::Mined { x, labels } => {
            let ex = x.view("embeddings")?;
            let out = match &gpu {
                Some(g) => cfg.batch(g, &ex, labels, want)?,
                None => cfg.batch_cpu(&ex, labels, want)?,
            };
            (out, Some(cfg.mining), cfg.batch_reduction())
        }
        Input::Against(ag) => {
            let (eq, er) = (ag.q.view("embeddings")?, ag.r.view("reference")?);
            let set = ag.set(&er);
            let out = match &gpu {
                Some(g) => cfg.against(g, &eq, &set, &ag.labels, want)?,
                None => cfg.against_cpu(&eq, &set, &ag.labels, want)?,
            };
            (out, Some(cfg.mining), cfg.batch_reduction())
        }
    };
    outputs.commit(&out.grads)?;
    let mut json = head(out.loss, &gpu);
    json.insert("mining".into(), mining.map(Mining::name).into());
    json.insert("reduction".into(), reduction.name().into());
    json.insert("terms".into(), out.counts.terms.into());
    json.insert(
        "term_kind".into(),
        mining.map_or("triplets", Mining::term_kind).into(),
    );
    json.insert("active_terms".into(), out.counts.active.into());
    if let Input::Against(ag) = &input {
        ag.report(&mut json);
    }
    out!("{}", serde_json::Value::Object(json));
    Ok(ExitCode::SUCCESS)
}

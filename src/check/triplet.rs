//! Cross-checking the triplet losses: the loss's tolerance, inputs whose discrete decisions
//! (the rows mining chooses, which terms are active) are clear of f32 rounding, and the case
//! grid behind `metric-loss check`.
//!
//! f32 and f64 may rightly choose different rows when two candidate distances are closer
//! than the distances' rounding error, and disagree on activity when a hinge argument is
//! that close to 0. Random cases are therefore drawn until every such gap is wider than
//! [`decision_band`]; the margin is then placed clear of every hinge point.

use super::{clear_margin, compare_any, median, CaseReport, Rng, Tolerance, F32_ROUNDOFF};
use crate::cpu::distance::{distance, prepare, row};
use crate::loss::contrastive::Reduction;
use crate::loss::triplet::{Mining, Triplet, TripletOutput, TripletTerm};
use crate::loss::{Distance, Grads};
use crate::{Embeddings, Gpu, Labels, Result};

/// Where f32 and f64 could decide differently: the narrowest gap between two candidates of
/// a choice, and the hinge points (the margin at which each term's activity flips).
#[derive(Clone, Debug, Default)]
pub struct Decisions {
    /// Smallest distance gap behind a choice (infinite when nothing is chosen).
    pub selection_gap: f64,
    /// d(a, n) − d(a, p) of every term that counts: a margin equal to one of these sits on
    /// that term's kink (and 0 does, for the soft margin's activity).
    pub hinge_points: Vec<f64>,
    /// Largest distance seen.
    pub d_max: f64,
}

/// Half-width of the band within which two f32 distances of `dim`-dimensional rows may
/// compare differently from their f64 values: 8·u·(D + 2)·(d_max + 1).
pub fn decision_band(dim: usize, d_max: f64) -> f64 {
    8.0 * F32_ROUNDOFF * (dim as f64 + 2.0) * (d_max + 1.0)
}

fn rows_f64(normalize: bool, e: &Embeddings<'_>) -> Vec<f64> {
    let w: Vec<f64> = e.data().iter().map(|&v| f64::from(v)).collect();
    prepare(normalize, &w, e.dim()).0
}

/// The decisions of explicit triplets.
pub fn explicit_decisions(
    cfg: &Triplet,
    a: &Embeddings<'_>,
    p: &Embeddings<'_>,
    n: &Embeddings<'_>,
) -> Decisions {
    let (an, pn, nn) = (
        rows_f64(cfg.normalize, a),
        rows_f64(cfg.normalize, p),
        rows_f64(cfg.normalize, n),
    );
    let dim = a.dim();
    let mut out = Decisions {
        selection_gap: f64::INFINITY,
        ..Default::default()
    };
    for i in 0..a.rows() {
        let (u, v, w) = (row(&an, i, dim), row(&pn, i, dim), row(&nn, i, dim));
        let d_ap = distance(cfg.distance, u, v);
        let d_an = distance(cfg.distance, u, w);
        let d_pn = distance(cfg.distance, v, w);
        let d_neg = if cfg.swap {
            out.selection_gap = out.selection_gap.min((d_an - d_pn).abs());
            d_an.min(d_pn)
        } else {
            d_an
        };
        out.hinge_points.push(d_neg - d_ap);
        out.d_max = out.d_max.max(d_ap).max(d_an).max(d_pn);
    }
    out
}

/// The gap between the best and the second-best of `values` (largest or smallest).
fn runner_up_gap(values: &mut [f64], largest: bool) -> f64 {
    if values.len() < 2 {
        return f64::INFINITY;
    }
    values.sort_by(f64::total_cmp);
    if largest {
        values.reverse();
    }
    (values[0] - values[1]).abs()
}

/// The decisions of mined triplets on `x` with dense class ids.
pub fn mined_decisions(
    cfg: &Triplet,
    mining: Mining,
    x: &Embeddings<'_>,
    classes: &[u32],
) -> Decisions {
    let xn = rows_f64(cfg.normalize, x);
    let (rows, dim) = (x.rows(), x.dim());
    let mut out = Decisions {
        selection_gap: f64::INFINITY,
        ..Default::default()
    };
    for a in 0..rows {
        let d: Vec<f64> = (0..rows)
            .map(|j| distance(cfg.distance, row(&xn, a, dim), row(&xn, j, dim)))
            .collect();
        out.d_max = d.iter().fold(out.d_max, |m, &v| m.max(v));
        let mut pos: Vec<f64> = (0..rows)
            .filter(|&j| j != a && classes[j] == classes[a])
            .map(|j| d[j])
            .collect();
        let mut neg: Vec<f64> = (0..rows)
            .filter(|&j| classes[j] != classes[a])
            .map(|j| d[j])
            .collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        let gap = &mut out.selection_gap;
        match mining {
            Mining::All => {
                for &dp in &pos {
                    out.hinge_points.extend(neg.iter().map(|dn| dn - dp));
                }
            }
            Mining::Hard => {
                *gap = gap.min(runner_up_gap(&mut pos, true));
                *gap = gap.min(runner_up_gap(&mut neg, false));
                out.hinge_points.push(neg[0] - pos[0]);
            }
            Mining::Semihard => {
                for &dp in &pos {
                    let nearest = neg
                        .iter()
                        .map(|dn| (dn - dp).abs())
                        .fold(f64::INFINITY, f64::min);
                    *gap = gap.min(nearest);
                    let mut above: Vec<f64> = neg.iter().copied().filter(|&dn| dn > dp).collect();
                    let chosen = if above.is_empty() {
                        *gap = gap.min(runner_up_gap(&mut neg.clone(), true));
                        neg.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    } else {
                        *gap = gap.min(runner_up_gap(&mut above, false));
                        above[0]
                    };
                    out.hinge_points.push(chosen - dp);
                }
            }
        }
    }
    out
}

/// Places the margin near `wanted` and clear of every hinge point by `band`. Returns false
/// when the case cannot be made clear (a soft margin whose argument sits within `band` of 0,
/// or a selection gap narrower than `band`).
pub fn make_clear(cfg: &mut Triplet, dec: &Decisions, wanted: f64, band: f64) -> bool {
    if dec.selection_gap <= band {
        return false;
    }
    match cfg.term {
        TripletTerm::Margin(_) => {
            cfg.term = TripletTerm::Margin(clear_margin(&dec.hinge_points, wanted, band) as f32);
            true
        }
        TripletTerm::Soft => dec.hinge_points.iter().all(|h| h.abs() > band),
    }
}

/// The loss's tolerance: S is the largest possible term (margin or ln 2, plus d_max) plus
/// the rounding of its two distances ([`super::distance_operands`]), times the number of
/// terms for a sum; L the number of terms.
pub fn loss_tolerance(
    cfg: &Triplet,
    mining: Option<Mining>,
    d_max: f64,
    terms: u64,
    dim: usize,
    spread: &super::Spread,
) -> Tolerance {
    let term = d_max
        + 2.0 * super::distance_operands(cfg.distance, d_max, spread)
        + match cfg.term {
            TripletTerm::Margin(m) => f64::from(m),
            TripletTerm::Soft => std::f64::consts::LN_2,
        };
    let scale = match cfg.reduction_for(mining) {
        Reduction::Sum => term * terms as f64,
        _ => term,
    };
    Tolerance::new(dim, terms, scale)
}

/// Compares a GPU output with the reference: gradients with a reduction length of 3 for
/// explicit triplets and the batch size for mined ones; `spread` describes the inputs
/// ([`super::spread`]).
#[allow(clippy::too_many_arguments)]
pub fn compare_outputs(
    name: String,
    cfg: &Triplet,
    mining: Option<Mining>,
    gpu: &TripletOutput,
    reference: &TripletOutput,
    dim: usize,
    d_max: f64,
    spread: &super::Spread,
) -> CaseReport {
    let tol = loss_tolerance(cfg, mining, d_max, reference.counts.terms, dim, spread);
    let rows = reference.grads.first().map_or(1, |g| g.len() / dim.max(1));
    let len = if mining.is_some() { rows as u64 } else { 3 };
    // A term's slope is at most 1 (hinge or soft margin), weighted by the reduction: the
    // reduction of a sum of 1.
    let coef = crate::loss::triplet::reduce(cfg.reduction_for(mining), 1.0, &reference.counts);
    let floor = super::contribution_scale(cfg.distance, cfg.normalize, coef, spread);
    compare_any(name, gpu, reference, dim, tol, len, floor)
}

/// Every option of explicit triplets, and every mining rule with its reductions, on seeded
/// Gaussian input of `rows × dim` (rows/4 classes), GPU against CPU. Inputs are redrawn until
/// their decisions are clear of rounding (at most 200 draws per case).
pub fn run_grid(gpu: &Gpu, rows: usize, dim: usize, seed: u64) -> Result<Vec<CaseReport>> {
    let mut reports = Vec::new();
    let mut rng = Rng::new(seed);
    for base in explicit_grid() {
        let mut draw = 0;
        loop {
            draw += 1;
            let data: Vec<Vec<f32>> = (0..3).map(|_| rng.normals(rows * dim)).collect();
            let e: Vec<Embeddings<'_>> = data
                .iter()
                .map(|d| Embeddings::new("triplet", d, rows, dim))
                .collect::<Result<_>>()?;
            let dec = explicit_decisions(&base, &e[0], &e[1], &e[2]);
            let band = decision_band(dim, dec.d_max);
            let mut cfg = base;
            if !make_clear(
                &mut cfg,
                &dec,
                0.3 * median(&dec.hinge_points).abs() + 0.1,
                band,
            ) && draw < 200
            {
                continue;
            }
            let g = cfg.explicit(gpu, &e[0], &e[1], &e[2], Grads::Compute)?;
            let r = cfg.explicit_cpu(&e[0], &e[1], &e[2], Grads::Compute)?;
            let name = case_name("explicit", &cfg, None);
            let norm = super::spread(cfg.distance, cfg.normalize, &[&e[0], &e[1], &e[2]]);
            reports.push(compare_outputs(
                name, &cfg, None, &g, &r, dim, dec.d_max, &norm,
            ));
            break;
        }
    }
    let classes = (rows / 4).max(2) as u64;
    for (base, mining) in mined_grid() {
        let mut draw = 0;
        loop {
            draw += 1;
            let data = rng.normals(rows * dim);
            let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
            let labels = Labels::new(&labels);
            let x = Embeddings::new("embeddings", &data, rows, dim)?;
            let dec = mined_decisions(&base, mining, &x, labels.ids());
            let band = decision_band(dim, dec.d_max);
            let mut cfg = base;
            if !make_clear(
                &mut cfg,
                &dec,
                0.3 * median(&dec.hinge_points).abs() + 0.1,
                band,
            ) && draw < 200
            {
                continue;
            }
            let g = cfg.mined(gpu, &x, &labels, mining, Grads::Compute)?;
            let r = cfg.mined_cpu(&x, &labels, mining, Grads::Compute)?;
            let name = case_name(mining.name(), &cfg, Some(mining));
            reports.push(compare_outputs(
                name,
                &cfg,
                Some(mining),
                &g,
                &r,
                dim,
                dec.d_max,
                &super::spread(cfg.distance, cfg.normalize, &[&x]),
            ));
            break;
        }
    }
    Ok(reports)
}

fn case_name(mode: &str, cfg: &Triplet, mining: Option<Mining>) -> String {
    format!(
        "triplet {:<8} {:<17} {:<6} {:<12} {}{}",
        mode,
        format!("{:?}", cfg.distance),
        if cfg.term == TripletTerm::Soft {
            "soft"
        } else {
            "margin"
        },
        format!("{:?}", cfg.reduction_for(mining)),
        if cfg.swap { "swap " } else { "" },
        if cfg.normalize { "normalize" } else { "" },
    )
}

const DISTANCES: [Distance; 3] = [
    Distance::Euclidean,
    Distance::SquaredEuclidean,
    Distance::Cosine,
];

/// Explicit triplets: every distance, normalize, margin or soft, swap, mean or sum (48).
pub fn explicit_grid() -> Vec<Triplet> {
    let mut out = Vec::new();
    for distance in DISTANCES {
        for normalize in [false, true] {
            for term in [TripletTerm::Margin(1.0), TripletTerm::Soft] {
                for swap in [false, true] {
                    for reduction in [Reduction::Mean, Reduction::Sum] {
                        out.push(Triplet {
                            distance,
                            normalize,
                            term,
                            swap,
                            reduction: Some(reduction),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Mined triplets: every rule with each of its reductions, every distance, normalize (36).
pub fn mined_grid() -> Vec<(Triplet, Mining)> {
    let mut out = Vec::new();
    for (mining, reductions) in [
        (Mining::All, [Reduction::MeanNonzero, Reduction::Mean]),
        (Mining::Hard, [Reduction::Mean, Reduction::Sum]),
        (Mining::Semihard, [Reduction::Mean, Reduction::Sum]),
    ] {
        for distance in DISTANCES {
            for normalize in [false, true] {
                for reduction in reductions {
                    let cfg = Triplet {
                        distance,
                        normalize,
                        reduction: Some(reduction),
                        ..Default::default()
                    };
                    out.push((cfg, mining));
                }
            }
        }
    }
    out
}

//! Cross-checking the triplet losses: the loss's tolerance, inputs whose discrete decisions
//! (the rows mining chooses, which terms are active) are clear of f32 rounding, and the case
//! grid behind `metric-loss check`.
//!
//! f32 and f64 may rightly choose different rows when two candidate distances are closer
//! than the distances' rounding error, and disagree on activity when a hinge argument is
//! that close to 0. Random cases are therefore drawn until every such gap is wider than
//! [`decision_band`]; the margin is then placed clear of every hinge point.

use super::{clear_margin, median, Grid, Held, Rng};
pub use crate::losses::triplet::mined_terms;
use crate::losses::triplet::Mode;
use crate::reference::{distance, prepare, row, widen};
use crate::tolerance::{Verdict, F32_ROUNDOFF};
use crate::{
    Distance, Embeddings, Gpu, Labels, Mining, Reduction, ReferenceSet, Result, Triplet,
    TripletOutput, TripletTerm,
};

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
    prepare(normalize, &widen(e), e.dim()).0
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

/// The decisions of mined triplets (by `cfg.mining`) on `x` with dense class ids.
pub fn mined_decisions(cfg: &Triplet, x: &Embeddings<'_>, classes: &[u32]) -> Decisions {
    decisions(cfg, x, x, classes, classes, Some(0))
}

/// The decisions of mined triplets of `queries` against `reference`; `classes` are the dense
/// ids of the queries followed by those of the reference rows (as [`Triplet::against`]
/// takes them).
pub fn against_decisions(
    cfg: &Triplet,
    queries: &Embeddings<'_>,
    reference: &ReferenceSet<'_, '_>,
    classes: &[u32],
) -> Decisions {
    let (anchors, candidates) = classes.split_at(queries.rows());
    decisions(
        cfg,
        queries,
        reference.rows,
        anchors,
        candidates,
        reference.queries_at,
    )
}

/// Anchor a's candidates are the rows of `c`, less row `self_at + a` when given.
fn decisions(
    cfg: &Triplet,
    q: &Embeddings<'_>,
    c: &Embeddings<'_>,
    anchor_classes: &[u32],
    classes: &[u32],
    self_at: Option<usize>,
) -> Decisions {
    let mining = cfg.mining;
    let (qn, cn) = (rows_f64(cfg.normalize, q), rows_f64(cfg.normalize, c));
    let (rows, dim) = (c.rows(), c.dim());
    let mut out = Decisions {
        selection_gap: f64::INFINITY,
        ..Default::default()
    };
    for (a, &class) in anchor_classes.iter().enumerate() {
        let me = self_at.map(|o| o + a);
        let d: Vec<f64> = (0..rows)
            .map(|j| distance(cfg.distance, row(&qn, a, dim), row(&cn, j, dim)))
            .collect();
        out.d_max = d.iter().fold(out.d_max, |m, &v| m.max(v));
        let mut pos: Vec<f64> = (0..rows)
            .filter(|&j| Some(j) != me && classes[j] == class)
            .map(|j| d[j])
            .collect();
        let mut neg: Vec<f64> = (0..rows)
            .filter(|&j| classes[j] != class)
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

/// [`Triplet::explicit_check`]'s comparison of given outputs.
pub fn explicit_verdict(
    name: String,
    cfg: &Triplet,
    gpu: &TripletOutput,
    reference: &TripletOutput,
    inputs: [&Embeddings<'_>; 3],
) -> Verdict {
    crate::losses::triplet::tolerance::verdict(name, cfg, Mode::Explicit, gpu, reference, &inputs)
}

/// [`Triplet::batch_check`]'s comparison of given outputs.
pub fn batch_verdict(
    name: String,
    cfg: &Triplet,
    gpu: &TripletOutput,
    reference: &TripletOutput,
    x: &Embeddings<'_>,
) -> Verdict {
    let mode = Mode::Mined(cfg.mining);
    crate::losses::triplet::tolerance::verdict(name, cfg, mode, gpu, reference, &[x])
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

/// Every option of explicit triplets, and every mining rule with its reductions, on seeded
/// Gaussian input of `rows × dim` (rows/4 classes) in the grid's precision, GPU against
/// CPU. Inputs are redrawn until their decisions are clear of rounding (at most 200 draws
/// per case).
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut reports = Vec::new();
    let mut rng = Rng::new(grid.seed);
    for base in explicit_grid() {
        let mut draw = 0;
        loop {
            draw += 1;
            let data: Vec<Held> = (0..3)
                .map(|_| Held::new(rng.normals(rows * dim), precision))
                .collect();
            let e: Vec<Embeddings<'_>> = data
                .iter()
                .map(|d| d.view(rows, dim))
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
            reports.push(cfg.explicit_check(gpu, &e[0], &e[1], &e[2])?);
            break;
        }
    }
    let classes = (rows / 4).max(2) as u64;
    for base in mined_grid() {
        let mut draw = 0;
        loop {
            draw += 1;
            let data = Held::new(rng.normals(rows * dim), precision);
            let labels: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
            let labels = Labels::new(&labels);
            let x = data.view(rows, dim)?;
            let dec = mined_decisions(&base, &x, labels.ids());
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
            reports.push(cfg.batch_check(gpu, &x, &labels)?);
            break;
        }
    }
    Ok(reports)
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
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    out
}

/// Mined triplets: every rule with each of its reductions, every distance, normalize (36).
pub fn mined_grid() -> Vec<Triplet> {
    let mut out = Vec::new();
    for (mining, reductions) in [
        (Mining::All, [Reduction::MeanNonzero, Reduction::Mean]),
        (Mining::Hard, [Reduction::Mean, Reduction::Sum]),
        (Mining::Semihard, [Reduction::Mean, Reduction::Sum]),
    ] {
        for distance in DISTANCES {
            for normalize in [false, true] {
                for reduction in reductions {
                    out.push(Triplet {
                        distance,
                        normalize,
                        mining,
                        reduction: Some(reduction),
                        ..Default::default()
                    });
                }
            }
        }
    }
    out
}

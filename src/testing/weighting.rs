//! The pair-weighting losses' case grid behind `metric-loss check`, and inputs clear of
//! their decisions.

use super::{Grid, Held, Rng};
use crate::reference::{dot, normalize, row, widen};
use crate::tolerance::Verdict;
use crate::{Embeddings, Gpu, Labels, Result, Weighting, WeightingLoss};

/// How far the miner's comparisons must be from a tie, in similarity: far beyond an f32
/// similarity's rounding (D·u), so that the GPU and the reference keep the same pairs.
pub const CLEAR: f64 = 1e-4;

/// The smallest distance of a miner comparison (s − ε against the anchor's largest
/// negative, s + ε against its smallest positive) from a tie over the batch; infinite
/// without the miner.
pub fn miner_margin(cfg: &Weighting, x: &Embeddings<'_>, labels: &Labels) -> f64 {
    let WeightingLoss::MultiSimilarity {
        epsilon: Some(e), ..
    } = cfg.loss
    else {
        return f64::INFINITY;
    };
    let (e, dim, ids) = (f64::from(e), x.dim(), labels.ids());
    let (xn, _) = normalize(&widen(x), dim);
    let n = x.rows();
    let mut margin = f64::INFINITY;
    for i in 0..n {
        let s: Vec<f64> = (0..n)
            .map(|j| dot(row(&xn, i, dim), row(&xn, j, dim)))
            .collect();
        let max_neg = (0..n)
            .filter(|&j| ids[j] != ids[i])
            .map(|j| s[j])
            .fold(f64::NEG_INFINITY, f64::max);
        let min_pos = (0..n)
            .filter(|&j| j != i && ids[j] == ids[i])
            .map(|j| s[j])
            .fold(f64::INFINITY, f64::min);
        for j in (0..n).filter(|&j| j != i) {
            let gap = if ids[j] == ids[i] {
                s[j] - e - max_neg
            } else {
                s[j] + e - min_pos
            };
            if gap.is_finite() {
                margin = margin.min(gap.abs());
            }
        }
    }
    margin
}

/// `cfg` with the miner's ε moved up in steps of 1e-3 until every comparison is [`CLEAR`]
/// of a tie on this batch (unchanged without the miner).
pub fn clear_of_ties(cfg: Weighting, x: &Embeddings<'_>, labels: &Labels) -> Weighting {
    let mut cfg = cfg;
    for _ in 0..100 {
        if miner_margin(&cfg, x, labels) > CLEAR {
            break;
        }
        if let WeightingLoss::MultiSimilarity {
            epsilon: Some(e), ..
        } = &mut cfg.loss
        {
            *e += 1e-3;
        }
    }
    cfg
}

/// The settings every grid runs: PML's defaults for both losses, Multi-Similarity with its
/// miner (ε = 0.1) and with other weights, Circle with the paper's face-recognition setting
/// and with a small scale (its tolerance grows with γ: a small γ checks the tightest).
pub fn settings() -> [Weighting; 6] {
    let ms = |alpha, beta, base, epsilon| Weighting {
        loss: WeightingLoss::MultiSimilarity {
            alpha,
            beta,
            base,
            epsilon,
        },
    };
    [
        Weighting::multi_similarity(),
        ms(2.0, 50.0, 0.5, Some(0.1)),
        ms(1.0, 10.0, 0.2, None),
        Weighting::circle(),
        Weighting {
            loss: WeightingLoss::Circle {
                m: 0.25,
                gamma: 256.0,
            },
        },
        Weighting {
            loss: WeightingLoss::Circle { m: 0.4, gamma: 8.0 },
        },
    ]
}

/// Multi-Similarity and Circle on labelled batches (random classes, two views, one class,
/// all distinct, duplicate rows) at every setting of [`settings`], on seeded Gaussian input
/// of `rows × dim` in the grid's precision: GPU against CPU.
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut rng = Rng::new(grid.seed);
    let x = Held::new(rng.normals(rows * dim), precision)
        .values()
        .to_vec();
    let mut dup = x.clone();
    let half = rows / 2 * dim;
    dup.copy_within(0..half, half);
    let classes = (rows / 4).max(2) as u64;
    let random: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let views: Vec<i64> = (0..rows).map(|i| (i % rows.div_ceil(2)) as i64).collect();
    let one: Vec<i64> = vec![3; rows];
    let distinct: Vec<i64> = (0..rows as i64).collect();
    let dup_labels: Vec<i64> = (0..rows).map(|i| (i % (rows / 2).max(1)) as i64).collect();
    let (xh, dh) = (Held::new(x, precision), Held::new(dup, precision));
    let (xe, de) = (xh.view(rows, dim)?, dh.view(rows, dim)?);
    let batches: [(&str, &Embeddings<'_>, &[i64]); 5] = [
        ("random classes", &xe, &random),
        ("two views", &xe, &views),
        ("one class", &xe, &one),
        ("all distinct", &xe, &distinct),
        ("duplicate rows", &de, &dup_labels),
    ];
    let mut out = Vec::new();
    for cfg in settings() {
        for (what, x, labels) in batches {
            let labels = Labels::new(labels);
            let cfg = clear_of_ties(cfg, x, &labels);
            let mut v = cfg.batch_check(gpu, x, &labels)?;
            v.name = format!("{} {what}", v.name);
            out.push(v);
        }
    }
    Ok(out)
}

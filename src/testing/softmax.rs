//! The softmax losses' case grid behind `metric-loss check`, and the tolerance rule's
//! internals for tests that compare outputs of their own.

pub use crate::losses::softmax::tolerance::{grad_scale, verdict};

use super::Rng;
use crate::tolerance::Verdict;
use crate::{Embeddings, Gpu, Labels, Result, Softmax, SoftmaxLoss};

/// The temperatures every grid runs: the defaults, a warm one, a cold one and the smallest
/// the crate accepts ([`crate::MIN_TEMPERATURE`]).
pub const TEMPERATURES: [f32; 5] = [0.07, 0.1, 0.5, 0.01, 1e-4];

/// NT-Xent and SupCon on labelled batches (random classes, two views, one class, all
/// distinct, duplicate rows) and CLIP on paired views, at every temperature of
/// [`TEMPERATURES`], on seeded Gaussian input of `rows × dim`: GPU against CPU.
pub fn run_grid(gpu: &Gpu, rows: usize, dim: usize, seed: u64) -> Result<Vec<Verdict>> {
    let mut rng = Rng::new(seed);
    let x = rng.normals(rows * dim);
    let b = rng.normals(rows * dim);
    // Duplicate rows: the second half repeats the first.
    let mut dup = x.clone();
    let half = rows / 2 * dim;
    dup.copy_within(0..half, half);
    let classes = (rows / 4).max(2) as u64;
    let random: Vec<i64> = (0..rows).map(|_| rng.below(classes) as i64).collect();
    let views: Vec<i64> = (0..rows).map(|i| (i % rows.div_ceil(2)) as i64).collect();
    let one: Vec<i64> = vec![3; rows];
    let distinct: Vec<i64> = (0..rows as i64).collect();
    let dup_labels: Vec<i64> = (0..rows).map(|i| (i % (rows / 2).max(1)) as i64).collect();
    let xe = Embeddings::new(&x, rows, dim)?;
    let be = Embeddings::new(&b, rows, dim)?;
    let de = Embeddings::new(&dup, rows, dim)?;
    let batches: [(&str, &Embeddings<'_>, &[i64]); 5] = [
        ("random classes", &xe, &random),
        ("two views", &xe, &views),
        ("one class", &xe, &one),
        ("all distinct", &xe, &distinct),
        ("duplicate rows", &de, &dup_labels),
    ];
    let mut out = Vec::new();
    let named = |mut v: Verdict, what: &str| {
        v.name = format!("{} {what}", v.name);
        v
    };
    for t in TEMPERATURES {
        for loss in [SoftmaxLoss::NtXent, SoftmaxLoss::SupCon] {
            let cfg = Softmax::new(loss).temperature(t)?;
            for (what, x, labels) in batches {
                out.push(named(cfg.batch_check(gpu, x, &Labels::new(labels))?, what));
            }
        }
        let cfg = Softmax::clip().temperature(t)?;
        out.push(named(cfg.pairs_check(gpu, &xe, &be)?, "views"));
        out.push(named(cfg.pairs_check(gpu, &de, &de)?, "duplicate rows"));
    }
    Ok(out)
}

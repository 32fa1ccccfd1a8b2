//! The softmax losses' case grid behind `metric-loss check`, and the tolerance rule's
//! internals for tests that compare outputs of their own.

pub use crate::losses::softmax::tolerance::{grad_scale, verdict};

use super::{Grid, Held, Rng};
use crate::tolerance::Verdict;
use crate::{Embeddings, Gpu, Labels, ReferenceGrad, ReferenceSet, Result, Softmax, SoftmaxLoss};

/// The temperatures every grid runs: the defaults, a warm one, a cold one and the smallest
/// the crate accepts ([`crate::MIN_TEMPERATURE`]).
pub const TEMPERATURES: [f32; 5] = [0.07, 0.1, 0.5, 0.01, 1e-4];

/// NT-Xent and SupCon on labelled batches (random classes, two views, one class, all
/// distinct, duplicate rows) and against a reference set (another batch, detached; the
/// batch followed by the other, its gradient returned), CLIP on paired views, and InfoNCE
/// on anchors against twice as many keys (labelled, with and without the reverse term), at
/// every temperature of [`TEMPERATURES`], on seeded Gaussian input of `rows × dim`: GPU
/// against CPU; every input in the grid's precision.
pub fn run_grid(gpu: &Gpu, grid: &Grid) -> Result<Vec<Verdict>> {
    let (rows, dim, precision) = (grid.rows, grid.dim, grid.precision);
    let mut rng = Rng::new(grid.seed);
    let x = Held::new(rng.normals(rows * dim), precision);
    let b = Held::new(rng.normals(rows * dim), precision);
    let (x, b) = (x.values().to_vec(), b.values().to_vec());
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
    let (xh, bh, dh) = (
        Held::new(x.clone(), precision),
        Held::new(b.clone(), precision),
        Held::new(dup, precision),
    );
    let (xe, be, de) = (
        xh.view(rows, dim)?,
        bh.view(rows, dim)?,
        dh.view(rows, dim)?,
    );
    let batches: [(&str, &Embeddings<'_>, &[i64]); 5] = [
        ("random classes", &xe, &random),
        ("two views", &xe, &views),
        ("one class", &xe, &one),
        ("all distinct", &xe, &distinct),
        ("duplicate rows", &de, &dup_labels),
    ];
    // Keys and references: the batch followed by the other rows; labels of the queries (or
    // anchors) and then of those rows.
    let keys = Held::new([x, b].concat(), precision);
    let ke = keys.view(2 * rows, dim)?;
    let both = Labels::new(&[random.clone(), random.clone(), random.clone()].concat());
    let with_other = Labels::new(&[random.clone(), random.clone()].concat());
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
        let other = ReferenceSet::new(&be, ReferenceGrad::Detached);
        let cfg = Softmax::supcon().temperature(t)?;
        out.push(named(
            cfg.against_check(gpu, &xe, &other, &with_other)?,
            "detached",
        ));
        let queue = ReferenceSet::new(&ke, ReferenceGrad::Returned).with_queries_at(0);
        let cfg = Softmax::ntxent().temperature(t)?;
        out.push(named(
            cfg.against_check(gpu, &xe, &queue, &both)?,
            "batch + queue",
        ));
        for symmetric in [false, true] {
            let cfg = Softmax::infonce(symmetric).temperature(t)?;
            let mut v = cfg.pairs_labelled_check(gpu, &xe, &ke, &both)?;
            v.name = format!("{} {}", v.name, if symmetric { "symmetric" } else { "" });
            out.push(named(v, "2N keys, labelled"));
        }
    }
    Ok(out)
}

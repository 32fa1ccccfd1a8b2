//! The f64 mirror of shaders/measure.wgsl: the same pairs, keys, order and bins, in f64.

use super::steps::Pairing;
use crate::options::Distance;
use crate::reference::{distance, normalize, row, widen_f32};

/// Rows of one side in f64, normalised for cosine (as the kernels see them).
pub(crate) struct Rows {
    pub x: Vec<f64>,
    pub rows: usize,
    pub dim: usize,
}

impl Rows {
    pub fn new(data: &[f32], rows: usize, dim: usize, d: Distance) -> Self {
        let wide = widen_f32(data);
        let x = if d == Distance::Cosine {
            normalize(&wide, dim).0
        } else {
            wide
        };
        Self { x, rows, dim }
    }

    fn row(&self, i: usize) -> &[f64] {
        row(&self.x, i, self.dim)
    }
}

/// The kernels' ranking key in f64: the squared distance, or 1 − dot of normalised rows.
fn key(d: Distance, u: &[f64], v: &[f64]) -> f64 {
    match d {
        Distance::Euclidean | Distance::SquaredEuclidean => {
            distance(Distance::SquaredEuclidean, u, v)
        }
        // The rows are normalised already: 1 − u·v.
        Distance::Cosine => 1.0 - u.iter().zip(v).map(|(a, b)| a * b).sum::<f64>(),
    }
}

/// The key of row i of `q` against row j of `r`.
pub(crate) fn key_of(d: Distance, q: &Rows, i: usize, r: &Rows, j: usize) -> f64 {
    key(d, q.row(i), r.row(j))
}

/// The distance a key stands for.
pub(crate) fn key_distance(d: Distance, key: f64) -> f64 {
    match d {
        Distance::Euclidean => key.max(0.0).sqrt(),
        _ => key,
    }
}

fn exists(p: Pairing, i: usize, j: usize) -> bool {
    match p {
        Pairing::All => true,
        Pairing::Upper => j > i,
        Pairing::NotSelf => j != i,
    }
}

/// Each row's `k` nearest columns as (key, index), ascending lexicographically.
pub(crate) fn knn(d: Distance, p: Pairing, q: &Rows, r: &Rows, k: usize) -> Vec<Vec<(f64, u32)>> {
    (0..q.rows)
        .map(|i| {
            let mut all: Vec<(f64, u32)> = (0..r.rows)
                .filter(|&j| exists(p, i, j))
                .map(|j| (key(d, q.row(i), r.row(j)), j as u32))
                .collect();
            let order = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if k < all.len() {
                all.select_nth_unstable_by(k, order);
                all.truncate(k);
            }
            all.sort_by(order);
            all
        })
        .collect()
}

/// Every existing pair's distance with whether it is similar (same class id).
pub(crate) fn pair_distances(
    d: Distance,
    p: Pairing,
    x: (&Rows, &[u32]),
    y: (&Rows, &[u32]),
) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    for i in 0..x.0.rows {
        for j in 0..y.0.rows {
            if exists(p, i, j) {
                let dist = key_distance(d, key(d, x.0.row(i), y.0.row(j)));
                out.push((dist, x.1[i] == y.1[j]));
            }
        }
    }
    out
}

/// The kernels' bin of `dist` (see shaders/measure.wgsl `hist_bin`), `bins` for beyond `hi`.
pub(crate) fn bin(dist: f64, bins: usize, hi: f64) -> usize {
    if dist > hi {
        return bins;
    }
    let b = (dist * bins as f64 / hi).floor().max(0.0) as usize;
    b.min(bins - 1)
}

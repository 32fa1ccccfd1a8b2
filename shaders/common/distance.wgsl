// Pairwise distance pieces shared by every pairwise kernel.
// Depends on no globals. Keep the kinds in sync with `Distance::kernel_kind` in
// src/options.rs.
//
// Kernels accumulate Σ (u − v)² (the difference form, not |u|² + |v|² − 2u·v: it stays
// exact near d = 0) or Σ u·v over the dimension in one fixed order, so d(i, j) and d(j, i)
// are bitwise equal, and `dist_finish` turns the sum into d. Cosine distance runs as
// "one minus dot" on rows the host has normalised first.

const DIST_EUCLIDEAN: u32 = 0u;
const DIST_SQUARED_EUCLIDEAN: u32 = 1u;
const DIST_ONE_MINUS_DOT: u32 = 2u;

fn dist_finish(kind: u32, acc: f32) -> f32 {
    if (kind == DIST_EUCLIDEAN) {
        return sqrt(acc);
    }
    if (kind == DIST_SQUARED_EUCLIDEAN) {
        return acc;
    }
    return 1.0 - acc;
}

// Factor w of the distance's gradient: dd/du = w·(u − v) for the difference forms,
// dd/du = −w·v for one-minus-dot. By convention it is 0 where d = 0 (never NaN) for the
// difference forms. One-minus-dot is smooth there (the normalisation's backward projects
// −v out when v ∥ u), and f32 rounds 1 − cos of nearly parallel rows to 0 where f64 does
// not: zeroing it would drop a gradient that 1/‖u‖ makes visible.
fn dist_grad_factor(kind: u32, d: f32) -> f32 {
    if (kind == DIST_ONE_MINUS_DOT) {
        return 1.0;
    }
    if (d == 0.0) {
        return 0.0;
    }
    if (kind == DIST_EUCLIDEAN) {
        return 1.0 / d;
    }
    return 2.0;
}

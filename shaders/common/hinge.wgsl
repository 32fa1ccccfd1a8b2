// Hinge of a pair term, shared by the margin losses. Depends on no globals.
// Keep the kinds in sync with `Hinge::kernel_kind` in src/options.rs.
// `x` is the hinge argument (d − p for similar pairs, m − d for dissimilar ones);
// a term is active iff x > 0, and relu'(0) = 0.

const HINGE_SQUARED: u32 = 0u;
const HINGE_LINEAR: u32 = 1u;

fn hinge_value(kind: u32, x: f32) -> f32 {
    let r = max(x, 0.0);
    if (kind == HINGE_SQUARED) {
        return r * r;
    }
    return r;
}

fn hinge_slope(kind: u32, x: f32) -> f32 {
    if (x <= 0.0) {
        return 0.0;
    }
    if (kind == HINGE_SQUARED) {
        return 2.0 * x;
    }
    return 1.0;
}

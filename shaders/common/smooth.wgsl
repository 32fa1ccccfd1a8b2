// Smooth functions of the softmax and soft-margin losses. Depends on no globals.
// Mirrored in f64 by src/reference.rs (softplus, sigmoid).

// log(1 + exp(x)) without overflow, accurate for large |x| on either side.
fn softplus(x: f32) -> f32 {
    let z = exp(-abs(x));
    var l = log(1.0 + z);
    if (z < 1e-4) {
        l = z * (1.0 - z * (0.5 - z / 3.0));
    }
    return max(x, 0.0) + l;
}

// log(1 + x) for x ≥ 0, without losing a small x to the rounding of 1 + x (Goldberg's
// form: the rounding error of u = 1 + x cancels in log(u)·x/(u − 1)).
fn log_1p(x: f32) -> f32 {
    let u = 1.0 + x;
    if (u == 1.0) {
        return x;
    }
    return log(u) * (x / (u - 1.0));
}

// 1 / (1 + exp(−x)), one exp of a non-positive argument.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    if (x >= 0.0) {
        return 1.0 / (1.0 + e);
    }
    return e / (1.0 + e);
}

// A running log-sum-exp, one exp per value, merged in a fixed order. Depends on no globals.
// Mirrored in f64 by src/reference.rs (logsumexp).

const LOW: f32 = -3.0e38; // below every logit a loss forms (|z| ≤ 1e4·(1 + |scale|))

// A running log-sum-exp: the maximum m (LOW while empty) and the exp sum of every other
// value rescaled to it, s = Σ exp(z − m) but the maximum's own 1, so that log Σ exp(z) =
// m + log(1 + s) with s accumulated from 0: near saturation (one logit far above the rest)
// the many tiny exps keep their digits, where adding each to 1 would round them away.
struct Lse {
    m: f32,
    s: f32,
}

// One exp per value: the larger of (m, v) becomes the maximum (from empty: exp(−∞) = 0).
fn lse_push(a: Lse, v: f32) -> Lse {
    let d = v - a.m;
    let e = exp(-abs(d));
    if (d > 0.0) {
        return Lse(v, fma(a.s, e, e));
    }
    return Lse(a.m, a.s + e);
}

fn lse_empty(a: Lse) -> bool {
    return a.m <= LOW;
}

fn lse_merge(a: Lse, b: Lse) -> Lse {
    if (lse_empty(b)) {
        return a;
    }
    if (lse_empty(a)) {
        return b;
    }
    if (a.m >= b.m) {
        let e = exp(b.m - a.m);
        return Lse(a.m, a.s + fma(b.s, e, e));
    }
    let e = exp(a.m - b.m);
    return Lse(b.m, b.s + fma(a.s, e, e));
}


// Reduction pieces. Depends on no globals.

// Per-row (batch mode) or per-pair (pair mode) partial results. Sums are Kahan-compensated
// (sum, carry) so that a row's partial stays accurate to a few ulp however many column tiles
// and column windows it spans; the host adds them in f64 / u64 in row order.
// Keep in sync with `Partial` in src/gpu/params.rs.
struct Partial {
    sim_sum: f32,
    sim_carry: f32,
    dis_sum: f32,
    dis_carry: f32,
    sim_pairs: u32,
    dis_pairs: u32,
    sim_active: u32,
    dis_active: u32,
}

struct Kahan {
    sum: f32,
    carry: f32,
}

fn kahan_add(k: Kahan, x: f32) -> Kahan {
    let y = x - k.carry;
    let t = k.sum + y;
    return Kahan(t, (t - k.sum) - y);
}

// u64 counters as (lo, hi) u32 pairs, four lanes at a time: WGSL has no 64-bit integers.
struct Count64 {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn count64_add(a: Count64, b: Count64) -> Count64 {
    let lo = a.lo + b.lo;
    let carry = select(vec4<u32>(0u), vec4<u32>(1u), lo < a.lo);
    return Count64(lo, a.hi + b.hi + carry);
}

fn count64_to_f32(lo: u32, hi: u32) -> f32 {
    return f32(hi) * 4294967296.0 + f32(lo);
}

// Reduction pieces: compensated sums, 64-bit counters, and the fixed-order trees that sum a
// value over the 64 invocations of a workgroup. Depends on no globals.

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

var<workgroup> tree_counts: array<Count64, 64>;
var<workgroup> tree_sums: array<vec2<f32>, 64>;

// The sum of every invocation's `v` (invocation `lid` of 64), pairwise in a fixed tree
// (strides 32, 16, ..., 1). Call from uniform control flow; every invocation gets the total.
fn tree_count64(lid: u32, v: Count64) -> Count64 {
    tree_counts[lid] = v;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            tree_counts[lid] = count64_add(tree_counts[lid], tree_counts[lid + stride]);
        }
        workgroupBarrier();
    }
    return tree_counts[0];
}

// As tree_count64, for two f32 sums.
fn tree_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    tree_sums[lid] = v;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            tree_sums[lid] += tree_sums[lid + stride];
        }
        workgroupBarrier();
    }
    return tree_sums[0];
}

// Contrastive loss: pair terms relu(d − p)^k (similar) and relu(m − d)^k (dissimilar),
// k = 2 squared hinge or 1 linear, their per-row partial sums and counts, and the gradient
// with respect to the embeddings. Rows arrive normalised when the host asked for it
// (normalize.wgsl), cosine distance arrives as one-minus-dot, and rows are zero-padded to a
// multiple of 4 values (vec4 loads; padding changes no distance and gets no gradient).
//
// The host splits the rows into windows that fit one storage binding and one dispatch
// (src/engine/plan.rs) and dispatches once per (row window, column window); its table of
// these entry points and bindings is src/losses/contrastive/kernels.rs. Globals:
//   0 uniform        params      ContrastiveParams (this dispatch's windows and flags)
//   1 storage, read  rows        batch: X rows of the row window; pairs: A
//   2 storage, read  cols        batch: X rows of the column window; pairs: B
//   3 storage, read  row_class   class id per row (batch) / 1 similar, 0 not (pairs)
//   4 storage, read  col_class   class id per row of the column window (batch)
//   5 storage, rw    partials    one ContrastivePartial per row of the row window (or pair)
//   6 storage, rw    scales      [dL/dterm similar, dissimilar] (+ u64 count totals)
//   7 storage, rw    grad        dL/d(rows), row window, row-major f32, padded stride
//   8 storage, rw    grad_b      pairs: dL/dB
//   9 storage, rw    loss_out    device-resident calls: [loss, Σ similar terms, Σ dissimilar]
// Shared pieces: common/distance, hinge, reduce.
//
// The batch mode's sweeps run on the pair engine: contrastive_rows.wgsl, which includes
// this file, is the loss's elementwise map. Pair mode and the reductions are here. Every
// pair's term is evaluated; nothing is skipped on the data's account.
// Sums run in a fixed order and every output value has one owner: no atomics, bitwise
// deterministic.

// Keep in sync with `ContrastiveParams` in src/losses/contrastive/kernels.rs.
struct ContrastiveParams {
    rows: u32,
    dim4: u32,
    distance: u32,
    hinge: u32,
    reduction: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    last: u32,
    cols: u32,    // rows of the column side (batch: the batch's; against: the other side's)
    pairing: u32, // PAIRING_*: which pairs of this dispatch's rows and columns exist
    pos_margin: f32,
    margin: f32,
    offset: u32,  // *_ITSELF: the queries' first row among the references
    _pad3: f32,
}

// Per-row (batch mode) or per-pair (pair mode) partial results. Sums are Kahan-compensated
// (sum, carry) so that a row's partial stays accurate to a few ulp however many column tiles
// and column windows it spans; the host adds them in f64 / u64 in row order.
// Keep in sync with `ContrastivePartial` in src/losses/contrastive/kernels.rs.
struct ContrastivePartial {
    sim_sum: f32,
    sim_carry: f32,
    dis_sum: f32,
    dis_carry: f32,
    sim_pairs: u32,
    dis_pairs: u32,
    sim_active: u32,
    dis_active: u32,
}

// Keep in sync with `Pairing` in src/losses/contrastive/steps.rs. A batch's pairs are
// i ≠ j (its terms i < j); queries against references have every (query, reference) pair,
// or, when the queries are the references' rows from params.offset on (`_ITSELF`), the
// pairs reference > offset + query (each pair of rows once: with the batch as its own
// reference, the batch's pairs). The `REFS_` forms sweep the references as rows against
// the queries as columns, for the references' gradient.
const PAIRING_BATCH: u32 = 0u;
const PAIRING_AGAINST: u32 = 1u;
const PAIRING_AGAINST_ITSELF: u32 = 2u;
const PAIRING_REFS_AGAINST: u32 = 3u;
const PAIRING_REFS_AGAINST_ITSELF: u32 = 4u;

// Whether the pair (row i, column j) has a term (counted from the rows' side).
fn term_pair(i: u32, j: u32) -> bool {
    switch (params.pairing) {
        case PAIRING_AGAINST: {
            return true;
        }
        case PAIRING_BATCH: {
            return j > i;
        }
        case PAIRING_AGAINST_ITSELF: {
            return j > i + params.offset;
        }
        default: {
            return false;
        }
    }
}

// Whether the pair (row i, column j) adds to row i's gradient.
fn grad_pair(i: u32, j: u32) -> bool {
    switch (params.pairing) {
        case PAIRING_BATCH: {
            return j != i;
        }
        case PAIRING_AGAINST_ITSELF: {
            return j > i + params.offset;
        }
        case PAIRING_REFS_AGAINST_ITSELF: {
            return j + params.offset < i;
        }
        default: {
            return true;
        }
    }
}

// Keep in sync with `Reduction::kernel_code` in src/options.rs.
const REDUCTION_MEAN: u32 = 0u;
const REDUCTION_SUM: u32 = 1u;
const REDUCTION_MEAN_NONZERO: u32 = 2u;

@group(0) @binding(0) var<uniform> params: ContrastiveParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> row_class: array<u32>;
@group(0) @binding(4) var<storage, read> col_class: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<ContrastivePartial>;
@group(0) @binding(6) var<storage, read_write> scales: array<u32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad_b: array<f32>;
@group(0) @binding(9) var<storage, read_write> loss_out: array<f32>;

fn hinge_arg(similar: bool, d: f32) -> f32 {
    if (similar) {
        return d - params.pos_margin;
    }
    return params.margin - d;
}

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

struct RowAcc {
    sim: Kahan,
    dis: Kahan,
    counts: vec4<u32>, // sim pairs, dis pairs, sim active, dis active
}

fn load_row_acc(local: u32) -> RowAcc {
    if (params.accumulate == 0u) {
        return RowAcc(Kahan(0.0, 0.0), Kahan(0.0, 0.0), vec4<u32>(0u));
    }
    let p = partials[local];
    return RowAcc(
        Kahan(p.sim_sum, p.sim_carry),
        Kahan(p.dis_sum, p.dis_carry),
        vec4<u32>(p.sim_pairs, p.dis_pairs, p.sim_active, p.dis_active),
    );
}

fn store_row_acc(local: u32, a: RowAcc) {
    partials[local] = ContrastivePartial(
        a.sim.sum, a.sim.carry, a.dis.sum, a.dis.carry,
        a.counts.x, a.counts.y, a.counts.z, a.counts.w,
    );
}

// dL/dd of one pair: the hinge's slope, signed (d − p grows with d, m − d shrinks) and
// scaled by the reduction's dL/dterm `sc` (similar, dissimilar).
fn term_slope(similar: bool, d: f32, sc: vec2<f32>) -> f32 {
    let slope = hinge_slope(params.hinge, hinge_arg(similar, d));
    if (similar) {
        return slope * sc.x;
    }
    return -slope * sc.y;
}

// Sums one window's counts into the u64 totals in `scales` (words 4..11) in a fixed tree;
// the last window's dispatch turns them into the reduction's scales (words 0, 1).
@compute @workgroup_size(64)
fn contrastive_finalize(@builtin(local_invocation_index) lid: u32) {
    var acc = Count64(vec4<u32>(0u), vec4<u32>(0u));
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        let v = vec4<u32>(p.sim_pairs, p.dis_pairs, p.sim_active, p.dis_active);
        acc = count64_add(acc, Count64(v, vec4<u32>(0u)));
    }
    var total = tree_count64(lid, acc);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        let prev = Count64(
            vec4<u32>(scales[4], scales[5], scales[6], scales[7]),
            vec4<u32>(scales[8], scales[9], scales[10], scales[11]),
        );
        total = count64_add(prev, total);
    }
    scales[4] = total.lo.x;
    scales[5] = total.lo.y;
    scales[6] = total.lo.z;
    scales[7] = total.lo.w;
    scales[8] = total.hi.x;
    scales[9] = total.hi.y;
    scales[10] = total.hi.z;
    scales[11] = total.hi.w;
    if (params.last == 0u) {
        return;
    }
    var sim_scale = 1.0;
    var dis_scale = 1.0;
    if (params.reduction == REDUCTION_MEAN) {
        let pairs = count64_add(
            Count64(vec4<u32>(total.lo.x, 0u, 0u, 0u), vec4<u32>(total.hi.x, 0u, 0u, 0u)),
            Count64(vec4<u32>(total.lo.y, 0u, 0u, 0u), vec4<u32>(total.hi.y, 0u, 0u, 0u)),
        );
        let np = count64_to_f32(pairs.lo.x, pairs.hi.x);
        sim_scale = 0.0;
        if (np > 0.0) {
            sim_scale = 1.0 / np;
        }
        dis_scale = sim_scale;
    } else if (params.reduction == REDUCTION_MEAN_NONZERO) {
        let ns = count64_to_f32(total.lo.z, total.hi.z);
        let nd = count64_to_f32(total.lo.w, total.hi.w);
        sim_scale = 0.0;
        dis_scale = 0.0;
        if (ns > 0.0) {
            sim_scale = 1.0 / ns;
        }
        if (nd > 0.0) {
            dis_scale = 1.0 / nd;
        }
    }
    scales[0] = bitcast<u32>(sim_scale);
    scales[1] = bitcast<u32>(dis_scale);
}

// Device-resident calls: sums one window's partial loss sums in a fixed tree into
// loss_out[1..2] (adding from the second window on); the last window applies the reduction
// with the counts contrastive_finalize summed (scales words 4..11) and writes loss_out[0].
@compute @workgroup_size(64)
fn contrastive_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        acc += vec2<f32>(p.sim_sum - p.sim_carry, p.dis_sum - p.dis_carry);
    }
    var total = tree_sum2(lid, acc);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += vec2<f32>(loss_out[1], loss_out[2]);
    }
    loss_out[1] = total.x;
    loss_out[2] = total.y;
    if (params.last == 0u) {
        return;
    }
    let pairs = count64_to_f32(scales[4], scales[8]) + count64_to_f32(scales[5], scales[9]);
    let ns = count64_to_f32(scales[6], scales[10]);
    let nd = count64_to_f32(scales[7], scales[11]);
    var loss = total.x + total.y;
    if (params.reduction == REDUCTION_MEAN) {
        loss = select(0.0, loss / pairs, pairs > 0.0);
    } else if (params.reduction == REDUCTION_MEAN_NONZERO) {
        loss = select(0.0, total.x / ns, ns > 0.0) + select(0.0, total.y / nd, nd > 0.0);
    }
    loss_out[0] = loss;
}

fn pair_distance(local: u32) -> f32 {
    let base = local * params.dim4;
    var acc = vec4<f32>(0.0);
    if (params.distance == DIST_ONE_MINUS_DOT) {
        for (var q = 0u; q < params.dim4; q++) {
            acc += rows[base + q] * cols[base + q];
        }
    } else {
        for (var q = 0u; q < params.dim4; q++) {
            let t = rows[base + q] - cols[base + q];
            acc += t * t;
        }
    }
    return dist_finish(params.distance, (acc.x + acc.y) + (acc.z + acc.w));
}

@compute @workgroup_size(64)
fn contrastive_pairs_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= params.window_rows || params.row_start + local >= params.rows) {
        return;
    }
    let similar = row_class[local] != 0u;
    let x = hinge_arg(similar, pair_distance(local));
    let term = hinge_value(params.hinge, x);
    let on = select(0u, 1u, x > 0.0);
    if (similar) {
        partials[local] = ContrastivePartial(term, 0.0, 0.0, 0.0, 1u, 0u, on, 0u);
    } else {
        partials[local] = ContrastivePartial(0.0, 0.0, term, 0.0, 0u, 1u, 0u, on);
    }
}

@compute @workgroup_size(64)
fn contrastive_pairs_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= params.window_rows || params.row_start + local >= params.rows) {
        return;
    }
    let d = pair_distance(local);
    let sc = vec2<f32>(bitcast<f32>(scales[0]), bitcast<f32>(scales[1]));
    let w = term_slope(row_class[local] != 0u, d, sc) * dist_grad_factor(params.distance, d);
    let base = local * params.dim4;
    let dot_form = params.distance == DIST_ONE_MINUS_DOT;
    for (var q = 0u; q < params.dim4; q++) {
        let u = rows[base + q];
        let v = cols[base + q];
        var ga = w * (u - v);
        var gb = -ga;
        if (dot_form) {
            ga = -w * v;
            gb = -w * u;
        }
        for (var e = 0u; e < 4u; e++) {
            grad[(base + q) * 4u + e] = ga[e];
            grad_b[(base + q) * 4u + e] = gb[e];
        }
    }
}

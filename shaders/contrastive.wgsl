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
// Shared pieces: common/distance, hinge, reduce, tile, tile_classes, tile_grad.
//
// Batch kernels of the pair engine's tile configuration (the register-row configuration's
// are contrastive_rows.wgsl, which includes this file): one workgroup of 8×8 invocations per
// 32-row tile; it walks the 32-column
// tiles of the column window. Invocation (ty, tx) holds a 4×4 register block of pairs, rows
// ty + 8r and columns tx + 8c, whose distances it accumulates from vec4 loads of its 4 rows
// and 4 columns (8 loads per 64 pair-dims; no barrier, which software drivers pay dearly
// for). The gradient phase shares the tile's 32×32 weights in workgroup memory; invocation
// (ty, tx) then owns rows ty + 8r and, per 32-dim chunk, the vec4 of dims 4·(8·chunk + tx),
// reading column rows as whole vec4s from the binding. Every pair's term is evaluated;
// nothing is skipped on the data's account.
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
    _pad0: u32,
    _pad1: u32,
    pos_margin: f32,
    margin: f32,
    _pad2: f32,
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

// w_s (common/tile_grad.wgsl): the tile's weights dL/dd × distance factor.
var<workgroup> red_s: array<vec2<f32>, 256>; // [row][tx] per-invocation (sim, dis) sums
var<workgroup> cnt_s: array<u32, 256>;        // [row][tx] four 8-bit counts, packed

fn hinge_arg(similar: bool, d: f32) -> f32 {
    if (similar) {
        return d - params.pos_margin;
    }
    return params.margin - d;
}

// Row `local` of a window, vec4 `q`, or zeros past the batch or the row.
fn load_row(from_rows: bool, local: u32, global: u32, q: u32) -> vec4<f32> {
    if (global >= params.rows || q >= params.dim4) {
        return vec4<f32>(0.0);
    }
    if (from_rows) {
        return rows[local * params.dim4 + q];
    }
    return cols[local * params.dim4 + q];
}

struct RowAcc {
    sim: Kahan,
    dis: Kahan,
    counts: vec4<u32>, // sim pairs, dis pairs, sim active, dis active
}

fn hinge_args4(similar: vec4<bool>, d: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(params.margin) - d, d - vec4<f32>(params.pos_margin), similar);
}

// Writes one row's (sim, dis) sums and packed counts over the invocation's 4 columns
// (pairs with j > i only) for the row owner to fold in.
fn row_terms(rl: u32, ci: u32, d: vec4<f32>, cols: Cols, row_base: u32, tx: u32) {
    let i = params.row_start + row_base + rl;
    let valid = (cols.index < vec4<u32>(params.rows)) & (cols.index > vec4<u32>(i))
        & vec4<bool>(i < params.rows);
    let similar = cols.ids == vec4<u32>(ci);
    let x = hinge_args4(similar, d);
    var sums = vec2<f32>(0.0); // sim, dis
    var counts = 0u; // bytes: sim pairs, dis pairs, sim active, dis active
    for (var c = 0u; c < 4u; c++) {
        if (valid[c]) {
            let term = hinge_value(params.hinge, x[c]);
            let on = select(0u, 1u, x[c] > 0.0);
            if (similar[c]) {
                sums.x += term;
                counts += 1u | (on << 16u);
            } else {
                sums.y += term;
                counts += (1u << 8u) | (on << 24u);
            }
        }
    }
    red_s[rl * 8u + tx] = sums;
    cnt_s[rl * 8u + tx] = counts;
}

// Adds this tile's terms of the invocation's block to the workgroup's per-row sums; the row
// owner (lid < 32) folds them into `acc` in a fixed order.
fn add_tile_terms(acc: RowAcc, d: Block, rc: vec4<u32>, cols: Cols, row_base: u32, ty: u32, tx: u32, lid: u32) -> RowAcc {
    row_terms(ty, rc.x, d.r0, cols, row_base, tx);
    row_terms(ty + 8u, rc.y, d.r1, cols, row_base, tx);
    row_terms(ty + 16u, rc.z, d.r2, cols, row_base, tx);
    row_terms(ty + 24u, rc.w, d.r3, cols, row_base, tx);
    workgroupBarrier();
    var out = acc;
    if (lid < TILE) {
        var s = vec2<f32>(0.0);
        for (var t = 0u; t < 8u; t++) {
            s += red_s[lid * 8u + t];
            let p = cnt_s[lid * 8u + t];
            out.counts += vec4<u32>(p & 255u, (p >> 8u) & 255u, (p >> 16u) & 255u, p >> 24u);
        }
        out.sim = kahan_add(out.sim, s.x);
        out.dis = kahan_add(out.dis, s.y);
    }
    workgroupBarrier();
    return out;
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

// Loss terms and counts of the pairs i < j between the row window and the column window.
@compute @workgroup_size(8, 8)
fn contrastive_batch_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tx = lid3.x;
    let ty = lid3.y;
    let row_base = wg.x * TILE;
    let own = lid < TILE && params.row_start + row_base + lid < params.rows;
    var acc = RowAcc(Kahan(0.0, 0.0), Kahan(0.0, 0.0), vec4<u32>(0u));
    if (own) {
        acc = load_row_acc(row_base + lid);
    }
    // Column tiles wholly at or below the diagonal hold no pair with j > i.
    var first = 0u;
    if (params.col_start == params.row_start) {
        first = wg.x;
    }
    let n_tiles = tiles_in_window(params.col_start);
    let rc = tile_row_classes(row_base + ty);
    for (var jt = first; jt < n_tiles; jt++) {
        let d = block_distances(row_base, jt * TILE, ty, tx);
        acc = add_tile_terms(acc, d, rc, tile_cols(jt * TILE, tx), row_base, ty, tx, lid);
    }
    if (own) {
        store_row_acc(row_base + lid, acc);
    }
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

// The 4 weights w = dL/dd × distance factor of row `rl` against the invocation's columns
// (0 for i = j and past the batch), written to w_s.
fn row_weights(rl: u32, ci: u32, d: vec4<f32>, cols: Cols, row_base: u32, tx: u32, sc: vec2<f32>) {
    let i = params.row_start + row_base + rl;
    for (var c = 0u; c < 4u; c++) {
        let j = cols.index[c];
        var w = 0.0;
        if (i < params.rows && j < params.rows && i != j) {
            w = term_slope(ci == cols.ids[c], d[c], sc) * dist_grad_factor(params.distance, d[c]);
        }
        w_s[rl * TILE + tx + 8u * c] = w;
    }
}

// Row `rl`'s vec4 `q` (zeros for one-minus-dot, whose gradient has no x_i term, and past
// the row or the batch).
fn row_vec(rl: u32, row_base: u32, q: u32) -> vec4<f32> {
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return vec4<f32>(0.0);
    }
    let li = row_base + rl;
    return load_row(true, li, params.row_start + li, q);
}

// Rows of up to RESIDENT_CHUNKS 32-dim chunks (D <= 256) keep their values in registers
// across all column tiles, as common/tile_grad.wgsl keeps their gradient sums.
var<private> x_res: array<vec4<f32>, 32>; // [chunk * 4 + r] row values, vec4 8·chunk + tx

// Gradient of the row window's rows over the column window (all j ≠ i); with `with_loss`
// it also accumulates the loss terms (j > i), so mean and sum need one pass.
fn batch_backward(wg: vec3<u32>, lid3: vec3<u32>, lid: u32, with_loss: bool) {
    let tx = lid3.x;
    let ty = lid3.y;
    let row_base = wg.x * TILE;
    let own = lid < TILE && params.row_start + row_base + lid < params.rows;
    var acc = RowAcc(Kahan(0.0, 0.0), Kahan(0.0, 0.0), vec4<u32>(0u));
    if (with_loss && own) {
        acc = load_row_acc(row_base + lid);
    }
    let sc = vec2<f32>(bitcast<f32>(scales[0]), bitcast<f32>(scales[1]));
    let rc = tile_row_classes(row_base + ty);
    let chunks = grad_chunks();
    let resident = chunks <= RESIDENT_CHUNKS;
    tile_grad_begin(row_base, ty, tx);
    if (resident) {
        for (var ch = 0u; ch < chunks; ch++) {
            for (var r = 0u; r < 4u; r++) {
                x_res[ch * 4u + r] = row_vec(ty + 8u * r, row_base, ch * KC4 + tx);
            }
        }
    }
    let n_tiles = tiles_in_window(params.col_start);
    for (var jt = 0u; jt < n_tiles; jt++) {
        let col_base = jt * TILE;
        let d = block_distances(row_base, col_base, ty, tx);
        let tc = tile_cols(col_base, tx);
        if (with_loss) {
            acc = add_tile_terms(acc, d, rc, tc, row_base, ty, tx, lid);
        }
        row_weights(ty, rc.x, d.r0, tc, row_base, tx, sc);
        row_weights(ty + 8u, rc.y, d.r1, tc, row_base, tx, sc);
        row_weights(ty + 16u, rc.z, d.r2, tc, row_base, tx, sc);
        row_weights(ty + 24u, rc.w, d.r3, tc, row_base, tx, sc);
        let first = jt == 0u && params.accumulate == 0u;
        workgroupBarrier();
        // Σ_j w_ij (x_i − x_j) (or −Σ_j w_ij x_j for one-minus-dot, whose x_i reads as 0).
        for (var ch = 0u; ch < chunks; ch++) {
            let q = ch * KC4 + tx;
            var x: Block;
            if (resident) {
                x = Block(x_res[ch * 4u], x_res[ch * 4u + 1u], x_res[ch * 4u + 2u], x_res[ch * 4u + 3u]);
            } else {
                x = Block(
                    row_vec(ty, row_base, q), row_vec(ty + 8u, row_base, q),
                    row_vec(ty + 16u, row_base, q), row_vec(ty + 24u, row_base, q),
                );
            }
            tile_grad_keep(tile_grad_chunk(col_base, ty, q, true, x), row_base, ty, tx, ch, first);
        }
        workgroupBarrier();
    }
    tile_grad_end(row_base, ty, tx);
    if (with_loss && own) {
        store_row_acc(row_base + lid, acc);
    }
}

@compute @workgroup_size(8, 8)
fn contrastive_batch_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    batch_backward(wg, lid3, lid, false);
}

@compute @workgroup_size(8, 8)
fn contrastive_batch_fused(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    batch_backward(wg, lid3, lid, true);
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

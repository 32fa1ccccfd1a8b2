// Triplet losses: terms relu(d(a,p) − d(a,n) + m) (or the soft margin log(1 + exp(d(a,p) −
// d(a,n)))), their per-row partial sums and counts, and the gradient with respect to the
// embeddings. Rows arrive normalised when the host asked for it (normalize.wgsl), cosine
// distance arrives as one-minus-dot, and rows are zero-padded to a multiple of 4 values.
//
// Explicit triplets (triplet_explicit_*): one invocation per triplet i, rows A[i], P[i], N[i];
// the host dispatches once per window of rows (src/loss/plan.rs).
//
// Mined triplets run per chunk of 64 anchors, so that no B×B buffer exists: per chunk,
//   triplet_distances  (per column window)  d(a, j) of the chunk's anchors and every row j
//   triplet_mine_*     (one workgroup per anchor)  choose the terms, write the anchor's
//                      partial and the weights W[a][j] = dL/dd(a, j)
//   triplet_grad_cols  (per column window)  dL/dx_j += Σ_a W[a][j] ∂d(a, j)/∂x_j, a in order
//   triplet_grad_rows  (per column window)  dL/dx_a += Σ_j W[a][j] ∂d(a, j)/∂x_a, j in order
// The chunk buffers hold 64 rows of `stride` values: O(64·B) workspace, reused by every chunk.
// mean-nonzero with gradients runs the distances and mining of every chunk first, then
// triplet_finalize (dL/dterm = 1/active, summed on the device), then every chunk again.
//
// Globals:
//   0 uniform        params     TripletParams
//   1 storage, read  rows       explicit: A (row window); mined: X rows of the chunk's window
//   2 storage, read  cols       explicit: P (row window); mined: X rows of the column window
//   3 storage, read  negs       explicit: N (row window)
//   4 storage, read  classes    mined: class id of every row (whole)
//   5 storage, rw    partials   one TripletPartial per triplet (explicit, row window) or
//                               per anchor (mined, whole)
//   6 storage, rw    scales     mined: [dL/dterm]
//   7 storage, rw    dist       mined: d(a, j), [anchor of chunk][j], stride `params.stride`
//   8 storage, rw    weights    mined: dL/dd(a, j), same layout
//   9 storage, rw    chosen     semihard: the negative chosen for positive pair (a, j)
//  10 storage, rw    grad       explicit: dL/dA; mined: dL/dX (the bound window)
//  11 storage, rw    grad_p     explicit: dL/dP
//  12 storage, rw    grad_n     explicit: dL/dN
// Ties choose the lowest index; every sum runs in a fixed order and every output value has
// one owner: no atomics, bitwise deterministic.

// Keep in sync with `TripletParams` in src/gpu/params.rs.
struct TripletParams {
    rows: u32,
    dim4: u32,
    distance: u32,
    soft: u32,
    swap: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    chunk_local: u32,
    stride: u32,
    _pad0: u32,
    margin: f32,
    scale: f32,
    _pad1: f32,
    _pad2: f32,
}

// Keep in sync with `TripletPartial` in src/gpu/params.rs.
struct TripletPartial {
    sum: f32,
    carry: f32,
    terms_lo: u32,
    terms_hi: u32,
    active_lo: u32,
    active_hi: u32,
    _pad0: u32,
    _pad1: u32,
}

const CHUNK: u32 = 64u;
const NONE: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> params: TripletParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> negs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> classes: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<TripletPartial>;
@group(0) @binding(6) var<storage, read_write> scales: array<f32>;
@group(0) @binding(7) var<storage, read_write> dist: array<f32>;
@group(0) @binding(8) var<storage, read_write> weights: array<f32>;
@group(0) @binding(9) var<storage, read_write> chosen: array<u32>;
@group(0) @binding(10) var<storage, read_write> grad: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> grad_p: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read_write> grad_n: array<vec4<f32>>;

// Per-lane results of the mining kernels, folded by lane 0 in lane order.
var<workgroup> sum_s: array<Kahan, 64>;
var<workgroup> cnt_s: array<vec2<u32>, 64>; // terms, active
var<workgroup> pick_d: array<vec2<f32>, 64>; // hard: best positive, best negative distance
var<workgroup> pick_i: array<vec2<u32>, 64>; // hard: their indices
var<workgroup> weight_s: f32;
var<workgroup> flag_s: array<u32, 64>;

// ---- the term ----

// log(1 + exp(x)) without overflow, accurate for large |x| on either side.
fn softplus(x: f32) -> f32 {
    let z = exp(-abs(x));
    var l = log(1.0 + z);
    if (z < 1e-4) {
        l = z * (1.0 - z * (0.5 - z / 3.0));
    }
    return max(x, 0.0) + l;
}

fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// Value, slope dterm/dx and activity of a term with x = d(a,p) − d(a,n).
struct Term {
    value: f32,
    slope: f32,
    on: bool,
}

fn term_of(x: f32) -> Term {
    if (params.soft == 1u) {
        return Term(softplus(x), sigmoid(x), x > 0.0);
    }
    let h = x + params.margin;
    if (h > 0.0) {
        return Term(h, 1.0, true);
    }
    return Term(0.0, 0.0, false);
}

// ---- explicit triplets ----

fn pair_acc(u: vec4<f32>, v: vec4<f32>) -> f32 {
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return dot(u, v);
    }
    let t = u - v;
    return dot(t, t);
}

struct Explicit {
    term: Term,
    d_ap: f32,
    d_neg: f32,
    // the negative distance is d(p, n) (swap chose it)
    from_p: bool,
}

fn explicit_term(i: u32) -> Explicit {
    let base = i * params.dim4;
    var ap = 0.0;
    var an = 0.0;
    var pn = 0.0;
    for (var q = 0u; q < params.dim4; q++) {
        let a = rows[base + q];
        let p = cols[base + q];
        let n = negs[base + q];
        ap += pair_acc(a, p);
        an += pair_acc(a, n);
        pn += pair_acc(p, n);
    }
    let d_ap = dist_finish(params.distance, ap);
    let d_an = dist_finish(params.distance, an);
    let d_pn = dist_finish(params.distance, pn);
    let from_p = params.swap == 1u && d_pn < d_an;
    let d_neg = select(d_an, d_pn, from_p);
    return Explicit(term_of(d_ap - d_neg), d_ap, d_neg, from_p);
}

fn in_row_window(i: u32) -> bool {
    return i < params.window_rows && params.row_start + i < params.rows;
}

fn store_explicit_partial(i: u32, t: Term) {
    partials[i] = TripletPartial(t.value, 0.0, 1u, 0u, select(0u, 1u, t.on), 0u, 0u, 0u);
}

@compute @workgroup_size(64)
fn triplet_explicit_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (!in_row_window(i)) {
        return;
    }
    store_explicit_partial(i, explicit_term(i).term);
}

// ∂d(u, v)/∂u = g(d)·(u − v) for the difference forms, −v for one-minus-dot.
fn d_du(d: f32, u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return -v;
    }
    return dist_grad_factor(params.distance, d) * (u - v);
}

// Loss terms and gradients of every triplet (dL/dterm = params.scale, known on the host).
@compute @workgroup_size(64)
fn triplet_explicit_fused(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (!in_row_window(i)) {
        return;
    }
    let e = explicit_term(i);
    store_explicit_partial(i, e.term);
    let w = params.scale * e.term.slope;
    let base = i * params.dim4;
    for (var q = 0u; q < params.dim4; q++) {
        let a = rows[base + q];
        let p = cols[base + q];
        let n = negs[base + q];
        var ga = w * d_du(e.d_ap, a, p);
        var gp = w * d_du(e.d_ap, p, a);
        var gn: vec4<f32>;
        if (e.from_p) {
            gp -= w * d_du(e.d_neg, p, n);
            gn = -w * d_du(e.d_neg, n, p);
        } else {
            ga -= w * d_du(e.d_neg, a, n);
            gn = -w * d_du(e.d_neg, n, a);
        }
        grad[base + q] = ga;
        grad_p[base + q] = gp;
        grad_n[base + q] = gn;
    }
}

// ---- mined triplets: distances of one chunk ----

fn store_block_row(anchor: u32, col_local: u32, d: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        let j = params.col_start + col_local + 8u * c;
        if (j < params.rows) {
            dist[anchor * params.stride + j] = d[c];
        }
    }
}

// Workgroup t: column tile t against both 32-anchor tiles of the chunk.
@compute @workgroup_size(8, 8)
fn triplet_distances(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
) {
    let tx = lid3.x;
    let ty = lid3.y;
    let col_base = wg.x * TILE;
    for (var anchor_tile = 0u; anchor_tile < CHUNK; anchor_tile += TILE) {
        let d = block_distances(params.chunk_local + anchor_tile, col_base, ty, tx);
        store_block_row(anchor_tile + ty, col_base + tx, d.r0);
        store_block_row(anchor_tile + ty + 8u, col_base + tx, d.r1);
        store_block_row(anchor_tile + ty + 16u, col_base + tx, d.r2);
        store_block_row(anchor_tile + ty + 24u, col_base + tx, d.r3);
    }
}

// ---- mined triplets: choosing the terms ----

fn chunk_start() -> u32 {
    return params.row_start + params.chunk_local;
}

// Folds the lanes' sums and counts in lane order into the anchor's partial.
fn store_anchor_partial(a: u32, lid: u32) {
    workgroupBarrier();
    if (lid == 0u) {
        var s = Kahan(0.0, 0.0);
        var terms = Count64(vec4<u32>(0u), vec4<u32>(0u));
        for (var t = 0u; t < 64u; t++) {
            s = kahan_add(s, sum_s[t].sum - sum_s[t].carry);
            let c = cnt_s[t];
            terms = count64_add(terms, Count64(vec4<u32>(c.x, c.y, 0u, 0u), vec4<u32>(0u)));
        }
        partials[a] = TripletPartial(
            s.sum, s.carry, terms.lo.x, terms.hi.x, terms.lo.y, terms.hi.y, 0u, 0u,
        );
    }
}

fn better_positive(d: f32, j: u32, best_d: f32, best_j: u32) -> bool {
    return best_j == NONE || d > best_d || (d == best_d && j < best_j);
}

fn better_negative(d: f32, j: u32, best_d: f32, best_j: u32) -> bool {
    return best_j == NONE || d < best_d || (d == best_d && j < best_j);
}

// Batch-hard: the farthest positive and the nearest negative of each anchor.
@compute @workgroup_size(64)
fn triplet_mine_hard(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let al = wg.x;
    let a = chunk_start() + al;
    if (a >= params.rows) {
        return;
    }
    let ca = classes[a];
    let base = al * params.stride;
    var pd = 0.0;
    var pj = NONE;
    var nd = 0.0;
    var nj = NONE;
    for (var j = lid; j < params.rows; j += 64u) {
        if (j == a) {
            continue;
        }
        let d = dist[base + j];
        if (classes[j] == ca) {
            if (better_positive(d, j, pd, pj)) {
                pd = d;
                pj = j;
            }
        } else if (better_negative(d, j, nd, nj)) {
            nd = d;
            nj = j;
        }
    }
    pick_d[lid] = vec2<f32>(pd, nd);
    pick_i[lid] = vec2<u32>(pj, nj);
    sum_s[lid] = Kahan(0.0, 0.0);
    cnt_s[lid] = vec2<u32>(0u);
    workgroupBarrier();
    if (lid == 0u) {
        for (var t = 1u; t < 64u; t++) {
            let d = pick_d[t];
            let i = pick_i[t];
            if (i.x != NONE && better_positive(d.x, i.x, pd, pj)) {
                pd = d.x;
                pj = i.x;
            }
            if (i.y != NONE && better_negative(d.y, i.y, nd, nj)) {
                nd = d.y;
                nj = i.y;
            }
        }
        var w = 0.0;
        if (pj != NONE && nj != NONE) {
            let t = term_of(pd - nd);
            sum_s[0] = Kahan(t.value, 0.0);
            cnt_s[0] = vec2<u32>(1u, select(0u, 1u, t.on));
            w = scales[0] * t.slope;
        }
        pick_i[0] = vec2<u32>(pj, nj);
        weight_s = w;
    }
    store_anchor_partial(a, lid);
    workgroupBarrier();
    let pick = pick_i[0];
    let w = weight_s;
    for (var j = lid; j < params.rows; j += 64u) {
        var v = 0.0;
        if (j == pick.x) {
            v = w;
        } else if (j == pick.y) {
            v = -w;
        }
        weights[base + j] = v;
    }
}

// Whether the anchor (class ca, row a) has a negative: every lane looks at its rows.
fn has_negative(a: u32, ca: u32, lid: u32) -> bool {
    var seen = 0u;
    for (var j = lid; j < params.rows; j += 64u) {
        if (classes[j] != ca) {
            seen = 1u;
            break;
        }
    }
    flag_s[lid] = seen;
    workgroupBarrier();
    var found = false;
    for (var t = 0u; t < 64u; t++) {
        found = found || flag_s[t] == 1u;
    }
    return found;
}

// Semi-hard (TensorFlow Addons' rule): for each positive pair (a, p), the nearest negative
// farther than p, else the farthest negative.
@compute @workgroup_size(64)
fn triplet_mine_semihard(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let al = wg.x;
    let a = chunk_start() + al;
    if (a >= params.rows) {
        return;
    }
    let ca = classes[a];
    let base = al * params.stride;
    let negatives = has_negative(a, ca, lid);
    let scale = scales[0];
    var sum = Kahan(0.0, 0.0);
    var terms = 0u;
    var n_active = 0u;
    // Positives (and a itself) first: their weights and choices.
    for (var p = lid; p < params.rows; p += 64u) {
        if (classes[p] != ca) {
            weights[base + p] = 0.0;
            continue;
        }
        var w = 0.0;
        var pick = NONE;
        if (p != a && negatives) {
            let dp = dist[base + p];
            var above_d = 0.0;
            var above_j = NONE;
            var far_d = 0.0;
            var far_j = NONE;
            for (var n = 0u; n < params.rows; n++) {
                if (classes[n] == ca) {
                    continue;
                }
                let d = dist[base + n];
                if (d > dp && better_negative(d, n, above_d, above_j)) {
                    above_d = d;
                    above_j = n;
                }
                if (better_positive(d, n, far_d, far_j)) {
                    far_d = d;
                    far_j = n;
                }
            }
            pick = select(far_j, above_j, above_j != NONE);
            let t = term_of(dp - select(far_d, above_d, above_j != NONE));
            sum = kahan_add(sum, t.value);
            terms += 1u;
            n_active += select(0u, 1u, t.on);
            w = scale * t.slope;
        }
        weights[base + p] = w;
        chosen[base + p] = pick;
    }
    sum_s[lid] = sum;
    cnt_s[lid] = vec2<u32>(terms, n_active);
    store_anchor_partial(a, lid);
    storageBarrier();
    workgroupBarrier();
    // Negatives: minus the weights of the positive pairs that chose them, in pair order. One
    // lane walks the pairs so that every weight has one writer.
    if (lid == 0u && negatives) {
        for (var p = 0u; p < params.rows; p++) {
            if (p != a && classes[p] == ca) {
                let n = chosen[base + p];
                weights[base + n] -= weights[base + p];
            }
        }
    }
}

// All triplets: every positive p and negative n of the anchor.
@compute @workgroup_size(64)
fn triplet_mine_all(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let al = wg.x;
    let a = chunk_start() + al;
    if (a >= params.rows) {
        return;
    }
    let ca = classes[a];
    let base = al * params.stride;
    let scale = scales[0];
    var sum = Kahan(0.0, 0.0);
    var terms = 0u;
    var n_active = 0u;
    // Row j as the positive (same class) or the negative (other class) of its triplets; its
    // weight is scale × (active triplets with j as positive, minus those with j as negative).
    for (var j = lid; j < params.rows; j += 64u) {
        let dj = dist[base + j];
        let positive = classes[j] == ca;
        var on = 0u;
        var row_sum = 0.0;
        if (j != a) {
            for (var k = 0u; k < params.rows; k++) {
                if (k == a || (classes[k] == ca) == positive) {
                    continue;
                }
                let dk = dist[base + k];
                var x = dk - dj;
                if (positive) {
                    x = dj - dk;
                    terms += 1u;
                }
                let t = term_of(x);
                if (t.on) {
                    on += 1u;
                    row_sum += t.value;
                }
            }
        }
        if (positive) {
            sum = kahan_add(sum, row_sum);
            n_active += on;
            weights[base + j] = scale * f32(on);
        } else {
            weights[base + j] = -scale * f32(on);
        }
    }
    sum_s[lid] = sum;
    cnt_s[lid] = vec2<u32>(terms, n_active);
    store_anchor_partial(a, lid);
}

// mean-nonzero: dL/dterm = 1 / (active terms of the whole batch), 0 if none.
@compute @workgroup_size(64)
fn triplet_finalize(@builtin(local_invocation_index) lid: u32) {
    var total = Count64(vec4<u32>(0u), vec4<u32>(0u));
    for (var a = lid; a < params.rows; a += 64u) {
        let p = partials[a];
        total = count64_add(total, Count64(vec4<u32>(p.active_lo, 0u, 0u, 0u), vec4<u32>(p.active_hi, 0u, 0u, 0u)));
    }
    pick_i[lid] = vec2<u32>(total.lo.x, total.hi.x);
    workgroupBarrier();
    if (lid == 0u) {
        var grand = Count64(vec4<u32>(0u), vec4<u32>(0u));
        for (var t = 0u; t < 64u; t++) {
            let c = pick_i[t];
            grand = count64_add(grand, Count64(vec4<u32>(c.x, 0u, 0u, 0u), vec4<u32>(c.y, 0u, 0u, 0u)));
        }
        let n = count64_to_f32(grand.lo.x, grand.hi.x);
        scales[0] = select(0.0, 1.0 / n, n > 0.0);
    }
}

// ---- mined triplets: gradients ----

// One invocation per row j of the column window: Σ over the chunk's anchors a, in order.
@compute @workgroup_size(64)
fn triplet_grad_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    let jl = gid.x;
    let j = params.col_start + jl;
    if (jl >= params.window_rows || j >= params.rows) {
        return;
    }
    let jb = jl * params.dim4;
    if (params.accumulate == 0u) {
        for (var q = 0u; q < params.dim4; q++) {
            grad[jb + q] = vec4<f32>(0.0);
        }
    }
    let first = chunk_start();
    for (var al = 0u; al < CHUNK; al++) {
        let a = first + al;
        if (a >= params.rows) {
            break;
        }
        let w = weights[al * params.stride + j];
        if (a == j || w == 0.0) {
            continue;
        }
        let d = dist[al * params.stride + j];
        let ab = (params.chunk_local + al) * params.dim4;
        for (var q = 0u; q < params.dim4; q++) {
            grad[jb + q] += w * d_du(d, cols[jb + q], rows[ab + q]);
        }
    }
}

// Workgroup al + 64·g: anchor al of the chunk, vec4s 64g.. of its row (one per lane); Σ over
// the rows j of the column window, in order.
@compute @workgroup_size(64)
fn triplet_grad_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let al = wg.x % CHUNK;
    let a = chunk_start() + al;
    let q = (wg.x / CHUNK) * 64u + lid;
    if (a >= params.rows || q >= params.dim4) {
        return;
    }
    let ab = (params.chunk_local + al) * params.dim4;
    let xa = rows[ab + q];
    let n = min(params.window_rows, params.rows - min(params.rows, params.col_start));
    // Continue the running sum in the gradient itself, so that splitting the columns into
    // windows adds the same terms in the same order as one window.
    var acc = grad[ab + q];
    for (var jl = 0u; jl < n; jl++) {
        let j = params.col_start + jl;
        let w = weights[al * params.stride + j];
        if (j == a || w == 0.0) {
            continue;
        }
        acc += w * d_du(dist[al * params.stride + j], xa, cols[jl * params.dim4 + q]);
    }
    grad[ab + q] = acc;
}

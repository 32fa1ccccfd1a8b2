// Triplet losses: terms relu(d(a,p) − d(a,n) + m) (or the soft margin log(1 + exp(d(a,p) −
// d(a,n)))), their per-row partial sums and counts, and the gradient with respect to the
// embeddings. Rows arrive normalised when the host asked for it (normalize.wgsl), cosine
// distance arrives as one-minus-dot, and rows are zero-padded to a multiple of 4 values.
//
// Explicit triplets (triplet_explicit_*): one invocation per triplet i, rows A[i], P[i], N[i];
// the host dispatches once per window of rows (src/engine/plan.rs). The host's table of these
// entry points and bindings is src/losses/triplet/kernels.rs.
//
// Mined triplets run per chunk of 64 anchors, so that no B×B buffer exists (batch-hard on the
// pair engine's register rows needs no chunk: triplet_hard.wgsl, which includes this file):
// per chunk,
//   triplet_rows_distances (triplet_rows.wgsl, the pair engine; per column window)
//                      d(a, j) of the chunk's anchors and every row j
//   triplet_mine_*     (one workgroup per anchor)  choose the terms, write the anchor's
//                      partial, the weights W[a][j] = dL/dd(a, j) × the distance's factor
//                      and the list of non-zero ones
//   triplet_grad_cols  (per column window)  dL/dx_j += Σ_a W[a][j] ∂d(a, j)/∂x_j, a in order
//   triplet_grad_rows  (per column window)  dL/dx_a += Σ_j W[a][j] ∂d(a, j)/∂x_a over the
//                      anchor's list of non-zero weights, j in order
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
//   8 storage, rw    weights    mined: dL/dd(a, j), then (list_nonzero) the gradient
//                               coefficient dL/dd × the distance's factor; same layout
//   9 storage, rw    chosen     semihard: the negative chosen for positive pair (a, j)
//  10 storage, rw    grad       explicit: dL/dA; mined: dL/dX (the bound window)
//  11 storage, rw    grad_p     explicit: dL/dP
//  12 storage, rw    grad_n     explicit: dL/dN
//  13 storage, rw    nonzero_cols  mined: per anchor, the columns j with W[a][j] ≠ 0, in order
//  14 storage, rw    dev        device-resident calls: [loss, Σ terms' values, terms (lo, hi),
//                               active (lo, hi), -, -] (f32 bits, u32)
//  16 storage, read  ref_classes  mined: class id of every candidate (whole; the batch's
//                               classes again, or the reference rows')
//  15 storage, rw    picks      batch-hard on the register rows (triplet_hard.wgsl): per
//                               anchor (d(a,p) bits, p, d(a,n) bits, n), NONE when absent
// Ties choose the lowest index; every sum runs in a fixed order and every output value has
// one owner: no atomics, bitwise deterministic.
// Shared pieces: common/distance, reduce, smooth.

// Keep in sync with `TripletParams` in src/losses/triplet/kernels.rs.
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
    reduction: u32, // 0 mean, 1 sum, 2 mean-nonzero (triplet_finalize, triplet_loss)
    margin: f32,
    scale: f32,
    last: u32,      // triplet_loss: the last window
    cols: u32,      // mined: candidates (the batch's rows, or the reference rows)
    self_at: u32,   // mined: candidate self_at + a is anchor a's own row (NONE: none)
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
}

// Keep in sync with `TripletPartial` in src/losses/triplet/kernels.rs.
struct TripletPartial {
    sum: f32,
    carry: f32,
    terms_lo: u32,
    terms_hi: u32,
    active_lo: u32,
    active_hi: u32,
    nonzero: u32, // mined: non-zero weights in the anchor's row, listed in `nonzero_cols`
    _pad: u32,
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
@group(0) @binding(13) var<storage, read_write> nonzero_cols: array<u32>;
@group(0) @binding(14) var<storage, read_write> dev: array<u32>;
@group(0) @binding(15) var<storage, read_write> picks: array<vec4<u32>>;
@group(0) @binding(16) var<storage, read> ref_classes: array<u32>;

// Per-lane results of the mining kernels, folded by lane 0 in lane order.
var<workgroup> sum_s: array<Kahan, 64>;
var<workgroup> cnt_s: array<vec2<u32>, 64>; // terms, active
var<workgroup> pick_d: array<vec2<f32>, 64>; // hard: best positive, best negative distance
var<workgroup> pick_i: array<vec2<u32>, 64>; // hard: their indices
var<workgroup> weight_s: f32;
var<workgroup> count_s: array<u32, 64>; // per-lane list lengths (list_positives, list_nonzero)

// ---- the term ----

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
// c·(u − v) for the difference forms, −c·v for one-minus-dot, with c = dL/dd × the
// distance's factor: the contribution of d(u, v) to dL/du.
fn toward(c: f32, u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return -c * v;
    }
    return c * (u - v);
}

// ∂d(u, v)/∂u (0 where d = 0, the convention of common/distance.wgsl).
fn d_du(d: f32, u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    return toward(dist_grad_factor(params.distance, d), u, v);
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

// ---- mined triplets: choosing the terms ----

// Whether candidate j is anchor a's own row (against reference rows among which the anchors
// sit from row params.self_at; a batch: j == a).
fn is_self(a: u32, j: u32) -> bool {
    return params.self_at != NONE && j == a + params.self_at;
}

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
    for (var j = lid; j < params.cols; j += 64u) {
        if (is_self(a, j)) {
            continue;
        }
        let d = dist[base + j];
        if (ref_classes[j] == ca) {
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
    // Gradient coefficients (see list_nonzero): ±w × the distance's factor.
    for (var j = lid; j < params.cols; j += 64u) {
        var v = 0.0;
        if (j == pick.x) {
            v = w;
        } else if (j == pick.y) {
            v = -w;
        }
        weights[base + j] = v * dist_grad_factor(params.distance, dist[base + j]);
    }
    if (lid == 0u) {
        var n = 0u;
        for (var k = 0u; k < 2u; k++) {
            let j = select(max(pick.x, pick.y), min(pick.x, pick.y), k == 0u);
            if (w != 0.0 && dist_grad_factor(params.distance, dist[base + j]) != 0.0) {
                nonzero_cols[base + n] = j;
                n += 1u;
            }
        }
        partials[a].nonzero = n;
    }
}

// The anchor's rows are split into 64 contiguous blocks, one per lane, so that lists built
// from them come out in row order: each lane counts its block's entries, every lane adds up
// the counts of the lanes before it to find where its entries start, and writes them there.
// No lane walks the whole row alone.
fn lane_block(lid: u32) -> vec2<u32> {
    let span = (params.cols + 63u) / 64u;
    let lo = min(lid * span, params.cols);
    return vec2<u32>(lo, min(lo + span, params.cols));
}

// Where lane `lid`'s entries start in a list, the list's length, and whether any lane set
// its flag bit (bit 31), from `count_s` (written before a barrier): lane 0 adds the counts
// up once (a software adapter pays each lane's workgroup loads once per SIMD lane).
var<workgroup> offset_s: array<u32, 66>; // [lane] start, then the length and the flags
fn list_offsets(lid: u32) -> vec3<u32> {
    if (lid == 0u) {
        var total = 0u;
        var flags = 0u;
        for (var t = 0u; t < 64u; t++) {
            let c = count_s[t];
            offset_s[t] = total;
            total += c & 0x7fffffffu;
            flags |= c >> 31u;
        }
        offset_s[64] = total;
        offset_s[65] = flags;
    }
    workgroupBarrier();
    return vec3<u32>(offset_s[lid], offset_s[64], offset_s[65]);
}

// Turns the anchor's weights dL/dd(a, j) into gradient coefficients (× the distance's
// factor) and lists the columns of the non-zero ones in order, so that the gradient kernels
// visit only those and read no distance. Starts with a barrier that makes every lane's
// weights visible.
fn list_nonzero(a: u32, base: u32, lid: u32) {
    storageBarrier();
    workgroupBarrier();
    let blk = lane_block(lid);
    var n = 0u;
    for (var j = blk.x; j < blk.y; j++) {
        let c = weights[base + j] * dist_grad_factor(params.distance, dist[base + j]);
        weights[base + j] = c;
        n += select(0u, 1u, c != 0.0);
    }
    count_s[lid] = n;
    workgroupBarrier();
    let at = list_offsets(lid);
    var k = at.x;
    for (var j = blk.x; j < blk.y; j++) {
        if (weights[base + j] != 0.0) {
            nonzero_cols[base + k] = j;
            k += 1u;
        }
    }
    if (lid == 0u) {
        partials[a].nonzero = at.y;
    }
}

// Lists the anchor's positives in row order in `nonzero_cols` (scratch until list_nonzero
// overwrites it) and returns how many there are; `negatives` says whether the anchor has any
// negative.
struct Positives {
    count: u32,
    negatives: bool,
}

fn list_positives(a: u32, ca: u32, base: u32, lid: u32) -> Positives {
    var n = 0u;
    var others = 0u;
    for (var j = lid; j < params.cols; j += 64u) {
        let same = ref_classes[j] == ca;
        others = others | select(1u, 0u, same);
        n += select(0u, 1u, same && !is_self(a, j));
    }
    count_s[lid] = n | (others << 31u);
    workgroupBarrier();
    let at = list_offsets(lid);
    var k = at.x;
    for (var j = lid; j < params.cols; j += 64u) {
        if (!is_self(a, j) && ref_classes[j] == ca) {
            nonzero_cols[base + k] = j;
            k += 1u;
        }
    }
    storageBarrier();
    return Positives(at.y, at.z == 1u);
}

// Semi-hard (TensorFlow Addons' rule): for each positive pair (a, p), the nearest negative
// farther than p, else the farthest negative; ties to the lowest index.
//
// The lanes split the candidates, not the positives: each lane scans its contiguous block of
// rows once per batch of 8 positives, keeping every positive's nearest farther negative (and
// the farthest negative, the same for all) in registers, so that every distance is read by
// one lane; lane q < 8 then merges the 64 lanes' candidates for positive q of the batch in
// lane order (row order: strict comparisons keep the lowest index).
const SEMI_BATCH: u32 = 8u;
var<workgroup> semi_d: array<f32, 512>; // [lane][positive of the batch] nearest farther negative
var<workgroup> semi_j: array<u32, 512>;

@compute @workgroup_size(64)
fn triplet_mine_semihard(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let al = wg.x;
    let a = chunk_start() + al;
    if (a >= params.rows) {
        return;
    }
    let ca = classes[a];
    let base = al * params.stride;
    let pos = list_positives(a, ca, base, lid);
    let scale = scales[0];
    var sum = Kahan(0.0, 0.0);
    var terms = 0u;
    var n_active = 0u;
    // Every weight starts at 0; positives then get theirs, and choices are recorded.
    for (var j = lid; j < params.cols; j += 64u) {
        weights[base + j] = 0.0;
    }
    storageBarrier();
    let none = vec4<u32>(NONE);
    for (var k0 = 0u; k0 < pos.count && pos.negatives; k0 += SEMI_BATCH) {
        // The batch's positive distances; past the list, above every distance.
        var dp = array<f32, 8>(3e38, 3e38, 3e38, 3e38, 3e38, 3e38, 3e38, 3e38);
        for (var q = 0u; q < SEMI_BATCH; q++) {
            if (k0 + q < pos.count) {
                dp[q] = dist[base + nonzero_cols[base + k0 + q]];
            }
        }
        let dpa = vec4<f32>(dp[0], dp[1], dp[2], dp[3]);
        let dpb = vec4<f32>(dp[4], dp[5], dp[6], dp[7]);
        var ada = vec4<f32>(0.0);
        var adb = vec4<f32>(0.0);
        var aja = none;
        var ajb = none;
        var far_d = 0.0;
        var far_j = NONE;
        // Lane lid takes rows lid, lid + 64, ... (neighbouring lanes read neighbouring
        // values), each in increasing order: strict comparisons keep its lowest index.
        for (var n = lid; n < params.cols; n += 64u) {
            if (ref_classes[n] == ca) {
                continue;
            }
            let d = dist[base + n];
            if (far_j == NONE || d > far_d) {
                far_d = d;
                far_j = n;
            }
            let dv = vec4<f32>(d);
            let ca_ = (dv > dpa) & ((aja == none) | (dv < ada));
            let cb_ = (dv > dpb) & ((ajb == none) | (dv < adb));
            ada = select(ada, dv, ca_);
            aja = select(aja, vec4<u32>(n), ca_);
            adb = select(adb, dv, cb_);
            ajb = select(ajb, vec4<u32>(n), cb_);
        }
        for (var q = 0u; q < 4u; q++) {
            semi_d[lid * SEMI_BATCH + q] = ada[q];
            semi_j[lid * SEMI_BATCH + q] = aja[q];
            semi_d[lid * SEMI_BATCH + 4u + q] = adb[q];
            semi_j[lid * SEMI_BATCH + 4u + q] = ajb[q];
        }
        pick_d[lid] = vec2<f32>(far_d, 0.0);
        pick_i[lid] = vec2<u32>(far_j, 0u);
        workgroupBarrier();
        let k = k0 + lid;
        if (lid < SEMI_BATCH && k < pos.count) {
            var above_d = 0.0;
            var above_j = NONE;
            var fd = 0.0;
            var fj = NONE;
            // Ties to the lowest index across lanes.
            for (var t = 0u; t < 64u; t++) {
                let j = semi_j[t * SEMI_BATCH + lid];
                let d = semi_d[t * SEMI_BATCH + lid];
                if (j != NONE && (above_j == NONE || d < above_d || (d == above_d && j < above_j))) {
                    above_d = d;
                    above_j = j;
                }
                let f = pick_i[t].x;
                let e = pick_d[t].x;
                if (f != NONE && (fj == NONE || e > fd || (e == fd && f < fj))) {
                    fd = e;
                    fj = f;
                }
            }
            let p = nonzero_cols[base + k];
            let t = term_of(dp[lid] - select(fd, above_d, above_j != NONE));
            sum = kahan_add(sum, t.value);
            terms += 1u;
            n_active += select(0u, 1u, t.on);
            weights[base + p] = scale * t.slope;
            chosen[base + p] = select(fj, above_j, above_j != NONE);
        }
        workgroupBarrier();
    }
    sum_s[lid] = sum;
    cnt_s[lid] = vec2<u32>(terms, n_active);
    store_anchor_partial(a, lid);
    storageBarrier();
    workgroupBarrier();
    // Negatives: minus the weights of the positive pairs that chose them, in pair order. One
    // lane walks the pairs so that every weight has one writer.
    if (lid == 0u && pos.negatives) {
        for (var k = 0u; k < pos.count; k++) {
            let p = nonzero_cols[base + k];
            let n = chosen[base + p];
            weights[base + n] -= weights[base + p];
        }
    }
    list_nonzero(a, base, lid);
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
    let pos = list_positives(a, ca, base, lid);
    let scale = scales[0];
    var sum = Kahan(0.0, 0.0);
    var terms = 0u;
    var n_active = 0u;
    // A positive's weight: scale × its active triplets; its terms are summed here.
    for (var k = lid; k < pos.count; k += 64u) {
        let p = nonzero_cols[base + k];
        let dp = dist[base + p];
        var on = 0u;
        var row_sum = 0.0;
        for (var n = 0u; n < params.cols; n++) {
            if (ref_classes[n] == ca) {
                continue;
            }
            terms += 1u;
            let t = term_of(dp - dist[base + n]);
            if (t.on) {
                on += 1u;
                row_sum += t.value;
            }
        }
        sum = kahan_add(sum, row_sum);
        n_active += on;
        weights[base + p] = scale * f32(on);
    }
    // A negative's weight: −scale × its active triplets (the same f32 comparisons); the
    // anchor's own weight is 0.
    for (var j = lid; j < params.cols; j += 64u) {
        if (ref_classes[j] == ca) {
            if (is_self(a, j)) {
                weights[base + j] = 0.0;
            }
            continue;
        }
        let dn = dist[base + j];
        var on = 0u;
        for (var k = 0u; k < pos.count; k++) {
            if (term_of(dist[base + nonzero_cols[base + k]] - dn).on) {
                on += 1u;
            }
        }
        weights[base + j] = -scale * f32(on);
    }
    sum_s[lid] = sum;
    cnt_s[lid] = vec2<u32>(terms, n_active);
    store_anchor_partial(a, lid);
    list_nonzero(a, base, lid);
}

// dL/dterm counted on the device: 1 / (active terms of the whole batch) for mean-nonzero,
// 1 / terms for mean (device-resident calls, whose labels the host does not see), 1 for
// sum; 0 when there is nothing to divide by.
@compute @workgroup_size(64)
fn triplet_finalize(@builtin(local_invocation_index) lid: u32) {
    var total = Count64(vec4<u32>(0u), vec4<u32>(0u));
    for (var a = lid; a < params.rows; a += 64u) {
        let p = partials[a];
        var c = vec2<u32>(p.active_lo, p.active_hi);
        if (params.reduction == 0u) {
            c = vec2<u32>(p.terms_lo, p.terms_hi);
        }
        total = count64_add(total, Count64(vec4<u32>(c.x, 0u, 0u, 0u), vec4<u32>(c.y, 0u, 0u, 0u)));
    }
    let grand = tree_count64(lid, total);
    if (lid == 0u) {
        let n = count64_to_f32(grand.lo.x, grand.hi.x);
        scales[0] = select(0.0, 1.0 / n, n > 0.0);
        if (params.reduction == 1u) {
            scales[0] = 1.0;
        }
    }
}

// Device-resident calls: sums the partials of `params.window_rows` rows from the binding's
// start (a row window of explicit triplets, or every anchor of mined ones) into dev[1..5]
// in a fixed tree, adding from the second window on; the last window writes the loss.
@compute @workgroup_size(64)
fn triplet_loss(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    var c = Count64(vec4<u32>(0u), vec4<u32>(0u));
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        s += p.sum - p.carry;
        c = count64_add(c, Count64(vec4<u32>(p.terms_lo, p.active_lo, 0u, 0u), vec4<u32>(p.terms_hi, p.active_hi, 0u, 0u)));
    }
    var total = tree_sum2(lid, vec2<f32>(s, 0.0)).x;
    var counts = tree_count64(lid, c);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += bitcast<f32>(dev[1]);
        counts = count64_add(counts, Count64(vec4<u32>(dev[2], dev[4], 0u, 0u), vec4<u32>(dev[3], dev[5], 0u, 0u)));
    }
    dev[1] = bitcast<u32>(total);
    dev[2] = counts.lo.x;
    dev[3] = counts.hi.x;
    dev[4] = counts.lo.y;
    dev[5] = counts.hi.y;
    if (params.last == 0u) {
        return;
    }
    var divide = 1.0;
    if (params.reduction == 0u) {
        divide = count64_to_f32(counts.lo.x, counts.hi.x);
    } else if (params.reduction == 2u) {
        divide = count64_to_f32(counts.lo.y, counts.hi.y);
    }
    dev[0] = bitcast<u32>(select(0.0, total / divide, divide > 0.0));
}

// ---- mined triplets: gradients ----

// One invocation per row j of the column window: Σ over the chunk's anchors a, in order,
// of coefficient × (x_j − x_a) (one-minus-dot: −coefficient × x_a). The anchors with a
// non-zero coefficient are gathered first, so that each vec4 of the gradient is read and
// written once.
@compute @workgroup_size(64)
fn triplet_grad_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    let jl = gid.x;
    let j = params.col_start + jl;
    if (jl >= params.window_rows || j >= params.cols) {
        return;
    }
    var coef: array<f32, 64>;
    var at: array<u32, 64>;
    var n = 0u;
    let first = chunk_start();
    for (var al = 0u; al < CHUNK; al++) {
        let a = first + al;
        if (a >= params.rows) {
            break;
        }
        let c = weights[al * params.stride + j];
        if (!is_self(a, j) && c != 0.0) {
            coef[n] = c;
            at[n] = (params.chunk_local + al) * params.dim4;
            n += 1u;
        }
    }
    if (n == 0u && params.accumulate == 1u) {
        return;
    }
    let jb = jl * params.dim4;
    for (var q = 0u; q < params.dim4; q++) {
        var acc = vec4<f32>(0.0);
        if (params.accumulate == 1u) {
            acc = grad[jb + q];
        }
        let xj = cols[jb + q];
        for (var k = 0u; k < n; k++) {
            acc += toward(coef[k], xj, rows[at[k] + q]);
        }
        grad[jb + q] = acc;
    }
}

// Workgroup al + 64·g: anchor al of the chunk, vec4s 64g.. of its row (one per lane); Σ over
// the anchor's non-zero weights whose row j lies in the column window, in order.
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
    let base = al * params.stride;
    let end = params.col_start + min(params.window_rows, params.cols - min(params.cols, params.col_start));
    // Continue the running sum in the gradient itself, so that splitting the columns into
    // windows adds the same terms in the same order as one window (the first window of
    // anchors against reference rows starts it: no candidates' sweep wrote their rows).
    var acc = vec4<f32>(0.0);
    if (params.accumulate != 0u) {
        acc = grad[ab + q];
    }
    let count = partials[a].nonzero;
    for (var k = 0u; k < count; k++) {
        let j = nonzero_cols[base + k];
        if (j < params.col_start || j >= end) {
            continue;
        }
        acc += toward(weights[base + j], xa, cols[(j - params.col_start) * params.dim4 + q]);
    }
    grad[ab + q] = acc;
}

// Softmax-contrastive losses (NT-Xent, SupCon, CLIP) over cosine similarities s_ij of rows
// the host has normalised (normalize.wgsl), with logits z_ij = s_ij / τ, computed the way
// the fused research kernels do (Inf-CL): 32×32 tiles of the similarity matrix, an online
// log-sum-exp per row (running maximum and rescaled sum), and a backward pass that
// recomputes the tiles. No B×B buffer exists: the workspace is O(B·D) plus per-row stats.
//
// Row i's "denominator" set and its positives:
//   ntxent  denominator: j with class(j) ≠ class(i); positives: j ≠ i, class(j) = class(i)
//   supcon  denominator: j ≠ i;                       positives: as ntxent
//   clip    rows are A, columns B (or B and A); the classes are the row indices, so the one
//           positive is the matched row and the denominator is every column
// Stages (the host dispatches each once per (row window, column window), src/engine/plan.rs;
// its table of these entry points and bindings is src/losses/softmax/kernels.rs):
//   softmax_stats      per row: max and rescaled sum of exp(z) over the denominator, Σ z
//                      over the positives and their count
//   softmax_positives  ntxent only, per row, with L = log Σ_den exp(z): Σ softplus(L − z_ip)
//                      and W = Σ σ(L − z_ip) over the positives, and their count (skipped
//                      when no row has two positives: softmax_finish does it from Σ z)
//   softmax_finish     per row (one invocation each): log-sum-exp, the loss term, and the
//                      coefficients of dL/dz the backward pass needs (scaled by dL/dterm)
//   softmax_grad       per row: dL/dx̂_i = Σ_j w_ij x̂_j, w_ij = dL/ds_ij (both of s_ij's
//                      owners: rows i and j for one batch; row i of A and column j of B for
//                      clip), and Σ_j dL/dz_ij · z_ij for dL/dτ
// Globals:
//   0 uniform        params     SoftmaxParams
//   1 storage, read  rows       normalised rows of the row window
//   2 storage, read  cols       normalised rows of the column window
//   3 storage, read  row_class  class id per row of the row window
//   4 storage, read  col_class  class id per row of the column window
//   5 storage, rw    stats      SoftmaxStats per row of the row window (stats, positives,
//                               finish)
//   6 storage, read  row_coefs  softmax_grad: the row window's Coefs (see softmax_finish)
//   7 storage, read  col_coefs  softmax_grad: the column window's Coefs
//   8 storage, rw    partials   SoftmaxPartial per row of the row window
//   9 storage, rw    grad       dL/d(rows), row window, row-major f32, padded stride
//  10 storage, rw    dev        device-resident calls: [loss, Σ loss terms, terms (u64 as
//                               lo, hi), dL/dterm, dL/dτ, Σ dL/dz·z, -] (f32 bits, u32)
//  11 storage, rw    coefs      softmax_finish: per row of the row window, what dL/dz needs
//                               of its owner, one vec4 (lse, coef_den, coef_pos, z_ref), so
//                               that the gradient sweep loads it once
// The sweeps here are the pair engine's tile configuration (softmax_rows.wgsl, which
// includes this file, has the register-row one). Workgroups of 8×8 invocations own 32-row
// tiles and walk the column window's tiles; each
// invocation keeps its 4 rows' running values in registers over its 4 columns of every
// tile and the row owner folds the 8 invocations of a row in a fixed order at the end.
// No atomics: bitwise deterministic. Every pair is evaluated; nothing is skipped.
// Shared pieces: common/distance, reduce, smooth, tile, tile_classes, tile_grad.

// Keep in sync with `SoftmaxParams` in src/losses/softmax/kernels.rs.
struct SoftmaxParams {
    rows: u32,
    dim4: u32,
    distance: u32, // DIST_DOT (read by tile.wgsl)
    family: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    side: u32, // clip: 0 rows are A (finish writes the partial, grad adds dτ terms), 1 B
    device: u32, // 1: dL/dterm comes from dev[4] (counted on the device), not `scale`
    last: u32,   // softmax_count, softmax_loss: the last row window
    single_positive: u32, // ntxent: no row has two positives; softmax_positives did not run
    inv_temp: f32,
    scale: f32, // dL/dterm
    _pad3: f32,
    _pad4: f32,
}

// Keep in sync with `SoftmaxLoss::family` in src/losses/softmax/kernels.rs.
const FAMILY_NTXENT: u32 = 0u;
const FAMILY_SUPCON: u32 = 1u;
const FAMILY_CLIP: u32 = 2u;

// Keep in sync with `SoftmaxStats` in src/losses/softmax/kernels.rs.
struct SoftmaxStats {
    max: f32,       // running maximum of the denominator's logits
    sum: f32,       // Σ exp(z − max) over the denominator (0: empty)
    pos: f32,       // Σ z over the positives; ntxent after softmax_positives: Σ softplus
    pos_n: u32,     // positives
    lse: f32,       // finish: max + log(sum), or 0 for an empty denominator
    coef_den: f32,  // finish: dL/dz_ij = coef_den · exp(z_ij − lse) over the denominator
    coef_pos: f32,  //         minus coef_pos (ntxent: coef_pos · σ(lse − z_ij)) per positive
    weight: f32,    // ntxent: W = Σ σ(lse − z_ip) over the positives
}

// Keep in sync with `SoftmaxPartial` in src/losses/softmax/kernels.rs.
struct SoftmaxPartial {
    loss: f32,      // the row's loss term(s), before dL/dterm
    loss_b: f32,    // clip: the term of row i of B
    grad_tau: f32,  // Σ_j dL/dz_ij · z_ij over the row (each pair once)
    terms: u32,
}

const LOW: f32 = -3.0e38; // below every logit (|z| ≤ 1e4 for τ ≥ 1e-4)

@group(0) @binding(0) var<uniform> params: SoftmaxParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> row_class: array<u32>;
@group(0) @binding(4) var<storage, read> col_class: array<u32>;
@group(0) @binding(5) var<storage, read_write> stats: array<SoftmaxStats>;
@group(0) @binding(6) var<storage, read> row_coefs: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> col_coefs: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> partials: array<SoftmaxPartial>;
@group(0) @binding(9) var<storage, read_write> grad: array<f32>;
@group(0) @binding(10) var<storage, read_write> dev: array<u32>;
@group(0) @binding(11) var<storage, read_write> coefs: array<vec4<f32>>;

var<workgroup> red_s: array<vec4<f32>, 256>; // [row][tx] per-invocation running values
var<workgroup> cnt_s: array<u32, 256>;       // [row][tx] per-invocation counts
// w_s (common/tile_grad.wgsl): dL/ds of the tile.

// A running log-sum-exp: exp sums rescaled to the running maximum.
struct Lse {
    m: f32,
    s: f32,
}

// One exp per value: the larger of (m, v) becomes the maximum.
fn lse_push(a: Lse, v: f32) -> Lse {
    let d = v - a.m;
    let e = exp(-abs(d));
    if (d > 0.0) {
        return Lse(v, a.s * e + 1.0);
    }
    return Lse(a.m, a.s + e);
}

fn lse_merge(a: Lse, b: Lse) -> Lse {
    if (b.s == 0.0) {
        return a;
    }
    if (a.s == 0.0) {
        return b;
    }
    let m = max(a.m, b.m);
    return Lse(m, a.s * exp(a.m - m) + b.s * exp(b.m - m));
}

// The pair (i, j)'s role for row i: x denominator, y positive.
fn roles(i: u32, ci: u32, j: u32, cj: u32) -> vec2<bool> {
    if (i >= params.rows || j >= params.rows) {
        return vec2<bool>(false);
    }
    if (params.family == FAMILY_CLIP) {
        return vec2<bool>(true, ci == cj);
    }
    let same = ci == cj;
    if (params.family == FAMILY_NTXENT) {
        return vec2<bool>(!same, same && i != j);
    }
    return vec2<bool>(i != j, same && i != j);
}

// ---- softmax_stats ----

struct RowRun {
    l: Lse,
    pos: f32,
    n: u32,
}

fn run_push(a: RowRun, local: u32, ci: u32, s: vec4<f32>, tc: Cols) -> RowRun {
    let i = params.row_start + local;
    var out = a;
    for (var c = 0u; c < 4u; c++) {
        let z = s[c] * params.inv_temp;
        let r = roles(i, ci, tc.index[c], tc.ids[c]);
        if (r.x) {
            out.l = lse_push(out.l, z);
        }
        if (r.y) {
            out.pos += z;
            out.n += 1u;
        }
    }
    return out;
}

fn put_run(row: u32, tx: u32, a: RowRun) {
    red_s[row * 8u + tx] = vec4<f32>(a.l.m, a.l.s, a.pos, 0.0);
    cnt_s[row * 8u + tx] = a.n;
}

@compute @workgroup_size(8, 8)
fn softmax_stats(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tx = lid3.x;
    let ty = lid3.y;
    let row_base = wg.x * TILE;
    let empty = RowRun(Lse(LOW, 0.0), 0.0, 0u);
    var a0 = empty;
    var a1 = empty;
    var a2 = empty;
    var a3 = empty;
    let l0 = row_base + ty;
    let rc = tile_row_classes(l0);
    let n_tiles = tiles_in_window(params.col_start);
    for (var jt = 0u; jt < n_tiles; jt++) {
        let s = block_distances(row_base, jt * TILE, ty, tx);
        let tc = tile_cols(jt * TILE, tx);
        a0 = run_push(a0, l0, rc.x, s.r0, tc);
        a1 = run_push(a1, l0 + 8u, rc.y, s.r1, tc);
        a2 = run_push(a2, l0 + 16u, rc.z, s.r2, tc);
        a3 = run_push(a3, l0 + 24u, rc.w, s.r3, tc);
    }
    put_run(ty, tx, a0);
    put_run(ty + 8u, tx, a1);
    put_run(ty + 16u, tx, a2);
    put_run(ty + 24u, tx, a3);
    workgroupBarrier();
    let local = row_base + lid;
    if (lid >= TILE || params.row_start + local >= params.rows) {
        return;
    }
    var st = SoftmaxStats(LOW, 0.0, 0.0, 0u, 0.0, 0.0, 0.0, 0.0);
    if (params.accumulate != 0u) {
        st = stats[local];
    }
    var l = Lse(st.max, st.sum);
    for (var t = 0u; t < 8u; t++) {
        let v = red_s[lid * 8u + t];
        l = lse_merge(l, Lse(v.x, v.y));
        st.pos += v.z;
        st.pos_n += cnt_s[lid * 8u + t];
    }
    st.max = l.m;
    st.sum = l.s;
    stats[local] = st;
}

// ---- softmax_positives (ntxent) ----

// log Σ_den exp(z) of row `local` from its running stats; `valid` false when empty.
struct Den {
    lse: f32,
    valid: bool,
}

fn den_of(local: u32) -> Den {
    let st = stats[min(local, arrayLength(&stats) - 1u)];
    if (st.sum > 0.0) {
        return Den(st.max + log(st.sum), true);
    }
    return Den(0.0, false);
}

struct PosRun {
    loss: f32, // Σ softplus(L − z)
    w: f32,    // Σ σ(L − z)
    n: u32,    // positives
}

fn pos_push(a: PosRun, local: u32, ci: u32, den: Den, s: vec4<f32>, tc: Cols) -> PosRun {
    let i = params.row_start + local;
    var out = a;
    for (var c = 0u; c < 4u; c++) {
        let r = roles(i, ci, tc.index[c], tc.ids[c]);
        if (r.y) {
            if (den.valid) {
                let u = den.lse - s[c] * params.inv_temp;
                out.loss += softplus(u);
                out.w += sigmoid(u);
            }
            out.n += 1u;
        }
    }
    return out;
}

fn put_pos(row: u32, tx: u32, a: PosRun) {
    red_s[row * 8u + tx] = vec4<f32>(a.loss, a.w, 0.0, 0.0);
    cnt_s[row * 8u + tx] = a.n;
}

@compute @workgroup_size(8, 8)
fn softmax_positives(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tx = lid3.x;
    let ty = lid3.y;
    let row_base = wg.x * TILE;
    let l0 = row_base + ty;
    let rc = tile_row_classes(l0);
    let d0 = den_of(l0);
    let d1 = den_of(l0 + 8u);
    let d2 = den_of(l0 + 16u);
    let d3 = den_of(l0 + 24u);
    let zero = PosRun(0.0, 0.0, 0u);
    var a0 = zero;
    var a1 = zero;
    var a2 = zero;
    var a3 = zero;
    let n_tiles = tiles_in_window(params.col_start);
    for (var jt = 0u; jt < n_tiles; jt++) {
        let s = block_distances(row_base, jt * TILE, ty, tx);
        let tc = tile_cols(jt * TILE, tx);
        a0 = pos_push(a0, l0, rc.x, d0, s.r0, tc);
        a1 = pos_push(a1, l0 + 8u, rc.y, d1, s.r1, tc);
        a2 = pos_push(a2, l0 + 16u, rc.z, d2, s.r2, tc);
        a3 = pos_push(a3, l0 + 24u, rc.w, d3, s.r3, tc);
    }
    put_pos(ty, tx, a0);
    put_pos(ty + 8u, tx, a1);
    put_pos(ty + 16u, tx, a2);
    put_pos(ty + 24u, tx, a3);
    workgroupBarrier();
    let local = row_base + lid;
    if (lid >= TILE || params.row_start + local >= params.rows) {
        return;
    }
    var run = PosRun(0.0, 0.0, 0u);
    for (var t = 0u; t < 8u; t++) {
        let v = red_s[lid * 8u + t];
        run.loss += v.x;
        run.w += v.y;
        run.n += cnt_s[lid * 8u + t];
    }
    store_positives(local, run);
}

// Adds a row's positives' sums into its statistics (replacing the statistics sweep's Σ z
// and count in the first column window).
fn store_positives(local: u32, run: PosRun) {
    var st = stats[local];
    if (params.accumulate == 0u) {
        st.pos = 0.0;
        st.weight = 0.0;
        st.pos_n = 0u;
    }
    st.pos += run.loss;
    st.weight += run.w;
    st.pos_n += run.n;
    stats[local] = st;
}

// ---- softmax_count, softmax_finish, softmax_loss ----

// Terms row `st` contributes: its positive pairs (ntxent), 1 if it has a positive (supcon),
// 1 (clip, rows of A).
fn row_terms(st: SoftmaxStats) -> u32 {
    if (params.family == FAMILY_NTXENT) {
        return st.pos_n;
    }
    if (params.family == FAMILY_SUPCON) {
        return select(0u, 1u, st.pos_n > 0u);
    }
    return 1u;
}

// Device-resident calls: sums one window's terms into dev[2..3] (u64, a fixed tree); the
// last window writes dL/dterm = 1/terms (0 for none) into dev[4].
@compute @workgroup_size(64)
fn softmax_count(@builtin(local_invocation_index) lid: u32) {
    var acc = Count64(vec4<u32>(0u), vec4<u32>(0u));
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        acc = count64_add(acc, Count64(vec4<u32>(row_terms(stats[r]), 0u, 0u, 0u), vec4<u32>(0u)));
    }
    var total = tree_count64(lid, acc);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total = count64_add(total, Count64(vec4<u32>(dev[2], 0u, 0u, 0u), vec4<u32>(dev[3], 0u, 0u, 0u)));
    }
    dev[2] = total.lo.x;
    dev[3] = total.hi.x;
    if (params.last != 0u) {
        let terms = count64_to_f32(total.lo.x, total.hi.x);
        dev[4] = bitcast<u32>(select(0.0, 1.0 / terms, terms > 0.0));
    }
}

// Device-resident calls: sums one window's loss terms and Σ dL/dz·z into dev[1] and dev[6]
// (a fixed tree); the last window writes the loss (dev[0]) and dL/dτ (dev[5]).
@compute @workgroup_size(64)
fn softmax_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        acc += vec2<f32>(p.loss + p.loss_b, p.grad_tau);
    }
    var total = tree_sum2(lid, acc);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += vec2<f32>(bitcast<f32>(dev[1]), bitcast<f32>(dev[6]));
    }
    dev[1] = bitcast<u32>(total.x);
    dev[6] = bitcast<u32>(total.y);
    if (params.last != 0u) {
        var loss = total.x * bitcast<f32>(dev[4]);
        if (params.family == FAMILY_CLIP) {
            loss *= 0.5;
        }
        dev[0] = bitcast<u32>(loss);
        dev[5] = bitcast<u32>(-total.y * params.inv_temp);
    }
}

// dL/dterm: from the host, or counted on the device (softmax_count).
fn term_scale() -> f32 {
    if (params.device != 0u) {
        return bitcast<f32>(dev[4]);
    }
    return params.scale;
}

@compute @workgroup_size(64)
fn softmax_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= params.window_rows || params.row_start + local >= params.rows) {
        return;
    }
    var st = stats[local];
    st.lse = 0.0;
    if (st.sum > 0.0) {
        st.lse = st.max + log(st.sum);
    }
    var loss = 0.0;
    let terms = row_terms(st);
    let scale = term_scale();
    st.coef_den = 0.0;
    st.coef_pos = 0.0;
    if (params.family == FAMILY_NTXENT) {
        if (params.single_positive != 0u) {
            // What softmax_positives would have summed: Σ z over one positive is its logit.
            let one = st.pos_n == 1u && st.sum > 0.0;
            let u = st.lse - st.pos;
            st.pos = select(0.0, softplus(u), one);
            st.weight = select(0.0, sigmoid(u), one);
        }
        loss = st.pos;
        st.coef_den = scale * st.weight;
        if (st.sum > 0.0) {
            st.coef_pos = scale;
        }
    } else if (params.family == FAMILY_SUPCON) {
        if (st.pos_n > 0u) {
            loss = st.lse - st.pos / f32(st.pos_n);
            st.coef_den = scale;
            st.coef_pos = scale / f32(st.pos_n);
        }
    } else {
        loss = st.lse - st.pos;
        st.coef_den = 0.5 * scale;
        st.coef_pos = 0.5 * scale;
    }
    stats[local] = st;
    // The reference logit of dL/dτ's terms (tau_term): the denominator's largest, an actual
    // logit, so tied logits give exact zeros; 0 for an empty denominator.
    coefs[local] = vec4<f32>(st.lse, st.coef_den, st.coef_pos, select(0.0, st.max, st.sum > 0.0));
    if (params.side == 0u) {
        partials[local] = SoftmaxPartial(loss, 0.0, 0.0, terms);
    } else {
        partials[local].loss_b = loss;
    }
}

// ---- softmax_grad ----

// What dL/dz_ij needs of its owner (row i, or column j seen as an anchor): its log-sum-exp
// and the two coefficients; for a column tile, one component per column.
struct Coefs {
    lse: vec4<f32>,
    den: vec4<f32>,
    pos: vec4<f32>,
    zref: vec4<f32>, // each owner's reference logit for dL/dτ (tau_term)
}

fn coefs_of(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> Coefs {
    return Coefs(
        vec4<f32>(a.x, b.x, c.x, d.x),
        vec4<f32>(a.y, b.y, c.y, d.y),
        vec4<f32>(a.z, b.z, c.z, d.z),
        vec4<f32>(a.w, b.w, c.w, d.w),
    );
}

// The finished coefficients of the row window's rows `l0 + 8r` (clamped into the binding).
fn row_coefs_at(l0: u32) -> Coefs {
    let n = arrayLength(&row_coefs) - 1u;
    return coefs_of(
        row_coefs[min(l0, n)], row_coefs[min(l0 + 8u, n)],
        row_coefs[min(l0 + 16u, n)], row_coefs[min(l0 + 24u, n)],
    );
}

// The finished coefficients of the invocation's 4 columns of a tile.
fn col_coefs_at(tc: Cols) -> Coefs {
    let n = arrayLength(&col_coefs) - 1u;
    return coefs_of(
        col_coefs[min(tc.local.x, n)], col_coefs[min(tc.local.y, n)],
        col_coefs[min(tc.local.z, n)], col_coefs[min(tc.local.w, n)],
    );
}

// dL/dz_ij of an owner with (lse, den, pos) for a pair with roles `r` (0 outside its
// denominator and positives).
fn coef(lse: f32, den: f32, pos: f32, z: f32, r: vec2<bool>) -> f32 {
    var g = 0.0;
    if (r.x) {
        g = den * exp(min(z - lse, 0.0));
    }
    if (r.y) {
        if (params.family == FAMILY_NTXENT) {
            g -= pos * sigmoid(lse - z);
        } else {
            g -= pos;
        }
    }
    return g;
}

// One owner's dL/dz · z for dL/dτ, as dL/dz · (z − zref): each owner's dL/dz sum to 0 over
// its pairs, so the total is the same, but no term carries the logits' size (up to 1/τ),
// whose rounding would not cancel: at τ = 1e-4 with tied logits the plain form read
// 2·10⁴ where the exact value is 0.
fn tau_term(g: f32, z: f32, zref: f32) -> f32 {
    return g * (z - zref);
}

// Row weights dL/ds_ij against the invocation's 4 columns, and the row's Σ dL/dz · z over
// them (each pair once).
struct RowW {
    w: vec4<f32>,
    tau: f32,
}

fn row_weights(local: u32, ci: u32, own: vec4<f32>, s: vec4<f32>, tc: Cols, cc: Coefs) -> RowW {
    let i = params.row_start + local;
    var out = RowW(vec4<f32>(0.0), 0.0);
    for (var c = 0u; c < 4u; c++) {
        let z = s[c] * params.inv_temp;
        let r = roles(i, ci, tc.index[c], tc.ids[c]);
        if (r.x || r.y) {
            // The pair's other owner: row j of the batch, or column j of B for clip. The
            // classes are symmetric, so the roles are the same seen from j.
            let gi = coef(own.x, own.y, own.z, z, r);
            let gj = coef(cc.lse[c], cc.den[c], cc.pos[c], z, r);
            out.w[c] = (gi + gj) * params.inv_temp;
            out.tau += tau_term(gi, z, own.w) + tau_term(gj, z, cc.zref[c]);
        }
    }
    if (params.family != FAMILY_CLIP) {
        out.tau *= 0.5; // the batch sees every pair twice, as (i, j) and as (j, i)
    }
    return out;
}

// Rows of up to SMALL_DIM4 vec4s (D <= 16) take the register path: each invocation adds its
// 4×4 block's w_ij x̂_j into its own 4 rows' sums, with no barrier per tile, and the 8
// invocations of a row are folded in order at the end. Wider rows share each tile's
// weights through w_s (common/tile_grad.wgsl). Each path gives every value the same
// additions in the same order on every run.
const SMALL_DIM4: u32 = 4u;
var<private> g_small: array<vec4<f32>, 16>;       // [q * 4 + r]

// Adds the block's w_ij x̂_j into the invocation's 4 rows (w0..w3: rows ty + 8r, one
// component per column tx + 8c), one vec4 of the columns at a time.
fn add_small(w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, col_base: u32, tx: u32) {
    let n = params.dim4;
    let c0 = (col_base + tx) * n;
    for (var q = 0u; q < SMALL_DIM4; q++) {
        if (q < n) {
            let v0 = cols[c0 + q];
            let v1 = cols[c0 + 8u * n + q];
            let v2 = cols[c0 + 16u * n + q];
            let v3 = cols[c0 + 24u * n + q];
            g_small[q * 4u] += w0.x * v0 + w0.y * v1 + w0.z * v2 + w0.w * v3;
            g_small[q * 4u + 1u] += w1.x * v0 + w1.y * v1 + w1.z * v2 + w1.w * v3;
            g_small[q * 4u + 2u] += w2.x * v0 + w2.y * v1 + w2.z * v2 + w2.w * v3;
            g_small[q * 4u + 3u] += w3.x * v0 + w3.y * v1 + w3.z * v2 + w3.w * v3;
        }
    }
}

@compute @workgroup_size(8, 8)
fn softmax_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tx = lid3.x;
    let ty = lid3.y;
    let row_base = wg.x * TILE;
    let l0 = row_base + ty;
    let rc = tile_row_classes(l0);
    let own = row_coefs_at(l0);
    let small = params.dim4 <= SMALL_DIM4;
    let chunks = grad_chunks();
    for (var k = 0u; k < 16u; k++) {
        g_small[k] = vec4<f32>(0.0);
    }
    if (!small) {
        tile_grad_begin(row_base, ty, tx);
    }
    var tau = vec4<f32>(0.0); // the invocation's 4 rows' Σ dL/dz · z
    let n_tiles = tiles_in_window(params.col_start);
    for (var jt = 0u; jt < n_tiles; jt++) {
        let col_base = jt * TILE;
        let s = block_distances(row_base, col_base, ty, tx);
        let tc = tile_cols(col_base, tx);
        let cc = col_coefs_at(tc);
        let w0 = row_weights(l0, rc.x, vec4<f32>(own.lse.x, own.den.x, own.pos.x, own.zref.x), s.r0, tc, cc);
        let w1 = row_weights(l0 + 8u, rc.y, vec4<f32>(own.lse.y, own.den.y, own.pos.y, own.zref.y), s.r1, tc, cc);
        let w2 = row_weights(l0 + 16u, rc.z, vec4<f32>(own.lse.z, own.den.z, own.pos.z, own.zref.z), s.r2, tc, cc);
        let w3 = row_weights(l0 + 24u, rc.w, vec4<f32>(own.lse.w, own.den.w, own.pos.w, own.zref.w), s.r3, tc, cc);
        tau += vec4<f32>(w0.tau, w1.tau, w2.tau, w3.tau);
        if (small) {
            add_small(w0.w, w1.w, w2.w, w3.w, col_base, tx);
        } else {
            for (var c = 0u; c < 4u; c++) {
                w_s[ty * TILE + tx + 8u * c] = w0.w[c];
                w_s[(ty + 8u) * TILE + tx + 8u * c] = w1.w[c];
                w_s[(ty + 16u) * TILE + tx + 8u * c] = w2.w[c];
                w_s[(ty + 24u) * TILE + tx + 8u * c] = w3.w[c];
            }
            workgroupBarrier();
            let first = jt == 0u && params.accumulate == 0u;
            let none = vec4<f32>(0.0);
            for (var ch = 0u; ch < chunks; ch++) {
                let g = tile_grad_chunk(col_base, ty, ch * KC4 + tx, false, Block(none, none, none, none));
                tile_grad_keep(g, row_base, ty, tx, ch, first);
            }
            workgroupBarrier();
        }
    }
    if (small) {
        // The row owner adds the 8 invocations' sums of each vec4, tx in order.
        for (var q = 0u; q < SMALL_DIM4; q++) {
            if (q < params.dim4) {
                for (var r = 0u; r < 4u; r++) {
                    red_s[(ty + 8u * r) * 8u + tx] = g_small[q * 4u + r];
                }
                workgroupBarrier();
                if (lid < TILE) {
                    var g = red_s[lid * 8u];
                    for (var t = 1u; t < 8u; t++) {
                        g += red_s[lid * 8u + t];
                    }
                    store_grad(lid, g, row_base, q, params.accumulate == 0u);
                }
                workgroupBarrier();
            }
        }
    } else {
        tile_grad_end(row_base, ty, tx);
    }
    red_s[ty * 8u + tx] = vec4<f32>(tau.x, 0.0, 0.0, 0.0);
    red_s[(ty + 8u) * 8u + tx] = vec4<f32>(tau.y, 0.0, 0.0, 0.0);
    red_s[(ty + 16u) * 8u + tx] = vec4<f32>(tau.z, 0.0, 0.0, 0.0);
    red_s[(ty + 24u) * 8u + tx] = vec4<f32>(tau.w, 0.0, 0.0, 0.0);
    workgroupBarrier();
    let local = row_base + lid;
    if (lid >= TILE || params.row_start + local >= params.rows || params.side != 0u) {
        return;
    }
    var acc = 0.0;
    if (params.accumulate != 0u) {
        acc = partials[local].grad_tau;
    }
    for (var t = 0u; t < 8u; t++) {
        acc += red_s[lid * 8u + t].x;
    }
    partials[local].grad_tau = acc;
}

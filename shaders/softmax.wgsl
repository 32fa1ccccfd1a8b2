// Softmax-contrastive losses (NT-Xent, SupCon, CLIP) over cosine similarities s_ij of rows
// the host has normalised (normalize.wgsl), with logits z_ij = s_ij / τ, computed the way
// the fused research kernels do (Inf-CL): the similarity matrix swept on the pair engine,
// an online log-sum-exp per row (running maximum and rescaled sum), and a backward pass
// that recomputes it. No B×B buffer exists: the workspace is O(B·D) plus per-row stats.
//
// Row i's "denominator" set and its positives:
//   ntxent  denominator: j with class(j) ≠ class(i); positives: j ≠ i, class(j) = class(i)
//   supcon  denominator: j ≠ i;                       positives: as ntxent
//   clip    rows are A, columns B (or B and A); the classes are the row indices, so the one
//           positive is the matched row and the denominator is every column
// Stages (the host dispatches each sweep once per (row window, column window),
// src/engine/plan.rs; its table of these entry points and bindings is
// src/losses/softmax/kernels.rs). The sweeps are softmax_rows.wgsl's maps on the pair
// engine (that file includes this one); the rest is here.
//   softmax_rows_stats per row: max and rescaled sum of exp(z) over the denominator, Σ z
//                      over the positives and their count
//   softmax_rows_positives  ntxent only, per row, with L = log Σ_den exp(z): Σ softplus(L − z_ip)
//                      and W = Σ σ(L − z_ip) over the positives, and their count (skipped
//                      when no row has two positives: softmax_finish does it from Σ z)
//   softmax_finish     per row (one invocation each): log-sum-exp, the loss term, and the
//                      coefficients of dL/dz the backward pass needs (scaled by dL/dterm)
//   softmax_rows_grad  per row: dL/dx̂_i = Σ_j w_ij x̂_j, w_ij = dL/ds_ij (both of s_ij's
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
//   6 storage, read  row_coefs  softmax_rows_grad: the row window's coefficients (softmax_finish)
//   7 storage, read  col_coefs  softmax_rows_grad: the column window's coefficients
//   8 storage, rw    partials   SoftmaxPartial per row of the row window
//   9 storage, rw    grad       dL/d(rows), row window, row-major f32, padded stride
//  10 storage, rw    dev        device-resident calls: [loss, Σ loss terms, terms (u64 as
//                               lo, hi), dL/dterm, dL/dτ, Σ dL/dz·z, -] (f32 bits, u32)
//  11 storage, rw    coefs      softmax_finish: per row of the row window, what dL/dz needs
//                               of its owner, one vec4 (log Σ exp(z − m), coef_den, coef_pos, m), so
//                               that the gradient sweep loads it once
// Each row's values are added in column order by the one invocation that owns it. No
// atomics: bitwise deterministic. Every pair is evaluated; nothing is skipped.
// Shared pieces: common/distance, reduce, smooth, logsumexp.

// Keep in sync with `SoftmaxParams` in src/losses/softmax/kernels.rs.
struct SoftmaxParams {
    rows: u32,
    dim4: u32,
    cols: u32, // rows of the column side (keys may outnumber anchors)
    family: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    side: u32, // clip: 0 rows are A (finish writes the partial, grad adds dτ terms), 1 B
    device: u32, // 1: dL/dterm comes from dev[4] (counted on the device), not `scale`
    last: u32,   // softmax_count, softmax_loss: the last row window
    single_positive: u32, // ntxent: no row has two positives; softmax_rows_positives did not run
    inv_temp: f32,
    scale: f32, // dL/dterm
    symmetric: u32, // clip/infonce: 1 with the reverse term (CE over the anchors per key)
    pairing: u32, // PAIRING_*: how the rows meet the columns
    offset: u32,  // PAIRING_REFERENCE_HAS_QUERIES: the queries' first row among the references
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Keep in sync with `Pairing` in src/losses/softmax/steps.rs. ntxent/supcon against a
// reference set (queries as rows, references as columns, and back for the references'
// gradient): every pair exists, but a query with its own row (reference offset + i) when the
// queries are among the references; in a batch the rows meet themselves: no pair (i, i),
// and every pair is seen from both of its rows.
const PAIRING_REFERENCE: u32 = 0u;
const PAIRING_REFERENCE_HAS_QUERIES: u32 = 1u;
const PAIRING_BATCH: u32 = 2u;

// Keep in sync with `SoftmaxLoss::family` in src/losses/softmax/kernels.rs.
const FAMILY_NTXENT: u32 = 0u;
const FAMILY_SUPCON: u32 = 1u;
const FAMILY_CLIP: u32 = 2u;

// Keep in sync with `SoftmaxStats` in src/losses/softmax/kernels.rs.
struct SoftmaxStats {
    max: f32,       // running maximum of the denominator's logits (LOW: empty)
    sum: f32,       // Σ exp(z − max) over the denominator but its maximum (see Lse)
    pos: f32,       // Σ z over the positives; ntxent after the positives sweep: Σ softplus
    pos_n: u32,     // positives
    lse: f32,       // finish: max + log(1 + sum), or 0 for an empty denominator
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

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

// The pair (i, j)'s role for row i: x denominator, y positive. For clip/infonce the
// positive is the matched index and a key sharing the anchor's label is no negative (the
// labels are the indices when none are given); the roles read the same from either owner.
fn roles(i: u32, ci: u32, j: u32, cj: u32) -> vec2<bool> {
    if (i >= params.rows || j >= params.cols) {
        return vec2<bool>(false);
    }
    if (params.family == FAMILY_CLIP) {
        return vec2<bool>(i == j || ci != cj, i == j);
    }
    let same = ci == cj;
    // A query's own row: reference offset + query (the queries are the rows of side 0).
    let own = select(i + params.offset == j, j + params.offset == i, params.side != 0u);
    let other = !own || params.pairing == PAIRING_REFERENCE;
    if (params.family == FAMILY_NTXENT) {
        return vec2<bool>(!same, same && other);
    }
    return vec2<bool>(other, same && other);
}

// ---- the statistics sweep (map lse) ----

struct RowRun {
    l: Lse,
    pos: f32,
    n: u32,
}

// ---- the positives sweep (map positives, ntxent) ----

// log Σ_den exp(z) of row `local` from its running stats, kept as its two parts (the
// largest logit m and log Σ exp(z − m)): L − z is formed as (m − z) + log Σ, exact in m − z
// where z is near m, so a small term near saturation keeps its digits; `valid` false when
// empty.
struct Den {
    max: f32,
    logsum: f32,
    valid: bool,
}

fn den_of(local: u32) -> Den {
    let st = stats[min(local, arrayLength(&stats) - 1u)];
    if (st.max > LOW) {
        return Den(st.max, log_1p(st.sum), true);
    }
    return Den(0.0, 0.0, false);
}

struct PosRun {
    loss: f32, // Σ softplus(L − z)
    w: f32,    // Σ σ(L − z)
    n: u32,    // positives
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
// 1 (clip/infonce, rows of A: each has its matched key).
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
        if (params.family == FAMILY_CLIP && params.symmetric != 0u) {
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
    // The rows of side 1 have no terms (the references of ntxent/supcon; clip/infonce keys
    // but with the reverse term and a matched anchor, key index < params.cols): their
    // statistics were not swept, and they only give zero coefficients to the gradient sweeps.
    let keyed = params.family == FAMILY_CLIP && params.symmetric != 0u
        && params.row_start + local < params.cols;
    if (params.side != 0u && !keyed) {
        coefs[local] = vec4<f32>(0.0);
        return;
    }
    var st = stats[local];
    // The log-sum-exp in its two parts (see Den): every L − z below is (m − z) + log Σ.
    let any = st.max > LOW;
    let logsum = select(0.0, log_1p(st.sum), any);
    st.lse = select(0.0, st.max + logsum, any);
    var loss = 0.0;
    let terms = row_terms(st);
    let scale = term_scale();
    st.coef_den = 0.0;
    st.coef_pos = 0.0;
    if (params.family == FAMILY_NTXENT) {
        if (params.single_positive != 0u) {
            // What the positives sweep would have summed: Σ z over one positive is its logit.
            let one = st.pos_n == 1u && any;
            let u = (st.max - st.pos) + logsum;
            st.pos = select(0.0, softplus(u), one);
            st.weight = select(0.0, sigmoid(u), one);
        }
        loss = st.pos;
        st.coef_den = scale * st.weight;
        if (any) {
            st.coef_pos = scale;
        }
    } else if (params.family == FAMILY_SUPCON) {
        if (st.pos_n > 0u) {
            loss = (st.max - st.pos / f32(st.pos_n)) + logsum;
            st.coef_den = scale;
            st.coef_pos = scale / f32(st.pos_n);
        }
    } else {
        // clip/infonce: an anchor's term, or a matched key's reverse term; each half of a
        // symmetric loss weighs 1/2.
        loss = (st.max - st.pos) + logsum;
        let half = select(1.0, 0.5, params.symmetric != 0u);
        st.coef_den = half * scale;
        st.coef_pos = half * scale;
    }
    stats[local] = st;
    // The denominator's largest logit: the reference of dL/dτ's terms (tau_term; an actual
    // logit, so tied logits give exact zeros) and of the softmax weights (coef); 0 for an
    // empty denominator.
    coefs[local] = vec4<f32>(logsum, st.coef_den, st.coef_pos, select(0.0, st.max, any));
    if (params.side == 0u) {
        partials[local] = SoftmaxPartial(loss, 0.0, 0.0, terms);
    } else {
        partials[local].loss_b = loss;
    }
}

// ---- the gradient sweep (map weights) ----

// dL/dz_ij of an owner with coefficients c = (log Σ, den, pos, m) for a pair with roles
// `r` (0 outside its denominator and positives); z − L is formed as (z − m) − log Σ (see
// Den).
fn coef(c: vec4<f32>, z: f32, r: vec2<bool>) -> f32 {
    let below = (z - c.w) - c.x; // z − L
    var g = 0.0;
    if (r.x) {
        g = c.y * exp(min(below, 0.0));
    }
    if (r.y) {
        if (params.family == FAMILY_NTXENT) {
            g -= c.z * sigmoid(-below);
        } else {
            g -= c.z;
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

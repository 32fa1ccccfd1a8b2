// The pair-weighting losses, Multi-Similarity (Wang et al. 2019) and Circle (Sun et al.
// 2020) as pytorch-metric-learning computes them, on a labelled batch: over cosine
// similarities s_ij of rows the host has normalised (normalize.wgsl), each anchor i has its
// positives P_i (j ≠ i, same label) and negatives N_i (other label) and two log-sum-exps
// over logits of their similarities:
//   multi-similarity  u = −α(s − λ) over P_i, v = β(s − λ) over N_i (with the miner, only
//                     positives with s − ε < max over N_i of s, negatives with
//                     s + ε > min over P_i of s); L_i = (1/α)·log(1 + Σ e^u) +
//                     (1/β)·log(1 + Σ e^v); the loss is their mean over the B anchors (0
//                     when at most one positive and one negative pair are left: PML's rule)
//   circle            u = −γ·[1 + m − s]₊·(s − (1 − m)) over P_i, v = γ·[s + m]₊·(s − m)
//                     over N_i; L_i = softplus(LSE u + LSE v) for anchors with both (and
//                     LSE u + LSE v above ln 2⁻¹²⁶, where an f32 term is non-zero); the loss
//                     is the mean over those anchors (PML's AvgNonZeroReducer); the weights
//                     [·]₊ are constants of the gradient
// Stages (the host dispatches each sweep once per (row window, column window),
// src/engine/plan.rs; its table of these entry points is src/losses/weighting/kernels.rs).
// The sweeps are weighting_rows.wgsl's maps on the pair engine (that file includes this one).
//   weighting_rows_bounds  multi-similarity with the miner: per row, the largest negative
//                          and the smallest positive similarity
//   weighting_rows_lse     per row: the running log-sum-exps of its (mined) positives'
//                          and negatives' logits, and their counts
//   weighting_count        per window, one workgroup: the pairs and counted anchors into
//                          dev (fixed tree); the last window writes dL/dterm (dev[7])
//   weighting_finish       per row: its term and counts (partials), and the coefficients
//                          the gradient needs of it (coefs)
//   weighting_rows_grad    per row: dL/dx̂_i = Σ_j W_ij x̂_j, W_ij = dL/ds_ij from both
//                          owners' coefficients (s_ij = s_ji)
//   weighting_loss         device-resident calls: the window's terms into dev (fixed tree)
// Globals:
//   0 uniform        params     WeightingParams
//   1 storage, read  rows       normalised rows of the row window
//   2 storage, read  cols       normalised rows of the column window
//   3 storage, read  row_class  class id per row of the row window
//   4 storage, read  col_class  class id per row of the column window
//   5 storage, rw    stats      WeightingStats per row of the row window
//   6 storage, read  row_coefs  weighting_rows_grad: the row window's coefficients
//   7 storage, read  col_coefs  weighting_rows_grad: the column window's coefficients
//   8 storage, rw    partials   WeightingPartial per row of the row window
//   9 storage, rw    grad       dL/d(rows), row window, row-major f32, padded stride
//  10 storage, rw    dev        [loss, Σ terms, positive pairs (lo, hi), negative pairs
//                               (lo, hi), counted anchors, dL/dterm] (f32 bits, u32)
//  11 storage, rw    coefs      weighting_finish: per row of the row window, one vec4:
//                               multi-similarity (log(1 + Σ e^u), log(1 + Σ e^v), the
//                               miner's bounds); circle (LSE u, LSE v, σ(LSE u + LSE v)
//                               for a counted anchor else 0, 0)
//  12 storage, read  totals     weighting_rows_grad: dev, for dL/dterm
// Each row's values are added in column order by the one invocation that owns it. No
// float atomics: bitwise deterministic. Every pair is evaluated; nothing is skipped.
// Shared pieces: common/reduce, smooth, logsumexp.

// Keep in sync with `WeightingParams` in src/losses/weighting/kernels.rs.
struct WeightingParams {
    rows: u32,
    dim4: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    last: u32,      // weighting_count, weighting_loss: the last row window
    loss: u32,      // LOSS_*
    mine: u32,      // multi-similarity: 1 with the miner
    _pad0: u32,
    alpha: f32,
    beta: f32,
    base: f32,      // λ
    epsilon: f32,   // the miner's ε
    margin: f32,    // circle's m
    gamma: f32,
}

// Keep in sync with `Weighting::kernel_code` in src/losses/weighting/mod.rs.
const LOSS_MULTI_SIMILARITY: u32 = 0u;
const LOSS_CIRCLE: u32 = 1u;

// Keep in sync with `CIRCLE_FLOOR` in src/losses/weighting/mod.rs: ln 2⁻¹²⁶.
const CIRCLE_FLOOR: f32 = -87.33654;

const HIGH: f32 = 3.0e38;

// Keep in sync with `WeightingStats` in src/losses/weighting/kernels.rs.
struct WeightingStats {
    max_neg: f32, // the largest negative similarity (LOW: none)
    min_pos: f32, // the smallest positive similarity (HIGH: none)
    pos_m: f32,   // the positives' running log-sum-exp (Lse)
    pos_s: f32,
    neg_m: f32,   // the negatives'
    neg_s: f32,
    n_pos: u32,   // (mined) positives
    n_neg: u32,   // (mined) negatives
}

// Keep in sync with `WeightingPartial` in src/losses/weighting/kernels.rs.
struct WeightingPartial {
    loss: f32,      // the row's term, before dL/dterm
    positives: u32,
    negatives: u32,
    counted: u32,   // 1 when the row is one of the anchors the mean is over
}

@group(0) @binding(0) var<uniform> params: WeightingParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> row_class: array<u32>;
@group(0) @binding(4) var<storage, read> col_class: array<u32>;
@group(0) @binding(5) var<storage, read_write> stats: array<WeightingStats>;
@group(0) @binding(6) var<storage, read> row_coefs: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> col_coefs: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> partials: array<WeightingPartial>;
@group(0) @binding(9) var<storage, read_write> grad: array<f32>;
@group(0) @binding(10) var<storage, read_write> dev: array<u32>;
@group(0) @binding(11) var<storage, read_write> coefs: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> totals: array<u32>;

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

// The pair's logit in its owner's log-sum-exp.
fn pair_logit(positive: bool, s: f32) -> f32 {
    if (params.loss == LOSS_CIRCLE) {
        if (positive) {
            return -params.gamma * max(1.0 + params.margin - s, 0.0) * (s - (1.0 - params.margin));
        }
        return params.gamma * max(s + params.margin, 0.0) * (s - params.margin);
    }
    if (positive) {
        return -params.alpha * (s - params.base);
    }
    return params.beta * (s - params.base);
}

// Whether the miner keeps the pair for an owner with bounds (max_neg, min_pos) (always
// without the miner).
fn mined(positive: bool, s: f32, max_neg: f32, min_pos: f32) -> bool {
    if (params.mine == 0u) {
        return true;
    }
    if (positive) {
        return s - params.epsilon < max_neg;
    }
    return s + params.epsilon > min_pos;
}

// Whether a row's stats make it a counted anchor, and its LSEs (0 for an empty set).
fn row_lses(st: WeightingStats) -> vec2<f32> {
    let lp = select(st.pos_m + log_1p(st.pos_s), 0.0, st.n_pos == 0u);
    let ln = select(st.neg_m + log_1p(st.neg_s), 0.0, st.n_neg == 0u);
    return vec2<f32>(lp, ln);
}

fn counted(st: WeightingStats) -> bool {
    if (params.loss == LOSS_MULTI_SIMILARITY) {
        return true;
    }
    let l = row_lses(st);
    return st.n_pos > 0u && st.n_neg > 0u && l.x + l.y > CIRCLE_FLOOR;
}

@compute @workgroup_size(64)
fn weighting_count(@builtin(local_invocation_index) lid: u32) {
    var acc = Count64(vec4<u32>(0u), vec4<u32>(0u));
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let st = stats[r];
        let one = Count64(vec4<u32>(st.n_pos, st.n_neg, select(0u, 1u, counted(st)), 0u), vec4<u32>(0u));
        acc = count64_add(acc, one);
    }
    var total = tree_count64(lid, acc);
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        let before = Count64(vec4<u32>(dev[2], dev[4], dev[6], 0u), vec4<u32>(dev[3], dev[5], 0u, 0u));
        total = count64_add(total, before);
    }
    dev[2] = total.lo.x;
    dev[3] = total.hi.x;
    dev[4] = total.lo.y;
    dev[5] = total.hi.y;
    dev[6] = total.lo.z;
    if (params.last != 0u) {
        let anchors = f32(total.lo.z);
        var scale = select(0.0, 1.0 / anchors, anchors > 0.0);
        // PML returns 0 when at most one positive and one negative pair are left.
        let few = total.hi.x == 0u && total.lo.x <= 1u && total.hi.y == 0u && total.lo.y <= 1u;
        if (params.loss == LOSS_MULTI_SIMILARITY && few) {
            scale = 0.0;
        }
        dev[7] = bitcast<u32>(scale);
    }
}

@compute @workgroup_size(64)
fn weighting_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= params.window_rows || params.row_start + local >= params.rows) {
        return;
    }
    let st = stats[local];
    let l = row_lses(st);
    let on = counted(st);
    var term = 0.0;
    var c = vec4<f32>(0.0);
    if (params.loss == LOSS_MULTI_SIMILARITY) {
        // log(1 + Σ e^u) = softplus(LSE u); 0 for an empty set.
        let l1p = select(softplus(l.x), 0.0, st.n_pos == 0u);
        let l1n = select(softplus(l.y), 0.0, st.n_neg == 0u);
        term = l1p / params.alpha + l1n / params.beta;
        c = vec4<f32>(l1p, l1n, st.max_neg, st.min_pos);
    } else if (on) {
        term = softplus(l.x + l.y);
        c = vec4<f32>(l.x, l.y, sigmoid(l.x + l.y), 0.0);
    }
    partials[local] = WeightingPartial(term, st.n_pos, st.n_neg, select(0u, 1u, on));
    coefs[local] = c;
}

// Device-resident calls: adds one window's terms into dev[1] (a fixed tree); the last
// window writes the loss (dev[0]).
@compute @workgroup_size(64)
fn weighting_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        acc.x += partials[r].loss;
    }
    var total = tree_sum2(lid, acc).x;
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += bitcast<f32>(dev[1]);
    }
    dev[1] = bitcast<u32>(total);
    if (params.last != 0u) {
        dev[0] = bitcast<u32>(total * bitcast<f32>(dev[7]));
    }
}

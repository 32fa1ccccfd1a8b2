// The class-proxy losses, ArcFace (Deng et al. 2019), CosFace (Wang et al. 2018) and
// sub-center ArcFace (Deng et al. 2020), as pytorch-metric-learning computes them: queries X
// (B rows, labels y_i < C) against the class weights W (C·K rows, rows jK .. jK + K − 1
// class j's sub-centres), both normalised by the host (normalize.wgsl), c_ij = max over
// class j's sub-centres k of x̂_i·ŵ_jk (K = 1: x̂_i·ŵ_j). Query i's logits are z_ij = s·c_ij
// for j ≠ y_i and z_iy = s·ψ(c_iy) for its class:
//   arcface  ψ(c) = cos(θ + m) = c·cos m − sin θ·sin m while θ ≤ π − m (c ≥ −cos m), else
//            c − m·sin m (PML's monotonic continuation); ψ′(c) = cos m + c·sin m / sin θ,
//            sin θ = √((1 − c)(1 + c)) floored at SIN_FLOOR, else 1
//   cosface  ψ(c) = c − m, ψ′ = 1
// and L_i = log Σ_j e^(z_ij) − z_iy, the mean over the B queries. dL/dc_ij = (p_ij − [j = y_i])
// · dz_ij/dc_ij / B, p the softmax of row i, all of it to the winning sub-centre (the first
// largest). Nothing B×C exists: the log-sum-exp runs online over W's windows, and two
// gradient sweeps recompute c (queries against W for dL/dX, W against the queries for
// dL/dW). The plan's windows hold whole classes (src/losses/proxy/steps.rs).
// Stages (the host dispatches each sweep once per (row window, column window),
// src/engine/plan.rs; its table of these entry points is src/losses/proxy/kernels.rs). The
// sweeps are proxy_rows.wgsl's maps on the pair engine (that file includes this one).
//   proxy_rows_lse   queries as rows: the running log-sum-exp of the logits and the target's
//                    cosine
//   proxy_finish     per query: its term (partials) and coefficients (coefs)
//   proxy_rows_grad  side 0 (queries as rows): dL/dx̂_i = Σ_j W_ij ŵ_j from the row's own
//                    coefficients; side 1 (W as rows, the queries as columns): dL/dŵ_j =
//                    Σ_i W_ij x̂_i from the columns' coefficients
//   proxy_loss       device-resident calls: the window's terms and queries without a
//                    class into dev (fixed trees)
// Globals:
//   0 uniform        params     ProxyParams
//   1 storage, read  rows       normalised rows of the row window
//   2 storage, read  cols       normalised rows of the column window
//   3 storage, read  row_class  class id per row of the row window (W's rows: their index,
//                               class index·K + sub-centre)
//   4 storage, read  col_class  class id per row of the column window
//   5 storage, rw    stats      ProxyStats per query of the row window
//   6 storage, read  row_coefs  proxy_rows_grad side 0: the row window's coefficients
//   7 storage, read  col_coefs  proxy_rows_grad side 1: the column window's coefficients
//   8 storage, rw    partials   ProxyPartial per query of the row window
//   9 storage, rw    grad       dL/d(rows), row window, row-major f32, padded stride
//  10 storage, rw    dev        device-resident calls: [loss, Σ terms, -, queries without
//                               a class, ...] (f32 bits, u32)
//  11 storage, rw    coefs      proxy_finish: per query, (log Σ e^z, s·ψ(c_iy), s·ψ′(c_iy),
//                               1 when it has a class), each with dL/dterm folded in where
//                               it multiplies
// Each row's values are added in column order by the one invocation that owns it. No
// float atomics: bitwise deterministic. Every pair is evaluated; nothing is skipped.
// Shared pieces: common/reduce, logsumexp.

// Keep in sync with `ProxyParams` in src/losses/proxy/kernels.rs.
struct ProxyParams {
    rows: u32,
    dim4: u32,
    cols: u32,        // rows of the column side
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    side: u32,        // 0: the rows are the queries, 1: W's rows
    last: u32,        // proxy_loss: the last row window
    loss: u32,        // LOSS_*
    scale: f32,       // s
    margin: f32,      // m (ArcFace: radians)
    cos_m: f32,
    sin_m: f32,
    inv_b: f32,       // dL/dterm, 1/B
    sub_centers: u32, // K, W's rows per class
}

// Keep in sync with `Proxy::kernel_code` in src/losses/proxy/mod.rs.
const LOSS_ARCFACE: u32 = 0u;
const LOSS_COSFACE: u32 = 1u;

// No class (a sub-centre sweep before its first column).
const NO_CLASS: u32 = 0xffffffffu;

// Keep in sync with `SIN_FLOOR` in src/losses/proxy/mod.rs.
const SIN_FLOOR: f32 = 1e-4;

// Keep in sync with `ProxyStats` in src/losses/proxy/kernels.rs.
struct ProxyStats {
    m: f32,        // the running log-sum-exp (Lse)
    s: f32,
    cos_own: f32,  // c_iy, the cosine with its class's weights
    found: u32,    // 1 once its class's column was visited
}

// Keep in sync with `ProxyPartial` in src/losses/proxy/kernels.rs.
struct ProxyPartial {
    loss: f32,     // the query's term, before dL/dterm
    found: u32,    // 1 when its label names a class
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: ProxyParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> row_class: array<u32>;
@group(0) @binding(4) var<storage, read> col_class: array<u32>;
@group(0) @binding(5) var<storage, read_write> stats: array<ProxyStats>;
@group(0) @binding(6) var<storage, read> row_coefs: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> col_coefs: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> partials: array<ProxyPartial>;
@group(0) @binding(9) var<storage, read_write> grad: array<f32>;
@group(0) @binding(10) var<storage, read_write> dev: array<u32>;
@group(0) @binding(11) var<storage, read_write> coefs: array<vec4<f32>>;

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

// ψ(c): the target's cosine with the margin.
fn with_margin(c: f32) -> f32 {
    if (params.loss == LOSS_COSFACE) {
        return c - params.margin;
    }
    if (c >= -params.cos_m) {
        let sin_t = sqrt(max((1.0 - c) * (1.0 + c), 0.0));
        return c * params.cos_m - sin_t * params.sin_m;
    }
    return c - params.margin * params.sin_m;
}

// ψ′(c), with sin θ floored at SIN_FLOOR (finite for a row on its class's weights).
fn margin_slope(c: f32) -> f32 {
    if (params.loss == LOSS_COSFACE || c < -params.cos_m) {
        return 1.0;
    }
    let sin_t = max(sqrt(max((1.0 - c) * (1.0 + c), 0.0)), SIN_FLOOR);
    return params.cos_m + c * params.sin_m / sin_t;
}

@compute @workgroup_size(64)
fn proxy_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (local >= params.window_rows || params.row_start + local >= params.rows) {
        return;
    }
    let st = stats[local];
    let lse = st.m + log_1p(st.s);
    let found = st.found != 0u;
    let zt = select(0.0, params.scale * with_margin(st.cos_own), found);
    let term = select(0.0, lse - zt, found);
    partials[local] = ProxyPartial(term, st.found, 0u, 0u);
    coefs[local] = vec4<f32>(lse, zt, params.scale * margin_slope(st.cos_own), select(0.0, 1.0, found));
}

// Device-resident calls: adds one window's terms into dev[1] and its queries without a class
// into dev[3] (fixed trees); the last window writes the loss (dev[0]).
@compute @workgroup_size(64)
fn proxy_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    var missing = Count64(vec4<u32>(0u), vec4<u32>(0u));
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        acc.x += p.loss;
        missing = count64_add(missing, Count64(vec4<u32>(1u - p.found, 0u, 0u, 0u), vec4<u32>(0u)));
    }
    var total = tree_sum2(lid, acc).x;
    var lost = tree_count64(lid, missing).lo.x;
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += bitcast<f32>(dev[1]);
        lost += dev[3];
    }
    dev[1] = bitcast<u32>(total);
    dev[3] = lost;
    if (params.last != 0u) {
        dev[0] = bitcast<u32>(total * params.inv_b);
    }
}

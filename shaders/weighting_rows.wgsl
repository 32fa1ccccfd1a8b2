// The pair-weighting losses' sweeps on the pair engine (either shape, dot form): this file
// is their elementwise maps over S = X̂_I·X̂_Jᵀ; weighting.wgsl, whose declarations,
// bindings and reductions are included before this file, documents the stages. The host's
// table of these entry points is src/losses/weighting/kernels.rs.
//   map bounds   weighting_rows_bounds: the largest negative and smallest positive s
//   map lse      weighting_rows_lse: the (mined) positives' and negatives' log-sum-exps
//   map weights  weighting_rows_grad: W_ij = dL/ds_ij from both owners' coefficients
// A row's values are added in column order by the one invocation that owns it.

fn weighting_columns() -> vec2<u32> {
    return vec2<u32>(0u, min(params.window_rows, params.rows - min(params.rows, params.col_start)));
}

// The stats a row starts a column window with: its earlier windows', or empty.
fn stats_before(l: u32) -> WeightingStats {
    if (params.accumulate != 0u && rows_live(l)) {
        return stats[l];
    }
    return WeightingStats(LOW, HIGH, LOW, 0.0, LOW, 0.0, 0u, 0u);
}

// ---- map bounds ----

struct bounds_ctx {
    unused: u32,
}

struct bounds_row {
    i: u32,
    ci: u32,
    max_neg: f32,
    min_pos: f32,
}

fn bounds_columns(row_base: u32, ctx: bounds_ctx) -> vec2<u32> {
    return weighting_columns();
}

fn bounds_begin(l: u32, live: bool, ctx: bounds_ctx) -> bounds_row {
    return bounds_row(params.row_start + l, row_class_at(l), LOW, HIGH);
}

fn bounds_visit(st: ptr<function, bounds_row>, jl: u32, s: f32, ctx: bounds_ctx) -> f32 {
    if (col_class[jl] != (*st).ci) {
        (*st).max_neg = max((*st).max_neg, s);
    } else if (params.col_start + jl != (*st).i) {
        (*st).min_pos = min((*st).min_pos, s);
    }
    return 0.0;
}

fn bounds_end(st: ptr<function, bounds_row>, l: u32, ctx: bounds_ctx) {
    if (!rows_live(l)) {
        return;
    }
    var out = stats_before(l);
    out.max_neg = max(out.max_neg, (*st).max_neg);
    out.min_pos = min(out.min_pos, (*st).min_pos);
    stats[l] = out;
}

// ---- map lse ----

struct lse_ctx {
    unused: u32,
}

struct lse_row {
    i: u32,
    ci: u32,
    bounds: vec2<f32>, // the miner's (max_neg, min_pos), from the bounds sweep
    pos: Lse,
    neg: Lse,
    n: vec2<u32>,
}

fn lse_columns(row_base: u32, ctx: lse_ctx) -> vec2<u32> {
    return weighting_columns();
}

fn lse_begin(l: u32, live: bool, ctx: lse_ctx) -> lse_row {
    var b = vec2<f32>(LOW, HIGH);
    if (params.mine != 0u && live) {
        let st = stats[l];
        b = vec2<f32>(st.max_neg, st.min_pos);
    }
    return lse_row(params.row_start + l, row_class_at(l), b, Lse(LOW, 0.0), Lse(LOW, 0.0), vec2<u32>(0u));
}

fn lse_visit(st: ptr<function, lse_row>, jl: u32, s: f32, ctx: lse_ctx) -> f32 {
    if (params.col_start + jl == (*st).i) {
        return 0.0;
    }
    let positive = col_class[jl] == (*st).ci;
    if (!mined(positive, s, (*st).bounds.x, (*st).bounds.y)) {
        return 0.0;
    }
    let z = pair_logit(positive, s);
    if (positive) {
        (*st).pos = lse_push((*st).pos, z);
        (*st).n.x += 1u;
    } else {
        (*st).neg = lse_push((*st).neg, z);
        (*st).n.y += 1u;
    }
    return 0.0;
}

fn lse_end(st: ptr<function, lse_row>, l: u32, ctx: lse_ctx) {
    if (!rows_live(l)) {
        return;
    }
    var out = stats_before(l);
    if (params.mine != 0u) {
        // The bounds sweep's values, whatever the column window.
        out.max_neg = (*st).bounds.x;
        out.min_pos = (*st).bounds.y;
    }
    let pos = lse_merge(Lse(out.pos_m, out.pos_s), (*st).pos);
    let neg = lse_merge(Lse(out.neg_m, out.neg_s), (*st).neg);
    out.pos_m = pos.m;
    out.pos_s = pos.s;
    out.neg_m = neg.m;
    out.neg_s = neg.s;
    out.n_pos += (*st).n.x;
    out.n_neg += (*st).n.y;
    stats[l] = out;
}

// ---- map weights ----

struct weights_ctx {
    scale: f32, // dL/dterm
}

struct weights_row {
    i: u32,
    ci: u32,
    own: vec4<f32>, // the row's coefficients (weighting_finish)
}

fn weights_columns(row_base: u32, ctx: weights_ctx) -> vec2<u32> {
    return weighting_columns();
}

fn weights_begin(l: u32, live: bool, ctx: weights_ctx) -> weights_row {
    let own = row_coefs[min(l, arrayLength(&row_coefs) - 1u)];
    return weights_row(params.row_start + l, row_class_at(l), own);
}

// dL_owner/ds of a pair from its owner's coefficients `k` (see coefs in weighting.wgsl).
fn pair_coef(k: vec4<f32>, positive: bool, s: f32) -> f32 {
    let z = pair_logit(positive, s);
    if (params.loss == LOSS_CIRCLE) {
        // An anchor left out of the mean: its LSEs are not there to bound exp(z − LSE).
        if (k.z == 0.0) {
            return 0.0;
        }
        if (positive) {
            return -k.z * exp(z - k.x) * params.gamma * max(1.0 + params.margin - s, 0.0);
        }
        return k.z * exp(z - k.y) * params.gamma * max(s + params.margin, 0.0);
    }
    if (!mined(positive, s, k.z, k.w)) {
        return 0.0;
    }
    // d/ds of (1/α)·log(1 + Σ e^u) is −e^(u − log(1 + Σ e^u)); of the negatives' term, +.
    if (positive) {
        return -exp(z - k.x);
    }
    return exp(z - k.y);
}

fn weights_visit(st: ptr<function, weights_row>, jl: u32, s: f32, ctx: weights_ctx) -> f32 {
    if (params.col_start + jl == (*st).i || (*st).i >= params.rows) {
        return 0.0;
    }
    let positive = col_class[jl] == (*st).ci;
    // One vec4 load for the column's owner: a software adapter pays every load per lane.
    let c = col_coefs[jl];
    return ctx.scale * (pair_coef((*st).own, positive, s) + pair_coef(c, positive, s));
}

fn weights_end(st: ptr<function, weights_row>, l: u32, ctx: weights_ctx) {
}

@compute @workgroup_size(64)
fn weighting_rows_bounds(ids: RowsIds) {
    bounds_sweep(ids, bounds_ctx(0u));
}

@compute @workgroup_size(64)
fn weighting_rows_lse(ids: RowsIds) {
    lse_sweep(ids, lse_ctx(0u));
}

@compute @workgroup_size(64)
fn weighting_rows_grad(ids: RowsIds) {
    weights_sweep_grad(ids, weights_ctx(bitcast<f32>(totals[7])));
}

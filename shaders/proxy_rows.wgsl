// The class-proxy losses' sweeps on the pair engine (either shape, dot form): this file is
// their elementwise maps over C = X̂_I·Ŵ_Jᵀ (or Ŵ_I·X̂_Jᵀ for dL/dW); proxy.wgsl, whose
// declarations and bindings are included before this file, documents the stages. The host's
// table of these entry points is src/losses/proxy/kernels.rs.
//   map lse      proxy_rows_lse: each query's running log-sum-exp and its target's cosine
//                (per class, the largest of its K sub-centres' cosines)
//   map weights  proxy_rows_grad: W_ij = dL/dc_ij from the query's coefficients (K = 1)
//   map centres  proxy_rows_centres: the same with K > 1, 0 but for each class's winning
//                sub-centre, found by recomputing the class's K cosines from storage (the
//                engine hands a map one column at a time)
// A row's values are added in column order by the one invocation that owns it.

fn proxy_columns() -> vec2<u32> {
    return vec2<u32>(0u, min(params.window_rows, params.cols - min(params.cols, params.col_start)));
}

// ---- map lse ----

struct lse_ctx {
    unused: u32,
}

struct lse_row {
    ci: u32,
    l: Lse,
    cos_own: f32,
    found: u32,
    open: u32,  // the class whose sub-centres are being visited (NO_CLASS before the first)
    best: f32,  // the largest of their cosines so far
}

fn lse_columns(row_base: u32, ctx: lse_ctx) -> vec2<u32> {
    return proxy_columns();
}

fn lse_begin(l: u32, live: bool, ctx: lse_ctx) -> lse_row {
    return lse_row(row_class_at(l), Lse(LOW, 0.0), 0.0, 0u, NO_CLASS, 0.0);
}

// Pushes the open class's logit, from the largest of its sub-centres' cosines.
fn lse_close(st: ptr<function, lse_row>) {
    if ((*st).open == NO_CLASS) {
        return;
    }
    var z = params.scale * (*st).best;
    if ((*st).open == (*st).ci) {
        z = params.scale * with_margin((*st).best);
        (*st).cos_own = (*st).best;
        (*st).found = 1u;
    }
    (*st).l = lse_push((*st).l, z);
}

// A class's sub-centres are consecutive columns of one window (the plan's windows hold
// whole classes): its logit is pushed when the next class begins, or at the end.
fn lse_visit(st: ptr<function, lse_row>, jl: u32, c: f32, ctx: lse_ctx) -> f32 {
    let g = col_class[jl] / params.sub_centers;
    if (g != (*st).open) {
        lse_close(st);
        (*st).open = g;
        (*st).best = c;
    } else {
        (*st).best = max((*st).best, c);
    }
    return 0.0;
}

fn lse_end(st: ptr<function, lse_row>, l: u32, ctx: lse_ctx) {
    lse_close(st);
    if (!rows_live(l)) {
        return;
    }
    var out = ProxyStats(LOW, 0.0, 0.0, 0u);
    if (params.accumulate != 0u) {
        out = stats[l];
    }
    let merged = lse_merge(Lse(out.m, out.s), (*st).l);
    out.m = merged.m;
    out.s = merged.s;
    if ((*st).found != 0u) {
        out.cos_own = (*st).cos_own;
        out.found = 1u;
    }
    stats[l] = out;
}

// ---- map weights ----

struct weights_ctx {
    unused: u32,
}

struct weights_row {
    ci: u32,
    own: vec4<f32>, // side 0: the query's coefficients
}

fn weights_columns(row_base: u32, ctx: weights_ctx) -> vec2<u32> {
    return proxy_columns();
}

fn weights_begin(l: u32, live: bool, ctx: weights_ctx) -> weights_row {
    var own = vec4<f32>(0.0);
    if (params.side == 0u) {
        own = row_coefs[min(l, arrayLength(&row_coefs) - 1u)];
    }
    return weights_row(row_class_at(l), own);
}

// dL/dc of a (query, class) pair from the query's coefficients k, target or not.
fn pair_weight(k: vec4<f32>, own_class: bool, c: f32) -> f32 {
    if (k.w == 0.0) {
        return 0.0; // a query without a class has no term
    }
    if (own_class) {
        return (exp(k.y - k.x) - 1.0) * k.z * params.inv_b;
    }
    return exp(params.scale * c - k.x) * params.scale * params.inv_b;
}

fn weights_visit(st: ptr<function, weights_row>, jl: u32, c: f32, ctx: weights_ctx) -> f32 {
    let own_class = col_class[jl] == (*st).ci;
    if (params.side == 0u) {
        return pair_weight((*st).own, own_class, c);
    }
    return pair_weight(col_coefs[jl], own_class, c);
}

fn weights_end(st: ptr<function, weights_row>, l: u32, ctx: weights_ctx) {
}

// ---- map centres ----
// K > 1 (a map of its own: lavapipe runs a branch's loops even where no invocation takes
// it, and they count against its loop budget, so K = 1 keeps the loop-free map above).

struct centres_ctx {
    unused: u32,
}

struct centres_row {
    ci: u32,        // the query's class (side 0) or the W row's (side 1)
    own: vec4<f32>, // side 0: the query's coefficients
    l: u32,
    live: bool,
    open: u32,      // side 0: the class whose winner is known (NO_CLASS: none)
    win: u32,       // its winning sub-centre's window column
    best: f32,      // the winner's cosine
}

fn centres_columns(row_base: u32, ctx: centres_ctx) -> vec2<u32> {
    return proxy_columns();
}

fn centres_begin(l: u32, live: bool, ctx: centres_ctx) -> centres_row {
    var own = vec4<f32>(0.0);
    var ci = row_class_at(l);
    if (params.side == 0u) {
        own = row_coefs[min(l, arrayLength(&row_coefs) - 1u)];
    } else {
        ci = ci / params.sub_centers;
    }
    return centres_row(ci, own, l, live, NO_CLASS, 0u, 0.0);
}

// Sub-centres: vec4 t of the query row q and of W row w, whichever side holds them.
fn query_at(q: u32, t: u32) -> vec4<f32> {
    if (params.side == 0u) {
        return rows[q * params.dim4 + t];
    }
    return cols[q * params.dim4 + t];
}

fn centre_at(w: u32, t: u32) -> vec4<f32> {
    if (params.side == 0u) {
        return cols[w * params.dim4 + t];
    }
    return rows[w * params.dim4 + t];
}

fn centre_dots(q: vec4<f32>, w: vec4<u32>, t: u32) -> vec4<f32> {
    return vec4<f32>(
        dot(q, centre_at(w.x, t)),
        dot(q, centre_at(w.y, t)),
        dot(q, centre_at(w.z, t)),
        dot(q, centre_at(w.w, t)),
    );
}

// The cosines of query q with W rows w0 .. w0 + 4 (the lanes from w0 + n on repeat the last),
// read back from storage in one pass over the dims, four vec4s an iteration and the rest
// unrolled (lavapipe's loop budget counts iterations): both gradient sweeps run this same
// code on the same values, so they find the same cosines and the same winner.
fn centre_cosines(q: u32, w0: u32, n: u32) -> vec4<f32> {
    let w = vec4<u32>(w0, w0 + min(1u, n - 1u), w0 + min(2u, n - 1u), w0 + min(3u, n - 1u));
    var acc = vec4<f32>(0.0);
    let whole = params.dim4 / 4u * 4u;
    for (var t = 0u; t < whole; t += 4u) {
        acc += centre_dots(query_at(q, t), w, t);
        acc += centre_dots(query_at(q, t + 1u), w, t + 1u);
        acc += centre_dots(query_at(q, t + 2u), w, t + 2u);
        acc += centre_dots(query_at(q, t + 3u), w, t + 3u);
    }
    if (whole < params.dim4) {
        acc += centre_dots(query_at(q, whole), w, whole);
    }
    if (whole + 1u < params.dim4) {
        acc += centre_dots(query_at(q, whole + 1u), w, whole + 1u);
    }
    if (whole + 2u < params.dim4) {
        acc += centre_dots(query_at(q, whole + 2u), w, whole + 2u);
    }
    return acc;
}

struct Winner {
    index: u32, // W's window row
    cos: f32,
}

// Lane k of block c (W rows w0 + k) if it is a sub-centre (k < n) and beats the winner so far.
fn centre_take(best: Winner, c: vec4<f32>, k: u32, n: u32, w0: u32) -> Winner {
    if (k < n && c[k] > best.cos) {
        return Winner(w0 + k, c[k]);
    }
    return best;
}

// The winner (the first largest) of query q's cosines with W rows first .. first + K.
fn centre_winner(q: u32, first: u32) -> Winner {
    var best = Winner(first, -3.0); // below every cosine: lane 0 wins the first block
    for (var k0 = 0u; k0 < params.sub_centers; k0 += 4u) {
        let n = min(4u, params.sub_centers - k0);
        let c = centre_cosines(q, first + k0, n);
        best = centre_take(best, c, 0u, n, first + k0);
        best = centre_take(best, c, 1u, n, first + k0);
        best = centre_take(best, c, 2u, n, first + k0);
        best = centre_take(best, c, 3u, n, first + k0);
    }
    return best;
}

fn centres_visit(st: ptr<function, centres_row>, jl: u32, c: f32, ctx: centres_ctx) -> f32 {
    let k = params.sub_centers;
    if (!(*st).live) {
        return 0.0;
    }
    if (params.side == 0u) {
        let g = col_class[jl] / k;
        if (g != (*st).open) {
            // The class's first column: its winner among the window's next K columns.
            let found = centre_winner((*st).l, jl - col_class[jl] % k);
            (*st).open = g;
            (*st).win = found.index;
            (*st).best = found.cos;
        }
        if (jl != (*st).win) {
            return 0.0;
        }
        return pair_weight((*st).own, g == (*st).ci, (*st).best);
    }
    // W row l is sub-centre l % K of its class: whether it wins for query jl.
    let found = centre_winner(jl, (*st).l - row_class_at((*st).l) % k);
    if (found.index != (*st).l) {
        return 0.0;
    }
    return pair_weight(col_coefs[jl], col_class[jl] == (*st).ci, found.cos);
}

fn centres_end(st: ptr<function, centres_row>, l: u32, ctx: centres_ctx) {
}

@compute @workgroup_size(64)
fn proxy_rows_lse(ids: RowsIds) {
    lse_sweep(ids, lse_ctx(0u));
}

@compute @workgroup_size(64)
fn proxy_rows_grad(ids: RowsIds) {
    weights_sweep_grad(ids, weights_ctx(0u));
}

@compute @workgroup_size(64)
fn proxy_rows_centres(ids: RowsIds) {
    centres_sweep_grad(ids, centres_ctx(0u));
}

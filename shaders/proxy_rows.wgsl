// The class-proxy losses' sweeps on the pair engine (either shape, dot form): this file is
// their elementwise maps over C = X̂_I·Ŵ_Jᵀ (or Ŵ_I·X̂_Jᵀ for dL/dW); proxy.wgsl, whose
// declarations and bindings are included before this file, documents the stages. The host's
// table of these entry points is src/losses/proxy/kernels.rs.
//   map lse      proxy_rows_lse: each query's running log-sum-exp and its target's cosine
//   map weights  proxy_rows_grad: W_ij = dL/dc_ij from the query's coefficients
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
}

fn lse_columns(row_base: u32, ctx: lse_ctx) -> vec2<u32> {
    return proxy_columns();
}

fn lse_begin(l: u32, live: bool, ctx: lse_ctx) -> lse_row {
    return lse_row(row_class_at(l), Lse(LOW, 0.0), 0.0, 0u);
}

fn lse_visit(st: ptr<function, lse_row>, jl: u32, c: f32, ctx: lse_ctx) -> f32 {
    var z = params.scale * c;
    if (col_class[jl] == (*st).ci) {
        z = params.scale * with_margin(c);
        (*st).cos_own = c;
        (*st).found = 1u;
    }
    (*st).l = lse_push((*st).l, z);
    return 0.0;
}

fn lse_end(st: ptr<function, lse_row>, l: u32, ctx: lse_ctx) {
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

@compute @workgroup_size(64)
fn proxy_rows_lse(ids: RowsIds) {
    lse_sweep(ids, lse_ctx(0u));
}

@compute @workgroup_size(64)
fn proxy_rows_grad(ids: RowsIds) {
    weights_sweep_grad(ids, weights_ctx(0u));
}

// The softmax-contrastive losses' sweeps on the pair engine (either shape, dot form): this
// file is their elementwise maps over S = X̂_I·X̂_Jᵀ; softmax.wgsl, whose declarations,
// bindings and reductions are included before this file, documents the stages. The host's
// table of these entry points is src/losses/softmax/kernels.rs.
//   map lse        softmax_rows_stats: the running log-sum-exp over the denominator, Σ z
//                  over the positives and their count
//   map positives  softmax_rows_positives (ntxent): Σ softplus(L − z_ip), Σ σ(L − z_ip)
//   map weights    softmax_rows_grad: W_ij = dL/ds_ij from both owners' finished stats, and
//                  Σ_j dL/dz_ij · z_ij for dL/dτ
// A row's values are added in column order by the one invocation that owns it.

// ---- map lse ----

struct lse_ctx {
    unused: u32,
}

struct lse_row {
    i: u32,
    ci: u32,
    run: RowRun,
}

fn lse_columns(row_base: u32, ctx: lse_ctx) -> vec2<u32> {
    return vec2<u32>(0u, min(params.window_rows, params.cols - min(params.cols, params.col_start)));
}

fn lse_begin(l: u32, live: bool, ctx: lse_ctx) -> lse_row {
    return lse_row(params.row_start + l, row_class_at(l), RowRun(Lse(LOW, 0.0), 0.0, 0u));
}

fn lse_visit(st: ptr<function, lse_row>, jl: u32, s: f32, ctx: lse_ctx) -> f32 {
    let z = s * params.inv_temp;
    let r = roles((*st).i, (*st).ci, params.col_start + jl, col_class[jl]);
    if (r.x) {
        (*st).run.l = lse_push((*st).run.l, z);
    }
    if (r.y) {
        (*st).run.pos += z;
        (*st).run.n += 1u;
    }
    return 0.0;
}

fn lse_end(st: ptr<function, lse_row>, l: u32, ctx: lse_ctx) {
    if (!rows_live(l)) {
        return;
    }
    var out = SoftmaxStats(LOW, 0.0, 0.0, 0u, 0.0, 0.0, 0.0, 0.0);
    if (params.accumulate != 0u) {
        out = stats[l];
    }
    let run = (*st).run;
    let merged = lse_merge(Lse(out.max, out.sum), run.l);
    out.max = merged.m;
    out.sum = merged.s;
    out.pos += run.pos;
    out.pos_n += run.n;
    stats[l] = out;
}

// ---- map positives ----

struct positives_ctx {
    unused: u32,
}

struct positives_row {
    i: u32,
    ci: u32,
    den: Den,
    run: PosRun,
}

fn positives_columns(row_base: u32, ctx: positives_ctx) -> vec2<u32> {
    return lse_columns(row_base, lse_ctx(0u));
}

fn positives_begin(l: u32, live: bool, ctx: positives_ctx) -> positives_row {
    return positives_row(params.row_start + l, row_class_at(l), den_of(l), PosRun(0.0, 0.0, 0u));
}

fn positives_visit(st: ptr<function, positives_row>, jl: u32, s: f32, ctx: positives_ctx) -> f32 {
    let r = roles((*st).i, (*st).ci, params.col_start + jl, col_class[jl]);
    if (r.y) {
        if ((*st).den.valid) {
            let u = ((*st).den.max - s * params.inv_temp) + (*st).den.logsum;
            (*st).run.loss += softplus(u);
            (*st).run.w += sigmoid(u);
        }
        (*st).run.n += 1u;
    }
    return 0.0;
}

fn positives_end(st: ptr<function, positives_row>, l: u32, ctx: positives_ctx) {
    if (rows_live(l)) {
        store_positives(l, (*st).run);
    }
}

// ---- map weights ----

struct weights_ctx {
    unused: u32,
}

struct weights_row {
    i: u32,
    ci: u32,
    own: vec4<f32>, // the row's coefficients (log Σ, coef_den, coef_pos, the largest logit)
    tau: f32,       // Σ dL/dz · z
}

fn weights_columns(row_base: u32, ctx: weights_ctx) -> vec2<u32> {
    return lse_columns(row_base, lse_ctx(0u));
}

fn weights_begin(l: u32, live: bool, ctx: weights_ctx) -> weights_row {
    let own = row_coefs[min(l, arrayLength(&row_coefs) - 1u)];
    return weights_row(params.row_start + l, row_class_at(l), own, 0.0);
}

fn weights_visit(st: ptr<function, weights_row>, jl: u32, s: f32, ctx: weights_ctx) -> f32 {
    let z = s * params.inv_temp;
    let r = roles((*st).i, (*st).ci, params.col_start + jl, col_class[jl]);
    if (!(r.x || r.y)) {
        return 0.0;
    }
    // The pair's other owner: row j of the batch, or column j of B for clip. The classes
    // are symmetric, so the roles are the same seen from j.
    // One vec4 load: a software adapter pays every load once per lane.
    let c = col_coefs[jl];
    let own = (*st).own;
    let gi = coef(own, z, r);
    let gj = coef(c, z, r);
    (*st).tau += tau_term(gi, z, own.w) + tau_term(gj, z, c.w);
    return (gi + gj) * params.inv_temp;
}

fn weights_end(st: ptr<function, weights_row>, l: u32, ctx: weights_ctx) {
    if (!rows_live(l) || params.side != 0u) {
        return;
    }
    var tau = (*st).tau;
    if (params.pairing == PAIRING_BATCH) {
        tau *= 0.5; // the batch sees every pair twice, as (i, j) and as (j, i)
    }
    var acc = 0.0;
    if (params.accumulate != 0u) {
        acc = partials[l].grad_tau;
    }
    partials[l].grad_tau = acc + tau;
}

@compute @workgroup_size(64)
fn softmax_rows_stats(ids: RowsIds) {
    lse_sweep(ids, lse_ctx(0u));
}

@compute @workgroup_size(64)
fn softmax_rows_positives(ids: RowsIds) {
    positives_sweep(ids, positives_ctx(0u));
}

@compute @workgroup_size(64)
fn softmax_rows_grad(ids: RowsIds) {
    weights_sweep_grad(ids, weights_ctx(0u));
}

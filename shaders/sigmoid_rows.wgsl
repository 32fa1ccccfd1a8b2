// SigLIP's sweeps on the pair engine (either shape, dot form): this file is the loss's
// elementwise maps over S = Â_I·B̂_Jᵀ (or B̂_I·Â_Jᵀ for B's gradient); sigmoid.wgsl, whose
// declarations and bindings are included before this file, documents the stages. The
// host's table of these entry points is src/losses/sigmoid/kernels.rs.
//   map terms  sigmoid_rows_terms: the loss terms and positives of A's rows
//   map pairs  sigmoid_rows_grad: W_ij = dL/ds_ij, and on A's side the terms and the
//              scalar gradients' sums
// A row's values are added in column order by the one invocation that owns it.

struct SigmoidRun {
    loss: f32,
    grad_scale: f32,
    grad_bias: f32,
    positives: u32,
}

// The pair's loss term, dL/dx (with 1/N) and whether it is positive.
struct SigmoidPair {
    term: f32,
    slope: f32,
    positive: bool,
}

fn sigmoid_pair(ci: u32, jl: u32, s: f32) -> SigmoidPair {
    let positive = col_class[jl] == ci;
    let z = select(-1.0, 1.0, positive);
    let u = -z * fma(params.scale, s, params.bias);
    return SigmoidPair(softplus(u), -z * sigmoid(u) * params.inv_n, positive);
}

fn sigmoid_columns() -> vec2<u32> {
    return vec2<u32>(0u, min(params.window_rows, params.cols - min(params.cols, params.col_start)));
}

// The run with the pair added (by value: naga's SPIR-V writer cannot pass a pointer to a
// field of a pointed-to row state).
fn run_add(run: SigmoidRun, p: SigmoidPair, s: f32) -> SigmoidRun {
    return SigmoidRun(
        run.loss + p.term,
        fma(p.slope * params.scale, s, run.grad_scale),
        run.grad_bias + p.slope,
        run.positives + select(0u, 1u, p.positive),
    );
}

// Writes (or adds to) row l's partial, A's side only.
fn run_store(run: SigmoidRun, l: u32) {
    if (!rows_live(l) || params.side != 0u) {
        return;
    }
    var out = SigmoidPartial(0.0, 0.0, 0.0, 0u);
    if (params.accumulate != 0u) {
        out = partials[l];
    }
    out.loss += run.loss;
    out.grad_scale += run.grad_scale;
    out.grad_bias += run.grad_bias;
    out.positives += run.positives;
    partials[l] = out;
}

// ---- map terms ----

struct terms_ctx {
    unused: u32,
}

struct terms_row {
    ci: u32,
    run: SigmoidRun,
}

fn terms_columns(row_base: u32, ctx: terms_ctx) -> vec2<u32> {
    return sigmoid_columns();
}

fn terms_begin(l: u32, live: bool, ctx: terms_ctx) -> terms_row {
    return terms_row(row_class_at(l), SigmoidRun(0.0, 0.0, 0.0, 0u));
}

fn terms_visit(st: ptr<function, terms_row>, jl: u32, s: f32, ctx: terms_ctx) -> f32 {
    let p = sigmoid_pair((*st).ci, jl, s);
    (*st).run.loss += p.term;
    (*st).run.positives += select(0u, 1u, p.positive);
    return 0.0;
}

fn terms_end(st: ptr<function, terms_row>, l: u32, ctx: terms_ctx) {
    run_store((*st).run, l);
}

// ---- map pairs ----

struct pairs_ctx {
    unused: u32,
}

struct pairs_row {
    ci: u32,
    run: SigmoidRun,
}

fn pairs_columns(row_base: u32, ctx: pairs_ctx) -> vec2<u32> {
    return sigmoid_columns();
}

fn pairs_begin(l: u32, live: bool, ctx: pairs_ctx) -> pairs_row {
    return pairs_row(row_class_at(l), SigmoidRun(0.0, 0.0, 0.0, 0u));
}

fn pairs_visit(st: ptr<function, pairs_row>, jl: u32, s: f32, ctx: pairs_ctx) -> f32 {
    let p = sigmoid_pair((*st).ci, jl, s);
    if (params.side == 0u) {
        (*st).run = run_add((*st).run, p, s);
    }
    return p.slope * params.scale;
}

fn pairs_end(st: ptr<function, pairs_row>, l: u32, ctx: pairs_ctx) {
    run_store((*st).run, l);
}

@compute @workgroup_size(64)
fn sigmoid_rows_terms(ids: RowsIds) {
    terms_sweep(ids, terms_ctx(0u));
}

@compute @workgroup_size(64)
fn sigmoid_rows_grad(ids: RowsIds) {
    pairs_sweep_grad(ids, pairs_ctx(0u));
}

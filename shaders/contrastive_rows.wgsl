// The contrastive loss's batch mode on the pair engine (either shape, map `contrastive`):
// this file is the loss's elementwise map over S (the hinge terms and counts of the pairs
// j > i, and W = dL/dd × the distance's gradient factor over j ≠ i). The
// declarations, bindings and reductions are contrastive.wgsl's, included before this file.
// The host's table of these entry points is src/losses/contrastive/kernels.rs.
// Distances: euclidean and squared euclidean in the difference form; cosine as one minus
// the dot product of rows the host normalised (the dot form, W = −dL/dd).

const PASS_FORWARD: u32 = 0u;
const PASS_BACKWARD: u32 = 1u;
const PASS_FUSED: u32 = 2u;

struct contrastive_ctx {
    stage: u32,
    sc: vec2<f32>, // dL/dterm (similar, dissimilar); 0 in the forward pass
}

struct contrastive_row {
    i: u32,
    ci: u32,
    live: bool,
    acc: RowAcc,
}

// Every column of the window, or for the forward pass of pairs i < j those that can be
// j > i of the workgroup's first row.
fn contrastive_columns(row_base: u32, ctx: contrastive_ctx) -> vec2<u32> {
    let n = min(params.window_rows, params.cols - min(params.cols, params.col_start));
    let upper = params.pairing == PAIRING_BATCH || params.pairing == PAIRING_AGAINST_ITSELF;
    if (ctx.stage == PASS_FORWARD && upper) {
        let first = max(params.row_start + row_base + 1u + params.offset, params.col_start) - params.col_start;
        return vec2<u32>(min(first, n), n);
    }
    return vec2<u32>(0u, n);
}

fn contrastive_begin(l: u32, live: bool, ctx: contrastive_ctx) -> contrastive_row {
    var acc = RowAcc(Kahan(0.0, 0.0), Kahan(0.0, 0.0), vec4<u32>(0u));
    if (live && ctx.stage != PASS_BACKWARD) {
        acc = load_row_acc(l);
    }
    return contrastive_row(params.row_start + l, row_class_at(l), live, acc);
}

fn contrastive_visit(st: ptr<function, contrastive_row>, jl: u32, s: f32, ctx: contrastive_ctx) -> f32 {
    let j = params.col_start + jl;
    let d = dist_finish(params.distance, s);
    let similar = col_class[jl] == (*st).ci;
    let x = hinge_arg(similar, d);
    if (ctx.stage != PASS_BACKWARD) {
        let counted = (*st).live && term_pair((*st).i, j);
        let term = select(0.0, hinge_value(params.hinge, x), counted);
        let on = select(0u, 1u, counted && x > 0.0);
        let pair = select(0u, 1u, counted);
        if (similar) {
            (*st).acc.sim = kahan_add((*st).acc.sim, term);
            (*st).acc.counts += vec4<u32>(pair, 0u, on, 0u);
        } else {
            (*st).acc.dis = kahan_add((*st).acc.dis, term);
            (*st).acc.counts += vec4<u32>(0u, pair, 0u, on);
        }
    }
    if (ctx.stage == PASS_FORWARD || !(*st).live || !grad_pair((*st).i, j)) {
        return 0.0;
    }
    let w = term_slope(similar, d, ctx.sc) * dist_grad_factor(params.distance, d);
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return -w;
    }
    return w;
}

fn contrastive_end(st: ptr<function, contrastive_row>, l: u32, ctx: contrastive_ctx) {
    if ((*st).live && ctx.stage != PASS_BACKWARD) {
        store_row_acc(l, (*st).acc);
    }
}

fn pass_scales() -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(scales[0]), bitcast<f32>(scales[1]));
}

// Loss terms and counts of the pairs i < j between the row window and the column window.
@compute @workgroup_size(64)
fn contrastive_rows_forward(ids: RowsIds) {
    contrastive_sweep(ids, contrastive_ctx(PASS_FORWARD, vec2<f32>(0.0)));
}

// The gradient of the row window's rows over the column window (all j ≠ i).
@compute @workgroup_size(64)
fn contrastive_rows_backward(ids: RowsIds) {
    contrastive_sweep_grad(ids, contrastive_ctx(PASS_BACKWARD, pass_scales()));
}

// The gradient and, in the same sweep, the loss terms and counts (j > i).
@compute @workgroup_size(64)
fn contrastive_rows_fused(ids: RowsIds) {
    contrastive_sweep_grad(ids, contrastive_ctx(PASS_FUSED, pass_scales()));
}

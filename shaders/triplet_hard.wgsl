// Batch-hard, fused, on the pair engine's register-row shape (common/rows.wgsl, map
// `hardest`; its entry points use the register-row helpers themselves, so this module runs
// on register shapes only, and the staged shape mines batch-hard by chunks as the other
// minings). The declarations and bindings are triplet.wgsl's, included before this file;
// the host's table of these entry points is src/losses/triplet/kernels.rs.
// Batch-hard needs no distance matrix: each anchor keeps its farthest positive and nearest
// negative while the engine sweeps the columns in index order (strict comparisons, so ties
// keep the lowest index, as triplet_mine_hard's), across column windows through `picks`.
// triplet_rows_hard_terms then writes each anchor's term, and triplet_rows_hard_grad
// gathers each row's gradient: its own term's pieces, then the anchors that picked it, in
// anchor order (no atomics, no B×B buffer).

struct hardest_ctx {
    unused: u32,
}

struct hardest_row {
    a: u32,
    ca: u32,
    live: bool,
    pick: vec4<u32>, // d(a,p) bits, p, d(a,n) bits, n
}

fn hardest_columns(row_base: u32, ctx: hardest_ctx) -> vec2<u32> {
    return vec2<u32>(0u, min(params.window_rows, params.rows - min(params.rows, params.col_start)));
}

fn hardest_begin(l: u32, live: bool, ctx: hardest_ctx) -> hardest_row {
    let a = params.row_start + l;
    let ac = min(a, params.rows - 1u);
    var pick = vec4<u32>(0u, NONE, 0u, NONE);
    if (live && params.accumulate != 0u) {
        pick = picks[ac];
    }
    return hardest_row(a, classes[ac], live, pick);
}

fn hardest_visit(st: ptr<function, hardest_row>, jl: u32, s: f32, ctx: hardest_ctx) -> f32 {
    let j = params.col_start + jl;
    let d = dist_finish(params.distance, s);
    let p = (*st).pick;
    if (classes[j] == (*st).ca) {
        if (j != (*st).a && (p.y == NONE || d > bitcast<f32>(p.x))) {
            (*st).pick = vec4<u32>(bitcast<u32>(d), j, p.z, p.w);
        }
    } else if (p.w == NONE || d < bitcast<f32>(p.z)) {
        (*st).pick = vec4<u32>(p.x, p.y, bitcast<u32>(d), j);
    }
    return 0.0;
}

fn hardest_end(st: ptr<function, hardest_row>, l: u32, ctx: hardest_ctx) {
    if ((*st).live) {
        picks[(*st).a] = (*st).pick;
    }
}

@compute @workgroup_size(64)
fn triplet_rows_hard(ids: RowsIds) {
    hardest_sweep(ids, hardest_ctx(0u));
}

// One invocation per anchor of the row window: its term and counts, as triplet_mine_hard
// writes them.
@compute @workgroup_size(64)
fn triplet_rows_hard_terms(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = gid.x;
    let a = params.row_start + l;
    if (l >= params.window_rows || a >= params.rows) {
        return;
    }
    let p = picks[a];
    var out = TripletPartial(0.0, 0.0, 0u, 0u, 0u, 0u, 0u, 0u);
    if (p.y != NONE && p.w != NONE) {
        let t = term_of(bitcast<f32>(p.x) - bitcast<f32>(p.z));
        out = TripletPartial(t.value, 0.0, 1u, 0u, select(0u, 1u, t.on), 0u, 0u, 0u);
    }
    partials[a] = out;
}

// dL/dd(a, p) of anchor a's term (0 without one; dL/dd(a, n) is its negative).
fn hard_weight(p: vec4<u32>) -> f32 {
    if (p.y == NONE || p.w == NONE) {
        return 0.0;
    }
    return scales[0] * term_of(bitcast<f32>(p.x) - bitcast<f32>(p.z)).slope;
}

// A coefficient c of ∂d/∂x as rows_axpy takes it: c·(x − v) in the difference form, and
// −c·v for one-minus-dot.
fn hard_coef(c: f32) -> f32 {
    return select(c, -c, params.distance == DIST_ONE_MINUS_DOT);
}

// Row updates a row collects in one scan before it makes them (see hard_grad_row).
const HITS: u32 = 16u;

// The coefficient c of c·(x_j − x_a) that column a contributes to row j: j's own term's
// pieces where a is its positive or negative, and a's term where a picked j.
fn hard_pair_coef(p: vec4<u32>, a: u32, j: u32, live: bool, own: vec4<u32>, own_w: f32) -> f32 {
    var c = 0.0;
    if (own.y == a) {
        c += own_w * dist_grad_factor(params.distance, bitcast<f32>(own.x));
    }
    if (own.w == a) {
        c -= own_w * dist_grad_factor(params.distance, bitcast<f32>(own.z));
    }
    if (live && (p.y == j || p.w == j)) {
        let w = hard_weight(p);
        if (p.y == j) {
            c += w * dist_grad_factor(params.distance, bitcast<f32>(p.x));
        } else {
            c -= w * dist_grad_factor(params.distance, bitcast<f32>(p.z));
        }
    }
    return c;
}

// A row of the gradient sweep: its values, its own picks and weight, its gradient and the
// updates it has collected.
struct HardRow {
    j: u32,
    live: bool,
    n: u32,
    own: vec4<u32>,
    own_w: f32,
    hits: u32,
}

// Column a's coefficients for the invocation's two rows (hard_pair_coef), p its picks.
fn hard_coefs(p: vec4<u32>, a: u32, r0: HardRow, r1: HardRow) -> vec2<f32> {
    return vec2<f32>(
        hard_pair_coef(p, a, r0.j, r0.live, r0.own, r0.own_w),
        hard_pair_coef(p, a, r1.j, r1.live, r1.own, r1.own_w),
    );
}

fn hard_row(l: u32) -> HardRow {
    let live = rows_live(l);
    let j = params.row_start + l;
    var own = vec4<u32>(0u, NONE, 0u, NONE);
    var own_w = 0.0;
    if (live) {
        own = picks[j];
        own_w = hard_weight(own);
    }
    return HardRow(j, live, select(0u, params.dim4, live), own, own_w, 0u);
}

// Every contribution to row j is c·(x_j − x_k) for another row k, taken in the order of k
// (so that splitting the columns into windows keeps the order): j's own term's pieces
// (k = its positive, its negative) and the anchors k that picked j, combined at k. One cheap
// scan of the window's picks collects each row's non-zero c into a short list (a software
// adapter pays a row update under a branch on every iteration, taken or not); the updates
// follow, as many iterations as the longest list. A row with more than HITS updates in a
// window (rare) takes the rest in a second scan, in order.
@compute @workgroup_size(64)
fn triplet_rows_hard_grad(ids: RowsIds) {
    let row_base = ids.wg.x * ROWS_PER_GROUP;
    let l0 = row_base + ids.lid;
    let l1 = l0 + 64u;
    var r0 = hard_row(l0);
    var r1 = hard_row(l1);
    let x0 = rows_read(l0, r0.n);
    let x1 = rows_read(l1, r1.n);
    var g0: RowV;
    var g1: RowV;
    if (params.accumulate != 0u) {
        g0 = rows_grad_read(l0, r0.n);
        g1 = rows_grad_read(l1, r1.n);
    }
    let ncols = min(params.window_rows, params.rows - min(params.rows, params.col_start));
    let c0 = params.col_start;
    var k0: array<u32, HITS>;
    var w0: array<f32, HITS>;
    var k1: array<u32, HITS>;
    var w1: array<f32, HITS>;
    for (var a0 = 0u; a0 < ncols; a0 += RW_LANES) {
        let mine = picks[c0 + min(a0 + rows_lane(ids), ncols - 1u)];
        let count = min(RW_LANES, ncols - a0);
        for (var k = 0u; k < count; k++) {
            let c = hard_coefs(rows_shuffle_u4(mine, k), c0 + a0 + k, r0, r1);
            if (c.x != 0.0) {
                if (r0.hits < HITS) {
                    k0[r0.hits] = a0 + k;
                    w0[r0.hits] = c.x;
                }
                r0.hits += 1u;
            }
            if (c.y != 0.0) {
                if (r1.hits < HITS) {
                    k1[r1.hits] = a0 + k;
                    w1[r1.hits] = c.y;
                }
                r1.hits += 1u;
            }
        }
    }
    for (var h = 0u; h < min(r0.hits, HITS); h++) {
        g0 = rows_axpy(g0, hard_coef(w0[h]), x0, rows_load_col(k0[h]));
    }
    for (var h = 0u; h < min(r1.hits, HITS); h++) {
        g1 = rows_axpy(g1, hard_coef(w1[h]), x1, rows_load_col(k1[h]));
    }
    if (rows_any(r0.hits > HITS || r1.hits > HITS)) {
        var seen = vec2<u32>(0u);
        for (var a0 = 0u; a0 < ncols; a0 += RW_LANES) {
            let mine = picks[c0 + min(a0 + rows_lane(ids), ncols - 1u)];
            let count = min(RW_LANES, ncols - a0);
            for (var k = 0u; k < count; k++) {
                let c = hard_coefs(rows_shuffle_u4(mine, k), c0 + a0 + k, r0, r1);
                if (c.x != 0.0) {
                    if (seen.x >= HITS) {
                        g0 = rows_axpy(g0, hard_coef(c.x), x0, rows_load_col(a0 + k));
                    }
                    seen.x += 1u;
                }
                if (c.y != 0.0) {
                    if (seen.y >= HITS) {
                        g1 = rows_axpy(g1, hard_coef(c.y), x1, rows_load_col(a0 + k));
                    }
                    seen.y += 1u;
                }
            }
        }
    }
    rows_grad_write(l0, r0.n, g0);
    rows_grad_write(l1, r1.n, g1);
}

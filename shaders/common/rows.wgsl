// The pair engine's register-row shape: the all-pairs sweep of a row window against a column
// window, S = X_I·X_Jᵀ (or the squared distances) and, with gradients,
// dX_I = Σ_J W_IJ·(X_I − X_J) (or Σ_J W_IJ·X_J), W in registers. Nothing B×B is stored.
//
// Invocation lid of a 64-invocation workgroup owns rows l0 = 128·wg + lid and l1 = l0 + 64 of
// the row window, holds both (and their gradients) in registers, and walks the columns in
// index order: each column is shared by the subgroup (lane l loads a slice, subgroupBroadcast
// hands it to every lane) or loaded by each invocation, per the generated prelude
// (src/engine/rows.rs: RW4, RowV, RowsIds, rows_read, rows_col, rows_pair, rows_axpy,
// rows_grad_read, rows_grad_write). Every invocation runs every iteration (the broadcasts
// need the whole subgroup); rows past the batch compute on zeros and store nothing.
// Each row's sums are added in column order by one invocation: bitwise deterministic.
//
// A family defines each of its elementwise maps M (a name its module lists, see
// src/engine/shader.rs) as hooks over its own row state and call context; the part of this
// file below the per-map marker is instantiated once per map, MAP_ replaced by M_ (no globals
// are touched here but through the hooks and the prelude):
//   struct MAP_row, struct MAP_ctx
//   fn MAP_columns(row_base: u32, ctx: MAP_ctx) -> vec2<u32>  window-local columns [x, y)
//   fn MAP_begin(l: u32, live: bool, ctx: MAP_ctx) -> MAP_row
//   fn MAP_visit(st: ptr<function, MAP_row>, j: u32, s: f32, ctx: MAP_ctx) -> f32
//       s is S_ij (dot or squared distance); returns W_ij (0 for pairs that do not exist)
//   fn MAP_end(st: ptr<function, MAP_row>, l: u32, ctx: MAP_ctx)
// and gets MAP_sweep (the map alone) and, for a map with a gradient, MAP_sweep_grad (the map
// and the gradient). Globals: `rows` (the held rows), `cols` (the swept columns), `grad`
// (array<f32>, maps with a gradient only) and `params` (fields rows, row_start, window_rows,
// dim4, accumulate).

const ROWS_PER_GROUP: u32 = 128u;

// Row `l` of the row window: live (inside the batch and the window) and its vec4 count.
fn rows_live(l: u32) -> bool {
    return l < params.window_rows && params.row_start + l < params.rows;
}

// ---- per map ----

// The map over the columns, for the rows' states only (no gradient).
fn MAP_sweep(ids: RowsIds, ctx: MAP_ctx) {
    let row_base = ids.wg.x * ROWS_PER_GROUP;
    let l0 = row_base + ids.lid;
    let l1 = l0 + 64u;
    let live0 = rows_live(l0);
    let live1 = rows_live(l1);
    let x0 = rows_read(l0, select(0u, params.dim4, live0));
    let x1 = rows_read(l1, select(0u, params.dim4, live1));
    var s0 = MAP_begin(l0, live0, ctx);
    var s1 = MAP_begin(l1, live1, ctx);
    let span = MAP_columns(row_base, ctx);
    for (var j = span.x; j < span.y; j++) {
        let v = rows_col(j, ids);
        MAP_visit(&s0, j, rows_pair(x0, v), ctx);
        MAP_visit(&s1, j, rows_pair(x1, v), ctx);
    }
    MAP_end(&s0, l0, ctx);
    MAP_end(&s1, l1, ctx);
}

// ---- per map with gradient ----

// The map and the gradient: dX_l += Σ_j W_lj·(x_l − x_j) (difference form) or Σ_j W_lj·x_j
// (dot form), added to the stored rows when params.accumulate is set (a later column
// window), else written.
fn MAP_sweep_grad(ids: RowsIds, ctx: MAP_ctx) {
    let row_base = ids.wg.x * ROWS_PER_GROUP;
    let l0 = row_base + ids.lid;
    let l1 = l0 + 64u;
    let live0 = rows_live(l0);
    let live1 = rows_live(l1);
    let n0 = select(0u, params.dim4, live0);
    let n1 = select(0u, params.dim4, live1);
    let x0 = rows_read(l0, n0);
    let x1 = rows_read(l1, n1);
    var s0 = MAP_begin(l0, live0, ctx);
    var s1 = MAP_begin(l1, live1, ctx);
    var g0: RowV;
    var g1: RowV;
    if (params.accumulate != 0u) {
        g0 = rows_grad_read(l0, n0);
        g1 = rows_grad_read(l1, n1);
    }
    let span = MAP_columns(row_base, ctx);
    for (var j = span.x; j < span.y; j++) {
        let v = rows_col(j, ids);
        let w0 = MAP_visit(&s0, j, rows_pair(x0, v), ctx);
        let w1 = MAP_visit(&s1, j, rows_pair(x1, v), ctx);
        g0 = rows_axpy(g0, w0, x0, v);
        g1 = rows_axpy(g1, w1, x1, v);
    }
    MAP_end(&s0, l0, ctx);
    MAP_end(&s1, l1, ctx);
    rows_grad_write(l0, n0, g0);
    rows_grad_write(l1, n1, g1);
}

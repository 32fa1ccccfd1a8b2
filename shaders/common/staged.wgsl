// The pair engine's staged shape (EngineConfig::Tile, and rows wider than the register
// shape holds): the all-pairs sweep of a row window against a column window as tile GEMMs
// staged in workgroup memory, with the family's maps between them. Nothing B×B is stored.
//
// A workgroup of 64 invocations owns a block of 128 rows and walks the columns in tiles of
// ST_COLS, in index order. Per tile:
//   1. S = X_I·X_Jᵀ (or the squared distances Σ (u − v)², no Gram form to cancel) for the
//      128 × ST_COLS tile: a K-loop over the row stages 8 dims of the rows and columns in
//      workgroup memory; invocation (ty, tx) = (lid / 4, lid % 4) holds the register
//      micro-tile of rows ty + 16r (r < 8) and columns tx + 4c (c < 4) and adds
//      8 × 4 products per staged dim. S goes to st_s.
//   2. The map: invocation lid owns rows lid and lid + 64 of the block (their state in
//      registers, as in the register-row shape) and visits the tile's columns in order,
//      writing W over S.
//   3. With a gradient, dX_I += W·(X_I − X_J) (or W·X_J): per 16-dim chunk of the row, the
//      columns' chunk is staged and invocation (ty, tx) adds the micro-tile of rows
//      ty + 16r and vec4 tx of the chunk to the stored gradient. The same invocation owns
//      the same gradient values in every tile, and adds each tile's sum in tile order:
//      bitwise deterministic, and column windows (multiples of 64 rows) split at tile edges.
// The barriers sit in workgroup-uniform control flow: the column span is the map's
// MAP_columns of the workgroup's first row.
//
// The family hooks are the register-row shape's (common/rows.wgsl documents them); the
// part below the per-map marker is instantiated once per map. The generated prelude
// (src/engine/staged.rs) gives ST_DOT, RowsIds and st_grad_get/st_grad_set. Globals:
// `rows`, `cols` (array<vec4<f32>>), `grad` (maps with a gradient) and `params` (fields
// rows, row_start, window_rows, dim4, accumulate).

const ROWS_PER_GROUP: u32 = 128u;
const ST_COLS: u32 = 16u; // columns of a tile
const ST_KC4: u32 = 2u; // vec4s of the K-loop's staged chunk

var<workgroup> st_s: array<f32, 2048>; // [row][column] S, then W, of the tile
var<workgroup> st_xi: array<f32, 1024>; // [dim][row] the rows' K chunk
var<workgroup> st_xj: array<f32, 128>; // [dim][column] the columns' K chunk
var<workgroup> st_g: array<vec4<f32>, 64>; // [column][vec4] the columns' gradient chunk

// Row `l` of the row window: live (inside the batch and the window).
fn rows_live(l: u32) -> bool {
    return l < params.window_rows && params.row_start + l < params.rows;
}

// vec4 q of window row l (0 past the row or the batch).
fn st_row(l: u32, q: u32) -> vec4<f32> {
    if (rows_live(l) && q < params.dim4) {
        return rows[l * params.dim4 + q];
    }
    return vec4<f32>(0.0);
}

// vec4 q of window column j (0 past the row or from column `end` on).
fn st_col(j: u32, q: u32, end: u32) -> vec4<f32> {
    if (j < end && q < params.dim4) {
        return cols[j * params.dim4 + q];
    }
    return vec4<f32>(0.0);
}

// Step 1: S of the block's rows against columns j0 .. j0 + ST_COLS (0 from `end` on) into
// st_s. Begins with a barrier (the previous tile's readers of st_s are done) and ends with
// one (st_s is complete).
fn st_tile(row_base: u32, j0: u32, end: u32, lid: u32) {
    let ty = lid / 4u;
    let tx = lid % 4u;
    var acc: array<vec4<f32>, 8>;
    for (var r = 0u; r < 8u; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var q0 = 0u; q0 < params.dim4; q0 += ST_KC4) {
        workgroupBarrier();
        for (var m = 0u; m < 2u; m++) {
            let r = lid + 64u * m;
            for (var k = 0u; k < ST_KC4; k++) {
                let v = st_row(row_base + r, q0 + k);
                let d = 4u * k * 128u + r;
                st_xi[d] = v.x;
                st_xi[d + 128u] = v.y;
                st_xi[d + 256u] = v.z;
                st_xi[d + 384u] = v.w;
            }
        }
        if (lid < ST_COLS * ST_KC4) {
            let c = lid / ST_KC4;
            let k = lid % ST_KC4;
            let v = st_col(j0 + c, q0 + k, end);
            let d = 4u * k * ST_COLS + c;
            st_xj[d] = v.x;
            st_xj[d + ST_COLS] = v.y;
            st_xj[d + 2u * ST_COLS] = v.z;
            st_xj[d + 3u * ST_COLS] = v.w;
        }
        workgroupBarrier();
        for (var d = 0u; d < 4u * ST_KC4; d++) {
            let cb = d * ST_COLS + tx;
            let b = vec4<f32>(st_xj[cb], st_xj[cb + 4u], st_xj[cb + 8u], st_xj[cb + 12u]);
            for (var r = 0u; r < 8u; r++) {
                let a = vec4<f32>(st_xi[d * 128u + ty + 16u * r]);
                if (ST_DOT) {
                    acc[r] = fma(a, b, acc[r]);
                } else {
                    let t = a - b;
                    acc[r] = fma(t, t, acc[r]);
                }
            }
        }
    }
    workgroupBarrier();
    for (var r = 0u; r < 8u; r++) {
        let s = (ty + 16u * r) * ST_COLS + tx;
        st_s[s] = acc[r].x;
        st_s[s + 4u] = acc[r].y;
        st_s[s + 8u] = acc[r].z;
        st_s[s + 12u] = acc[r].w;
    }
    workgroupBarrier();
}

// The gradient's values invocation `lid` owns, set to 0 unless the dispatch continues a
// previous column window.
fn st_grad_begin(row_base: u32, lid: u32) {
    if (params.accumulate != 0u) {
        return;
    }
    let ty = lid / 4u;
    for (var q = lid % 4u; q < params.dim4; q += 4u) {
        for (var r = 0u; r < 8u; r++) {
            let l = row_base + ty + 16u * r;
            if (rows_live(l)) {
                st_grad_set(l, q, vec4<f32>(0.0));
            }
        }
    }
}

// Step 3: adds the tile's W·(X_I − X_J) (or W·X_J) to the stored gradient, W in st_s
// (0 past the span's end).
fn st_grad_tile(row_base: u32, j0: u32, end: u32, lid: u32) {
    let ty = lid / 4u;
    let tx = lid % 4u;
    for (var q0 = 0u; q0 < params.dim4; q0 += 4u) {
        workgroupBarrier();
        st_g[lid] = st_col(j0 + lid / 4u, q0 + lid % 4u, end);
        workgroupBarrier();
        let q = q0 + tx;
        var x: array<vec4<f32>, 8>;
        var g: array<vec4<f32>, 8>;
        for (var r = 0u; r < 8u; r++) {
            x[r] = st_row(row_base + ty + 16u * r, q);
            g[r] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < ST_COLS; c++) {
            let v = st_g[c * 4u + tx];
            for (var r = 0u; r < 8u; r++) {
                let w = vec4<f32>(st_s[(ty + 16u * r) * ST_COLS + c]);
                if (ST_DOT) {
                    g[r] = fma(w, v, g[r]);
                } else {
                    g[r] = fma(w, x[r] - v, g[r]);
                }
            }
        }
        for (var r = 0u; r < 8u; r++) {
            let l = row_base + ty + 16u * r;
            if (rows_live(l) && q < params.dim4) {
                st_grad_set(l, q, st_grad_get(l, q) + g[r]);
            }
        }
    }
}

// ---- per map ----

// The map over the columns, for the rows' states only (no gradient).
fn MAP_sweep(ids: RowsIds, ctx: MAP_ctx) {
    let row_base = ids.wg.x * ROWS_PER_GROUP;
    let l0 = row_base + ids.lid;
    let l1 = l0 + 64u;
    var s0 = MAP_begin(l0, rows_live(l0), ctx);
    var s1 = MAP_begin(l1, rows_live(l1), ctx);
    let span = MAP_columns(row_base, ctx);
    for (var j0 = span.x; j0 < span.y; j0 += ST_COLS) {
        st_tile(row_base, j0, span.y, ids.lid);
        let n = min(ST_COLS, span.y - j0);
        for (var c = 0u; c < n; c++) {
            MAP_visit(&s0, j0 + c, st_s[ids.lid * ST_COLS + c], ctx);
            MAP_visit(&s1, j0 + c, st_s[(ids.lid + 64u) * ST_COLS + c], ctx);
        }
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
    var s0 = MAP_begin(l0, rows_live(l0), ctx);
    var s1 = MAP_begin(l1, rows_live(l1), ctx);
    st_grad_begin(row_base, ids.lid);
    let span = MAP_columns(row_base, ctx);
    for (var j0 = span.x; j0 < span.y; j0 += ST_COLS) {
        st_tile(row_base, j0, span.y, ids.lid);
        let n = min(ST_COLS, span.y - j0);
        let i0 = ids.lid * ST_COLS;
        let i1 = (ids.lid + 64u) * ST_COLS;
        for (var c = 0u; c < ST_COLS; c++) {
            var w0 = 0.0;
            var w1 = 0.0;
            if (c < n) {
                w0 = MAP_visit(&s0, j0 + c, st_s[i0 + c], ctx);
                w1 = MAP_visit(&s1, j0 + c, st_s[i1 + c], ctx);
            }
            st_s[i0 + c] = w0;
            st_s[i1 + c] = w1;
        }
        st_grad_tile(row_base, j0, span.y, ids.lid);
    }
    MAP_end(&s0, l0, ctx);
    MAP_end(&s1, l1, ctx);
}

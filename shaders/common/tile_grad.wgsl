// A row window's gradient: reading and writing its vec4s, and adding a 32×32 tile's
// contribution to it from the tile's weights in workgroup memory. Depends on
// common/tile.wgsl (TILE, Block) and on the including module's globals:
//   cols: array<vec4<f32>> (the column window, dim4 vec4s a row)
//   grad: array<f32> (read_write; the row window's gradient, row-major, dim4 vec4s a row)
//   params: a struct with fields rows, row_start, dim4 and accumulate (u32)
// Rows `row_base + rl` past the batch and vec4s past the row read as 0 and are not written.
//
// Invocation (ty, tx) of an 8×8 workgroup owns rows ty + 8r of the tile and, per 32-dim
// chunk, the vec4 of dims 4·(8·chunk + tx). Up to RESIDENT_CHUNKS chunks (D <= 256) keep
// their sums in registers (g_res) across all column tiles and are stored once; wider rows
// add into `grad` after every tile. Either way each value receives the same additions in
// the same order.

const KC4: u32 = 8u; // vec4s per 32-dim chunk
const RESIDENT_CHUNKS: u32 = 8u;

var<workgroup> w_s: array<f32, 1024>; // [row][col] the tile's weights
var<private> g_res: array<vec4<f32>, 32>; // [chunk * 4 + r] gradient sums

// Row `rl`'s gradient vec4 `q` as stored (0 past the row or the batch).
fn grad_vec(rl: u32, row_base: u32, q: u32) -> vec4<f32> {
    let li = row_base + rl;
    if (params.row_start + li >= params.rows || q >= params.dim4) {
        return vec4<f32>(0.0);
    }
    let idx = (li * params.dim4 + q) * 4u;
    return vec4<f32>(grad[idx], grad[idx + 1u], grad[idx + 2u], grad[idx + 3u]);
}

// Writes (or adds) row `rl`'s gradient vec4 `q` into `grad`.
fn store_grad(rl: u32, g: vec4<f32>, row_base: u32, q: u32, first: bool) {
    let li = row_base + rl;
    if (params.row_start + li >= params.rows || q >= params.dim4) {
        return;
    }
    let idx = (li * params.dim4 + q) * 4u;
    if (first) {
        grad[idx] = g.x;
        grad[idx + 1u] = g.y;
        grad[idx + 2u] = g.z;
        grad[idx + 3u] = g.w;
    } else {
        grad[idx] += g.x;
        grad[idx + 1u] += g.y;
        grad[idx + 2u] += g.z;
        grad[idx + 3u] += g.w;
    }
}

// 32-dim chunks of a row.
fn grad_chunks() -> u32 {
    return (params.dim4 + KC4 - 1u) / KC4;
}

// Starts the register sums: the stored gradient when the dispatch continues a previous
// column window, else 0.
fn tile_grad_begin(row_base: u32, ty: u32, tx: u32) {
    for (var k = 0u; k < 32u; k++) {
        g_res[k] = vec4<f32>(0.0);
    }
    let chunks = grad_chunks();
    if (params.accumulate != 0u && chunks <= RESIDENT_CHUNKS) {
        for (var ch = 0u; ch < chunks; ch++) {
            for (var r = 0u; r < 4u; r++) {
                g_res[ch * 4u + r] = grad_vec(ty + 8u * r, row_base, ch * KC4 + tx);
            }
        }
    }
}

// Σ over the tile's columns j of w_s[row][j] · (x_row − x_j) for the invocation's rows
// ty + 8r (values `x`), or Σ w_s[row][j] · x_j when `diff` is false, for the vec4 `q`.
fn tile_grad_chunk(col_base: u32, ty: u32, q: u32, diff: bool, x: Block) -> Block {
    let qc = min(q, params.dim4 - 1u);
    let live = q < params.dim4;
    var g0 = vec4<f32>(0.0);
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    var g3 = vec4<f32>(0.0);
    if (diff) {
        for (var j = 0u; j < TILE; j++) {
            let xj = select(vec4<f32>(0.0), cols[(col_base + j) * params.dim4 + qc], live);
            g0 += w_s[ty * TILE + j] * (x.r0 - xj);
            g1 += w_s[(ty + 8u) * TILE + j] * (x.r1 - xj);
            g2 += w_s[(ty + 16u) * TILE + j] * (x.r2 - xj);
            g3 += w_s[(ty + 24u) * TILE + j] * (x.r3 - xj);
        }
    } else {
        for (var j = 0u; j < TILE; j++) {
            let xj = select(vec4<f32>(0.0), cols[(col_base + j) * params.dim4 + qc], live);
            g0 += w_s[ty * TILE + j] * xj;
            g1 += w_s[(ty + 8u) * TILE + j] * xj;
            g2 += w_s[(ty + 16u) * TILE + j] * xj;
            g3 += w_s[(ty + 24u) * TILE + j] * xj;
        }
    }
    return Block(g0, g1, g2, g3);
}

// Adds chunk `ch`'s sums of one tile: into the registers, or into `grad` for wide rows;
// `first` (the first tile of a dispatch that does not continue a column window) overwrites.
fn tile_grad_keep(g: Block, row_base: u32, ty: u32, tx: u32, ch: u32, first: bool) {
    if (grad_chunks() <= RESIDENT_CHUNKS) {
        if (first) {
            g_res[ch * 4u] = g.r0;
            g_res[ch * 4u + 1u] = g.r1;
            g_res[ch * 4u + 2u] = g.r2;
            g_res[ch * 4u + 3u] = g.r3;
        } else {
            g_res[ch * 4u] += g.r0;
            g_res[ch * 4u + 1u] += g.r1;
            g_res[ch * 4u + 2u] += g.r2;
            g_res[ch * 4u + 3u] += g.r3;
        }
    } else {
        let q = ch * KC4 + tx;
        store_grad(ty, g.r0, row_base, q, first);
        store_grad(ty + 8u, g.r1, row_base, q, first);
        store_grad(ty + 16u, g.r2, row_base, q, first);
        store_grad(ty + 24u, g.r3, row_base, q, first);
    }
}

// Stores the register sums once every column tile has been added (resident rows only).
fn tile_grad_end(row_base: u32, ty: u32, tx: u32) {
    let chunks = grad_chunks();
    if (chunks > RESIDENT_CHUNKS) {
        return;
    }
    for (var ch = 0u; ch < chunks; ch++) {
        for (var r = 0u; r < 4u; r++) {
            store_grad(ty + 8u * r, g_res[ch * 4u + r], row_base, ch * KC4 + tx, true);
        }
    }
}

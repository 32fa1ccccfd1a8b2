// Reading and writing one vec4 of a row's gradient in a row window. Depends on the
// including module's globals:
//   grad: array<f32> (read_write; the row window, row-major, dim4 vec4s a row)
//   params: a struct with fields rows, row_start and dim4 (u32)
// Rows `row_base + rl` past the batch and vec4s past the row read as 0 and are not written.

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


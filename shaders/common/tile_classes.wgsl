// Class ids of a tile's rows and columns, for the in-batch kernels that walk 32×32 tiles
// (common/tile.wgsl). Depends on the including module's globals:
//   row_class, col_class: array<u32> (class id per row of the row and column windows)
//   params: a struct with field col_start (u32)

// Class ids, global indices and window indices of the invocation's 4 columns (tx + 8c) of a
// column tile.
struct Cols {
    ids: vec4<u32>,
    index: vec4<u32>,
    local: vec4<u32>,
}

fn tile_cols(col_base: u32, tx: u32) -> Cols {
    let lj = vec4<u32>(col_base + tx) + vec4<u32>(0u, 8u, 16u, 24u);
    let n = arrayLength(&col_class);
    // Past the batch the class is never used for a valid pair; clamp to stay in the binding.
    let c = vec4<u32>(
        col_class[min(lj.x, n - 1u)], col_class[min(lj.y, n - 1u)],
        col_class[min(lj.z, n - 1u)], col_class[min(lj.w, n - 1u)],
    );
    return Cols(c, vec4<u32>(params.col_start) + lj, lj);
}

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

// Class ids of the invocation's 4 rows l0 + 8r.
fn tile_row_classes(l0: u32) -> vec4<u32> {
    return vec4<u32>(row_class_at(l0), row_class_at(l0 + 8u), row_class_at(l0 + 16u), row_class_at(l0 + 24u));
}

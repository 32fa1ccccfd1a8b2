// The mined triplet losses' distance phase on the pair engine (either shape, map
// `distances`): d(a, j) of one chunk's 64 anchors a and every row j of a column window,
// into the chunk buffer `dist`. The held rows are the column window's (bound as `rows`),
// the swept columns the chunk's anchors (the chunk's row window, bound as `cols`), so each
// row j is read once per chunk. The declarations and bindings are triplet.wgsl's, included
// before this file; the host's table of this entry point is src/losses/triplet/kernels.rs.
// row_start is the column window's first row and col_start the chunk's row window's, and
// likewise rows counts the held rows (candidates) and cols the anchors.

struct distances_ctx {
    unused: u32,
}

struct distances_row {
    j: u32,
    live: bool,
}

// The chunk's anchors inside the batch, as rows of its row window.
fn distances_columns(row_base: u32, ctx: distances_ctx) -> vec2<u32> {
    let first = params.chunk_local;
    let left = params.cols - min(params.cols, params.col_start + first);
    return vec2<u32>(first, first + min(CHUNK, left));
}

fn distances_begin(l: u32, live: bool, ctx: distances_ctx) -> distances_row {
    return distances_row(params.row_start + l, live);
}

fn distances_visit(st: ptr<function, distances_row>, al: u32, s: f32, ctx: distances_ctx) -> f32 {
    if ((*st).live) {
        dist[(al - params.chunk_local) * params.stride + (*st).j] = dist_finish(params.distance, s);
    }
    return 0.0;
}

fn distances_end(st: ptr<function, distances_row>, l: u32, ctx: distances_ctx) {}

@compute @workgroup_size(64)
fn triplet_rows_distances(ids: RowsIds) {
    distances_sweep(ids, distances_ctx(0u));
}

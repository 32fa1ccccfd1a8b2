// Measurements of an embedding on the pair engine (either shape): exact k nearest neighbours
// with a per-row top-k kept on the device (map `knn`), the largest pair distance (map
// `span`) and the histograms of similar and dissimilar pair distances (map `hist`). The
// host's table of these entry points is src/measure/kernels.rs. Nothing rows × columns is
// stored: the top-k lists are rows × k, the histograms a few copies of 2 × (bins + 1).
//
// Globals:
//   0 uniform        params      MeasureParams (this dispatch's windows and options)
//   1 storage, read  rows        the row window's rows (queries, or the batch)
//   2 storage, read  cols        the column window's rows (references, or the batch)
//   3 storage, rw    knn         k KnnEntry per row of the row window, ascending
//   4 storage, read  row_class   class id per row of the row window
//   5 storage, read  col_class   class id per row of the column window
//   6 storage, rw    hist        params.copies copies of 2 × (bins + 1) u32 counts
//   7 storage, rw    span        the largest distance of each row's pairs
//   8 storage, rw    totals      2 × (bins + 1) u64 counts (lo, hi words)
// Shared pieces: common/distance.
//
// Distances arrive as S from the engine: squared distances (difference form) or dot
// products of rows the host normalised (cosine). The k-NN ranks by the key S (squared
// distance, or 1 − dot): the host takes the square root of a euclidean key. The order is
// total, (key, column index) lexicographic, so ties go to the lower index and the lists
// are a function of the keys alone, whatever the order of the visits. Histogram counts are
// integer atomics (exact in any order) and the totals add the copies in index order.

// Keep in sync with `MeasureParams` in src/measure/kernels.rs.
struct MeasureParams {
    rows: u32,
    dim4: u32,
    distance: u32,
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32, // 0 on a row window's first column window
    cols: u32,       // rows of the column side
    pairing: u32,    // PAIRING_*
    k: u32,
    bins: u32,
    copies: u32,     // histogram copies: workgroup w adds into copy w mod copies
    hi: f32,         // the histograms' upper edge
    first: u32,      // the window-local columns [first, last) of this dispatch
    last: u32,
    _pad0: u32,
}

// Keep in sync with `KnnEntry` in src/measure/kernels.rs.
struct KnnEntry {
    key: f32,
    index: u32,
}

@group(0) @binding(0) var<uniform> params: MeasureParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> knn: array<KnnEntry>;
@group(0) @binding(4) var<storage, read> row_class: array<u32>;
@group(0) @binding(5) var<storage, read> col_class: array<u32>;
@group(0) @binding(6) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> span: array<f32>;
@group(0) @binding(8) var<storage, read_write> totals: array<vec2<u32>>;

// Keep in sync with `Pairing` in src/measure/steps.rs: every (row, column) pair, the pairs
// j > i of a batch against itself (each unordered pair once), or every pair but j = i (a
// query excluded from its own neighbours).
const PAIRING_ALL: u32 = 0u;
const PAIRING_UPPER: u32 = 1u;
const PAIRING_NOT_SELF: u32 = 2u;

// The empty list entry: after every finite key.
const NO_KEY: f32 = 3.40282347e38;
const NO_INDEX: u32 = 0xffffffffu;

fn pair_exists(i: u32, j: u32) -> bool {
    switch (params.pairing) {
        case PAIRING_UPPER: {
            return j > i;
        }
        case PAIRING_NOT_SELF: {
            return j != i;
        }
        default: {
            return true;
        }
    }
}

// Window-local columns of this dispatch: [first, last) of the column window, and for the
// pairs j > i only those after the workgroup's first row (row_base, window-local).
fn window_columns(row_base: u32) -> vec2<u32> {
    let n = min(params.window_rows, params.cols - min(params.cols, params.col_start));
    var first = params.first;
    if (params.pairing == PAIRING_UPPER) {
        let after = params.row_start + row_base + 1u;
        first = max(first, max(after, params.col_start) - params.col_start);
    }
    return vec2<u32>(min(first, n), min(params.last, n));
}

// The ranking key of S: the squared distance, or 1 − dot.
fn rank_key(s: f32) -> f32 {
    if (params.distance == DIST_ONE_MINUS_DOT) {
        return 1.0 - s;
    }
    return s;
}

// (a, ai) before (b, bi).
fn before(a: f32, ai: u32, b: f32, bi: u32) -> bool {
    return a < b || (a == b && ai < bi);
}

// ---- k nearest neighbours ----

struct knn_ctx {
    unused: u32,
}

struct knn_row {
    l: u32,
    i: u32,
    live: bool,
    key: f32,   // the list's last entry: a candidate must come before it
    index: u32,
}

fn knn_columns(row_base: u32, ctx: knn_ctx) -> vec2<u32> {
    return window_columns(row_base);
}

fn knn_begin(l: u32, live: bool, ctx: knn_ctx) -> knn_row {
    var st = knn_row(l, params.row_start + l, live, NO_KEY, NO_INDEX);
    if (live) {
        let base = l * params.k;
        if (params.accumulate == 0u) {
            for (var t = 0u; t < params.k; t++) {
                knn[base + t] = KnnEntry(NO_KEY, NO_INDEX);
            }
        } else {
            let last = knn[base + params.k - 1u];
            st.key = last.key;
            st.index = last.index;
        }
    }
    return st;
}

// Inserts (key, j) into the row's sorted list when it comes before the last entry: from
// the end, each entry after it moves down one, the last drops out.
fn knn_visit(st: ptr<function, knn_row>, jl: u32, s: f32, ctx: knn_ctx) -> f32 {
    let j = params.col_start + jl;
    if (!(*st).live || !pair_exists((*st).i, j)) {
        return 0.0;
    }
    let key = rank_key(s);
    if (!before(key, j, (*st).key, (*st).index)) {
        return 0.0;
    }
    let base = (*st).l * params.k;
    var t = params.k - 1u;
    loop {
        if (t == 0u) {
            break;
        }
        let e = knn[base + t - 1u];
        if (before(e.key, e.index, key, j)) {
            break;
        }
        knn[base + t] = e;
        t -= 1u;
    }
    knn[base + t] = KnnEntry(key, j);
    let last = knn[base + params.k - 1u];
    (*st).key = last.key;
    (*st).index = last.index;
    return 0.0;
}

fn knn_end(st: ptr<function, knn_row>, l: u32, ctx: knn_ctx) {}

// The k nearest columns of each row of the row window, merged into its list.
@compute @workgroup_size(64)
fn measure_knn(ids: RowsIds) {
    knn_sweep(ids, knn_ctx(0u));
}

// ---- the largest pair distance ----

struct span_ctx {
    unused: u32,
}

struct span_row {
    i: u32,
    live: bool,
    top: f32,
}

fn span_columns(row_base: u32, ctx: span_ctx) -> vec2<u32> {
    return window_columns(row_base);
}

fn span_begin(l: u32, live: bool, ctx: span_ctx) -> span_row {
    var top = 0.0;
    if (live && params.accumulate != 0u) {
        top = span[l];
    }
    return span_row(params.row_start + l, live, top);
}

fn span_visit(st: ptr<function, span_row>, jl: u32, s: f32, ctx: span_ctx) -> f32 {
    if ((*st).live && pair_exists((*st).i, params.col_start + jl)) {
        (*st).top = max((*st).top, dist_finish(params.distance, s));
    }
    return 0.0;
}

fn span_end(st: ptr<function, span_row>, l: u32, ctx: span_ctx) {
    if ((*st).live) {
        span[l] = (*st).top;
    }
}

// The largest distance of each row's pairs over the column window.
@compute @workgroup_size(64)
fn measure_span(ids: RowsIds) {
    span_sweep(ids, span_ctx(0u));
}

// ---- histograms ----

struct hist_ctx {
    unused: u32,
}

struct hist_row {
    i: u32,
    ci: u32,
    live: bool,
    base: u32, // the counts of the row's workgroup's copy
}

fn hist_columns(row_base: u32, ctx: hist_ctx) -> vec2<u32> {
    return window_columns(row_base);
}

fn hist_begin(l: u32, live: bool, ctx: hist_ctx) -> hist_row {
    var ci = 0u;
    if (live) {
        ci = row_class[l];
    }
    let copy = (l / 128u) % params.copies;
    return hist_row(params.row_start + l, ci, live, copy * 2u * (params.bins + 1u));
}

// Bin b holds hi·b/bins ≤ d < hi·(b + 1)/bins, computed as floor(d·bins / hi) (so that
// integer distances and edges land exactly); d = hi goes to the last bin, d > hi to the
// slot after it.
fn hist_bin(d: f32) -> u32 {
    if (d > params.hi) {
        return params.bins;
    }
    let b = floor(d * f32(params.bins) / params.hi);
    return min(u32(max(b, 0.0)), params.bins - 1u);
}

fn hist_visit(st: ptr<function, hist_row>, jl: u32, s: f32, ctx: hist_ctx) -> f32 {
    if (!(*st).live || !pair_exists((*st).i, params.col_start + jl)) {
        return 0.0;
    }
    let d = dist_finish(params.distance, s);
    let side = select(params.bins + 1u, 0u, col_class[jl] == (*st).ci);
    atomicAdd(&hist[(*st).base + side + hist_bin(d)], 1u);
    return 0.0;
}

fn hist_end(st: ptr<function, hist_row>, l: u32, ctx: hist_ctx) {}

// Counts of the row window's pairs with the column window, per workgroup.
@compute @workgroup_size(64)
fn measure_hist(ids: RowsIds) {
    hist_sweep(ids, hist_ctx(0u));
}

// Adds the copies' counts into the u64 totals (copies in index order) and clears them for
// the next dispatch: one invocation per count.
@compute @workgroup_size(64)
fn measure_hist_flush(@builtin(global_invocation_id) gid: vec3<u32>) {
    let slots = 2u * (params.bins + 1u);
    let s = gid.x;
    if (s >= slots) {
        return;
    }
    var t = totals[s];
    for (var w = 0u; w < params.copies; w++) {
        let v = atomicExchange(&hist[w * slots + s], 0u);
        let lo = t.x + v;
        t = vec2<u32>(lo, t.y + select(0u, 1u, lo < t.x));
    }
    totals[s] = t;
}

// Row normalisation x / max(||x||, 1e-12) and its backward pass, used by `normalize`
// and by cosine distance (which runs as one-minus-dot on normalised rows). Rows are
// zero-padded to whole vec4s; the padding stays zero. The host dispatches once per window
// of rows (src/engine/plan.rs); all bindings below are that window's rows. The host's
// table of these entry points and bindings is src/engine/sides.rs.
//
// Bindings (group 0):
//   0 uniform        params  NormalizeParams: rows, dim4, row_start, window_rows
//   1 storage, read  src     input rows (forward only)
//   2 storage, rw    dst     normalised rows (written forward, read backward)
//   3 storage, rw    norms   ||src row|| per row (written forward, read backward)
//   4 storage, rw    grad    dL/d(dst) in, dL/d(src) out, in place (backward)
// One invocation per row, 64 rows per workgroup; each loops over the row's vec4s.

// Keep in sync with `NormalizeParams` in src/engine/sides.rs.
struct NormalizeParams {
    rows: u32,
    dim4: u32,
    row_start: u32,
    window_rows: u32,
}

const NORM_EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> params: NormalizeParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<vec4<f32>>;

fn in_window(i: u32) -> bool {
    return i < params.window_rows && params.row_start + i < params.rows;
}

@compute @workgroup_size(64)
fn normalize_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (!in_window(i)) {
        return;
    }
    let base = i * params.dim4;
    var ss = 0.0;
    for (var q = 0u; q < params.dim4; q++) {
        ss += dot(src[base + q], src[base + q]);
    }
    let n = sqrt(ss);
    norms[i] = n;
    let denom = max(n, NORM_EPS);
    for (var q = 0u; q < params.dim4; q++) {
        dst[base + q] = src[base + q] / denom;
    }
}

// d(x/n)/dx = (I − x̂x̂ᵀ)/n when n = ||x|| > eps, and I/eps when the floor is in force.
@compute @workgroup_size(64)
fn normalize_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (!in_window(i)) {
        return;
    }
    let base = i * params.dim4;
    let n = norms[i];
    if (n > NORM_EPS) {
        var d = 0.0;
        for (var q = 0u; q < params.dim4; q++) {
            d += dot(dst[base + q], grad[base + q]);
        }
        for (var q = 0u; q < params.dim4; q++) {
            grad[base + q] = (grad[base + q] - dst[base + q] * d) / n;
        }
    } else {
        for (var q = 0u; q < params.dim4; q++) {
            grad[base + q] = grad[base + q] / NORM_EPS;
        }
    }
}

// Row normalisation x / max(||x||, 1e-12) and its backward pass, used by `normalize`
// and by cosine distance (which runs as one-minus-dot on normalised rows).
//
// Bindings (group 0):
//   0 uniform        params  NormalizeParams: rows, dim
//   1 storage, read  src     rows × dim input rows (forward only)
//   2 storage, rw    dst     rows × dim normalised rows (written forward, read backward)
//   3 storage, rw    norms   rows: ||src row|| (written forward, read backward)
//   4 storage, rw    grad    rows × dim: dL/d(dst) in, dL/d(src) out, in place (backward)
// One invocation per row, 64 rows per workgroup; each loops over the row's dim values.

// Keep in sync with `NormalizeParams` in src/gpu/params.rs.
struct NormalizeParams {
    rows: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

const NORM_EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> params: NormalizeParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn normalize_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.rows) {
        return;
    }
    let base = i * params.dim;
    var ss = 0.0;
    for (var k = 0u; k < params.dim; k++) {
        let v = src[base + k];
        ss += v * v;
    }
    let n = sqrt(ss);
    norms[i] = n;
    let denom = max(n, NORM_EPS);
    for (var k = 0u; k < params.dim; k++) {
        dst[base + k] = src[base + k] / denom;
    }
}

// d(x/n)/dx = (I − x̂x̂ᵀ)/n when n = ||x|| > eps, and I/eps when the floor is in force.
@compute @workgroup_size(64)
fn normalize_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.rows) {
        return;
    }
    let base = i * params.dim;
    let n = norms[i];
    if (n > NORM_EPS) {
        var dot = 0.0;
        for (var k = 0u; k < params.dim; k++) {
            dot += dst[base + k] * grad[base + k];
        }
        for (var k = 0u; k < params.dim; k++) {
            grad[base + k] = (grad[base + k] - dst[base + k] * dot) / n;
        }
    } else {
        for (var k = 0u; k < params.dim; k++) {
            grad[base + k] = grad[base + k] / NORM_EPS;
        }
    }
}

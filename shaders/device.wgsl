// Moving rows between a caller's buffers and the workspace, for the device-resident API
// (src/engine/resident.rs, which holds the host's table of these entry points): embeddings in (any 4-byte offset, any row stride >= D), class ids in, and
// the gradient out (scaled, overwriting or adding). One invocation per row; the host
// dispatches once per row window, binding the caller's buffer from the
// largest aligned offset at or below the window's first value.
// Globals:
//   0 uniform        params  DeviceParams
//   1 storage, read  src     caller rows (f32) or class ids (u32 bits), from the bound offset
//   2 storage, rw    rows    workspace rows of the window (dim4 vec4s a row)
//   3 storage, rw    ids     workspace class ids of the window
//   4 storage, read  grad    workspace gradient of the window (dim4 vec4s a row)
//   5 storage, rw    dst     caller gradient (f32), from the bound offset
//   6 storage, rw    flags   [0]: the least global value index outside the input domain
//                            (0xffffffff: none), by atomicMin (an integer: deterministic);
//                            [1..3]: half.wgsl's f16 gradient overflow, per side

// Keep in sync with `DeviceParams` in src/engine/resident.rs.
struct DeviceParams {
    rows: u32,
    dim: u32,
    dim4: u32,
    row_start: u32,
    window_rows: u32,
    first: u32,  // index of the window's first value in the bound caller range
    stride: u32, // caller values between row starts
    accumulate: u32,
    scale: f32,
    max_abs: f32, // the call's magnitude limit: 1e15 (the domain) or less (src/limit.rs)
    flag: u32,    // half.wgsl's scatter: the flags word of a gradient beyond f16's range
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: DeviceParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> rows: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
@group(0) @binding(4) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read_write> flags: array<atomic<u32>>;

fn in_batch(local: u32) -> bool {
    return local < params.window_rows && params.row_start + local < params.rows;
}

// Caller rows → zero-padded workspace rows (one invocation per row); records the first
// value outside the input domain or beyond the call's magnitude limit.
@compute @workgroup_size(64)
fn device_gather_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (!in_batch(local)) {
        return;
    }
    for (var q = 0u; q < params.dim4; q++) {
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            let col = q * 4u + k;
            if (col < params.dim) {
                let x = bitcast<f32>(src[params.first + local * params.stride + col]);
                // NaN fails every comparison, so it is caught with the infinities.
                if (!(abs(x) <= params.max_abs)) {
                    atomicMin(&flags[0], (params.row_start + local) * params.dim + col);
                }
                v[k] = x;
            }
        }
        rows[local * params.dim4 + q] = v;
    }
}

// Caller class ids (u32) → the workspace's.
@compute @workgroup_size(64)
fn device_gather_ids(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (!in_batch(local)) {
        return;
    }
    ids[local] = src[params.first + local];
}

// The flags to "none", first thing in a call: on the GPU timeline, so that a call
// recorded into an encoder is not disturbed by others before its submit.
@compute @workgroup_size(1)
fn device_reset() {
    _ = params.rows; // every kernel binds its parameters at binding 0
    for (var k = 0u; k < 4u; k++) {
        atomicStore(&flags[k], 0xffffffffu);
    }
}

// Class ids = global row indices (CLIP: row i of A matches row i of B).
@compute @workgroup_size(64)
fn device_iota(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (!in_batch(local)) {
        return;
    }
    ids[local] = params.row_start + local;
}

// scale × workspace gradient → the caller's buffer (one invocation per row), overwriting
// or adding.
@compute @workgroup_size(64)
fn device_scatter_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (!in_batch(local)) {
        return;
    }
    for (var q = 0u; q < params.dim4; q++) {
        let g = grad[local * params.dim4 + q] * params.scale;
        for (var k = 0u; k < 4u; k++) {
            let col = q * 4u + k;
            if (col < params.dim) {
                let at = params.first + local * params.stride + col;
                if (params.accumulate != 0u) {
                    dst[at] += g[k];
                } else {
                    dst[at] = g[k];
                }
            }
        }
    }
}

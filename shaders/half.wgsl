enable f16;

// f16 rows in, f16 gradients out: device.wgsl's gather and scatter for callers whose values
// are IEEE binary16 (adapters with SHADER_F16; src/engine/resident.rs holds the host's table
// of these entry points and never builds this module without the feature). The workspace
// stays f32: f16 → f32 is exact, so every loss computes in f32 from the caller's values.
// Globals (device.wgsl's, with f16 caller arrays):
//   0 uniform        params  DeviceParams
//   1 storage, read  src     caller rows (f16), from the bound offset
//   2 storage, rw    rows    workspace rows of the window (dim4 vec4s a row)
//   4 storage, read  grad    workspace gradient of the window (dim4 vec4s a row)
//   5 storage, rw    dst     caller gradient (f16), from the bound offset
//   6 storage, rw    flags   [0]: the least global value index outside the input domain;
//                            [params.flag]: the least global value index of this side's
//                            gradient beyond f16's range (0xffffffff: none), by atomicMin

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
    flag: u32,    // the flags word a gradient beyond f16's range is recorded in
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: DeviceParams;
@group(0) @binding(1) var<storage, read> src: array<f16>;
@group(0) @binding(2) var<storage, read_write> rows: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dst: array<f16>;
@group(0) @binding(6) var<storage, read_write> flags: array<atomic<u32>>;

// The largest finite f16, and the least magnitude that rounds (to nearest) past it.
const F16_MAX: f32 = 65504.0;
const F16_OVERFLOW: f32 = 65520.0;

fn in_batch(local: u32) -> bool {
    return local < params.window_rows && params.row_start + local < params.rows;
}

// Caller f16 rows → zero-padded f32 workspace rows (one invocation per row), flagging as
// device_gather_rows does: f16 holds infinities and NaN, and the call's limit may be
// below f16's range.
@compute @workgroup_size(64)
fn half_gather_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let local = gid.x;
    if (!in_batch(local)) {
        return;
    }
    for (var q = 0u; q < params.dim4; q++) {
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            let col = q * 4u + k;
            if (col < params.dim) {
                let x = f32(src[params.first + local * params.stride + col]);
                if (!(abs(x) <= params.max_abs)) {
                    atomicMin(&flags[0], (params.row_start + local) * params.dim + col);
                }
                v[k] = x;
            }
        }
        rows[local * params.dim4 + q] = v;
    }
}

// scale × workspace gradient → the caller's f16 buffer (one invocation per row),
// overwriting or adding (the sum in f32, rounded once). A value that would round past
// f16's range is written as ±65504 and flagged: an infinity would poison the caller's
// optimiser silently, the flag makes reading the loss an error.
@compute @workgroup_size(64)
fn half_scatter_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
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
                var v = g[k];
                if (params.accumulate != 0u) {
                    v += f32(dst[at]);
                }
                if (!(abs(v) < F16_OVERFLOW)) {
                    atomicMin(&flags[params.flag], (params.row_start + local) * params.dim + col);
                    v = clamp(v, -F16_MAX, F16_MAX);
                }
                dst[at] = f16(v);
            }
        }
    }
}

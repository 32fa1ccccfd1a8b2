// Rows between a caller's buffer and the workspace, one invocation per row, whatever the
// caller's format: device.wgsl (f32) and half.wgsl (f16) each declare `src` and `dst` of
// their format and define `caller_value(at) -> f32` (value `at` of the bound caller range)
// and `caller_store(at, v, index)` (write v there; `index` is its row-major index in the
// input, for flags). The host's tables are in src/engine/resident.rs.
// Globals (the rest in each module):
//   0 uniform        params  DeviceParams
//   2 storage, rw    rows    workspace rows of the window (dim4 vec4s a row)
//   4 storage, read  grad    workspace gradient of the window (dim4 vec4s a row)
//   6 storage, rw    flags   [0]: the least global value index outside the input domain
//                            (0xffffffff: none), by atomicMin (an integer: deterministic);
//                            [1..3]: the least index of side 0..2's f16 gradient beyond
//                            f16's range (half.wgsl)

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
    flag: u32,    // the flags word of this side's f16 gradient overflow (half.wgsl)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: DeviceParams;
@group(0) @binding(2) var<storage, read_write> rows: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> flags: array<atomic<u32>>;

fn in_batch(local: u32) -> bool {
    return local < params.window_rows && params.row_start + local < params.rows;
}

// Caller row → zero-padded workspace row; records the first value outside the input domain
// or beyond the call's magnitude limit.
fn gather_row(local: u32) {
    for (var q = 0u; q < params.dim4; q++) {
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            let col = q * 4u + k;
            if (col < params.dim) {
                let x = caller_value(params.first + local * params.stride + col);
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

// scale × workspace gradient row → the caller's row.
fn scatter_row(local: u32) {
    for (var q = 0u; q < params.dim4; q++) {
        let g = grad[local * params.dim4 + q] * params.scale;
        for (var k = 0u; k < 4u; k++) {
            let col = q * 4u + k;
            if (col < params.dim) {
                let at = params.first + local * params.stride + col;
                caller_store(at, g[k], (params.row_start + local) * params.dim + col);
            }
        }
    }
}

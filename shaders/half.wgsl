enable f16;

// common/transfer.wgsl for callers whose values are IEEE binary16 (adapters with
// SHADER_F16; src/engine/resident.rs never builds this module without the feature). The
// workspace stays f32: f16 → f32 is exact, so every loss computes in f32 from the caller's
// values.
//   1 storage, read  src     caller rows (f16), from the bound offset
//   5 storage, rw    dst     caller gradient (f16), from the bound offset

@group(0) @binding(1) var<storage, read> src: array<f16>;
@group(0) @binding(5) var<storage, read_write> dst: array<f16>;

// The largest finite f16, and the least magnitude that rounds (to nearest) past it.
const F16_MAX: f32 = 65504.0;
const F16_OVERFLOW: f32 = 65520.0;

fn caller_value(at: u32) -> f32 {
    return f32(src[at]);
}

// Overwriting or adding (the sum in f32, rounded once). A value that would round past
// f16's range is written as ±65504 and flagged: an infinity would poison the caller's
// optimiser silently, the flag makes reading the loss an error.
fn caller_store(at: u32, g: f32, index: u32) {
    var v = g;
    if (params.accumulate != 0u) {
        v += f32(dst[at]);
    }
    if (!(abs(v) < F16_OVERFLOW)) {
        atomicMin(&flags[params.flag], index);
        v = clamp(v, -F16_MAX, F16_MAX);
    }
    dst[at] = f16(v);
}

@compute @workgroup_size(64)
fn half_gather_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (in_batch(gid.x)) {
        gather_row(gid.x);
    }
}

@compute @workgroup_size(64)
fn half_scatter_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (in_batch(gid.x)) {
        scatter_row(gid.x);
    }
}

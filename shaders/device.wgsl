// Moving rows between a caller's buffers and the workspace, for the device-resident API
// (src/engine/resident.rs, which holds the host's table of these entry points): embeddings
// in (any 4-byte offset, any row stride >= D), class ids in, and the gradient out (scaled,
// overwriting or adding), f32 values (half.wgsl: f16); common/transfer.wgsl moves the
// rows. One invocation per row; the host dispatches once per row window, binding the
// caller's buffer from the largest aligned offset at or below the window's first value.
//   1 storage, read  src     caller rows (f32) or class ids (u32 bits), from the bound offset
//   3 storage, rw    ids     workspace class ids of the window
//   5 storage, rw    dst     caller gradient (f32), from the bound offset

@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;

fn caller_value(at: u32) -> f32 {
    return bitcast<f32>(src[at]);
}

fn caller_store(at: u32, g: f32, index: u32) {
    if (params.accumulate != 0u) {
        dst[at] += g;
    } else {
        dst[at] = g;
    }
}

// Caller rows → zero-padded workspace rows, flagging values outside the domain or beyond
// the call's magnitude limit.
@compute @workgroup_size(64)
fn device_gather_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (in_batch(gid.x)) {
        gather_row(gid.x);
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
    if (in_batch(gid.x)) {
        scatter_row(gid.x);
    }
}

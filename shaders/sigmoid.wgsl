// SigLIP's sigmoid loss (Zhai et al. 2023; open_clip's SigLipLoss) over cosine similarities
// s_ij of rows the host has normalised (normalize.wgsl): A (N rows) against B (M ≥ N rows),
// logits x_ij = t·s_ij + b with t = exp(t′), labels z_ij = +1 for a positive pair (the same
// class id: the matched row, or the same label) and −1 otherwise, and
//   L = (1/N) Σ_ij softplus(−z_ij·x_ij) = −(1/N) Σ_ij log σ(z_ij·x_ij).
// Every pair is its own term: there is no normaliser across a row, so one sweep gives the
// loss and dL/ds_ij = t·dL/dx_ij, dL/dx_ij = −(z_ij/N)·σ(−z_ij·x_ij). No N×M buffer.
// Stages (the host dispatches each sweep once per (row window, column window),
// src/engine/plan.rs; its table of these entry points is src/losses/sigmoid/kernels.rs):
//   sigmoid_rows_terms  rows of A: per row, Σ_j softplus(−z·x) and the positives (no
//                       gradient)
//   sigmoid_rows_grad   rows of A (side 0): the same, Σ_j dL/dx·t·s (dL/dt′), Σ_j dL/dx
//                       (dL/db) and dL/dâ_i = Σ_j W_ij b̂_j; rows of B (side 1): dL/db̂_j =
//                       Σ_i W_ij â_i alone (the terms are counted once, on A's side)
//   sigmoid_loss        device-resident calls: one window's partials into dev (fixed tree)
// The sweeps are sigmoid_rows.wgsl's maps on the pair engine (that file includes this one).
// Globals:
//   0 uniform        params     SigmoidParams
//   1 storage, read  rows       normalised rows of the row window
//   2 storage, read  cols       normalised rows of the column window
//   3 storage, read  row_class  class id per row of the row window
//   4 storage, read  col_class  class id per row of the column window
//   5 storage, rw    partials   SigmoidPartial per row of the row window (A's rows)
//   6 storage, rw    grad       dL/d(rows), row window, row-major f32, padded stride
//   7 storage, rw    dev        device-resident calls: [loss, Σ loss, Σ dL/dt′, Σ dL/db, -,
//                               dL/dt′, dL/db, -] (f32 bits)
// Each row's values are added in column order by the one invocation that owns it. No
// atomics: bitwise deterministic. Every pair is evaluated; nothing is skipped.
// Shared pieces: common/reduce, smooth.

// Keep in sync with `SigmoidParams` in src/losses/sigmoid/kernels.rs.
struct SigmoidParams {
    rows: u32,
    dim4: u32,
    cols: u32,        // rows of the column side
    row_start: u32,
    col_start: u32,
    window_rows: u32,
    accumulate: u32,
    side: u32,        // 0: the rows are A (terms and scalar gradients), 1: B
    last: u32,        // sigmoid_loss: the last row window
    scale: f32,       // t = exp(t′)
    bias: f32,        // b
    inv_n: f32,       // dL/dterm, 1/N
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Keep in sync with `SigmoidPartial` in src/losses/sigmoid/kernels.rs.
struct SigmoidPartial {
    loss: f32,       // Σ_j softplus(−z_ij·x_ij), before 1/N
    grad_scale: f32, // Σ_j dL/dx_ij · t·s_ij
    grad_bias: f32,  // Σ_j dL/dx_ij
    positives: u32,
}

@group(0) @binding(0) var<uniform> params: SigmoidParams;
@group(0) @binding(1) var<storage, read> rows: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cols: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> row_class: array<u32>;
@group(0) @binding(4) var<storage, read> col_class: array<u32>;
@group(0) @binding(5) var<storage, read_write> partials: array<SigmoidPartial>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> dev: array<u32>;

// Class id of row `local` of the row window (clamped into the binding).
fn row_class_at(local: u32) -> u32 {
    return row_class[min(local, arrayLength(&row_class) - 1u)];
}

// Device-resident calls: adds one window's partials into dev[1..4] (a fixed tree); the
// last window writes the loss (dev[0]), dL/dt′ (dev[5]) and dL/db (dev[6]).
@compute @workgroup_size(64)
fn sigmoid_loss(@builtin(local_invocation_index) lid: u32) {
    var acc = vec2<f32>(0.0);
    var bias = 0.0;
    let n = min(params.window_rows, params.rows - min(params.rows, params.row_start));
    for (var r = lid; r < n; r += 64u) {
        let p = partials[r];
        acc += vec2<f32>(p.loss, p.grad_scale);
        bias += p.grad_bias;
    }
    var total = tree_sum2(lid, acc);
    // Every invocation has read the first tree's root before the second overwrites it.
    workgroupBarrier();
    var total_bias = tree_sum2(lid, vec2<f32>(bias, 0.0)).x;
    if (lid != 0u) {
        return;
    }
    if (params.accumulate != 0u) {
        total += vec2<f32>(bitcast<f32>(dev[1]), bitcast<f32>(dev[2]));
        total_bias += bitcast<f32>(dev[3]);
    }
    dev[1] = bitcast<u32>(total.x);
    dev[2] = bitcast<u32>(total.y);
    dev[3] = bitcast<u32>(total_bias);
    if (params.last != 0u) {
        dev[0] = bitcast<u32>(total.x * params.inv_n);
        dev[5] = bitcast<u32>(total.y);
        dev[6] = bitcast<u32>(total_bias);
    }
}

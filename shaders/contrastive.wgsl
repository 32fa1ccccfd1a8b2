// Contrastive loss: pair terms relu(d − p)^k for similar pairs and relu(m − d)^k for
// dissimilar ones (k = 2 squared hinge, 1 linear), their partial sums and counts, and the
// gradient with respect to the embeddings. Rows arrive already normalised when the host
// asked for it (normalize.wgsl), and cosine distance arrives as one-minus-dot.
//
// Bindings (group 0):
//   0 uniform        params    ContrastiveParams
//   1 storage, read  emb_a     batch: X (rows × dim); pairs: A
//   2 storage, read  classes   batch: dense class id per row; pairs: 1 similar, 0 dissimilar
//   3 storage, rw    partials  one Partial per row (batch) or per pair (pairs)
//   4 storage, rw    scales    [dL/dterm for similar terms, for dissimilar terms]
//   5 storage, rw    grad_a    batch: dL/dX; pairs: dL/dA
//   6 storage, read  emb_b     pairs: B
//   7 storage, rw    grad_b    pairs: dL/dB
//
// Invocation map:
//   contrastive_batch_forward   16 × 16 invocations per 16-row tile; the workgroup walks the
//                               column tiles at and right of its own, each invocation one
//                               pair (i < j counted once); row owners (tx = 0) sum the tile
//                               in a fixed order into a Kahan sum. No B×B buffer.
//   contrastive_finalize        one workgroup of 256 sums the per-row counts (as u64) in a
//                               fixed tree and writes the reduction's scales.
//   contrastive_batch_backward  16 × 16 per 16-row tile, over all column tiles: distances
//                               are recomputed, then invocation (ty, tx) owns dims
//                               k ≡ tx (mod 16) of row ty's gradient. One owner per value.
//   contrastive_pairs_forward   one invocation per pair, 64 per workgroup.
//   contrastive_pairs_backward  one invocation per pair, writing both gradient rows.

// Keep in sync with `ContrastiveParams` in src/gpu/params.rs.
struct ContrastiveParams {
    rows: u32,
    dim: u32,
    distance: u32,
    hinge: u32,
    reduction: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    pos_margin: f32,
    margin: f32,
    _pad3: f32,
    _pad4: f32,
}

// Keep in sync with `Reduction` in src/gpu/params.rs.
const REDUCTION_MEAN: u32 = 0u;
const REDUCTION_SUM: u32 = 1u;
const REDUCTION_MEAN_NONZERO: u32 = 2u;

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> params: ContrastiveParams;
@group(0) @binding(1) var<storage, read> emb_a: array<f32>;
@group(0) @binding(2) var<storage, read> classes: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> scales: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_a: array<f32>;
@group(0) @binding(6) var<storage, read> emb_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_b: array<f32>;

var<workgroup> row_tile: array<array<f32, TILE>, TILE>;
var<workgroup> col_tile: array<array<f32, TILE>, TILE>;
var<workgroup> tile_sim: array<array<f32, TILE>, TILE>;
var<workgroup> tile_dis: array<array<f32, TILE>, TILE>;
var<workgroup> tile_flags: array<array<u32, TILE>, TILE>;
var<workgroup> red: array<Count64, 256>;

fn hinge_arg(similar: bool, d: f32) -> f32 {
    if (similar) {
        return d - params.pos_margin;
    }
    return params.margin - d;
}

// Distance accumulator between row i (tile row ty) and row col_base + tx of emb_a, over
// all dims in chunks of TILE. Every invocation of the workgroup must call it (barriers).
fn tile_distance(i: u32, col_base: u32, ty: u32, tx: u32) -> f32 {
    var acc = 0.0;
    let j_load = col_base + ty;
    for (var k0 = 0u; k0 < params.dim; k0 += TILE) {
        let k = k0 + tx;
        var u = 0.0;
        var v = 0.0;
        if (i < params.rows && k < params.dim) {
            u = emb_a[i * params.dim + k];
        }
        if (j_load < params.rows && k < params.dim) {
            v = emb_a[j_load * params.dim + k];
        }
        row_tile[ty][tx] = u;
        col_tile[ty][tx] = v;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += dist_step(params.distance, row_tile[ty][kk], col_tile[tx][kk]);
        }
        workgroupBarrier();
    }
    return dist_finish(params.distance, acc);
}

@compute @workgroup_size(16, 16)
fn contrastive_batch_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let i = wg.x * TILE + ty;
    let n_tiles = (params.rows + TILE - 1u) / TILE;
    var sim = Kahan(0.0, 0.0);
    var dis = Kahan(0.0, 0.0);
    var counts = vec4<u32>(0u);
    for (var jt = wg.x; jt < n_tiles; jt++) {
        let j = jt * TILE + tx;
        let d = tile_distance(i, jt * TILE, ty, tx);
        var s = 0.0;
        var t = 0.0;
        var flags = 0u;
        if (i < params.rows && j < params.rows && j > i) {
            let similar = classes[i] == classes[j];
            let x = hinge_arg(similar, d);
            let term = hinge_value(params.hinge, x);
            let on = select(0u, 1u, x > 0.0);
            if (similar) {
                s = term;
                flags = 1u | (on << 2u);
            } else {
                t = term;
                flags = 2u | (on << 3u);
            }
        }
        tile_sim[ty][tx] = s;
        tile_dis[ty][tx] = t;
        tile_flags[ty][tx] = flags;
        workgroupBarrier();
        if (tx == 0u) {
            var ts = 0.0;
            var td = 0.0;
            for (var c = 0u; c < TILE; c++) {
                ts += tile_sim[ty][c];
                td += tile_dis[ty][c];
                let f = tile_flags[ty][c];
                counts += vec4<u32>(f & 1u, (f >> 1u) & 1u, (f >> 2u) & 1u, (f >> 3u) & 1u);
            }
            sim = kahan_add(sim, ts);
            dis = kahan_add(dis, td);
        }
        workgroupBarrier();
    }
    if (tx == 0u && i < params.rows) {
        partials[i] = Partial(sim.sum, dis.sum, counts.x, counts.y, counts.z, counts.w);
    }
}

@compute @workgroup_size(256)
fn contrastive_finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = Count64(vec4<u32>(0u), vec4<u32>(0u));
    for (var r = lid.x; r < params.rows; r += 256u) {
        let p = partials[r];
        let v = vec4<u32>(p.sim_pairs, p.dis_pairs, p.sim_active, p.dis_active);
        acc = count64_add(acc, Count64(v, vec4<u32>(0u)));
    }
    red[lid.x] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid.x < stride) {
            red[lid.x] = count64_add(red[lid.x], red[lid.x + stride]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        let total = red[0];
        var sim_scale = 1.0;
        var dis_scale = 1.0;
        if (params.reduction == REDUCTION_MEAN) {
            let pairs = count64_add(
                Count64(vec4<u32>(total.lo.x, 0u, 0u, 0u), vec4<u32>(total.hi.x, 0u, 0u, 0u)),
                Count64(vec4<u32>(total.lo.y, 0u, 0u, 0u), vec4<u32>(total.hi.y, 0u, 0u, 0u)),
            );
            let n = count64_to_f32(pairs.lo.x, pairs.hi.x);
            sim_scale = 0.0;
            if (n > 0.0) {
                sim_scale = 1.0 / n;
            }
            dis_scale = sim_scale;
        } else if (params.reduction == REDUCTION_MEAN_NONZERO) {
            let ns = count64_to_f32(total.lo.z, total.hi.z);
            let nd = count64_to_f32(total.lo.w, total.hi.w);
            sim_scale = 0.0;
            dis_scale = 0.0;
            if (ns > 0.0) {
                sim_scale = 1.0 / ns;
            }
            if (nd > 0.0) {
                dis_scale = 1.0 / nd;
            }
        }
        scales[0] = sim_scale;
        scales[1] = dis_scale;
    }
}

// dL/dd of one pair: the hinge's slope, signed (d − p grows with d, m − d shrinks) and
// scaled by the reduction.
fn term_slope(similar: bool, d: f32) -> f32 {
    let slope = hinge_slope(params.hinge, hinge_arg(similar, d));
    if (similar) {
        return slope * scales[0];
    }
    return -slope * scales[1];
}

@compute @workgroup_size(16, 16)
fn contrastive_batch_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let i = wg.x * TILE + ty;
    let n_tiles = (params.rows + TILE - 1u) / TILE;
    let dot_form = params.distance == DIST_ONE_MINUS_DOT;
    for (var jt = 0u; jt < n_tiles; jt++) {
        let j = jt * TILE + tx;
        let d = tile_distance(i, jt * TILE, ty, tx);
        var w = 0.0;
        if (i < params.rows && j < params.rows && j != i) {
            let similar = classes[i] == classes[j];
            w = term_slope(similar, d) * dist_grad_factor(params.distance, d);
        }
        tile_sim[ty][tx] = w;
        workgroupBarrier();
        let j_load = jt * TILE + ty;
        for (var k0 = 0u; k0 < params.dim; k0 += TILE) {
            let k = k0 + tx;
            var v = 0.0;
            if (j_load < params.rows && k < params.dim) {
                v = emb_a[j_load * params.dim + k];
            }
            col_tile[ty][tx] = v;
            workgroupBarrier();
            if (i < params.rows && k < params.dim) {
                let idx = i * params.dim + k;
                let u = emb_a[idx];
                var acc = 0.0;
                if (dot_form) {
                    for (var c = 0u; c < TILE; c++) {
                        acc -= tile_sim[ty][c] * col_tile[c][tx];
                    }
                } else {
                    for (var c = 0u; c < TILE; c++) {
                        acc += tile_sim[ty][c] * (u - col_tile[c][tx]);
                    }
                }
                if (jt == 0u) {
                    grad_a[idx] = acc;
                } else {
                    grad_a[idx] += acc;
                }
            }
            workgroupBarrier();
        }
    }
}

fn pair_distance(i: u32) -> f32 {
    let base = i * params.dim;
    var acc = 0.0;
    for (var k = 0u; k < params.dim; k++) {
        acc += dist_step(params.distance, emb_a[base + k], emb_b[base + k]);
    }
    return dist_finish(params.distance, acc);
}

@compute @workgroup_size(64)
fn contrastive_pairs_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.rows) {
        return;
    }
    let similar = classes[i] != 0u;
    let x = hinge_arg(similar, pair_distance(i));
    let term = hinge_value(params.hinge, x);
    let on = select(0u, 1u, x > 0.0);
    if (similar) {
        partials[i] = Partial(term, 0.0, 1u, 0u, on, 0u);
    } else {
        partials[i] = Partial(0.0, term, 0u, 1u, 0u, on);
    }
}

@compute @workgroup_size(64)
fn contrastive_pairs_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.rows) {
        return;
    }
    let d = pair_distance(i);
    let w = term_slope(classes[i] != 0u, d) * dist_grad_factor(params.distance, d);
    let base = i * params.dim;
    for (var k = 0u; k < params.dim; k++) {
        let u = emb_a[base + k];
        let v = emb_b[base + k];
        if (params.distance == DIST_ONE_MINUS_DOT) {
            grad_a[base + k] = -w * v;
            grad_b[base + k] = -w * u;
        } else {
            let g = w * (u - v);
            grad_a[base + k] = g;
            grad_b[base + k] = -g;
        }
    }
}

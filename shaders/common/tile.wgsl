// A 32×32 tile of pairwise distances computed by 8×8 invocations, each holding a 4×4
// register block: invocation (ty, tx) owns rows ty + 8r and columns tx + 8c of the tile and
// accumulates their distances from direct vec4 loads (8 loads per 64 pair-dims, no barrier).
// Depends on common/distance.wgsl and on the including module's globals:
//   rows, cols: array<vec4<f32>> (the row and column windows, zero-padded rows of dim4 vec4s)
//   params: a struct with fields dim4, distance (a DIST_* kind), rows and window_rows (u32)

// Rows (and columns) per tile. Keep in sync with `ROW_TILE` in src/engine/plan.rs.
const TILE: u32 = 32u;

// A 4×4 register block: row ty + 8r of the tile is `rr`, its columns tx + 8c the lanes.
// Four named vectors rather than an array, so that no local array is indexed dynamically.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// Four dims' contributions of row u against columns v0..v3: u·v, or |u − v|².
fn pair_terms4(dot_form: bool, u: vec4<f32>, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> vec4<f32> {
    if (dot_form) {
        return vec4<f32>(dot(u, v0), dot(u, v1), dot(u, v2), dot(u, v3));
    }
    let t0 = u - v0;
    let t1 = u - v1;
    let t2 = u - v2;
    let t3 = u - v3;
    return vec4<f32>(dot(t0, t0), dot(t1, t1), dot(t2, t2), dot(t3, t3));
}

// The 4×4 block of distances of invocation (ty, tx) between the row tile at window row
// `row_base` and the column tile at window row `col_base`.
fn block_distances(row_base: u32, col_base: u32, ty: u32, tx: u32) -> Block {
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let n = params.dim4;
    let dot_form = params.distance >= DIST_ONE_MINUS_DOT;
    let r0 = (row_base + ty) * n;
    let r1 = (row_base + ty + 8u) * n;
    let r2 = (row_base + ty + 16u) * n;
    let r3 = (row_base + ty + 24u) * n;
    let c0 = (col_base + tx) * n;
    let c1 = (col_base + tx + 8u) * n;
    let c2 = (col_base + tx + 16u) * n;
    let c3 = (col_base + tx + 24u) * n;
    for (var q = 0u; q < n; q++) {
        let u0 = rows[r0 + q];
        let u1 = rows[r1 + q];
        let u2 = rows[r2 + q];
        let u3 = rows[r3 + q];
        let v0 = cols[c0 + q];
        let v1 = cols[c1 + q];
        let v2 = cols[c2 + q];
        let v3 = cols[c3 + q];
        a0 += pair_terms4(dot_form, u0, v0, v1, v2, v3);
        a1 += pair_terms4(dot_form, u1, v0, v1, v2, v3);
        a2 += pair_terms4(dot_form, u2, v0, v1, v2, v3);
        a3 += pair_terms4(dot_form, u3, v0, v1, v2, v3);
    }
    let k = params.distance;
    return Block(dist_finish4(k, a0), dist_finish4(k, a1), dist_finish4(k, a2), dist_finish4(k, a3));
}

fn dist_finish4(kind: u32, acc: vec4<f32>) -> vec4<f32> {
    if (kind == DIST_EUCLIDEAN) {
        return sqrt(acc);
    }
    if (kind == DIST_SQUARED_EUCLIDEAN || kind == DIST_DOT) {
        return acc;
    }
    return vec4<f32>(1.0) - acc;
}

// Tiles of the window starting at global row `start` that hold rows of the batch.
fn tiles_in_window(start: u32) -> u32 {
    let left = params.rows - min(params.rows, start);
    return (min(left, params.window_rows) + TILE - 1u) / TILE;
}


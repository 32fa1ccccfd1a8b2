// The adapter's own limits, for reporting how far a loss kernel is from them
// (src/engine/probe.rs, `metric-loss bench --peak`):
//   probe_fma     registers only: 8 independent vec4 FMA chains per invocation, `iters`
//                 steps each (64 FLOPs per step), one store at the end
//   probe_stream  reads every vec4 of `data` `iters` times (invocation g reads g, g + n, ...
//                 for n invocations in all), one store per invocation
// Globals:
//   0 uniform        params  ProbeParams
//   1 storage, rw    out     one vec4 per invocation (keeps the work observable)
//   2 storage, read  data    probe_stream's input

// Keep in sync with `ProbeParams` in src/engine/probe.rs.
struct ProbeParams {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: ProbeParams;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> data: array<vec4<f32>>;

@compute @workgroup_size(64)
fn probe_fma(@builtin(global_invocation_id) g: vec3<u32>) {
    let s = vec4<f32>(f32(g.x) * 1e-7);
    var a0 = s;
    var a1 = s + 0.1;
    var a2 = s + 0.2;
    var a3 = s + 0.3;
    var a4 = s + 0.4;
    var a5 = s + 0.5;
    var a6 = s + 0.6;
    var a7 = s + 0.7;
    let m = vec4<f32>(0.999);
    let c = vec4<f32>(1e-3);
    for (var i = 0u; i < params.iters; i++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    out[g.x] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

@compute @workgroup_size(64)
fn probe_stream(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let n = nw.x * 64u;
    var s = vec4<f32>(0.0);
    for (var pass_ = 0u; pass_ < params.iters; pass_++) {
        for (var k = g.x; k < arrayLength(&data); k += n) {
            s += data[k];
        }
    }
    out[g.x] = s;
}

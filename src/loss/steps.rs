//! What every loss's host side shares: zero-padded uploads, the normalisation chain of each
//! input side, and a list of dispatches (`Step`s) bound to windows of workspace buffers.

use std::borrow::Cow;

use crate::gpu::params::NormalizeParams;
use crate::gpu::{Bound, Recorder};
use crate::loss::plan::{Plan, ROW_GROUP};
use crate::shape::Embeddings;

pub(crate) const NORMALIZE: &str = "normalize.wgsl";

/// Workspace roles of up to three input sides (A/X, B/P, N), so that sides never share a
/// buffer: raw rows, then each normalisation stage's rows and norms, and the gradient.
const RAW: [&str; 3] = ["a_raw", "b_raw", "n_raw"];
const STAGES: [[(&str, &str); 2]; 3] = [
    [("a_norm1", "a_norms1"), ("a_norm2", "a_norms2")],
    [("b_norm1", "b_norms1"), ("b_norm2", "b_norms2")],
    [("n_norm1", "n_norms1"), ("n_norm2", "n_norms2")],
];
const GRAD: [&str; 3] = ["grad_a", "grad_b", "grad_n"];

/// Rows zero-padded to a multiple of 4 values (borrowed when already a multiple).
pub(crate) fn padded<'a>(e: &Embeddings<'a>) -> Cow<'a, [f32]> {
    let (dim, dim4) = (e.dim(), e.dim().div_ceil(4) * 4);
    if dim == dim4 {
        return Cow::Borrowed(e.data());
    }
    let mut out = vec![0.0f32; e.rows() * dim4];
    for (dst, src) in out.chunks_exact_mut(dim4).zip(e.data().chunks_exact(dim)) {
        dst[..dim].copy_from_slice(src);
    }
    Cow::Owned(out)
}

/// One dispatch: its kernel, uniforms and bindings.
pub(crate) struct Step {
    pub module: &'static str,
    pub entry: &'static str,
    pub params: Vec<u8>,
    /// (binding, buffer index, bytes per row or 0 for the whole buffer, window index)
    pub bindings: Vec<(u32, usize, u64, u64)>,
    pub groups: u64,
}

/// Workspace buffers of one call, by index (what `Step` bindings refer to).
#[derive(Default)]
pub(crate) struct Buffers {
    pub list: Vec<Bound>,
}

impl Buffers {
    /// Adds a buffer; returns its index.
    pub fn push(&mut self, b: Bound) -> usize {
        self.list.push(b);
        self.list.len() - 1
    }
}

/// One input side on the device: its raw rows, then (rows, norms) per normalisation stage;
/// the distance kernels read the last rows.
pub(crate) struct Side {
    chain: Vec<(usize, Option<usize>)>,
    /// The gradient buffer, when gradients are wanted.
    pub grad: Option<usize>,
}

impl Side {
    /// The rows the distance kernels read.
    pub fn rows(&self) -> usize {
        self.chain.last().map_or(0, |c| c.0)
    }

    /// The raw (zero-padded) rows, as uploaded or gathered.
    pub fn raw(&self) -> usize {
        self.chain[0].0
    }
}

/// Uploads each side (zero-padded rows) and allocates its normalisation stages and gradient.
pub(crate) fn upload_sides(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    sides: &[Cow<'_, [f32]>],
    stages: usize,
    want_grads: bool,
) -> Vec<Side> {
    let out = alloc_sides(rec, plan, bufs, sides.len(), stages, want_grads);
    for (side, data) in out.iter().zip(sides) {
        rec.write(&bufs.list[side.raw()], bytemuck::cast_slice(data));
    }
    out
}

/// Allocates `count` sides' raw rows, normalisation stages and gradients, without data (the
/// device-resident path gathers the rows on the device).
pub(crate) fn alloc_sides(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &mut Buffers,
    count: usize,
    stages: usize,
    want_grads: bool,
) -> Vec<Side> {
    let emb = plan.capacity * plan.row_bytes;
    let mut out = Vec::new();
    for k in 0..count {
        let raw = rec.rows_buffer(RAW[k], emb, true);
        let mut chain = vec![(bufs.push(raw), None)];
        for &(rows_role, norms_role) in STAGES[k].iter().take(stages) {
            let r = bufs.push(rec.rows_buffer(rows_role, emb, false));
            let n = bufs.push(rec.rows_buffer(norms_role, plan.capacity * 4, false));
            chain.push((r, Some(n)));
        }
        let grad = want_grads.then(|| bufs.push(rec.rows_buffer(GRAD[k], emb, false)));
        out.push(Side { chain, grad });
    }
    out
}

fn normalize_params(plan: &Plan, w: u64) -> Vec<u8> {
    bytemuck::bytes_of(&NormalizeParams {
        rows: plan.rows as u32,
        dim4: plan.dim4 as u32,
        row_start: plan.start(w) as u32,
        window_rows: plan.window_rows as u32,
    })
    .to_vec()
}

/// Workgroups of the one-invocation-per-row kernels for window `w`.
pub(crate) fn row_groups(plan: &Plan, w: u64) -> u64 {
    plan.rows_in(w).div_ceil(ROW_GROUP)
}

/// The normalisation stages of every side, window by window.
pub(crate) fn normalize_forward(plan: &Plan, sides: &[Side]) -> Vec<Step> {
    let rb = plan.row_bytes;
    let mut steps = Vec::new();
    for side in sides {
        for pair in side.chain.windows(2) {
            let ((src, _), (dst, norms)) = (pair[0], pair[1]);
            for w in 0..plan.windows {
                steps.push(Step {
                    module: NORMALIZE,
                    entry: "normalize_forward",
                    params: normalize_params(plan, w),
                    bindings: vec![
                        (1, src, rb, w),
                        (2, dst, rb, w),
                        (3, norms.unwrap_or(0), 4, w),
                    ],
                    groups: row_groups(plan, w),
                });
            }
        }
    }
    steps
}

/// Back through every side's normalisation stages, in place in its gradient buffer.
pub(crate) fn normalize_backward(plan: &Plan, sides: &[Side]) -> Vec<Step> {
    let rb = plan.row_bytes;
    let mut steps = Vec::new();
    for side in sides {
        let Some(g) = side.grad else { continue };
        for &(xn, norms) in side.chain.iter().rev() {
            let Some(norms) = norms else { continue };
            for w in 0..plan.windows {
                steps.push(Step {
                    module: NORMALIZE,
                    entry: "normalize_backward",
                    params: normalize_params(plan, w),
                    bindings: vec![(2, xn, rb, w), (3, norms, 4, w), (4, g, rb, w)],
                    groups: row_groups(plan, w),
                });
            }
        }
    }
    steps
}

/// Records `steps` in order: one uniform slot each, bindings cut into their windows.
pub(crate) fn record(rec: &mut Recorder<'_>, plan: &Plan, bufs: &Buffers, steps: &[Step]) {
    let slots: Vec<&[u8]> = steps.iter().map(|s| s.params.as_slice()).collect();
    let uniforms = rec.uniforms("params", &slots);
    for (step, uniform) in steps.iter().zip(&uniforms) {
        let windows: Vec<Bound> = step
            .bindings
            .iter()
            .map(|&(_, i, per_row, w)| {
                if per_row == 0 {
                    bufs.list[i].clone()
                } else {
                    let size = plan.window_rows * per_row;
                    bufs.list[i].window(w * size, size)
                }
            })
            .collect();
        let bound: Vec<(u32, &Bound)> = step
            .bindings
            .iter()
            .zip(&windows)
            .map(|(b, w)| (b.0, w))
            .collect();
        rec.dispatch(step.module, step.entry, uniform, &bound, step.groups as u32);
    }
}

/// Ends a call's recording: the normalisation stages' backward passes after `steps`, every
/// dispatch, then the readback of `partial_bytes` per row of buffer `partials` and of every
/// side's gradient (split again by [`split_readback`]).
pub(crate) fn finish_recording(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    bufs: &Buffers,
    mut steps: Vec<Step>,
    sides: &[Side],
    partials: usize,
    partial_bytes: u64,
) {
    steps.extend(normalize_backward(plan, sides));
    record(rec, plan, bufs, &steps);
    rec.read_back(&bufs.list[partials], plan.rows * partial_bytes);
    for g in sides.iter().filter_map(|s| s.grad) {
        rec.read_back(&bufs.list[g], plan.rows * plan.row_bytes);
    }
}

/// Splits what [`finish_recording`] read back into the per-row partials' bytes and the
/// gradients, unpadded to `dim` values a row.
pub(crate) fn split_readback<'a>(
    bytes: &'a [u8],
    plan: &Plan,
    partial_bytes: u64,
    dim: usize,
) -> (&'a [u8], Vec<Vec<f32>>) {
    let (partials, rest) = bytes.split_at((plan.rows * partial_bytes) as usize);
    let grads = rest
        .chunks_exact((plan.rows * plan.row_bytes) as usize)
        .map(|c| {
            let padded: &[f32] = bytemuck::cast_slice(c);
            padded
                .chunks_exact((plan.dim4 * 4) as usize)
                .flat_map(|r| &r[..dim])
                .copied()
                .collect()
        })
        .collect();
    (partials, grads)
}

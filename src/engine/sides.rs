//! Input sides on the device: each input's raw rows (zero-padded to whole vec4s), the rows
//! and norms of each normalisation stage, and its gradient; with the normalisation kernels
//! (shaders/normalize.wgsl) forward and backward.

use crate::engine::rows::GradLayout;
use std::borrow::Cow;

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use super::kernel::Layout;
use super::kernel::{mirrored, Kernel, Slot, Step, Table};
use super::plan::Plan;
use super::recorder::{Recorder, RowBuf};
use super::shader::Module;

pub(crate) static MODULE: Module = Module {
    file: "normalize.wgsl",
    source: include_str!("../../shaders/normalize.wgsl"),
    includes: &[],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// Keep in sync with `NormalizeParams` in shaders/normalize.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct NormalizeParams {
    pub rows: u32,
    pub dim4: u32,
    pub row_start: u32,
    pub window_rows: u32,
}
mirrored!(
    NormalizeParams,
    "NormalizeParams",
    [rows, dim4, row_start, window_rows]
);

const SRC: Slot = Slot::read(1, "src");
const DST: Slot = Slot::read_write(2, "dst");
const NORMS: Slot = Slot::read_write(3, "norms");
const GRAD: Slot = Slot::read_write(4, "grad");

static FORWARD: Kernel<NormalizeParams> =
    Kernel::new(&MODULE, "normalize_forward", &[SRC, DST, NORMS]);
static BACKWARD: Kernel<NormalizeParams> =
    Kernel::new(&MODULE, "normalize_backward", &[DST, NORMS, GRAD]);

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&FORWARD.info, &BACKWARD.info],
    #[cfg(test)]
    structs: &[Layout::of::<NormalizeParams>()],
};

/// Workspace roles of up to three input sides (A/X, B/P, N), so that sides never share a
/// buffer: raw rows, then each normalisation stage's rows and norms, and the gradient.
const RAW: [&str; 3] = ["a_raw", "b_raw", "n_raw"];
const STAGES: [[(&str, &str); 2]; 3] = [
    [("a_norm1", "a_norms1"), ("a_norm2", "a_norms2")],
    [("b_norm1", "b_norms1"), ("b_norm2", "b_norms2")],
    [("n_norm1", "n_norms1"), ("n_norm2", "n_norms2")],
];
const GRADS: [&str; 3] = ["grad_a", "grad_b", "grad_n"];

/// One input side on the device: its raw rows, then (rows, norms) per normalisation stage;
/// the family's kernels read the last rows.
pub(crate) struct Side {
    raw: RowBuf,
    stages: Vec<(RowBuf, RowBuf)>,
    /// The gradient buffer, when gradients are wanted.
    pub grad: Option<RowBuf>,
    /// The plan over this side's rows (a call's sides may differ in length).
    pub plan: Plan,
}

impl Side {
    /// The rows the family's kernels read.
    pub fn rows(&self) -> &RowBuf {
        self.stages.last().map_or(&self.raw, |s| &s.0)
    }

    /// The raw (zero-padded) rows, as uploaded or gathered.
    pub fn raw(&self) -> &RowBuf {
        &self.raw
    }
}

/// Rows of `dim` values zero-padded to a multiple of 4 values (borrowed when already a
/// multiple).
pub(crate) fn padded<T: Copy + Default>(data: &[T], dim: usize) -> Cow<'_, [T]> {
    let dim4 = dim.div_ceil(4) * 4;
    if dim == dim4 {
        return Cow::Borrowed(data);
    }
    let mut out = vec![T::default(); data.len() / dim * dim4];
    for (dst, src) in out.chunks_exact_mut(dim4).zip(data.chunks_exact(dim)) {
        dst[..dim].copy_from_slice(src);
    }
    Cow::Owned(out)
}

/// Allocates the raw rows, normalisation stages and gradients of sides of `rows` rows each
/// (the device-resident path gathers the rows on the device; the host path writes them);
/// side k gets a gradient when `want_grad(k)`.
pub(crate) fn alloc(
    rec: &mut Recorder<'_>,
    plan: &Plan,
    rows: &[u64],
    stages: usize,
    want_grad: impl Fn(usize) -> bool,
) -> Vec<Side> {
    let rb = plan.row_bytes;
    rows.iter()
        .enumerate()
        .map(|(k, &n)| Side {
            plan: plan.for_rows(n),
            raw: rec.rows(RAW[k], rb, true),
            stages: STAGES[k]
                .iter()
                .take(stages)
                .map(|&(rows, norms)| (rec.rows(rows, rb, false), rec.rows(norms, 4, false)))
                .collect(),
            grad: want_grad(k).then(|| rec.rows(GRADS[k], rb, false)),
        })
        .collect()
}

fn params(plan: &Plan, w: u64) -> NormalizeParams {
    NormalizeParams {
        rows: plan.rows as u32,
        dim4: plan.dim4 as u32,
        row_start: plan.start(w) as u32,
        window_rows: plan.window_rows as u32,
    }
}

/// The normalisation stages of every side, window by window.
pub(crate) fn forward(sides: &[Side]) -> Vec<Step> {
    let mut steps = Vec::new();
    for side in sides {
        let plan = &side.plan;
        let mut src = &side.raw;
        for (dst, norms) in &side.stages {
            for w in 0..plan.windows {
                steps.push(
                    Step::new(&FORWARD, params(plan, w), plan.row_groups(w))
                        .bind(SRC, src.win(w))
                        .bind(DST, dst.win(w))
                        .bind(NORMS, norms.win(w)),
                );
            }
            src = dst;
        }
    }
    steps
}

/// Back through every side's normalisation stages, last first, in place in its gradient.
pub(crate) fn backward(sides: &[Side]) -> Vec<Step> {
    let mut steps = Vec::new();
    for side in sides {
        let plan = &side.plan;
        let Some(g) = &side.grad else { continue };
        for (rows, norms) in side.stages.iter().rev() {
            for w in 0..plan.windows {
                steps.push(
                    Step::new(&BACKWARD, params(plan, w), plan.row_groups(w))
                        .bind(DST, rows.win(w))
                        .bind(NORMS, norms.win(w))
                        .bind(GRAD, g.win(w)),
                );
            }
        }
    }
    steps
}

//! The host's side of shaders/sigmoid.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, REDUCE, SMOOTH};

pub(crate) static MODULE: Module = Module {
    file: "sigmoid.wgsl",
    source: include_str!("../../../shaders/sigmoid.wgsl"),
    includes: &[&REDUCE, &SMOOTH],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The sweeps on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "sigmoid_rows.wgsl",
    source: include_str!("../../../shaders/sigmoid_rows.wgsl"),
    includes: &[],
    maps: &[
        RowMap {
            name: "terms",
            grad: false,
        },
        RowMap {
            name: "pairs",
            grad: true,
        },
    ],
    grad: GradLayout::Scalars,
    staged: true,
    base: Some(&MODULE),
};

/// Keep in sync with `SigmoidParams` in shaders/sigmoid.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct SigmoidParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// Rows of the column side.
    pub cols: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into the partials and gradients; 0: overwrite.
    pub accumulate: u32,
    /// 0 when the rows are A, 1 when they are B.
    pub side: u32,
    /// sigmoid_loss: the last row window.
    pub last: u32,
    /// t = exp(t′).
    pub scale: f32,
    /// b.
    pub bias: f32,
    /// dL/dterm, 1/N.
    pub inv_n: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
    pub _pad3: u32,
}
mirrored!(
    SigmoidParams,
    "SigmoidParams",
    [
        rows,
        dim4,
        cols,
        row_start,
        col_start,
        window_rows,
        accumulate,
        side,
        last,
        scale,
        bias,
        inv_n,
        _pad0,
        _pad1,
        _pad2,
        _pad3
    ]
);

/// Keep in sync with `SigmoidPartial` in shaders/sigmoid.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct SigmoidPartial {
    pub loss: f32,
    pub grad_scale: f32,
    pub grad_bias: f32,
    pub positives: u32,
}
mirrored!(
    SigmoidPartial,
    "SigmoidPartial",
    [loss, grad_scale, grad_bias, positives]
);

pub(crate) use crate::engine::kernel::{COLS, COL_CLASS, ROWS, ROW_CLASS};
pub(crate) const PARTIALS: Slot = Slot::read_write(5, "partials");
pub(crate) const GRAD: Slot = Slot::read_write(6, "grad");
pub(crate) const DEV: Slot = Slot::read_write(7, "dev");

/// A sigmoid entry point.
pub(crate) type K = Kernel<SigmoidParams>;

const SWEEP_SLOTS: [Slot; 5] = [ROWS, COLS, ROW_CLASS, COL_CLASS, PARTIALS];
const GRAD_SLOTS: [Slot; 6] = [ROWS, COLS, ROW_CLASS, COL_CLASS, PARTIALS, GRAD];

pub(crate) static LOSS: K = K::new(&MODULE, "sigmoid_loss", &[PARTIALS, DEV]);
pub(crate) static ROWS_TERMS: K = K::new(&ROWS_MODULE, "sigmoid_rows_terms", &SWEEP_SLOTS);
pub(crate) static ROWS_GRAD: K = K::new(&ROWS_MODULE, "sigmoid_rows_grad", &GRAD_SLOTS);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_TERMS.info, &ROWS_GRAD.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&LOSS.info],
    #[cfg(test)]
    structs: &[
        Layout::of::<SigmoidParams>(),
        Layout::of::<SigmoidPartial>(),
    ],
};

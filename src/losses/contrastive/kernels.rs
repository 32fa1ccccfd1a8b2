//! The host's side of shaders/contrastive.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, DISTANCE, HINGE, REDUCE};

pub(crate) static MODULE: Module = Module {
    file: "contrastive.wgsl",
    source: include_str!("../../../shaders/contrastive.wgsl"),
    includes: &[&DISTANCE, &HINGE, &REDUCE],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The batch mode on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "contrastive_rows.wgsl",
    source: include_str!("../../../shaders/contrastive_rows.wgsl"),
    includes: &[],
    maps: &[RowMap {
        name: "contrastive",
        grad: true,
    }],
    grad: GradLayout::Scalars,
    staged: true,
    base: Some(&MODULE),
};

/// Keep in sync with `ContrastiveParams` in shaders/contrastive.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct ContrastiveParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// `Distance::kernel_kind`.
    pub distance: u32,
    /// `Hinge::kernel_kind`.
    pub hinge: u32,
    /// `Reduction::kernel_code`.
    pub reduction: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into partials and gradients; 0: overwrite.
    pub accumulate: u32,
    /// contrastive_finalize, contrastive_loss: 1 on the last window.
    pub last: u32,
    /// Rows of the column side.
    pub cols: u32,
    /// `Pairing` (steps.rs): which pairs of the rows and columns exist.
    pub pairing: u32,
    pub pos_margin: f32,
    pub margin: f32,
    /// `PAIRING_*_ITSELF`: the queries' first row among the references.
    pub offset: u32,
    pub _pad3: f32,
}
mirrored!(
    ContrastiveParams,
    "ContrastiveParams",
    [
        rows,
        dim4,
        distance,
        hinge,
        reduction,
        row_start,
        col_start,
        window_rows,
        accumulate,
        last,
        cols,
        pairing,
        pos_margin,
        margin,
        offset,
        _pad3
    ]
);

/// Keep in sync with `ContrastivePartial` in shaders/contrastive.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct ContrastivePartial {
    pub sim_sum: f32,
    pub sim_carry: f32,
    pub dis_sum: f32,
    pub dis_carry: f32,
    pub sim_pairs: u32,
    pub dis_pairs: u32,
    pub sim_active: u32,
    pub dis_active: u32,
}
mirrored!(
    ContrastivePartial,
    "ContrastivePartial",
    [sim_sum, sim_carry, dis_sum, dis_carry, sim_pairs, dis_pairs, sim_active, dis_active]
);

pub(crate) use crate::engine::kernel::{COLS, COL_CLASS, ROWS, ROW_CLASS};
pub(crate) const PARTIALS: Slot = Slot::read_write(5, "partials");
pub(crate) const SCALES: Slot = Slot::read_write(6, "scales");
pub(crate) const GRAD: Slot = Slot::read_write(7, "grad");
pub(crate) const GRAD_B: Slot = Slot::read_write(8, "grad_b");
pub(crate) const LOSS_OUT: Slot = Slot::read_write(9, "loss_out");

/// A contrastive entry point.
pub(crate) type K = Kernel<ContrastiveParams>;

/// The batch forward pass's slots.
const SWEEP_SLOTS: [Slot; 5] = [ROWS, COLS, ROW_CLASS, COL_CLASS, PARTIALS];
/// The gradient passes' slots (fused or not).
const GRAD_SLOTS: [Slot; 7] = [ROWS, COLS, ROW_CLASS, COL_CLASS, PARTIALS, SCALES, GRAD];

pub(crate) static FINALIZE: K = K::new(&MODULE, "contrastive_finalize", &[PARTIALS, SCALES]);
pub(crate) static LOSS: K = K::new(&MODULE, "contrastive_loss", &[PARTIALS, SCALES, LOSS_OUT]);
pub(crate) static PAIRS_FORWARD: K = K::new(
    &MODULE,
    "contrastive_pairs_forward",
    &[ROWS, COLS, ROW_CLASS, PARTIALS],
);
pub(crate) static PAIRS_BACKWARD: K = K::new(
    &MODULE,
    "contrastive_pairs_backward",
    &[ROWS, COLS, ROW_CLASS, SCALES, GRAD, GRAD_B],
);

pub(crate) static ROWS_FORWARD: K = K::new(&ROWS_MODULE, "contrastive_rows_forward", &SWEEP_SLOTS);
pub(crate) static ROWS_FUSED: K = K::new(&ROWS_MODULE, "contrastive_rows_fused", &GRAD_SLOTS);
pub(crate) static ROWS_BACKWARD: K = K::new(&ROWS_MODULE, "contrastive_rows_backward", &GRAD_SLOTS);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_FORWARD.info, &ROWS_FUSED.info, &ROWS_BACKWARD.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[
        &FINALIZE.info,
        &LOSS.info,
        &PAIRS_FORWARD.info,
        &PAIRS_BACKWARD.info,
    ],
    #[cfg(test)]
    structs: &[
        Layout::of::<ContrastiveParams>(),
        Layout::of::<ContrastivePartial>(),
    ],
};

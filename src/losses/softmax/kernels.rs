//! The host's side of shaders/softmax.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, DISTANCE, LOGSUMEXP, REDUCE, SMOOTH};

pub(crate) static MODULE: Module = Module {
    file: "softmax.wgsl",
    source: include_str!("../../../shaders/softmax.wgsl"),
    includes: &[&DISTANCE, &REDUCE, &SMOOTH, &LOGSUMEXP],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The sweeps on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "softmax_rows.wgsl",
    source: include_str!("../../../shaders/softmax_rows.wgsl"),
    includes: &[],
    maps: &[
        RowMap {
            name: "lse",
            grad: false,
        },
        RowMap {
            name: "positives",
            grad: false,
        },
        RowMap {
            name: "weights",
            grad: true,
        },
    ],
    grad: GradLayout::Scalars,
    staged: true,
    base: Some(&MODULE),
};

/// Keep in sync with `SoftmaxParams` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct SoftmaxParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// Rows of the column side (keys may outnumber anchors).
    pub cols: u32,
    /// `SoftmaxLoss::family`: 0 ntxent, 1 supcon, 2 clip.
    pub family: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into stats, partials and gradients; 0: overwrite.
    pub accumulate: u32,
    /// clip: 0 when the rows are A, 1 when they are B.
    pub side: u32,
    /// 1: dL/dterm is counted on the device (device-resident calls), not `scale`.
    pub device: u32,
    /// softmax_count, softmax_loss: the last row window.
    pub last: u32,
    /// ntxent: 1 when no row has more than one positive (the host knows from its labels):
    /// softmax_finish then takes each row's one positive logit from softmax_stats's Σ z, and
    /// softmax_positives does not run.
    pub single_positive: u32,
    /// 1/τ.
    pub inv_temp: f32,
    /// dL/dterm.
    pub scale: f32,
    /// clip/infonce: 1 with the reverse term.
    pub symmetric: u32,
    /// `Pairing` (steps.rs): how the rows meet the columns.
    pub pairing: u32,
    /// `PAIRING_REFERENCE_HAS_QUERIES`: the queries' first row among the references.
    pub offset: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
mirrored!(
    SoftmaxParams,
    "SoftmaxParams",
    [
        rows,
        dim4,
        cols,
        family,
        row_start,
        col_start,
        window_rows,
        accumulate,
        side,
        device,
        last,
        single_positive,
        inv_temp,
        scale,
        symmetric,
        pairing,
        offset,
        _pad0,
        _pad1,
        _pad2
    ]
);

/// Keep in sync with `SoftmaxStats` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct SoftmaxStats {
    pub max: f32,
    pub sum: f32,
    pub pos: f32,
    pub pos_n: u32,
    pub lse: f32,
    pub coef_den: f32,
    pub coef_pos: f32,
    pub weight: f32,
}
mirrored!(
    SoftmaxStats,
    "SoftmaxStats",
    [max, sum, pos, pos_n, lse, coef_den, coef_pos, weight]
);

/// Keep in sync with `SoftmaxPartial` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct SoftmaxPartial {
    pub loss: f32,
    pub loss_b: f32,
    pub grad_tau: f32,
    pub terms: u32,
}
mirrored!(
    SoftmaxPartial,
    "SoftmaxPartial",
    [loss, loss_b, grad_tau, terms]
);

pub(crate) use crate::engine::kernel::{COLS, COL_CLASS, ROWS, ROW_CLASS};
pub(crate) const STATS: Slot = Slot::read_write(5, "stats");
pub(crate) const ROW_COEFS: Slot = Slot::read(6, "row_coefs");
pub(crate) const COL_COEFS: Slot = Slot::read(7, "col_coefs");
pub(crate) const PARTIALS: Slot = Slot::read_write(8, "partials");
pub(crate) const GRAD: Slot = Slot::read_write(9, "grad");
pub(crate) const DEV: Slot = Slot::read_write(10, "dev");
pub(crate) const COEFS: Slot = Slot::read_write(11, "coefs");

/// A softmax entry point.
pub(crate) type K = Kernel<SoftmaxParams>;

/// The statistics sweeps' slots (statistics and positives).
const STATS_SLOTS: [Slot; 5] = [ROWS, COLS, ROW_CLASS, COL_CLASS, STATS];
/// The gradient sweep's slots.
const GRAD_SLOTS: [Slot; 8] = [
    ROWS, COLS, ROW_CLASS, COL_CLASS, ROW_COEFS, COL_COEFS, PARTIALS, GRAD,
];

pub(crate) static COUNT: K = K::new(&MODULE, "softmax_count", &[STATS, DEV]);
pub(crate) static FINISH: K = K::new(&MODULE, "softmax_finish", &[STATS, PARTIALS, DEV, COEFS]);
pub(crate) static LOSS: K = K::new(&MODULE, "softmax_loss", &[PARTIALS, DEV]);

pub(crate) static ROWS_STATS: K = K::new(&ROWS_MODULE, "softmax_rows_stats", &STATS_SLOTS);
pub(crate) static ROWS_POSITIVES: K = K::new(&ROWS_MODULE, "softmax_rows_positives", &STATS_SLOTS);
pub(crate) static ROWS_GRAD: K = K::new(&ROWS_MODULE, "softmax_rows_grad", &GRAD_SLOTS);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_STATS.info, &ROWS_POSITIVES.info, &ROWS_GRAD.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&COUNT.info, &FINISH.info, &LOSS.info],
    #[cfg(test)]
    structs: &[
        Layout::of::<SoftmaxParams>(),
        Layout::of::<SoftmaxStats>(),
        Layout::of::<SoftmaxPartial>(),
    ],
};

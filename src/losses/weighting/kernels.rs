//! The host's side of shaders/weighting.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, LOGSUMEXP, REDUCE, SMOOTH};

pub(crate) static MODULE: Module = Module {
    file: "weighting.wgsl",
    source: include_str!("../../../shaders/weighting.wgsl"),
    includes: &[&REDUCE, &SMOOTH, &LOGSUMEXP],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The sweeps on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "weighting_rows.wgsl",
    source: include_str!("../../../shaders/weighting_rows.wgsl"),
    includes: &[],
    maps: &[
        RowMap {
            name: "bounds",
            grad: false,
        },
        RowMap {
            name: "lse",
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

/// Keep in sync with `WeightingParams` in shaders/weighting.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct WeightingParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into the stats, counts and gradients; 0: overwrite.
    pub accumulate: u32,
    /// weighting_count, weighting_loss: the last row window.
    pub last: u32,
    /// `Weighting::kernel_code`.
    pub loss: u32,
    /// Multi-Similarity: 1 with the miner.
    pub mine: u32,
    pub _pad0: u32,
    pub alpha: f32,
    pub beta: f32,
    pub base: f32,
    pub epsilon: f32,
    pub margin: f32,
    pub gamma: f32,
}
mirrored!(
    WeightingParams,
    "WeightingParams",
    [
        rows,
        dim4,
        row_start,
        col_start,
        window_rows,
        accumulate,
        last,
        loss,
        mine,
        _pad0,
        alpha,
        beta,
        base,
        epsilon,
        margin,
        gamma
    ]
);

/// Keep in sync with `WeightingStats` in shaders/weighting.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct WeightingStats {
    pub max_neg: f32,
    pub min_pos: f32,
    pub pos_m: f32,
    pub pos_s: f32,
    pub neg_m: f32,
    pub neg_s: f32,
    pub n_pos: u32,
    pub n_neg: u32,
}
mirrored!(
    WeightingStats,
    "WeightingStats",
    [max_neg, min_pos, pos_m, pos_s, neg_m, neg_s, n_pos, n_neg]
);

/// Keep in sync with `WeightingPartial` in shaders/weighting.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct WeightingPartial {
    pub loss: f32,
    pub positives: u32,
    pub negatives: u32,
    pub counted: u32,
}
mirrored!(
    WeightingPartial,
    "WeightingPartial",
    [loss, positives, negatives, counted]
);

pub(crate) use crate::engine::kernel::{COLS, COL_CLASS, ROWS, ROW_CLASS};
pub(crate) const STATS: Slot = Slot::read_write(5, "stats");
pub(crate) const ROW_COEFS: Slot = Slot::read(6, "row_coefs");
pub(crate) const COL_COEFS: Slot = Slot::read(7, "col_coefs");
pub(crate) const PARTIALS: Slot = Slot::read_write(8, "partials");
pub(crate) const GRAD: Slot = Slot::read_write(9, "grad");
pub(crate) const DEV: Slot = Slot::read_write(10, "dev");
pub(crate) const COEFS: Slot = Slot::read_write(11, "coefs");
pub(crate) const TOTALS: Slot = Slot::read(12, "totals");

/// A weighting entry point.
pub(crate) type K = Kernel<WeightingParams>;

const STATS_SLOTS: [Slot; 5] = [ROWS, COLS, ROW_CLASS, COL_CLASS, STATS];
const GRAD_SLOTS: [Slot; 8] = [
    ROWS, COLS, ROW_CLASS, COL_CLASS, ROW_COEFS, COL_COEFS, GRAD, TOTALS,
];

pub(crate) static COUNT: K = K::new(&MODULE, "weighting_count", &[STATS, DEV]);
pub(crate) static FINISH: K = K::new(&MODULE, "weighting_finish", &[STATS, PARTIALS, COEFS]);
pub(crate) static LOSS: K = K::new(&MODULE, "weighting_loss", &[PARTIALS, DEV]);

pub(crate) static ROWS_BOUNDS: K = K::new(&ROWS_MODULE, "weighting_rows_bounds", &STATS_SLOTS);
pub(crate) static ROWS_LSE: K = K::new(&ROWS_MODULE, "weighting_rows_lse", &STATS_SLOTS);
pub(crate) static ROWS_GRAD: K = K::new(&ROWS_MODULE, "weighting_rows_grad", &GRAD_SLOTS);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_BOUNDS.info, &ROWS_LSE.info, &ROWS_GRAD.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&COUNT.info, &FINISH.info, &LOSS.info],
    #[cfg(test)]
    structs: &[
        Layout::of::<WeightingParams>(),
        Layout::of::<WeightingStats>(),
        Layout::of::<WeightingPartial>(),
    ],
};

//! The host's side of shaders/measure.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, DISTANCE};

/// k-NN, the largest distance and the histograms on the pair engine (either shape).
pub(crate) static MODULE: Module = Module {
    file: "measure.wgsl",
    source: include_str!("../../shaders/measure.wgsl"),
    includes: &[&DISTANCE],
    maps: &[
        RowMap {
            name: "knn",
            grad: false,
        },
        RowMap {
            name: "span",
            grad: false,
        },
        RowMap {
            name: "hist",
            grad: false,
        },
    ],
    grad: GradLayout::None,
    staged: true,
    base: None,
};

/// Keep in sync with `MeasureParams` in shaders/measure.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct MeasureParams {
    /// Rows of the row side.
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// `Distance::kernel_kind`.
    pub distance: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 0 on a row window's first column window: the k-NN lists start empty, the largest
    /// distance at 0.
    pub accumulate: u32,
    /// Rows of the column side.
    pub cols: u32,
    /// `Pairing` (steps.rs).
    pub pairing: u32,
    /// Neighbours per row.
    pub k: u32,
    /// Histogram bins.
    pub bins: u32,
    /// Histogram copies: workgroup w adds into copy w mod copies.
    pub copies: u32,
    /// The histograms' upper edge.
    pub hi: f32,
    /// The window-local columns [first, last) of this dispatch.
    pub first: u32,
    pub last: u32,
    pub _pad0: u32,
}
mirrored!(
    MeasureParams,
    "MeasureParams",
    [
        rows,
        dim4,
        distance,
        row_start,
        col_start,
        window_rows,
        accumulate,
        cols,
        pairing,
        k,
        bins,
        copies,
        hi,
        first,
        last,
        _pad0
    ]
);

/// One entry of a row's k-NN list. Keep in sync with `KnnEntry` in shaders/measure.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct KnnEntry {
    /// The ranking key: the squared distance, or 1 − dot for cosine.
    pub key: f32,
    /// The reference's row.
    pub index: u32,
}
mirrored!(KnnEntry, "KnnEntry", [key, index]);

pub(crate) use crate::engine::kernel::{COLS, ROWS};
pub(crate) const KNN: Slot = Slot::read_write(3, "knn");
pub(crate) const ROW_CLASS: Slot = Slot::read(4, "row_class");
pub(crate) const COL_CLASS: Slot = Slot::read(5, "col_class");
pub(crate) const HIST: Slot = Slot::read_write(6, "hist");
pub(crate) const SPAN: Slot = Slot::read_write(7, "span");
pub(crate) const TOTALS: Slot = Slot::read_write(8, "totals");

/// A measurement entry point.
pub(crate) type K = Kernel<MeasureParams>;

pub(crate) static KNN_SWEEP: K = K::new(&MODULE, "measure_knn", &[ROWS, COLS, KNN]);
pub(crate) static SPAN_SWEEP: K = K::new(&MODULE, "measure_span", &[ROWS, COLS, SPAN]);
pub(crate) static HIST_SWEEP: K = K::new(
    &MODULE,
    "measure_hist",
    &[ROWS, COLS, ROW_CLASS, COL_CLASS, HIST],
);
pub(crate) static HIST_FLUSH: K = K::new(&MODULE, "measure_hist_flush", &[HIST, TOTALS]);

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[
        &KNN_SWEEP.info,
        &SPAN_SWEEP.info,
        &HIST_SWEEP.info,
        &HIST_FLUSH.info,
    ],
    #[cfg(test)]
    structs: &[Layout::of::<MeasureParams>(), Layout::of::<KnnEntry>()],
};

//! The host's side of shaders/triplet.wgsl: its module, the structs it mirrors, and its
//! entry points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, DISTANCE, REDUCE, SMOOTH};

pub(crate) static MODULE: Module = Module {
    file: "triplet.wgsl",
    source: include_str!("../../../shaders/triplet.wgsl"),
    includes: &[&DISTANCE, &REDUCE, &SMOOTH],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The mining distance phase on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "triplet_rows.wgsl",
    source: include_str!("../../../shaders/triplet_rows.wgsl"),
    includes: &[],
    maps: &[RowMap {
        name: "distances",
        grad: false,
    }],
    grad: GradLayout::Vec4s,
    staged: true,
    base: Some(&MODULE),
};

/// Batch-hard fused into the sweep, on the register-row shape only.
pub(crate) static HARD_MODULE: Module = Module {
    file: "triplet_hard.wgsl",
    source: include_str!("../../../shaders/triplet_hard.wgsl"),
    includes: &[],
    maps: &[RowMap {
        name: "hardest",
        grad: false,
    }],
    grad: GradLayout::Vec4s,
    staged: false,
    base: Some(&MODULE),
};

/// Keep in sync with `TripletParams` in shaders/triplet.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct TripletParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// `Distance::kernel_kind`.
    pub distance: u32,
    /// 1: soft margin log(1 + exp(x)); 0: relu(x + margin).
    pub soft: u32,
    /// 1: the negative distance is min(d(a, n), d(p, n)).
    pub swap: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into the gradient; 0: overwrite it.
    pub accumulate: u32,
    /// Mined: the anchor chunk's first row, relative to the row window.
    pub chunk_local: u32,
    /// Mined: row stride of the per-chunk distance, weight and choice buffers.
    pub stride: u32,
    /// `Reduction::kernel_code` (triplet_finalize, triplet_loss).
    pub reduction: u32,
    pub margin: f32,
    /// Explicit triplets: dL/dterm (1/N for mean, 1 for sum).
    pub scale: f32,
    /// triplet_loss: the last window.
    pub last: u32,
    /// Mined: candidates (the batch's rows, or the reference rows); the distance phase:
    /// the anchors (its held rows are the candidates, `rows`).
    pub cols: u32,
    /// Mined: candidate `self_at + a` is anchor a's own row; `u32::MAX`: none.
    pub self_at: u32,
    pub _pad2: u32,
    pub _pad3: u32,
    pub _pad4: u32,
}
mirrored!(
    TripletParams,
    "TripletParams",
    [
        rows,
        dim4,
        distance,
        soft,
        swap,
        row_start,
        col_start,
        window_rows,
        accumulate,
        chunk_local,
        stride,
        reduction,
        margin,
        scale,
        last,
        cols,
        self_at,
        _pad2,
        _pad3,
        _pad4
    ]
);

/// Keep in sync with `TripletPartial` in shaders/triplet.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct TripletPartial {
    pub sum: f32,
    pub carry: f32,
    pub terms_lo: u32,
    pub terms_hi: u32,
    pub active_lo: u32,
    pub active_hi: u32,
    /// Mined: how many weights of the anchor's row are non-zero (listed in `nonzero_cols`).
    pub nonzero: u32,
    pub _pad: u32,
}
mirrored!(
    TripletPartial,
    "TripletPartial",
    [sum, carry, terms_lo, terms_hi, active_lo, active_hi, nonzero, _pad]
);

pub(crate) use crate::engine::kernel::{COLS, ROWS};
pub(crate) const NEGS: Slot = Slot::read(3, "negs");
pub(crate) const CLASSES: Slot = Slot::read(4, "classes");
pub(crate) const PARTIALS: Slot = Slot::read_write(5, "partials");
pub(crate) const SCALES: Slot = Slot::read_write(6, "scales");
pub(crate) const DIST: Slot = Slot::read_write(7, "dist");
pub(crate) const WEIGHTS: Slot = Slot::read_write(8, "weights");
pub(crate) const CHOSEN: Slot = Slot::read_write(9, "chosen");
pub(crate) const GRAD: Slot = Slot::read_write(10, "grad");
pub(crate) const GRAD_P: Slot = Slot::read_write(11, "grad_p");
pub(crate) const GRAD_N: Slot = Slot::read_write(12, "grad_n");
pub(crate) const NONZERO: Slot = Slot::read_write(13, "nonzero_cols");
pub(crate) const PICKS: Slot = Slot::read_write(15, "picks");
pub(crate) const REF_CLASSES: Slot = Slot::read(16, "ref_classes");
pub(crate) const DEV: Slot = Slot::read_write(14, "dev");

/// A triplet entry point.
pub(crate) type K = Kernel<TripletParams>;

pub(crate) static EXPLICIT_FORWARD: K = K::new(
    &MODULE,
    "triplet_explicit_forward",
    &[ROWS, COLS, NEGS, PARTIALS],
);
pub(crate) static EXPLICIT_FUSED: K = K::new(
    &MODULE,
    "triplet_explicit_fused",
    &[ROWS, COLS, NEGS, PARTIALS, GRAD, GRAD_P, GRAD_N],
);
const MINE_SLOTS: [Slot; 7] = [
    CLASSES,
    REF_CLASSES,
    PARTIALS,
    SCALES,
    DIST,
    WEIGHTS,
    NONZERO,
];
pub(crate) static MINE_ALL: K = K::new(&MODULE, "triplet_mine_all", &MINE_SLOTS);
pub(crate) static MINE_HARD: K = K::new(&MODULE, "triplet_mine_hard", &MINE_SLOTS);
pub(crate) static MINE_SEMIHARD: K = K::new(
    &MODULE,
    "triplet_mine_semihard",
    &[
        CLASSES,
        REF_CLASSES,
        PARTIALS,
        SCALES,
        DIST,
        WEIGHTS,
        CHOSEN,
        NONZERO,
    ],
);
pub(crate) static FINALIZE: K = K::new(&MODULE, "triplet_finalize", &[PARTIALS, SCALES]);
pub(crate) static LOSS: K = K::new(&MODULE, "triplet_loss", &[PARTIALS, DEV]);
pub(crate) static GRAD_COLS: K = K::new(&MODULE, "triplet_grad_cols", &[ROWS, COLS, WEIGHTS, GRAD]);
pub(crate) static GRAD_ROWS: K = K::new(
    &MODULE,
    "triplet_grad_rows",
    &[ROWS, COLS, PARTIALS, WEIGHTS, GRAD, NONZERO],
);

pub(crate) static ROWS_DISTANCES: K =
    K::new(&ROWS_MODULE, "triplet_rows_distances", &[ROWS, COLS, DIST]);

pub(crate) static ROWS_HARD: K = K::new(
    &HARD_MODULE,
    "triplet_rows_hard",
    &[ROWS, COLS, CLASSES, PICKS],
);
pub(crate) static ROWS_HARD_TERMS: K =
    K::new(&HARD_MODULE, "triplet_rows_hard_terms", &[PARTIALS, PICKS]);
pub(crate) static ROWS_HARD_GRAD: K = K::new(
    &HARD_MODULE,
    "triplet_rows_hard_grad",
    &[ROWS, COLS, SCALES, GRAD, PICKS],
);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_DISTANCES.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static HARD_TABLE: Table = Table {
    #[cfg(test)]
    module: &HARD_MODULE,
    kernels: &[&ROWS_HARD.info, &ROWS_HARD_TERMS.info, &ROWS_HARD_GRAD.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[
        &EXPLICIT_FORWARD.info,
        &EXPLICIT_FUSED.info,
        &MINE_ALL.info,
        &MINE_HARD.info,
        &MINE_SEMIHARD.info,
        &FINALIZE.info,
        &LOSS.info,
        &GRAD_COLS.info,
        &GRAD_ROWS.info,
    ],
    #[cfg(test)]
    structs: &[
        Layout::of::<TripletParams>(),
        Layout::of::<TripletPartial>(),
    ],
};

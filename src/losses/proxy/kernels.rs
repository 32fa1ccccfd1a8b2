//! The host's side of shaders/proxy.wgsl: its module, the structs it mirrors, and its entry
//! points with their bindings.

use bytemuck::{Pod, Zeroable};

#[cfg(test)]
use crate::engine::kernel::Layout;
use crate::engine::kernel::{mirrored, Kernel, Slot, Table};
use crate::engine::rows::GradLayout;
use crate::engine::shader::{Module, RowMap, LOGSUMEXP, REDUCE, SMOOTH};

pub(crate) static MODULE: Module = Module {
    file: "proxy.wgsl",
    source: include_str!("../../../shaders/proxy.wgsl"),
    includes: &[&REDUCE, &SMOOTH, &LOGSUMEXP],
    maps: &[],
    grad: GradLayout::None,
    staged: false,
    base: None,
};

/// The sweeps on the pair engine (either shape).
pub(crate) static ROWS_MODULE: Module = Module {
    file: "proxy_rows.wgsl",
    source: include_str!("../../../shaders/proxy_rows.wgsl"),
    includes: &[],
    maps: &[
        RowMap {
            name: "lse",
            grad: false,
        },
        RowMap {
            name: "weights",
            grad: true,
        },
        RowMap {
            name: "centres",
            grad: true,
        },
    ],
    grad: GradLayout::Scalars,
    staged: true,
    base: Some(&MODULE),
};

/// Keep in sync with `ProxyParams` in shaders/proxy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct ProxyParams {
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
    /// 1: add into the stats and gradients; 0: overwrite.
    pub accumulate: u32,
    /// 0 when the rows are the queries, 1 when they are W's.
    pub side: u32,
    /// proxy_loss: the last row window.
    pub last: u32,
    /// `Proxy::kernel_code`.
    pub loss: u32,
    /// s.
    pub scale: f32,
    /// m (ArcFace: radians).
    pub margin: f32,
    pub cos_m: f32,
    pub sin_m: f32,
    /// dL/dterm, 1/B.
    pub inv_b: f32,
    /// K, W's rows per class.
    pub sub_centers: u32,
}
mirrored!(
    ProxyParams,
    "ProxyParams",
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
        loss,
        scale,
        margin,
        cos_m,
        sin_m,
        inv_b,
        sub_centers
    ]
);

/// Keep in sync with `ProxyStats` in shaders/proxy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct ProxyStats {
    pub m: f32,
    pub s: f32,
    pub cos_own: f32,
    pub found: u32,
}
mirrored!(ProxyStats, "ProxyStats", [m, s, cos_own, found]);

/// Keep in sync with `ProxyPartial` in shaders/proxy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct ProxyPartial {
    pub loss: f32,
    pub found: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}
mirrored!(ProxyPartial, "ProxyPartial", [loss, found, _pad0, _pad1]);

pub(crate) use crate::engine::kernel::{COLS, COL_CLASS, ROWS, ROW_CLASS};
pub(crate) const STATS: Slot = Slot::read_write(5, "stats");
pub(crate) const ROW_COEFS: Slot = Slot::read(6, "row_coefs");
pub(crate) const COL_COEFS: Slot = Slot::read(7, "col_coefs");
pub(crate) const PARTIALS: Slot = Slot::read_write(8, "partials");
pub(crate) const GRAD: Slot = Slot::read_write(9, "grad");
pub(crate) const DEV: Slot = Slot::read_write(10, "dev");
pub(crate) const COEFS: Slot = Slot::read_write(11, "coefs");

/// A proxy entry point.
pub(crate) type K = Kernel<ProxyParams>;

const LSE_SLOTS: [Slot; 5] = [ROWS, COLS, ROW_CLASS, COL_CLASS, STATS];
const GRAD_SLOTS: [Slot; 7] = [ROWS, COLS, ROW_CLASS, COL_CLASS, ROW_COEFS, COL_COEFS, GRAD];

pub(crate) static FINISH: K = K::new(&MODULE, "proxy_finish", &[STATS, PARTIALS, COEFS]);
pub(crate) static LOSS: K = K::new(&MODULE, "proxy_loss", &[PARTIALS, DEV]);
pub(crate) static ROWS_LSE: K = K::new(&ROWS_MODULE, "proxy_rows_lse", &LSE_SLOTS);
pub(crate) static ROWS_GRAD: K = K::new(&ROWS_MODULE, "proxy_rows_grad", &GRAD_SLOTS);
/// The gradient sweep with sub-centres (K > 1).
pub(crate) static ROWS_CENTRES: K = K::new(&ROWS_MODULE, "proxy_rows_centres", &GRAD_SLOTS);

pub(crate) static ROWS_TABLE: Table = Table {
    #[cfg(test)]
    module: &ROWS_MODULE,
    kernels: &[&ROWS_LSE.info, &ROWS_GRAD.info, &ROWS_CENTRES.info],
    #[cfg(test)]
    structs: &[],
};

pub(crate) static TABLE: Table = Table {
    #[cfg(test)]
    module: &MODULE,
    kernels: &[&FINISH.info, &LOSS.info],
    #[cfg(test)]
    structs: &[
        Layout::of::<ProxyParams>(),
        Layout::of::<ProxyStats>(),
        Layout::of::<ProxyPartial>(),
    ],
};

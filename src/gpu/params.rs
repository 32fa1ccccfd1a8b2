//! Uniform and storage structs shared with WGSL. Each is `#[repr(C)]` + `Pod`, mirrored in a
//! shader with a "keep in sync" note on both sides; a test checks sizes and offsets.

use bytemuck::{Pod, Zeroable};

/// Keep in sync with `ContrastiveParams` in shaders/contrastive.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct ContrastiveParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// 0 euclidean, 1 squared euclidean, 2 one-minus-dot (shaders/common/distance.wgsl).
    pub distance: u32,
    /// 0 squared, 1 linear (shaders/common/hinge.wgsl).
    pub hinge: u32,
    /// 0 mean, 1 sum, 2 mean-nonzero (shaders/contrastive.wgsl).
    pub reduction: u32,
    /// Global index of the row window's first row.
    pub row_start: u32,
    /// Global index of the column window's first row.
    pub col_start: u32,
    /// Rows per window.
    pub window_rows: u32,
    /// 1: add into partials and gradients; 0: overwrite.
    pub accumulate: u32,
    /// contrastive_finalize: 1 on the last window, which writes the scales.
    pub last: u32,
    pub _pad0: [u32; 2],
    pub pos_margin: f32,
    pub margin: f32,
    pub _pad1: [f32; 2],
}

/// Keep in sync with `TripletParams` in shaders/triplet.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct TripletParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// 0 euclidean, 1 squared euclidean, 2 one-minus-dot (shaders/common/distance.wgsl).
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
    /// 0 mean, 1 sum, 2 mean-nonzero (triplet_finalize, triplet_loss).
    pub reduction: u32,
    pub margin: f32,
    /// Explicit triplets: dL/dterm (1/N for mean, 1 for sum).
    pub scale: f32,
    /// triplet_loss: the last window.
    pub last: u32,
    pub _pad1: f32,
}

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
    /// Mined: how many weights of the anchor's row are non-zero (listed in `nonzero`).
    pub nonzero: u32,
    pub _pad: u32,
}

/// Keep in sync with `SoftmaxParams` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct SoftmaxParams {
    pub rows: u32,
    /// vec4s per (zero-padded) row.
    pub dim4: u32,
    /// Always 3, the dot product (shaders/common/distance.wgsl `DIST_DOT`).
    pub distance: u32,
    /// 0 ntxent, 1 supcon, 2 clip (shaders/softmax.wgsl `FAMILY_*`).
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
    pub _pad0: u32,
    /// 1/τ.
    pub inv_temp: f32,
    /// dL/dterm.
    pub scale: f32,
    pub _pad1: [f32; 2],
}

/// Keep in sync with `Stats` in shaders/softmax.wgsl.
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

/// Keep in sync with `SoftmaxPartial` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct SoftmaxPartial {
    pub loss: f32,
    pub loss_b: f32,
    pub grad_tau: f32,
    pub terms: u32,
}

/// Keep in sync with `DeviceParams` in shaders/device.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct DeviceParams {
    pub rows: u32,
    pub dim: u32,
    pub dim4: u32,
    pub row_start: u32,
    pub window_rows: u32,
    /// Index of the window's first value in the bound caller range.
    pub first: u32,
    /// Caller values between row starts.
    pub stride: u32,
    pub accumulate: u32,
    pub scale: f32,
    /// Gathers flag values beyond this magnitude (the call's limit, at most 1e15).
    pub max_abs: f32,
    pub _pad: [u32; 2],
}

/// Keep in sync with `NormalizeParams` in shaders/normalize.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub(crate) struct NormalizeParams {
    pub rows: u32,
    pub dim4: u32,
    pub row_start: u32,
    pub window_rows: u32,
}

/// Keep in sync with `Partial` in shaders/common/reduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub(crate) struct Partial {
    pub sim_sum: f32,
    pub sim_carry: f32,
    pub dis_sum: f32,
    pub dis_carry: f32,
    pub sim_pairs: u32,
    pub dis_pairs: u32,
    pub sim_active: u32,
    pub dis_active: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_wgsl() {
        assert_eq!(size_of::<ContrastiveParams>(), 64);
        assert_eq!(offset_of!(ContrastiveParams, reduction), 16);
        assert_eq!(offset_of!(ContrastiveParams, window_rows), 28);
        assert_eq!(offset_of!(ContrastiveParams, last), 36);
        assert_eq!(offset_of!(ContrastiveParams, pos_margin), 48);
        assert_eq!(offset_of!(ContrastiveParams, margin), 52);
        assert_eq!(size_of::<NormalizeParams>(), 16);
        assert_eq!(size_of::<TripletParams>(), 64);
        assert_eq!(offset_of!(TripletParams, swap), 16);
        assert_eq!(offset_of!(TripletParams, stride), 40);
        assert_eq!(offset_of!(TripletParams, margin), 48);
        assert_eq!(offset_of!(TripletParams, scale), 52);
        assert_eq!(size_of::<TripletPartial>(), 32);
        assert_eq!(offset_of!(TripletPartial, terms_lo), 8);
        assert_eq!(offset_of!(TripletPartial, active_hi), 20);
        assert_eq!(offset_of!(TripletPartial, nonzero), 24);
        assert_eq!(size_of::<DeviceParams>(), 48);
        assert_eq!(offset_of!(DeviceParams, first), 20);
        assert_eq!(offset_of!(DeviceParams, scale), 32);
        assert_eq!(size_of::<SoftmaxParams>(), 64);
        assert_eq!(offset_of!(SoftmaxParams, family), 12);
        assert_eq!(offset_of!(SoftmaxParams, side), 32);
        assert_eq!(offset_of!(SoftmaxParams, inv_temp), 48);
        assert_eq!(offset_of!(SoftmaxParams, scale), 52);
        assert_eq!(size_of::<SoftmaxStats>(), 32);
        assert_eq!(offset_of!(SoftmaxStats, pos_n), 12);
        assert_eq!(offset_of!(SoftmaxStats, weight), 28);
        assert_eq!(size_of::<SoftmaxPartial>(), 16);
        assert_eq!(offset_of!(SoftmaxPartial, grad_tau), 8);
        assert_eq!(offset_of!(SoftmaxPartial, terms), 12);
        assert_eq!(size_of::<Partial>(), 32);
        assert_eq!(offset_of!(Partial, dis_sum), 8);
        assert_eq!(offset_of!(Partial, sim_pairs), 16);
        assert_eq!(offset_of!(Partial, dis_active), 28);
    }
}

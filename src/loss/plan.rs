//! Splitting rows into windows that fit one storage binding and one dispatch.
//!
//! Every row-indexed buffer (embeddings, labels, partials, norms, gradients) is sized for
//! `capacity` rows, which only grows, and bound in windows of `window_rows` rows. A window
//! is a multiple of 64 rows, so every window's byte offset is a multiple of 256 (the largest
//! storage offset alignment WebGPU allows) for any row size; windows are the same whatever
//! the batch size, so a smaller batch reuses the same bindings.

use crate::error::{Error, Result};
use crate::gpu::Recorder;

/// Rows handled by one batch-kernel workgroup (shaders/contrastive.wgsl `TILE`).
pub const ROW_TILE: u64 = 32;
/// Rows per workgroup of the one-invocation-per-row kernels.
pub const ROW_GROUP: u64 = 64;
/// Bytes per row of the per-row partials (`Partial`).
pub const PARTIAL_BYTES: u64 = 32;

/// How the rows of one call are laid out and split.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rows in the call.
    pub rows: u64,
    /// vec4s per zero-padded row.
    pub dim4: u64,
    /// Bytes per padded row.
    pub row_bytes: u64,
    /// Rows every row-indexed buffer holds (grow-only across calls).
    pub capacity: u64,
    /// Rows per binding window.
    pub window_rows: u64,
    /// Windows this call uses.
    pub windows: u64,
}

impl Plan {
    /// Plans `rows` rows of `dim` values on the recorder's device. `whole_row_bytes`: bytes
    /// per row of row-indexed buffers that are bound whole rather than in windows (their
    /// capacity must still fit one buffer); 0 if none.
    pub fn new(rec: &mut Recorder<'_>, rows: u64, dim: u64, whole_row_bytes: u64) -> Result<Self> {
        let limits = rec.limits();
        let dim4 = dim.div_ceil(4);
        let row_bytes = dim4 * 16;
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let widest = row_bytes.max(PARTIAL_BYTES);
        let per_dispatch = u64::from(limits.max_compute_workgroups_per_dimension) * ROW_TILE;
        let window_cap = (binding / widest).min(per_dispatch) / 64 * 64;
        if window_cap < 64 {
            return Err(Error::LimitExceeded {
                what: "a 64-row window of the embeddings (bytes), or 2 workgroups per dispatch"
                    .into(),
                needed: 64 * widest,
                limit: binding,
            });
        }
        if rows > u64::from(u32::MAX) - 2 * window_cap {
            return Err(Error::LimitExceeded {
                what: "rows (32-bit row indices)".into(),
                needed: rows,
                limit: u64::from(u32::MAX) - 2 * window_cap,
            });
        }
        let max_buffer = limits.max_buffer_size;
        let fit = |cap: u64| {
            if cap > window_cap {
                cap.div_ceil(window_cap) * window_cap
            } else {
                cap.div_ceil(64) * 64
            }
        };
        let fits = |cap: u64| cap * row_bytes.max(PARTIAL_BYTES).max(whole_row_bytes) <= max_buffer;
        let needed = fit(rows);
        if !fits(needed) {
            return Err(Error::LimitExceeded {
                what: "the embeddings buffer (bytes, max_buffer_size)".into(),
                needed: needed * row_bytes,
                limit: max_buffer,
            });
        }
        let capacity = rec.row_capacity(|old| {
            if rows <= old && fits(old) && fit(old) == old {
                return old;
            }
            let doubled = fit(rows.max(old.saturating_mul(2)));
            if fits(doubled) {
                doubled
            } else {
                needed
            }
        });
        let window_rows = capacity.min(window_cap);
        Ok(Self {
            rows,
            dim4,
            row_bytes,
            capacity,
            window_rows,
            windows: rows.div_ceil(window_rows),
        })
    }

    /// First row of window `w`.
    pub fn start(&self, w: u64) -> u64 {
        w * self.window_rows
    }

    /// Rows of the call inside window `w`.
    pub fn rows_in(&self, w: u64) -> u64 {
        self.rows
            .saturating_sub(self.start(w))
            .min(self.window_rows)
    }
}

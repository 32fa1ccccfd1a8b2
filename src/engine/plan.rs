//! Splitting rows into windows that fit one storage binding and one dispatch: a pure
//! function of the input's shape, what the family binds whole, and the device's limits.
//!
//! Every row-indexed buffer (embeddings, labels, partials, norms, gradients) is sized for
//! the workspace's row capacity, which only grows ([`Plan::capacity`]), and bound in windows
//! of `window_rows` rows. A window is a multiple of 64 rows, so every window's byte offset is
//! a multiple of 256 (the largest storage offset alignment WebGPU allows) for any row size;
//! windows are the same whatever the batch size, so a smaller batch reuses the same
//! bindings.

use crate::error::{Error, Result, SMALLER_BATCH, SMALLER_DIM};

/// Rows per workgroup of the one-invocation-per-row kernels (the fewest of any per-window
/// dispatch: the pair engine's hold 128).
pub(crate) const ROW_GROUP: u64 = 64;
/// Bytes of the widest per-row state a family keeps (partials, statistics).
pub(crate) const ROW_STATE_BYTES: u64 = 32;

/// Half the loop iterations lavapipe (Mesa's software Vulkan) runs per invocation and
/// dispatch: it silently ends a loop after about 65,535, leaving the rest of a sweep's
/// columns out. Measured on the class-proxy losses' gradient sweep (one window of C
/// columns): the register-row shape went wrong past 65,536 columns; the staged shape
/// between 2,688 and 3,264 at D = 128 and between 832 and 960 at D = 512.
pub(crate) const LOOP_BUDGET: u64 = 32_768;

/// The most columns a register-row sweep visits in one dispatch: it loops once a column.
pub(crate) const REGISTER_COLUMNS: u64 = LOOP_BUDGET;

/// The most columns a staged sweep of rows of `dim4` vec4s visits in one dispatch: it loops
/// about (2.5·D + 64)/16 times a column (each 16-column tile's K-loop over the padded D, the
/// map, and the gradient's chunks; fitted to the measurements above), so
/// 16·budget/(2.5·D + 64): 4,992 at D = 16, 1,344 at D = 128, 384 at D = 512.
pub(crate) fn staged_columns(dim4: u64) -> u64 {
    (LOOP_BUDGET * 16 / (10 * dim4 + 64)).max(64)
}

/// The most columns of a sweep whose shape allows `columns` when its map adds `extra` loop
/// iterations a column (the budget is the invocation's, over every loop it runs).
pub(crate) fn with_extra_loops(columns: u64, extra: u64) -> u64 {
    if extra == 0 {
        return columns;
    }
    let per_column = (LOOP_BUDGET / columns.max(1)).max(1) + extra;
    (LOOP_BUDGET / per_column).max(64)
}

/// How the rows of one call are laid out and split.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Rows in the call.
    pub rows: u64,
    /// Values per row.
    pub dim: u64,
    /// vec4s per zero-padded row.
    pub dim4: u64,
    /// Bytes per padded row.
    pub row_bytes: u64,
    /// Rows per binding window (and between window starts).
    pub window_rows: u64,
    /// Windows this call uses.
    pub windows: u64,
    /// Bytes per row of row-indexed buffers bound whole rather than in windows.
    whole_row_bytes: u64,
    /// Bytes per row of the widest per-row state bound in windows (at least
    /// [`ROW_STATE_BYTES`]).
    state_bytes: u64,
    /// The device's largest buffer.
    max_buffer: u64,
}

impl Plan {
    /// Plans `rows` rows of `dim` values under `limits`, windows of at most `max_columns`
    /// rows (what one sweep of the pair engine's shape may visit in a dispatch:
    /// [`REGISTER_COLUMNS`], [`staged_columns`]; on other devices than lavapipe the extra
    /// windows cost a dispatch each, nothing per pair). `whole_row_bytes`: bytes per row of
    /// row-indexed buffers that are bound whole rather than in windows (their capacity must
    /// still fit one buffer); 0 if none.
    pub fn new(
        limits: &wgpu::Limits,
        rows: u64,
        dim: u64,
        whole_row_bytes: u64,
        max_columns: u64,
    ) -> Result<Self> {
        Self::with_state(
            limits,
            rows,
            dim,
            whole_row_bytes,
            ROW_STATE_BYTES,
            max_columns,
        )
    }

    /// [`Plan::new`] for a call whose per-row state bound in windows is `state_bytes` a row
    /// (a k-NN list): windows small enough that its window fits one binding too.
    pub fn with_state(
        limits: &wgpu::Limits,
        rows: u64,
        dim: u64,
        whole_row_bytes: u64,
        state_bytes: u64,
        max_columns: u64,
    ) -> Result<Self> {
        let dim4 = dim.div_ceil(4);
        let row_bytes = dim4 * 16;
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let state_bytes = state_bytes.max(ROW_STATE_BYTES);
        let widest = row_bytes.max(state_bytes);
        if 64 * widest > binding {
            return Err(Error::LimitExceeded {
                what: format!(
                    "one 64-row window of rows of dimension {dim} with {state_bytes} bytes \
                     of state a row (bytes, max_storage_buffer_binding_size)"
                ),
                needed: u128::from(64 * widest),
                limit: u128::from(binding),
                hint: SMALLER_DIM,
            });
        }
        let groups = u64::from(limits.max_compute_workgroups_per_dimension);
        if groups < 2 {
            return Err(Error::LimitExceeded {
                what: "workgroups per dispatch (max_compute_workgroups_per_dimension)".into(),
                needed: 2,
                limit: u128::from(groups),
                hint: "use a device with larger limits",
            });
        }
        let window_rows = (binding / widest)
            .min(groups * ROW_GROUP)
            .min(max_columns.max(64))
            / 64
            * 64;
        let max_rows = u64::from(u32::MAX) - 2 * window_rows;
        if rows > max_rows {
            return Err(Error::LimitExceeded {
                what: "rows (32-bit row indices)".into(),
                needed: u128::from(rows),
                limit: u128::from(max_rows),
                hint: SMALLER_BATCH,
            });
        }
        let plan = Self {
            rows,
            dim,
            dim4,
            row_bytes,
            window_rows,
            windows: rows.div_ceil(window_rows),
            whole_row_bytes,
            state_bytes,
            max_buffer: limits.max_buffer_size,
        };
        let needed = plan.fit(rows);
        if !plan.fits(needed) {
            return Err(Error::LimitExceeded {
                what: "the embeddings buffer (bytes, max_buffer_size)".into(),
                needed: u128::from(needed * row_bytes),
                limit: u128::from(plan.max_buffer),
                hint: SMALLER_BATCH,
            });
        }
        Ok(plan)
    }

    /// The same plan with windows a multiple of `group` rows too (lcm(64, group)), so that
    /// no window splits a group; [`Error::LimitExceeded`] when one such window is longer
    /// than the planned one (a binding or a sweep's loop budget).
    pub fn whole_groups(self, group: u64) -> Result<Self> {
        if group <= 1 {
            return Ok(self);
        }
        let unit = lcm(64, group);
        if unit > self.window_rows {
            return Err(Error::LimitExceeded {
                what: format!(
                    "windows of whole groups of {group} rows (rows per window, a multiple \
                     of {unit})"
                ),
                needed: u128::from(unit),
                limit: u128::from(self.window_rows),
                hint: "use fewer sub-centres (a divisor of 64 is cheapest) or a smaller \
                       dimension",
            });
        }
        let window_rows = self.window_rows / unit * unit;
        Ok(Self {
            window_rows,
            windows: self.rows.div_ceil(window_rows),
            ..self
        })
    }

    /// `cap` rounded up to whole windows (or to 64 rows below one window).
    fn fit(&self, cap: u64) -> u64 {
        if cap > self.window_rows {
            cap.div_ceil(self.window_rows) * self.window_rows
        } else {
            cap.div_ceil(64) * 64
        }
    }

    /// Whether every row-indexed buffer of `cap` rows fits one buffer.
    fn fits(&self, cap: u64) -> bool {
        let widest = self
            .row_bytes
            .max(self.state_bytes)
            .max(self.whole_row_bytes);
        cap.checked_mul(widest)
            .is_some_and(|bytes| bytes <= self.max_buffer)
    }

    /// The workspace's row capacity for this call given the capacity `old` it has: kept
    /// when it holds the call, else at least doubled (grow-only, so that a training loop
    /// whose batches do not grow allocates nothing after its first step).
    pub fn capacity(&self, old: u64) -> u64 {
        if self.rows <= old && self.fits(old) && self.fit(old) == old {
            return old;
        }
        let doubled = self.fit(self.rows.max(old.saturating_mul(2)));
        if self.fits(doubled) {
            doubled
        } else {
            self.fit(self.rows)
        }
    }

    /// The same windows over `rows` rows (at most the planned rows): one side of a call
    /// whose sides differ in length (queries against keys).
    pub fn for_rows(&self, rows: u64) -> Plan {
        debug_assert!(rows <= self.rows);
        Plan {
            rows,
            windows: rows.div_ceil(self.window_rows),
            ..*self
        }
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

    /// Workgroups of the one-invocation-per-row kernels for window `w`.
    pub fn row_groups(&self, w: u64) -> u64 {
        self.rows_in(w).div_ceil(ROW_GROUP)
    }

    /// Workgroups of the pair engine's kernels (128 rows each) for window `w`.
    pub fn row_blocks(&self, w: u64) -> u64 {
        self.rows_in(w).div_ceil(super::rows::ROWS_PER_GROUP)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    let gcd = |mut x: u64, mut y: u64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

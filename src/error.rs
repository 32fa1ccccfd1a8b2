//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in a loss call, from input validation to the device.
///
/// Each variant says what went wrong and, in its message, what to do about it. The input
/// errors (`ShapeMismatch` through `LimitExceeded`) are found before anything runs on the
/// device; the repository's `docs/errors.md` says when each happens and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length does not match the shape it was declared with, or two inputs that
    /// must agree (rows of A and B, rows and labels) do not.
    #[error("{what}: expected {expected} values, got {got}; check the array shapes")]
    ShapeMismatch {
        /// Which input, e.g. `"labels"`.
        what: &'static str,
        /// The length the other inputs imply.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An input has no rows.
    #[error("{what} is empty (0 rows); pass at least one row")]
    EmptyInput {
        /// Which input.
        what: &'static str,
    },
    /// Rows have zero columns.
    #[error("{what} has dimension 0; embeddings need at least one column")]
    ZeroDim {
        /// Which input.
        what: &'static str,
    },
    /// A value is NaN, infinite or larger in magnitude than [`crate::MAX_ABS_VALUE`].
    #[error(
        "{what}: value {value} at row {row}, column {column} is outside the input domain \
         (finite, |x| <= 1e15); clean or rescale the input"
    )]
    OutOfDomain {
        /// Which input.
        what: &'static str,
        /// Row of the first offending value.
        row: usize,
        /// Its column.
        column: usize,
        /// The offending value.
        value: f64,
    },
    /// A value inside the input domain is too large for this loss at this size: a squared
    /// norm, squared distance, squared hinge, sum of terms or gradient sum could overflow
    /// f32 (see docs/losses.md, "Input domain").
    #[error(
        "{what}: value {value:e} at row {row}, column {column} is too large for {config}: \
         values up to {limit:e} keep every f32 intermediate finite at this size; scale the \
         embeddings down, normalize them, or use a smaller batch"
    )]
    TooLargeForLoss {
        /// Which input.
        what: &'static str,
        /// Row of the first offending value.
        row: usize,
        /// Its column.
        column: usize,
        /// The offending value.
        value: f64,
        /// The largest magnitude this call accepts.
        limit: f64,
        /// The loss, its options and the size.
        config: String,
    },
    /// A value of a caller's device buffer (device-resident API) is NaN, infinite or larger
    /// in magnitude than the call's limit: [`crate::MAX_ABS_VALUE`], or less where the
    /// loss's f32 intermediates need it ([`Error::TooLargeForLoss`]); found on the device,
    /// reported when the loss is read.
    #[error(
        "{what}: the value at row {row}, column {column} of the caller's buffer is NaN, \
         infinite or beyond {limit:e} in magnitude (the input domain, or less where this \
         loss's f32 intermediates need it at this size); clean or rescale the input"
    )]
    DeviceInputOutOfDomain {
        /// Which input.
        what: &'static str,
        /// Row of the first offending value.
        row: u64,
        /// Its column.
        column: u64,
        /// The largest magnitude the call accepted.
        limit: f64,
    },
    /// A gradient written in f16 (an f16 input's host gradient, or an f16
    /// [`crate::device::DeviceGrad`]) has a value beyond f16's range (65504): on the host
    /// path found before the result is returned, on the device path flagged there (the value
    /// written is ±65504) and reported when the loss is read.
    #[error(
        "the gradient of {what} has a value beyond f16's range (65504) at row {row}, column \
         {column}; ask for f32 gradients (Grads::ComputeF32, an f32 DeviceGrad) or lower the \
         gradient's scale"
    )]
    GradientOverflow {
        /// Which input's gradient.
        what: &'static str,
        /// Row of the first such value.
        row: u64,
        /// Its column.
        column: u64,
    },
    /// The call needs a feature the adapter or device does not have: f16 inputs or
    /// gradients need `SHADER_F16`. Nothing is converted silently in its place.
    #[error(
        "{needed_for} need{s} the adapter feature {feature}, which this device does not have; \
         pass f32 values instead",
        s = if needed_for.ends_with('s') { "" } else { "s" }
    )]
    MissingFeature {
        /// The wgpu feature, e.g. `"SHADER_F16"`.
        feature: &'static str,
        /// What needs it, e.g. `"f16 inputs"`.
        needed_for: &'static str,
    },
    /// A class id is not a row of the class weights: on the host path found before the call
    /// runs (the first such query named), on the device path counted on the device and
    /// reported when the loss is read (the number of such queries, whose terms were left
    /// out).
    #[error(
        "class indices: {queries} quer{ies} with an index of no class (the {classes} rows of \
         the class weights are classes 0 .. {classes} - 1){first}",
        ies = if *queries == 1 { "y" } else { "ies" },
        first = first.map_or(String::new(), |(row, label)| format!("; the first is row {row}, index {label}"))
    )]
    ClassOutOfRange {
        /// How many queries have such a label.
        queries: u64,
        /// The rows of the class weights.
        classes: u64,
        /// The first such query's row and label (host path).
        first: Option<(usize, u32)>,
    },
    /// A [`crate::device::DeviceLoss`] was read after a later device-resident call on the
    /// same `Gpu` (from this thread or another) had overwritten its buffers.
    #[error(
        "this DeviceLoss was overwritten by a later device-resident call on the same Gpu; \
         read it before the next call, or give each thread its own Gpu"
    )]
    StaleDeviceLoss,
    /// A caller's buffer (device-resident API) does not have the documented layout or
    /// usage: unaligned offset, stride below the dimension, rows past its end, no
    /// `STORAGE` usage.
    #[error("{what} buffer: {reason}; see the layout in metric_loss::device")]
    InvalidBuffer {
        /// Which buffer.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A loss option has a value outside its allowed range (a negative margin, a NaN).
    #[error("invalid {name} = {value}: {rule}")]
    InvalidOption {
        /// The option's name as the CLI spells it, e.g. `"margin"`.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What it must satisfy.
        rule: &'static str,
    },
    /// Two options that do not go together, or an option the chosen mode does not take
    /// (`swap` with mining, a mean-nonzero reduction for batch-hard mining).
    #[error("{option} does not apply here: {reason}")]
    OptionConflict {
        /// The option as the CLI spells it, e.g. `"swap"`.
        option: &'static str,
        /// Why, and what is accepted instead.
        reason: &'static str,
    },
    /// The input needs more than a limit allows: the host's indices, 32-bit row indices, or
    /// the device's buffer, binding or dispatch sizes.
    #[error("{what} needs {needed}, more than the limit of {limit}; {hint}")]
    LimitExceeded {
        /// What is measured, with its unit, e.g. `"embeddings buffer (bytes, max_buffer_size)"`.
        what: String,
        /// What the call needs.
        needed: u128,
        /// What is allowed.
        limit: u128,
        /// What to change: a smaller batch, a smaller dimension, a device with larger limits.
        hint: &'static str,
    },
    /// No graphics adapter was found.
    #[error(
        "no GPU adapter found ({reason}); install a Vulkan driver (on Debian: \
         apt-get install mesa-vulkan-drivers) or check WGPU_BACKEND"
    )]
    NoAdapter {
        /// What wgpu reported.
        reason: String,
    },
    /// `WGPU_ADAPTER_NAME` (or the option) names no available adapter.
    #[error(
        "no adapter name contains {wanted:?}; available: {available:?} (see `metric-loss info`)"
    )]
    AdapterNotFound {
        /// The requested name fragment.
        wanted: String,
        /// The names of the adapters that were found.
        available: Vec<String>,
    },
    /// The adapter refused to create a device with the requested limits or features.
    #[error("the adapter refused to create a device: {0}; request lower limits")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// The device was lost (driver reset, `destroy()`, removal). The `Gpu` cannot be used again.
    #[error("the GPU device was lost ({reason}); create a new Gpu")]
    DeviceLost {
        /// The reason the driver gave.
        reason: String,
    },
    /// The device ran out of memory while allocating or running the call.
    #[error("the GPU ran out of memory {during}; use a smaller batch")]
    OutOfMemory {
        /// What was being done.
        during: &'static str,
    },
    /// wgpu rejected a command: this is a bug in metric-loss (or an invalid caller-owned buffer).
    #[error("wgpu validation error {during}: {description}; please report this")]
    Validation {
        /// What was being done.
        during: &'static str,
        /// wgpu's description.
        description: String,
    },
    /// Mapping a result buffer for reading failed.
    #[error("reading results back from the GPU failed: {0}")]
    MapFailed(#[from] wgpu::BufferAsyncError),
    /// The GPU did not finish within the polling timeout.
    #[error(
        "the GPU did not finish within {timeout:?}; raise GpuOptions::timeout \
         (software drivers are slow) or use a smaller batch"
    )]
    Timeout {
        /// The timeout that expired.
        timeout: Duration,
    },
}

/// Shorthand for `Result<T, metric_loss::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Advice of a [`Error::LimitExceeded`] that more rows caused.
pub(crate) const SMALLER_BATCH: &str = "use a smaller batch or a device with larger limits";
/// Advice of a [`Error::LimitExceeded`] that wider rows caused.
pub(crate) const SMALLER_DIM: &str = "use a smaller dimension or a device with larger limits";

//! What a loss call can refuse.

/// Errors of this crate's calls: metric-loss's own (options, shapes, limits), and the burn
/// side of a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// metric-loss refused the call (an option, a shape, a limit, the device).
    #[error(transparent)]
    Loss(#[from] metric_loss::Error),
    /// burn could not bring up its wgpu runtime.
    #[error("burn: {0}")]
    Burn(String),
    /// The tensors are not on a burn wgpu device.
    #[error("the tensors are on {device}, not on a burn wgpu device")]
    NotWgpu {
        /// The device they are on.
        device: String,
    },
    /// The wgpu device was not brought up through [`crate::init`] or
    /// [`crate::init_setup`], so metric-loss does not share it.
    #[error("{device} was not brought up by metric_loss_burn::init or init_setup")]
    NotInitialised {
        /// The device.
        device: String,
    },
    /// An input of the wrong element type (the losses read f32 rows and integer labels).
    #[error("{what} must be {expected}, not {got}")]
    DType {
        /// Which input.
        what: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        got: String,
    },
    /// Two inputs on different devices.
    #[error("{what} is on another device than the embeddings")]
    Device {
        /// Which input.
        what: &'static str,
    },
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

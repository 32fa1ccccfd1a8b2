//! The kernel engine, with no loss semantics: the device ([`Gpu`]), the typed kernel
//! contract, the pure plan, the workspace, and the one call pipeline every family runs on.

pub(crate) mod call;
mod config;
mod errors;
mod gpu;
pub(crate) mod kernel;
pub(crate) mod plan;
pub(crate) mod probe;
mod queue;
pub(crate) mod recorder;
pub(crate) mod resident;
pub(crate) mod rows;
pub(crate) mod shader;
pub(crate) mod sides;
mod staged;
mod workspace;

pub use config::{EngineConfig, ENGINE_ENV};
pub use gpu::{AdapterSummary, Gpu, GpuOptions, DEFAULT_TIMEOUT};
pub use probe::Peak;
pub use queue::DeviceQueue;
pub use recorder::DEVICE_RING_SLOTS;
pub use resident::DeviceLoss;
pub use workspace::Allocations;

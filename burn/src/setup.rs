//! One wgpu device for burn and metric-loss: burn's runtime is brought up (or handed an
//! existing device) here, and a [`Gpu`] on the same `wgpu::Device` and `wgpu::Queue` is kept
//! for it, so the losses read burn's buffers and burn reads theirs with no copy through the
//! host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::wgpu::{
    graphics::AutoGraphicsApi, try_init_device, try_init_setup, RuntimeOptions, WgpuDevice,
    WgpuSetup,
};
use burn::backend::DispatchDevice;
use burn::tensor::Device;
use metric_loss::Gpu;

use crate::error::{Error, Result};

/// The metric-loss device of each burn wgpu device brought up by [`init`] or [`init_setup`].
fn registry() -> &'static Mutex<HashMap<WgpuDevice, Arc<Gpu>>> {
    static GPUS: OnceLock<Mutex<HashMap<WgpuDevice, Arc<Gpu>>>> = OnceLock::new();
    GPUS.get_or_init(Default::default)
}

/// Brings up burn's wgpu runtime on `device` (for example `WgpuDevice::default()`) and
/// metric-loss on the same `wgpu::Device` and queue, and returns the burn device to create
/// tensors on (`.autodiff()` for training). Call it before anything else uses `device`:
/// burn creates a wgpu device on first use, and that one could not be shared afterwards.
pub fn init(device: WgpuDevice) -> Result<Device> {
    let setup = try_init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default())
        .map_err(|e| Error::Burn(e.to_string()))?;
    register(device, setup)
}

/// Hands an application's own wgpu device and queue to burn and to metric-loss; returns the
/// burn device for it. Register a setup once.
pub fn init_setup(setup: WgpuSetup) -> Result<Device> {
    let device = try_init_device(setup.clone(), RuntimeOptions::default())
        .map_err(|e| Error::Burn(e.to_string()))?;
    register(device, setup)
}

fn register(device: WgpuDevice, setup: WgpuSetup) -> Result<Device> {
    let gpu = Gpu::from_device(setup.device, setup.queue)?;
    lock().insert(device.clone(), Arc::new(gpu));
    Ok(Device::from(device))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<WgpuDevice, Arc<Gpu>>> {
    // A panic elsewhere while the map was held leaves it whole: inserts are single calls.
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// The metric-loss device sharing `device`'s wgpu device.
pub(crate) fn gpu_of(device: &WgpuDevice) -> Option<Arc<Gpu>> {
    lock().get(device).cloned()
}

/// The metric-loss device sharing a burn device's wgpu device (for its counters, engine
/// choice or `prepare`), or why there is none.
pub fn gpu(device: &Device) -> Result<Arc<Gpu>> {
    let wgpu = wgpu_device(device.as_dispatch()).ok_or_else(|| Error::NotWgpu {
        device: format!("{device:?}"),
    })?;
    gpu_of(&wgpu).ok_or_else(|| Error::NotInitialised {
        device: format!("{device:?}"),
    })
}

fn wgpu_device(device: &DispatchDevice) -> Option<WgpuDevice> {
    match device {
        DispatchDevice::Cube(burn::backend::CubeDevice::Wgpu(d)) => Some(d.clone()),
        DispatchDevice::Autodiff(inner) => wgpu_device(inner),
        _ => None,
    }
}

//! The device: adapter choice, limits, the pipeline cache, and the one way work reaches it
//! (record → one compute pass → submit or the caller's encoder → read back).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::config::{EngineConfig, ENGINE_ENV};
use super::errors::classify;
use super::kernel;
use super::kernel::Bound;
use super::plan;
use super::recorder::{self, Recorder, State};
use super::rows::RowShape;
use super::workspace::Allocations;
use crate::error::{Error, Result};
use crate::input::Target;

/// Least polling timeout of the automatic rule: long enough for large batches on a software
/// driver.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The slowest device the automatic timeout allows for, in model FLOP/s: a call whose work
/// would take longer than the timeout at this rate gets a proportionally longer timeout.
const SLOWEST_FLOPS: f64 = 2e7;

/// How [`Gpu::with_options`] picks and configures a device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to try. Default: `WGPU_BACKEND` if set and not empty (e.g. `vulkan`,
    /// `metal,dx12`), else all.
    pub backends: wgpu::Backends,
    /// Pick the first adapter whose name contains this (case-insensitive).
    /// Default: `WGPU_ADAPTER_NAME` if set and not empty, else wgpu's default choice.
    pub adapter_name: Option<String>,
    /// Limits to request. Default: everything the adapter offers, so that large batches fit.
    pub limits: Option<wgpu::Limits>,
    /// How long to wait for one loss call to finish on the device. `None` (default): the
    /// larger of [`DEFAULT_TIMEOUT`] and the call's model work at 0.02 GFLOP/s, so that a
    /// legitimately long call never trips it; `Some(t)`: exactly `t`.
    pub timeout: Option<Duration>,
    /// The pair engine's configuration. `None` (default): [`ENGINE_ENV`] if set, else
    /// [`EngineConfig::automatic`] for the adapter.
    pub engine: Option<EngineConfig>,
}

/// Whether a device with subgroups of `lanes` (fixed size; `None` without) runs `engine`.
fn runnable(engine: EngineConfig, lanes: Option<u32>) -> Result<()> {
    if engine == EngineConfig::Rows && lanes.is_none() {
        return Err(Error::OptionConflict {
            option: "engine",
            reason: "rows needs Features::SUBGROUP and a fixed subgroup size; \
                     use rows-direct or tile",
        });
    }
    Ok(())
}

/// An environment variable's value, `None` when unset or empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: env("WGPU_BACKEND").map_or(wgpu::Backends::all(), |s| {
                wgpu::Backends::from_comma_list(&s)
            }),
            adapter_name: env("WGPU_ADAPTER_NAME"),
            limits: None,
            timeout: None,
            engine: None,
        }
    }
}

/// Facts about the adapter behind a [`Gpu`], for logs and `metric-loss info`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Graphics API: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// Driver name and version.
    pub driver: String,
    /// Discrete, integrated, virtual, CPU.
    pub device_type: String,
}

/// A GPU device ready to run loss kernels.
///
/// Owns the device and queue, the adapter's limits, a pipeline cache (each pipeline built
/// once, on first use) and grow-only workspaces. Calls take `&self` and are serialised
/// internally, so one `Gpu` can be shared across threads.
///
/// ```no_run
/// let gpu = metric_loss::Gpu::new()?;
/// println!("{}", gpu.adapter().name);
/// # Ok::<(), metric_loss::Error>(())
/// ```
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    features: wgpu::Features,
    timeout: Option<Duration>,
    engine: EngineConfig,
    /// The fixed subgroup size, where the device has `SUBGROUP` (for [`EngineConfig::Rows`]).
    lanes: Option<u32>,
    profiling: bool,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<AtomicUsize>,
    state: Mutex<State>,
}

/// The error scopes of one call.
struct Scopes {
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl Gpu {
    /// Picks an adapter (honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`) and opens a device
    /// with the adapter's full limits.
    pub fn new() -> Result<Self> {
        Self::with_options(GpuOptions::default())
    }

    /// Like [`Gpu::new`] with explicit options.
    pub fn with_options(options: GpuOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = options.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = match &options.adapter_name {
            Some(wanted) => {
                let adapters = pollster::block_on(instance.enumerate_adapters(options.backends));
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                let lower = wanted.to_lowercase();
                match adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&lower))
                {
                    Some(a) => a,
                    None if names.is_empty() => {
                        return Err(Error::NoAdapter {
                            reason: "no adapters enumerated".into(),
                        })
                    }
                    None => {
                        return Err(Error::AdapterNotFound {
                            wanted: wanted.clone(),
                            available: names,
                        })
                    }
                }
            }
            None => pollster::block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                }),
            )
            .map_err(|e| Error::NoAdapter {
                reason: e.to_string(),
            })?,
        };
        let limits = options.limits.unwrap_or_else(|| adapter.limits());
        // Timestamps give kernel-only times in benchmarks; subgroups serve the register-row
        // engine's column broadcasts; SHADER_F16 reads f16 inputs. None is required.
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SUBGROUP
                | wgpu::Features::SHADER_F16);
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("metric-loss"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))?;
        let mut gpu = Self::wrap(device, queue, options.timeout, options.engine)?;
        gpu.features = adapter.features();
        let lost = gpu.lost.clone();
        gpu.device.set_device_lost_callback(move |reason, message| {
            *lost.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        let count = gpu.uncaptured.clone();
        gpu.device.on_uncaptured_error(Arc::new(move |_err| {
            count.fetch_add(1, Ordering::SeqCst);
        }));
        Ok(gpu)
    }

    /// Uses a device the caller already has (a training framework's), which must run on
    /// wgpu 30, the version this crate re-exports as [`crate::wgpu`].
    ///
    /// No features are required (`TIMESTAMP_QUERY` is used for [`Gpu::set_profiling`] when
    /// the device has it; f16 inputs and gradients need `SHADER_F16`). The kernels fit
    /// WebGPU's default limits (at most 8 storage buffers per stage, 13.5 KiB of workgroup
    /// memory, 64 invocations per workgroup; a device below that is a
    /// [`Error::LimitExceeded`] here, not a failure later);
    /// `max_storage_buffer_binding_size`, `max_buffer_size` and
    /// `max_compute_workgroups_per_dimension` bound the largest batch, so request the
    /// adapter's limits (`adapter.limits()`) for the largest batches.
    ///
    /// The caller keeps its device-lost and uncaptured-error handlers: this installs none;
    /// errors of metric-loss's own work are still caught in error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Self::wrap(device, queue, None, None)
    }

    fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        timeout: Option<Duration>,
        engine: Option<EngineConfig>,
    ) -> Result<Self> {
        let limits = device.limits();
        for (what, has, needs) in [
            (
                "max_storage_buffers_per_shader_stage",
                limits.max_storage_buffers_per_shader_stage,
                kernel::STORAGE_BUFFERS_PER_STAGE,
            ),
            (
                "max_compute_workgroup_storage_size (bytes)",
                limits.max_compute_workgroup_storage_size,
                kernel::WORKGROUP_STORAGE_BYTES,
            ),
            (
                "max_compute_invocations_per_workgroup",
                limits.max_compute_invocations_per_workgroup,
                kernel::INVOCATIONS_PER_WORKGROUP,
            ),
        ] {
            if has < needs {
                return Err(Error::LimitExceeded {
                    what: format!("the kernels' {what}"),
                    needed: u128::from(needs),
                    limit: u128::from(has),
                    hint: "request the adapter's limits for the shared device",
                });
            }
        }
        let info = device.adapter_info();
        let features = device.features();
        let lanes = EngineConfig::broadcast_lanes(&info, features);
        let engine = match engine {
            Some(e) => e,
            None => match env(ENGINE_ENV) {
                Some(name) => name.parse()?,
                None => EngineConfig::automatic(&info, features),
            },
        };
        runnable(engine, lanes)?;
        Ok(Self {
            adapter: AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                device_type: format!("{:?}", info.device_type),
            },
            limits,
            features,
            device,
            queue,
            timeout,
            engine,
            lanes,
            profiling: false,
            lost: Arc::new(Mutex::new(None)),
            uncaptured: Arc::new(AtomicUsize::new(0)),
            state: Mutex::new(State::default()),
        })
    }

    /// The pair engine's configuration (see [`EngineConfig`]).
    pub fn engine(&self) -> EngineConfig {
        self.engine
    }

    /// Switches the pair engine's configuration for the calls that follow (benchmarks and
    /// tests compare them on one device). Fails for [`EngineConfig::Rows`] on a device
    /// without `SUBGROUP` or a fixed subgroup size.
    pub fn set_engine(&mut self, engine: EngineConfig) -> Result<()> {
        runnable(engine, self.lanes)?;
        self.engine = engine;
        Ok(())
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The most columns one pair-engine sweep may visit in a dispatch for rows of `dim`
    /// values, on the shape this `Gpu` runs them in (see [`plan::LOOP_BUDGET`]): what a
    /// [`Plan`](plan::Plan)'s windows are capped at.
    pub(crate) fn sweep_columns(&self, dim: u64) -> u64 {
        let dim4 = dim.div_ceil(4);
        match RowShape::for_dim4(self.engine, self.lanes, dim4, true) {
            RowShape::Registers(_) => plan::REGISTER_COLUMNS,
            RowShape::Staged { .. } => plan::staged_columns(dim4),
        }
    }

    /// The adapter's features (what `metric-loss info` reports; the device requests only
    /// what the kernels need).
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// The underlying device, for callers that share it.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Whether the device reads and writes f16 values (`SHADER_F16`: [`Gpu::new`] requests
    /// it where the adapter has it; a device from [`Gpu::from_device`] has what its
    /// creator asked for).
    pub fn supports_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// [`Error::MissingFeature`] unless the device has `SHADER_F16`.
    pub(crate) fn require_f16(&self, needed_for: &'static str) -> Result<()> {
        if self.supports_f16() {
            Ok(())
        } else {
            Err(Error::MissingFeature {
                feature: "SHADER_F16",
                needed_for,
            })
        }
    }

    /// The device's queue, for callers that share it.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The polling timeout of each loss call (`None`: automatic, see [`GpuOptions::timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sets the polling timeout of each loss call (`None`: automatic).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Times the kernels of each call with GPU timestamps, where the adapter has
    /// `TIMESTAMP_QUERY` (see [`Gpu::last_kernel_seconds`]).
    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
    }

    /// Kernel time of the last call from GPU timestamps: from the start to the end of its
    /// compute pass. `None` without profiling or without `TIMESTAMP_QUERY`.
    pub fn last_kernel_seconds(&self) -> Option<f64> {
        self.lock().last_kernel_seconds
    }

    /// wgpu objects created so far by this `Gpu` (buffers, bind groups, pipelines, ...).
    pub fn allocations(&self) -> Allocations {
        self.lock().workspace.counts
    }

    /// Calls so far that waited for the device and read results back to the host: every
    /// host-slice call, [`crate::device::DeviceLoss::read`], [`Gpu::read_buffer`].
    /// Device-resident calls add none, so a training loop on the caller's buffers can check
    /// that nothing goes through the host.
    pub fn host_reads(&self) -> u64 {
        self.lock().host_reads
    }

    /// Bytes of device memory held by the workspace now, and the most ever held at once.
    pub fn workspace_bytes(&self) -> (u64, u64) {
        let s = self.lock();
        (s.workspace.bytes, s.workspace.peak_bytes)
    }

    /// Number of wgpu errors that escaped every error scope (0 on valid work).
    pub fn uncaptured_errors(&self) -> usize {
        self.uncaptured.load(Ordering::SeqCst)
    }

    /// A `STORAGE | COPY_SRC | COPY_DST` buffer holding `contents` (e.g. embeddings, or
    /// `bytemuck::cast_slice(labels.ids())`), for the device-resident calls.
    pub fn storage_buffer(&self, label: &str, contents: &[u8]) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (contents.len() as u64).div_ceil(4).max(1) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !contents.is_empty() {
            let mut padded = contents.to_vec();
            padded.resize(contents.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(&buffer, 0, &padded);
        }
        buffer
    }

    /// Reads a buffer back (it needs `COPY_SRC` usage), after the work submitted so far:
    /// the staging, mapping and polling of a read in one call.
    pub fn read_buffer(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::InvalidBuffer {
                what: "read",
                reason: "the buffer needs COPY_SRC usage to be read back".into(),
            });
        }
        let size = buffer.size() / 4 * 4;
        let ((), bytes) = self.execute("reading a buffer", 0.0, |rec| {
            let b = rec.external(buffer, 0, size);
            rec.read_back(&b, size);
            Ok(())
        })?;
        Ok(bytes)
    }

    /// [`Gpu::read_buffer`] as f32 values.
    pub fn read_f32(&self, buffer: &wgpu::Buffer) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_buffer(buffer)?))
    }

    fn lost_reason(&self) -> Option<String> {
        // wgpu reports a destroyed or lost device from its maintenance pass: run one, without
        // blocking, so that the callback has fired before the flag is read.
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn target(&self) -> recorder::DeviceRef<'_> {
        recorder::DeviceRef {
            device: &self.device,
            queue: &self.queue,
            limits: &self.limits,
            engine: self.engine,
            lanes: self.lanes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost_or(&self, err: Error) -> Error {
        match self.lost_reason() {
            Some(reason) => Error::DeviceLost { reason },
            None => err,
        }
    }

    /// What every call starts with: a lost device is an error; then the lock and the error
    /// scopes.
    fn begin(&self) -> Result<(MutexGuard<'_, State>, Scopes)> {
        if let Some(reason) = self.lost_reason() {
            return Err(Error::DeviceLost { reason });
        }
        let state = self.lock();
        let scopes = Scopes {
            oom: self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            validation: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
        };
        Ok((state, scopes))
    }

    /// Pops the scopes: what they caught, as the crate's error.
    fn end(&self, scopes: Scopes, during: &'static str) -> Result<()> {
        let val = pollster::block_on(scopes.validation.pop());
        let oom = pollster::block_on(scopes.oom.pop());
        match oom.or(val) {
            Some(e) => Err(self.lost_or(classify(e, during))),
            None => Ok(()),
        }
    }

    /// Records work with `record`, submits it once, and returns what `record` returned with
    /// the bytes it queued for reading back. `work_flops` (the call's model work) scales the
    /// automatic timeout.
    pub(crate) fn execute<R>(
        &self,
        during: &'static str,
        work_flops: f64,
        record: impl FnOnce(&mut Recorder<'_>) -> Result<R>,
    ) -> Result<(R, Vec<u8>)> {
        let timeout = self.timeout.unwrap_or_else(|| {
            DEFAULT_TIMEOUT.max(Duration::from_secs_f64(
                (work_flops / SLOWEST_FLOPS).min(1e9),
            ))
        });
        let (mut state, scopes) = self.begin()?;
        state.host_reads += 1;
        let timing = self.profiling && self.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut rec = Recorder::new(self.target(), &mut state, false);
        let recorded = record(&mut rec).map(|out| {
            let (staging, size, encoder, stamp) = rec.finish(timing);
            let index = self.queue.submit([encoder.finish()]);
            (out, staging, size, stamp, index)
        });
        self.end(scopes, during)?;
        let (out, staging, size, stamp, index) = recorded?;
        let slice = staging.slice(..size);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            sender.send(r).ok();
        });
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(timeout),
        });
        if let Err(e) = polled {
            // The staging buffer is still waiting to be mapped: start afresh next call.
            state.workspace.reset();
            return Err(self.lost_or(match e {
                wgpu::PollError::Timeout => Error::Timeout { timeout },
                other => Error::Validation {
                    during,
                    description: other.to_string(),
                },
            }));
        }
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(self.lost_or(Error::MapFailed(e))),
            None => return Err(self.lost_or(Error::MapFailed(wgpu::BufferAsyncError))),
        }
        let mut bytes = {
            // A device destroyed mid-call shows here as a destroyed staging buffer.
            let view = slice.get_mapped_range().map_err(|e| {
                self.lost_or(Error::Validation {
                    during,
                    description: e.to_string(),
                })
            })?;
            view.to_vec()
        };
        staging.unmap();
        state.last_kernel_seconds = None;
        if let Some(offset) = stamp {
            let raw: Vec<u8> = bytes.split_off(offset as usize);
            let t: &[u64] = bytemuck::cast_slice(&raw[..16]);
            let period = f64::from(self.queue.get_timestamp_period());
            state.last_kernel_seconds = Some(t[1].saturating_sub(t[0]) as f64 * period * 1e-9);
        }
        Ok((out, bytes))
    }

    /// Records work with `record` for a device-resident call and either submits it (no wait,
    /// no readback) or records it into the caller's encoder.
    pub(crate) fn execute_device<R>(
        &self,
        during: &'static str,
        target: Target<'_>,
        record: impl FnOnce(&mut Recorder<'_>) -> Result<R>,
    ) -> Result<R> {
        let (mut state, scopes) = self.begin()?;
        let mut rec = Recorder::new(self.target(), &mut state, true);
        let recorded = record(&mut rec).inspect(|_| match target {
            Target::Submit => {
                let mut encoder =
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("metric-loss"),
                        });
                rec.encode_pass(&mut encoder, None);
                self.queue.submit([encoder.finish()]);
            }
            Target::Encoder(encoder) => rec.encode_pass(encoder, None),
        });
        self.end(scopes, during)?;
        if recorded.is_ok() {
            state.device_calls += 1;
        }
        recorded
    }

    /// Builds the pipelines of `kernels` now, as their first use would.
    pub(crate) fn prepare_kernels(&self, kernels: &[&'static kernel::KernelInfo]) -> Result<()> {
        let (mut state, scopes) = self.begin()?;
        let mut rec = Recorder::new(self.target(), &mut state, false);
        // Register-row kernels are generated per row width: built on first use. The staged
        // shape has one variant per form, built here when the configuration runs it.
        for &k in kernels {
            if !k.module.rows() {
                rec.pipeline(k, None);
            } else if self.engine == EngineConfig::Tile {
                for dot in [false, true] {
                    let shape = RowShape::Staged { dot };
                    if k.module.builds_on(&shape) {
                        rec.pipeline(k, Some(shape));
                    }
                }
            }
        }
        drop(rec);
        self.end(scopes, "building the pipelines")
    }

    /// Calls `done` once the work submitted so far has finished on the device.
    pub(crate) fn queue_done(&self, done: impl FnOnce() + Send + 'static) {
        self.queue.on_submitted_work_done(done);
    }

    /// Reads a device-resident call's results under the lock, if `call` is still the last
    /// device-resident call (its buffers are then still its own).
    pub(crate) fn read_device(&self, call: u64, sources: &[(&Bound, u64)]) -> Result<Vec<u8>> {
        let ((), bytes) = self.execute("reading the loss", 0.0, |rec| {
            if rec.last_device_call() != call {
                return Err(Error::StaleDeviceLoss);
            }
            for (b, n) in sources {
                rec.read_back(b, *n);
            }
            Ok(())
        })?;
        Ok(bytes)
    }
}

//! The device, its limits, the pipeline cache, reusable buffers and the submit/readback path.

mod errors;
pub(crate) mod params;
pub mod shader;
mod workspace;

pub use workspace::Allocations;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
pub(crate) use errors::classify;
use workspace::{Slot, Workspace};

/// Least polling timeout of the automatic rule: long enough for large batches on a software
/// driver.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The slowest device the automatic timeout allows for, in model FLOP/s: a call whose work
/// would take longer than the timeout at this rate gets a proportionally longer timeout.
const SLOWEST_FLOPS: f64 = 2e7;

/// How [`Gpu::with_options`] picks and configures a device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to try. Default: `WGPU_BACKEND` if set, else all.
    pub backends: wgpu::Backends,
    /// Pick the first adapter whose name contains this (case-insensitive).
    /// Default: `WGPU_ADAPTER_NAME` if set, else wgpu's default choice.
    pub adapter_name: Option<String>,
    /// Limits to request. Default: everything the adapter offers, so that large batches fit.
    pub limits: Option<wgpu::Limits>,
    /// How long to wait for one loss call to finish on the device. `None` (default): the
    /// larger of [`DEFAULT_TIMEOUT`] and the call's model work at 0.02 GFLOP/s, so that a
    /// legitimately long call never trips it; `Some(t)`: exactly `t`.
    pub timeout: Option<Duration>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            adapter_name: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
            limits: None,
            timeout: None,
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
    profiling: bool,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<AtomicUsize>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    modules: HashMap<&'static str, LoadedModule>,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    workspace: Workspace,
    timestamps: Option<wgpu::QuerySet>,
    last_kernel_seconds: Option<f64>,
    /// Device-resident calls recorded so far: each overwrites the workspace's loss and flag
    /// buffers, so a `DeviceLoss` is readable only while this still counts its own call.
    device_calls: u64,
}

/// A shader module on the device, with naga's analysis of it (each entry point's layout).
struct LoadedModule {
    shader: wgpu::ShaderModule,
    ir: wgpu::naga::Module,
    info: wgpu::naga::valid::ModuleInfo,
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
        // Timestamps give kernel-only times in benchmarks; nothing else is needed.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("metric-loss"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))?;
        let mut gpu = Self::wrap(device, queue, options.timeout);
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

    /// Uses a device the caller already has (a training framework's). The device's own limits
    /// apply. The caller keeps its device-lost and uncaptured-error handlers: this installs
    /// none; errors of metric-loss's own work are still caught in error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::wrap(device, queue, None)
    }

    fn wrap(device: wgpu::Device, queue: wgpu::Queue, timeout: Option<Duration>) -> Self {
        let info = device.adapter_info();
        Self {
            adapter: AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                device_type: format!("{:?}", info.device_type),
            },
            limits: device.limits(),
            features: device.features(),
            device,
            queue,
            timeout,
            profiling: false,
            lost: Arc::new(Mutex::new(None)),
            uncaptured: Arc::new(AtomicUsize::new(0)),
            state: Mutex::new(State::default()),
        }
    }

    /// The adapter this device runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
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

    /// The device's queue, for callers that share it (to upload inputs for, or read the
    /// gradients of, the device-resident calls).
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

    /// Bytes of device memory held by the workspace now, and the most ever held at once.
    pub fn workspace_bytes(&self) -> (u64, u64) {
        let s = self.lock();
        (s.workspace.bytes, s.workspace.peak_bytes)
    }

    /// Number of wgpu errors that escaped every error scope (0 on valid work).
    pub fn uncaptured_errors(&self) -> usize {
        self.uncaptured.load(Ordering::SeqCst)
    }

    fn lost_reason(&self) -> Option<String> {
        // wgpu reports a destroyed or lost device from its maintenance pass: run one, without
        // blocking, so that the callback has fired before the flag is read.
        let _ = self.device.poll(wgpu::PollType::Poll);
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records work with `record`, submits it once, and reads back the staging buffer that
    /// `record` returns. Validation and out-of-memory errors are caught in error scopes.
    /// `work_flops` (the call's model work) scales the automatic timeout.
    pub(crate) fn execute(
        &self,
        during: &'static str,
        work_flops: f64,
        record: impl FnOnce(&mut Recorder<'_>) -> Result<()>,
    ) -> Result<Vec<u8>> {
        if let Some(reason) = self.lost_reason() {
            return Err(Error::DeviceLost { reason });
        }
        let timeout = self.timeout.unwrap_or_else(|| {
            DEFAULT_TIMEOUT.max(Duration::from_secs_f64(
                (work_flops / SLOWEST_FLOPS).min(1e9),
            ))
        });
        let mut state = self.lock();
        let oom_scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val_scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let timing = self.profiling && self.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut rec = Recorder {
            gpu: self,
            state: &mut state,
            passes: Vec::new(),
            copies: Vec::new(),
            device: false,
        };
        let recorded = record(&mut rec).and_then(|()| rec.finish(timing));
        let (readback, stamp) = match recorded {
            Ok((readback, encoder, stamp)) => {
                let index = self.queue.submit([encoder.finish()]);
                (Ok((readback, index)), stamp)
            }
            Err(e) => (Err(e), None),
        };
        let val = pollster::block_on(val_scope.pop());
        let oom = pollster::block_on(oom_scope.pop());
        if let Some(e) = oom.or(val) {
            return Err(self.lost_or(classify(e, during)));
        }
        let (readback, index) = readback?;
        let slice = readback.buffer.slice(..readback.size);
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
        readback.buffer.unmap();
        state.last_kernel_seconds = None;
        if let Some(offset) = stamp {
            let raw: Vec<u8> = bytes.split_off(offset as usize);
            let t: &[u64] = bytemuck::cast_slice(&raw[..16]);
            let period = f64::from(self.queue.get_timestamp_period());
            state.last_kernel_seconds = Some(t[1].saturating_sub(t[0]) as f64 * period * 1e-9);
        }
        Ok(bytes)
    }

    /// Records work with `record` for a device-resident call and either submits it (no wait,
    /// no readback) or records it into the caller's encoder. Validation and out-of-memory
    /// errors of the recording (and of the submit) are caught in error scopes.
    pub(crate) fn execute_device(
        &self,
        during: &'static str,
        target: crate::device::Target<'_>,
        record: impl FnOnce(&mut Recorder<'_>) -> Result<()>,
    ) -> Result<()> {
        if let Some(reason) = self.lost_reason() {
            return Err(Error::DeviceLost { reason });
        }
        let mut state = self.lock();
        let oom_scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val_scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut rec = Recorder {
            gpu: self,
            state: &mut state,
            passes: Vec::new(),
            copies: Vec::new(),
            device: true,
        };
        let recorded = record(&mut rec).map(|()| match target {
            crate::device::Target::Submit => {
                let mut encoder =
                    self.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("metric-loss"),
                        });
                rec.encode_pass(&mut encoder, None);
                self.queue.submit([encoder.finish()]);
            }
            crate::device::Target::Encoder(encoder) => rec.encode_pass(encoder, None),
        });
        let val = pollster::block_on(val_scope.pop());
        let oom = pollster::block_on(oom_scope.pop());
        if let Some(e) = oom.or(val) {
            return Err(self.lost_or(classify(e, during)));
        }
        if recorded.is_ok() {
            state.device_calls += 1;
        }
        recorded
    }

    /// Calls `done` once the work submitted so far has finished on the device.
    pub(crate) fn queue_done(&self, done: impl FnOnce() + Send + 'static) {
        self.queue.on_submitted_work_done(done);
    }

    fn lost_or(&self, err: Error) -> Error {
        match self.lost_reason() {
            Some(reason) => Error::DeviceLost { reason },
            None => err,
        }
    }
}

/// A staging buffer to map after the submit, and how many bytes of it to read.
pub(crate) struct Readback {
    pub buffer: wgpu::Buffer,
    pub size: u64,
}

/// A window of a workspace buffer bound to a kernel: `size` bytes from `offset`.
#[derive(Clone)]
pub(crate) struct Bound {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    pub offset: u64,
    pub size: u64,
}

impl Bound {
    /// The window `[offset, offset + size)` of this buffer.
    pub fn window(&self, offset: u64, size: u64) -> Bound {
        Bound {
            buffer: self.buffer.clone(),
            id: self.id,
            offset,
            size,
        }
    }
}

/// Records one loss call: buffers from the workspace, dispatches into one compute pass, and
/// copies into one staging buffer after it.
pub(crate) struct Recorder<'a> {
    gpu: &'a Gpu,
    state: &'a mut State,
    /// (pipeline, bind group, dynamic offset of the parameters, workgroups)
    passes: Vec<(wgpu::ComputePipeline, wgpu::BindGroup, u32, u32)>,
    copies: Vec<(Bound, u64)>,
    /// A device-resident call: its parameters go to the ring (see [`Recorder::uniforms`]).
    device: bool,
}

/// Parameter slots of the device-resident calls' ring: calls recorded into encoders that
/// are not yet submitted may hold this many dispatches in all before the ring wraps.
pub const DEVICE_RING_SLOTS: u64 = 4096;

/// Uniform slots are this many bytes apart (the largest offset alignment WebGPU allows).
const UNIFORM_SLOT: u64 = 256;

impl Recorder<'_> {
    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.gpu.limits
    }

    /// The number the device-resident call being recorded will have (see
    /// `State::device_calls`).
    pub fn next_device_call(&self) -> u64 {
        self.state.device_calls + 1
    }

    /// The number of the last device-resident call recorded.
    pub fn last_device_call(&self) -> u64 {
        self.state.device_calls
    }

    /// Rows every row-indexed workspace buffer is sized for; `grow` raises it (grow-only).
    pub fn row_capacity(&mut self, grow: impl FnOnce(u64) -> u64) -> u64 {
        let cap = grow(self.state.workspace.row_capacity);
        self.state.workspace.row_capacity = cap;
        cap
    }

    fn slot(
        &mut self,
        role: &'static str,
        size: u64,
        usage: wgpu::BufferUsages,
        exact: bool,
    ) -> Slot {
        self.state.workspace.get(
            &self.gpu.device,
            self.gpu.limits.max_buffer_size,
            role,
            size,
            usage,
            exact,
        )
    }

    /// A storage buffer of exactly the planned `size` (row-indexed; its windows are bound).
    pub fn rows_buffer(&mut self, role: &'static str, size: u64, upload: bool) -> Bound {
        let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        if upload {
            usage |= wgpu::BufferUsages::COPY_DST;
        }
        let s = self.slot(role, size, usage, true);
        let size = s.buffer.size();
        Bound {
            buffer: s.buffer,
            id: s.id,
            offset: 0,
            size,
        }
    }

    /// Writes `data` at the start of `b` (through wgpu's queue).
    pub fn write(&mut self, b: &Bound, data: &[u8]) {
        if !data.is_empty() {
            self.gpu.queue.write_buffer(&b.buffer, 0, data);
        }
    }

    /// A small storage buffer (grow-only) bound whole.
    pub fn small(&mut self, role: &'static str, size: u64) -> Bound {
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let s = self.slot(role, size, usage, false);
        Bound {
            buffer: s.buffer,
            id: s.id,
            offset: 0,
            size: round16(size),
        }
    }

    /// One uniform buffer holding each of `slots` 256 bytes apart; one binding per slot.
    ///
    /// A device-resident call's slots go to the next free part of a ring of
    /// [`DEVICE_RING_SLOTS`] instead: its work may run long after this call returns (when
    /// the caller submits its encoder), and the queue writes the parameters before that
    /// submit, so later calls must not overwrite them.
    pub fn uniforms(&mut self, role: &'static str, slots: &[&[u8]]) -> Vec<Bound> {
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let n = slots.len() as u64;
        let (role, capacity, first) = if self.device {
            let capacity = DEVICE_RING_SLOTS.max(n);
            let ws = &mut self.state.workspace;
            if ws.device_ring + n > capacity {
                ws.device_ring = 0;
            }
            let first = ws.device_ring;
            ws.device_ring += n;
            ("device_params", capacity, first)
        } else {
            // Room for 16 dispatches from the start, so that calls of different losses or
            // options do not regrow it (and invalidate its bind groups) after the first.
            (role, n.max(16), 0)
        };
        // Room for 16 dispatches from the start, so that calls of different losses or
        // options do not regrow it (and invalidate its bind groups) after the first.
        let s = self.slot(role, UNIFORM_SLOT * capacity, usage, false);
        let mut bytes = vec![0u8; UNIFORM_SLOT as usize * slots.len()];
        for (k, data) in slots.iter().enumerate() {
            let at = k * UNIFORM_SLOT as usize;
            bytes[at..at + data.len()].copy_from_slice(data);
        }
        self.gpu
            .queue
            .write_buffer(&s.buffer, first * UNIFORM_SLOT, &bytes);
        slots
            .iter()
            .enumerate()
            .map(|(k, data)| Bound {
                buffer: s.buffer.clone(),
                id: s.id,
                offset: (first + k as u64) * UNIFORM_SLOT,
                size: round16(data.len() as u64),
            })
            .collect()
    }

    fn pipeline(&mut self, module: &'static str, entry: &'static str) -> wgpu::ComputePipeline {
        if let Some(p) = self.state.pipelines.get(entry) {
            return p.clone();
        }
        let device = &self.gpu.device;
        let counts = &mut self.state.workspace.counts;
        let loaded = self.state.modules.entry(module).or_insert_with(|| {
            counts.shader_modules += 1;
            let src = shader::assemble(module);
            let (ir, info) = shader::reflect(module, &src);
            LoadedModule {
                shader: device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(module),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                }),
                ir,
                info,
            }
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &shader::layout_entries(&loaded.ir, &loaded.info, entry),
        });
        let shader = loaded.shader.clone();
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &shader,
            entry_point: Some(entry),
            // Every kernel writes its workgroup memory before reading it.
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.state.workspace.counts.pipelines += 1;
        self.state.pipelines.insert(entry, pipeline.clone());
        pipeline
    }

    /// Records one dispatch of `entry`: its parameters `uniform` (binding 0, one slot of the
    /// uniform buffer, bound at a dynamic offset) and its storage `bindings` (binding number,
    /// window). The bind group depends on the storage windows only, so dispatches that differ
    /// in their parameters alone share it.
    pub fn dispatch(
        &mut self,
        module: &'static str,
        entry: &'static str,
        uniform: &Bound,
        bindings: &[(u32, &Bound)],
        workgroups: u32,
    ) {
        if workgroups == 0 {
            return;
        }
        let pipeline = self.pipeline(module, entry);
        let key = (
            entry,
            std::iter::once((0, uniform.id, 0, uniform.size))
                .chain(bindings.iter().map(|(n, b)| (*n, b.id, b.offset, b.size)))
                .collect(),
        );
        let device = &self.gpu.device;
        let bind_group = self.state.workspace.bind_group(key, || {
            fn buffer(b: &Bound, offset: u64) -> wgpu::BindingResource<'_> {
                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer,
                    offset,
                    size: std::num::NonZeroU64::new(b.size),
                })
            }
            let entries: Vec<wgpu::BindGroupEntry<'_>> = std::iter::once(wgpu::BindGroupEntry {
                binding: 0,
                resource: buffer(uniform, 0),
            })
            .chain(bindings.iter().map(|(binding, b)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: buffer(b, b.offset),
            }))
            .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        });
        self.passes
            .push((pipeline, bind_group, uniform.offset as u32, workgroups));
    }

    /// A window of a caller's buffer, `size` bytes from `offset`, to bind like a workspace
    /// buffer (its identity is the buffer's, for the bind-group cache).
    pub fn external(&mut self, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Bound {
        Bound {
            buffer: buffer.clone(),
            id: self.state.workspace.external_id(buffer),
            offset,
            size,
        }
    }

    /// Queues a copy of the first `bytes` of `source` into the staging buffer.
    pub fn read_back(&mut self, source: &Bound, bytes: u64) {
        self.copies.push((source.clone(), bytes));
    }

    /// Encodes the recorded dispatches as one compute pass into `encoder`, timed when
    /// `query_set` is given.
    fn encode_pass(&self, encoder: &mut wgpu::CommandEncoder, query_set: Option<&wgpu::QuerySet>) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("metric-loss"),
            timestamp_writes: query_set.map(|q| wgpu::ComputePassTimestampWrites {
                query_set: q,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        });
        for (pipeline, bind_group, offset, groups) in &self.passes {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[*offset]);
            pass.dispatch_workgroups(*groups, 1, 1);
        }
    }

    /// Encodes the pass (with timestamps when `timing`) and the copies. Returns the staging
    /// buffer, the encoder, and where the timestamps start in the staging buffer.
    fn finish(&mut self, timing: bool) -> Result<(Readback, wgpu::CommandEncoder, Option<u64>)> {
        let device = &self.gpu.device;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("metric-loss"),
        });
        let query_set = if timing {
            if self.state.timestamps.is_none() {
                self.state.workspace.counts.query_sets += 1;
                self.state.timestamps = Some(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel time"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }));
            }
            self.state.timestamps.clone()
        } else {
            None
        };
        self.encode_pass(&mut encoder, query_set.as_ref());
        let copied: u64 = self.copies.iter().map(|(_, n)| round4(*n)).sum();
        let total = copied + if query_set.is_some() { 16 } else { 0 };
        let staging = self.slot(
            "staging",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            false,
        );
        let mut offset = 0;
        for (b, n) in &self.copies {
            encoder.copy_buffer_to_buffer(&b.buffer, b.offset, &staging.buffer, offset, round4(*n));
            offset += round4(*n);
        }
        let stamp = match &query_set {
            Some(q) => {
                let resolve = self.slot(
                    "timestamps",
                    16,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    false,
                );
                encoder.resolve_query_set(q, 0..2, &resolve.buffer, 0);
                encoder.copy_buffer_to_buffer(&resolve.buffer, 0, &staging.buffer, offset, 16);
                Some(offset)
            }
            None => None,
        };
        Ok((
            Readback {
                buffer: staging.buffer,
                size: total,
            },
            encoder,
            stamp,
        ))
    }
}

fn round4(x: u64) -> u64 {
    x.div_ceil(4) * 4
}

fn round16(x: u64) -> u64 {
    x.div_ceil(16) * 16
}

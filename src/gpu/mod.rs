//! The device, its limits, the pipeline cache, reusable buffers and the submit/readback path.

mod errors;
pub(crate) mod params;
pub mod shader;
mod workspace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, Result};
pub(crate) use errors::classify;
use workspace::Workspace;

/// Default polling timeout: long enough for very large batches on a software driver.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// How long to wait for one loss call to finish on the device.
    pub timeout: Duration,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            adapter_name: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
            limits: None,
            timeout: DEFAULT_TIMEOUT,
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
    timeout: Duration,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<AtomicUsize>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    workspace: Workspace,
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
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("metric-loss"),
                required_features: wgpu::Features::empty(),
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
        Self::wrap(device, queue, DEFAULT_TIMEOUT)
    }

    fn wrap(device: wgpu::Device, queue: wgpu::Queue, timeout: Duration) -> Self {
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

    /// The polling timeout of each loss call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the polling timeout of each loss call.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
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

    /// Checks that a binding of `bytes` fits the device, naming `what` otherwise.
    pub(crate) fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let limit = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::LimitExceeded {
                what: format!("the {what} buffer (bytes)"),
                needed: bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Checks a 1-D dispatch size against the device.
    pub(crate) fn check_workgroups(&self, what: &str, groups: u64) -> Result<()> {
        let limit = u64::from(self.limits.max_compute_workgroups_per_dimension);
        if groups > limit {
            return Err(Error::LimitExceeded {
                what: format!("{what} (workgroups per dispatch)"),
                needed: groups,
                limit,
            });
        }
        Ok(())
    }

    /// Records work with `record`, submits it once, and reads back the staging buffer that
    /// `record` returns. Validation and out-of-memory errors are caught in error scopes.
    pub(crate) fn execute(
        &self,
        during: &'static str,
        record: impl FnOnce(&mut Recorder<'_>) -> Result<Readback>,
    ) -> Result<Vec<u8>> {
        if let Some(reason) = self.lost_reason() {
            return Err(Error::DeviceLost { reason });
        }
        let mut state = self.lock();
        let oom_scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val_scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(during),
            });
        let mut rec = Recorder {
            gpu: self,
            state: &mut state,
            encoder: &mut encoder,
        };
        let recorded = record(&mut rec);
        let submission = recorded
            .as_ref()
            .ok()
            .map(|_| self.queue.submit([encoder.finish()]));
        let val = pollster::block_on(val_scope.pop());
        let oom = pollster::block_on(oom_scope.pop());
        if let Some(e) = oom.or(val) {
            return Err(self.lost_or(classify(e, during)));
        }
        let readback = recorded?;
        let slice = readback.buffer.slice(..readback.size);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            sender.send(r).ok();
        });
        let polled = self.device.poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout: Some(self.timeout),
        });
        if let Err(e) = polled {
            // The staging buffer is still waiting to be mapped: start afresh next call.
            state.workspace = Workspace::default();
            return Err(self.lost_or(match e {
                wgpu::PollError::Timeout => Error::Timeout {
                    timeout: self.timeout,
                },
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
        let bytes = {
            let view = slice.get_mapped_range().map_err(|e| Error::Validation {
                during,
                description: e.to_string(),
            })?;
            view.to_vec()
        };
        readback.buffer.unmap();
        Ok(bytes)
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

/// A storage buffer and the byte length bound to a kernel.
#[derive(Clone)]
pub(crate) struct Bound {
    pub buffer: wgpu::Buffer,
    pub size: u64,
}

/// Records one loss call: buffers from the workspace, dispatches, copies.
pub(crate) struct Recorder<'a> {
    gpu: &'a Gpu,
    state: &'a mut State,
    encoder: &'a mut wgpu::CommandEncoder,
}

impl Recorder<'_> {
    /// A workspace buffer for `role` of at least `size` bytes (grow-only, reused across calls).
    pub fn buffer(&mut self, role: &'static str, size: u64, usage: wgpu::BufferUsages) -> Bound {
        let buffer = self.state.workspace.get(
            &self.gpu.device,
            self.gpu.limits.max_buffer_size,
            role,
            size,
            usage,
        );
        Bound {
            buffer,
            size: size.max(4),
        }
    }

    /// A storage buffer for `role` holding `data`.
    pub fn upload(&mut self, role: &'static str, data: &[u8]) -> Bound {
        let b = self.buffer(
            role,
            data.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        self.gpu.queue.write_buffer(&b.buffer, 0, data);
        b
    }

    /// A uniform buffer for `role` holding `data`.
    pub fn uniform(&mut self, role: &'static str, data: &[u8]) -> Bound {
        let b = self.buffer(
            role,
            data.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        self.gpu.queue.write_buffer(&b.buffer, 0, data);
        b
    }

    /// A storage buffer the kernels write.
    pub fn scratch(&mut self, role: &'static str, size: u64) -> Bound {
        self.buffer(
            role,
            size,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )
    }

    fn pipeline(&mut self, module: &'static str, entry: &'static str) -> wgpu::ComputePipeline {
        if let Some(p) = self.state.pipelines.get(entry) {
            return p.clone();
        }
        let device = &self.gpu.device;
        let shader = self
            .state
            .modules
            .entry(module)
            .or_insert_with(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(module),
                    source: wgpu::ShaderSource::Wgsl(shader::assemble(module).into()),
                })
            })
            .clone();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &shader,
            entry_point: Some(entry),
            // Every kernel writes its workgroup memory before reading it.
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.state.pipelines.insert(entry, pipeline.clone());
        pipeline
    }

    /// Records one dispatch of `entry` with `bindings` (binding number, buffer).
    pub fn dispatch(
        &mut self,
        module: &'static str,
        entry: &'static str,
        bindings: &[(u32, &Bound)],
        workgroups: u32,
    ) {
        let pipeline = self.pipeline(module, entry);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = bindings
            .iter()
            .map(|(binding, b)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer,
                    offset: 0,
                    size: std::num::NonZeroU64::new(b.size),
                }),
            })
            .collect();
        let bind_group = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: None,
            });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups, 1, 1);
    }

    /// Copies each source into one staging buffer, back to back, and returns it for reading.
    pub fn read_back(&mut self, sources: &[&Bound]) -> Readback {
        let total: u64 = sources.iter().map(|b| b.size).sum();
        let staging = self.buffer(
            "staging",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut offset = 0;
        for b in sources {
            self.encoder
                .copy_buffer_to_buffer(&b.buffer, 0, &staging.buffer, offset, b.size);
            offset += b.size;
        }
        Readback {
            buffer: staging.buffer,
            size: total,
        }
    }
}

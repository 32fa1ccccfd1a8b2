//! Recording one call: buffers from the workspace, steps into one compute pass, and copies
//! into one staging buffer after it.

use std::collections::HashMap;

use super::config::EngineConfig;
use super::kernel::{Bound, KernelInfo, Step};
use super::plan::Plan;
use super::rows::RowShape;
use super::workspace::{Held, Workspace};
use crate::error::Result;

/// What calls change, under the `Gpu`'s lock.
#[derive(Default)]
pub(super) struct State {
    pub modules: HashMap<(&'static str, Option<RowShape>), wgpu::ShaderModule>,
    pub pipelines: HashMap<(&'static str, Option<RowShape>), wgpu::ComputePipeline>,
    pub workspace: Workspace,
    pub timestamps: Option<wgpu::QuerySet>,
    pub last_kernel_seconds: Option<f64>,
    /// Device-resident calls recorded so far: each overwrites the workspace's loss and flag
    /// buffers, so a `DeviceLoss` is readable only while this still counts its own call.
    pub device_calls: u64,
    /// Calls that waited for the device and read results back (see `Gpu::host_reads`).
    pub host_reads: u64,
}

/// The device a recorder records for.
#[derive(Clone, Copy)]
pub(super) struct DeviceRef<'a> {
    pub device: &'a wgpu::Device,
    pub queue: &'a wgpu::Queue,
    pub limits: &'a wgpu::Limits,
    pub engine: EngineConfig,
    /// The subgroup size broadcasts are generated for, where the device can run them.
    pub lanes: Option<u32>,
}

/// A row-indexed workspace buffer: `per_row` bytes for each of the workspace's capacity
/// rows, bound in the plan's windows.
#[derive(Clone)]
pub(crate) struct RowBuf {
    whole: Bound,
    per_row: u64,
    /// Rows between window starts (the plan's window).
    stride_rows: u64,
    /// Rows each window binding covers: the window, or the whole capacity when smaller.
    window_rows: u64,
}

impl RowBuf {
    /// Window `w` (the same size for every window, so bind groups are shared).
    pub fn win(&self, w: u64) -> Bound {
        let size = self.window_rows * self.per_row;
        self.whole.window(w * self.stride_rows * self.per_row, size)
    }

    /// The whole buffer.
    pub fn whole(&self) -> Bound {
        self.whole.clone()
    }

    /// The first `rows` rows, bound whole.
    pub fn first_rows(&self, rows: u64) -> Bound {
        self.whole.window(0, rows * self.per_row)
    }
}

/// Parameter slots of the device-resident calls' ring: calls recorded into encoders that
/// are not yet submitted may hold this many dispatches in all before the ring wraps.
pub const DEVICE_RING_SLOTS: u64 = 4096;

/// Bytes of the largest write staged at once (see [`Recorder::write`]).
const UPLOAD_CHUNK: u64 = 8 << 20;

/// Uniform slots are this many bytes apart (the largest offset alignment WebGPU allows).
const UNIFORM_SLOT: u64 = 256;

/// Records one loss call: buffers from the workspace, dispatches into one compute pass, and
/// copies into one staging buffer after it.
pub(crate) struct Recorder<'a> {
    gpu: DeviceRef<'a>,
    pub(super) state: &'a mut State,
    /// (pipeline, bind group, dynamic offset of the parameters, workgroups)
    pub(super) passes: Vec<(wgpu::ComputePipeline, wgpu::BindGroup, u32, u32)>,
    pub(super) copies: Vec<(Bound, u64)>,
    /// A device-resident call: its parameters go to the ring (see [`Recorder::record`]).
    pub(super) device: bool,
    /// Rows every row-indexed buffer holds in this call.
    capacity: u64,
    window_rows: u64,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(gpu: DeviceRef<'a>, state: &'a mut State, device: bool) -> Self {
        Self {
            gpu,
            state,
            passes: Vec::new(),
            copies: Vec::new(),
            device,
            capacity: 0,
            window_rows: 1,
        }
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        self.gpu.limits
    }

    /// The pair engine's shape for rows of `dim4` vec4s under the device's engine
    /// configuration.
    pub fn row_shape(&self, dim4: u64, dot: bool) -> RowShape {
        RowShape::for_dim4(self.gpu.engine, self.gpu.lanes, dim4, dot)
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

    /// Sizes the row-indexed buffers of this call for `plan` (the workspace's capacity only
    /// grows, see [`Plan::capacity`]). Returns the capacity.
    pub fn reserve(&mut self, plan: &Plan) -> u64 {
        let ws = &mut self.state.workspace;
        ws.row_capacity = plan.capacity(ws.row_capacity);
        self.capacity = ws.row_capacity;
        self.window_rows = plan.window_rows;
        self.capacity
    }

    /// Rows every row-indexed buffer holds in this call (after [`Recorder::reserve`]).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn slot(
        &mut self,
        role: &'static str,
        size: u64,
        usage: wgpu::BufferUsages,
        exact: bool,
    ) -> Held {
        self.state.workspace.get(
            self.gpu.device,
            self.gpu.limits.max_buffer_size,
            role,
            size,
            usage,
            exact,
        )
    }

    /// A row-indexed storage buffer of `per_row` bytes a row for the reserved capacity.
    pub fn rows(&mut self, role: &'static str, per_row: u64, upload: bool) -> RowBuf {
        let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        if upload {
            usage |= wgpu::BufferUsages::COPY_DST;
        }
        let s = self.slot(role, self.capacity * per_row, usage, true);
        let size = s.buffer.size();
        RowBuf {
            whole: Bound {
                buffer: s.buffer,
                id: s.id,
                offset: 0,
                size,
            },
            per_row,
            stride_rows: self.window_rows,
            window_rows: self.window_rows.min(self.capacity),
        }
    }

    /// Writes `data` at the start of `b` (through wgpu's queue). wgpu stages a write in a
    /// buffer of its size until the submission that carries it completes, so a large
    /// write goes in chunks of [`UPLOAD_CHUNK`], each submitted and waited for: the staging
    /// memory stays one chunk rather than the whole input (on a CPU adapter it is host
    /// memory beside the input and the device copy).
    pub fn write(&mut self, b: &Bound, data: &[u8]) {
        if data.len() as u64 <= UPLOAD_CHUNK {
            if !data.is_empty() {
                self.gpu.queue.write_buffer(&b.buffer, 0, data);
            }
            return;
        }
        for (k, chunk) in data.chunks(UPLOAD_CHUNK as usize).enumerate() {
            self.gpu
                .queue
                .write_buffer(&b.buffer, k as u64 * UPLOAD_CHUNK, chunk);
            let index = self.gpu.queue.submit([]);
            // A failed wait leaves the staging alive a little longer: nothing is lost.
            let _ = self.gpu.device.poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            });
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
            size: size.div_ceil(16) * 16,
        }
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

    /// Records `steps` in order, each checked against its kernel, with one uniform slot each.
    ///
    /// A device-resident call's slots go to the next free part of a ring of
    /// [`DEVICE_RING_SLOTS`] instead: its work may run long after this call returns (when
    /// the caller submits its encoder), and the queue writes the parameters before that
    /// submit, so later calls must not overwrite them.
    pub fn record(&mut self, steps: &[Step]) -> Result<()> {
        for s in steps {
            s.check()?;
        }
        let usage = wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST;
        let n = steps.len() as u64;
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
            ("params", n.max(16), 0)
        };
        let s = self.slot(role, UNIFORM_SLOT * capacity, usage, false);
        let mut bytes = vec![0u8; UNIFORM_SLOT as usize * steps.len()];
        for (k, step) in steps.iter().enumerate() {
            let at = k * UNIFORM_SLOT as usize;
            bytes[at..at + step.params.len()].copy_from_slice(&step.params);
        }
        self.gpu
            .queue
            .write_buffer(&s.buffer, first * UNIFORM_SLOT, &bytes);
        for (k, step) in steps.iter().enumerate() {
            let uniform = Bound {
                buffer: s.buffer.clone(),
                id: s.id,
                offset: (first + k as u64) * UNIFORM_SLOT,
                size: (step.params.len() as u64).div_ceil(16) * 16,
            };
            self.dispatch(step, &uniform);
        }
        Ok(())
    }

    /// The pipeline of `kernel`, built on its first use.
    pub(super) fn pipeline(
        &mut self,
        kernel: &'static KernelInfo,
        shape: Option<RowShape>,
    ) -> wgpu::ComputePipeline {
        if let Some(p) = self.state.pipelines.get(&(kernel.entry, shape)) {
            return p.clone();
        }
        let device = self.gpu.device;
        let counts = &mut self.state.workspace.counts;
        let module = kernel.module;
        let shader = self
            .state
            .modules
            .entry((module.file, shape))
            .or_insert_with(|| {
                counts.shader_modules += 1;
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(module.file),
                    source: wgpu::ShaderSource::Wgsl(module.assemble(shape.as_ref()).into()),
                })
            })
            .clone();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry),
            entries: &kernel.layout_entries(),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &shader,
            entry_point: Some(kernel.entry),
            // Every kernel writes its workgroup memory before reading it.
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.state.workspace.counts.pipelines += 1;
        self.state
            .pipelines
            .insert((kernel.entry, shape), pipeline.clone());
        pipeline
    }

    /// Records one dispatch of `step` with its parameters at `uniform`. The bind group
    /// depends on the storage windows only, so dispatches that differ in their parameters
    /// alone share it.
    fn dispatch(&mut self, step: &Step, uniform: &Bound) {
        if step.groups == 0 {
            return;
        }
        let pipeline = self.pipeline(step.kernel, step.shape);
        let key = (
            step.kernel.entry,
            step.shape,
            std::iter::once((0, uniform.id, 0, uniform.size))
                .chain(
                    step.bindings
                        .iter()
                        .map(|(s, b)| (s.binding, b.id, b.offset, b.size)),
                )
                .collect(),
        );
        let device = self.gpu.device;
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
            .chain(step.bindings.iter().map(|(s, b)| wgpu::BindGroupEntry {
                binding: s.binding,
                resource: buffer(b, b.offset),
            }))
            .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(step.kernel.entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        });
        self.passes.push((
            pipeline,
            bind_group,
            uniform.offset as u32,
            step.groups as u32,
        ));
    }

    /// Encodes the recorded dispatches as one compute pass into `encoder`, timed when
    /// `query_set` is given.
    pub(super) fn encode_pass(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        query_set: Option<&wgpu::QuerySet>,
    ) {
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
    /// buffer and its size, the encoder, and where the timestamps start in the staging
    /// buffer.
    pub(super) fn finish(
        &mut self,
        timing: bool,
    ) -> (wgpu::Buffer, u64, wgpu::CommandEncoder, Option<u64>) {
        let device = self.gpu.device.clone();
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
        let copied: u64 = self.copies.iter().map(|(_, n)| n.div_ceil(4) * 4).sum();
        let total = copied + if query_set.is_some() { 16 } else { 0 };
        let staging = self.slot(
            "staging",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            false,
        );
        let mut offset = 0;
        for (b, n) in &self.copies {
            let n = n.div_ceil(4) * 4;
            encoder.copy_buffer_to_buffer(&b.buffer, b.offset, &staging.buffer, offset, n);
            offset += n;
        }
        let stamp = query_set.map(|q| {
            let resolve = self.slot(
                "timestamps",
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                false,
            );
            encoder.resolve_query_set(&q, 0..2, &resolve.buffer, 0);
            encoder.copy_buffer_to_buffer(&resolve.buffer, 0, &staging.buffer, offset, 16);
            offset
        });
        (staging.buffer, total, encoder, stamp)
    }
}
